//go:build unix

package accesslog

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

// fileLock is an exclusive lock shared by every process that touches one
// access log's files (see rotate.go): a mutex within the process, since
// flock does not exclude holders of the same open file, and flock on
// PATH.lock between processes.
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

func (l *fileLock) Lock() {
	l.mu.Lock()
	for {
		// A failure (a file system without locks) leaves the in-process
		// exclusion; there is nothing better to do than carry on.
		if err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX); !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

func (l *fileLock) Unlock() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.mu.Unlock()
}

func (l *fileLock) Close() error { return l.f.Close() }

// copyOwner gives f the owner of like when running as root, so that a
// purge run by root leaves files the server's user can still compress,
// expire and lock. Errors are ignored: not being root, there is nothing
// to fix.
func copyOwner(f *os.File, like os.FileInfo) {
	if os.Geteuid() != 0 || like == nil {
		return
	}
	if st, ok := like.Sys().(*syscall.Stat_t); ok {
		f.Chown(int(st.Uid), int(st.Gid))
	}
}
