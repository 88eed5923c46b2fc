package evloop

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Dial connects to addr, an IP address and port, on the loop of the task ctx
// carries, when that task is on its loop: the connect waits by yielding,
// as the connection's reads will, instead of holding up the loop for a
// round trip (and a connect timeout) in Go's poller. ok is false when the
// caller is not on a loop or addr is not an IP literal (a name would need a
// resolver): the caller then dials the usual way. Errors are *net.OpError
// with Op "dial", as net.Dialer's.
func Dial(ctx context.Context, addr string, timeout time.Duration) (nc net.Conn, ok bool, err error) {
	t := TaskOf(ctx)
	if !t.onLoop() {
		return nil, false, nil
	}
	ap, perr := netip.ParseAddrPort(addr)
	if perr != nil {
		return nil, false, nil
	}
	c, err := t.loop.dial(t, ap, timeout)
	if err != nil {
		return nil, true, err
	}
	return c, true, nil
}

func (l *Loop) dial(t *Task, ap netip.AddrPort, timeout time.Duration) (*Conn, error) {
	remote := net.TCPAddrFromAddrPort(ap)
	fail := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: remote, Err: err}
	}
	family, sa := syscall.AF_INET, syscall.Sockaddr(nil)
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fail(os.NewSyscallError("socket", err))
	}
	// As net.Dialer's defaults: no Nagle, keep-alive probes after 30 s
	// idle (the backend pool's dialer asks for that period).
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 30)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 30)
	c := newConn(fd, l, nil, remote)
	c.owner.Store(t)
	if err := l.register(c); err != nil {
		syscall.Close(fd)
		return nil, fail(err)
	}
	err = syscall.Connect(fd, sa)
	if err == syscall.EINPROGRESS {
		// Writable once connected or failed; SO_ERROR says which.
		if timeout > 0 {
			c.SetWriteDeadline(time.Now().Add(timeout))
		}
		var soErr int
		werr := c.raw.Write(func(fd uintptr) bool {
			soErr, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
			if err == nil && soErr == 0 {
				// Writable and no error, or not yet: connected when the
				// peer's address can be read.
				if _, perr := syscall.Getpeername(int(fd)); perr != nil {
					return false
				}
			}
			return true
		})
		c.SetWriteDeadline(time.Time{})
		switch {
		case werr != nil:
			err = werr
			if ne, ok := werr.(*net.OpError); ok {
				err = ne.Err // an i/o timeout, as net.Dialer's
			}
		case err != nil:
		case soErr != 0:
			err = os.NewSyscallError("connect", syscall.Errno(soErr))
		}
	} else if err != nil {
		err = os.NewSyscallError("connect", err)
	}
	if err != nil {
		c.Close()
		return nil, fail(err)
	}
	if sa, err := syscall.Getsockname(fd); err == nil {
		c.local = sockaddrToTCP(sa)
	}
	return c, nil
}

func sockaddrToTCP(sa syscall.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return nil
}
