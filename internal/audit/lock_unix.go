//go:build unix

package audit

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on the open log for as long as
// it stays open. Two processes appending to one trail would each extend
// the chain from their own idea of its last entry and fork it; the second
// one is refused at start instead. The kernel drops the lock when the
// process dies, kill -9 included.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("audit log %s is in use by another process (another rampart on the same data_dir?)", f.Name())
	}
	return err
}
