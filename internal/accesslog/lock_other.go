//go:build !unix

package accesslog

import (
	"os"
	"sync"
)

// fileLock excludes within the process only on systems without flock:
// there, run `rampart logs purge` while Rampart is stopped.
type fileLock struct {
	mu sync.Mutex
	f  *os.File
}

func openLock(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	return &fileLock{f: f}, nil
}

func (l *fileLock) Lock()        { l.mu.Lock() }
func (l *fileLock) Unlock()      { l.mu.Unlock() }
func (l *fileLock) Close() error { return l.f.Close() }

func copyOwner(*os.File, os.FileInfo) {}
