//go:build !race

package sockio

import (
	"syscall"
	"unsafe"
)

// sysRead and sysWrite are recv(2) and send(2) without the scheduler's
// bookkeeping (see the package comment). Not read(2) and write(2): those
// pass through the file layer first, which in a process of several
// threads (every Go program) takes a reference on the file for the call
// (fdget_pos) and then dispatches to the socket; the socket calls go
// straight to it. In a kernel profile of bench/run.sh's setup the file
// layer was ~2 % of the proxy's kernel time. MSG_NOSIGNAL: a write to a
// connection the peer reset fails with EPIPE instead of raising SIGPIPE,
// which the runtime would otherwise have to catch and ignore.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	return int(n), e
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}

const raceEnabled = false
