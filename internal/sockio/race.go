//go:build race

package sockio

import "syscall"

// With the race detector, the calls go through syscall.Read and
// syscall.Write, whose annotations tell the detector that a goroutine
// reading bytes from a socket comes after the one that wrote them
// (without them it would report races that the socket orders).

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errno(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}

// raceEnabled: the build has the race detector (tests that check
// MSG_NOSIGNAL know the race build writes with write(2)).
const raceEnabled = true
