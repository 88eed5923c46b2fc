// Package sockio reads and writes a TCP connection's socket with raw system
// calls, for the proxy's hot path.
//
// A read or write on a net.Conn tells the Go scheduler that its thread is
// entering a system call and leaving it (entersyscall, exitsyscall), so
// that a call that blocks does not hold up other goroutines. Rampart's
// sockets are non-blocking: a call returns at once, or fails with EAGAIN
// and then waits in the network poller as net.Conn's do, so the
// bookkeeping buys nothing here, and with one P (GOMAXPROCS=1, a proxy on
// one core) it costs: the runtime's monitor thread is woken by the first
// such call after the process was idle, and takes the P away from a call
// that lasts past its 20 µs tick, which a loopback write that wakes its
// reader can, so the next goroutine runs on another thread and the calling
// thread sleeps until it gets the P back. Under a moderate load (idle now
// and then) that is thousands of thread switches a second on the proxy's
// core: bench/ab.sh at 15,000 req/s measured 10 % and 22 % less CPU per
// request with raw calls in two runs (docs/decisions/0001-http-engine.md).
//
// Built with the race detector, the calls are syscall.Read and
// syscall.Write, for the detector's sake (race.go).
//
// Waiting, deadlines and Close work as on the net.Conn: the calls are made
// inside its syscall.RawConn's Read and Write, and errors come back as
// net.Conn's do (*net.OpError).
package sockio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn reads and writes one TCP connection. Like a net.Conn used by one
// reader and one writer, it allows a read and a write at the same time,
// but not two reads or two writes.
type Conn struct {
	nc  net.Conn
	raw syscall.RawConn

	// The buffer and result of the read or write in progress: RawConn
	// takes a function, and a method value made once per connection
	// avoids a closure (an allocation) per call.
	readFn func(fd uintptr) bool
	rbuf   []byte
	rn     int
	rerr   error

	writeFn func(fd uintptr) bool
	wbuf    []byte
	wn      int
	werr    error

	// Pending's peek, as readFn (one method value per connection).
	peekFn  func(fd uintptr)
	peekErr syscall.Errno

	// own is the connection when its socket belongs to an event loop,
	// which knows whether anything arrived since the socket was last
	// found empty; nil otherwise.
	own ownSocket
	// skip: the read in progress waits before its first call (see Read).
	skip bool

	// BeforeWait, when set, is called when a Read finds nothing to read
	// and is about to wait in the poller, on the reading goroutine. A
	// server that keeps per-request memory only while a connection is busy
	// lets it go here, when the connection has in fact gone idle, instead
	// of before every read for the next request, most of which find it
	// there.
	BeforeWait func()
	// BeforeWriteWait, when set, is called when a Write finds the socket's
	// buffer full and is about to wait in the poller, on the writing
	// goroutine: a write deadline set there bounds the wait, without a
	// timer update for the writes that never wait (nearly all).
	BeforeWriteWait func()
}

// New returns a Conn for c, or nil when c is not a TCP connection (a TLS
// connection, a pipe, a test double): the caller then uses c itself.
func New(c net.Conn) *Conn {
	var src syscall.Conn
	own, _ := c.(ownSocket)
	switch c := c.(type) {
	case *net.TCPConn:
		src = c
	case ownSocket:
		src = c
	default:
		return nil
	}
	raw, err := src.SyscallConn()
	if err != nil {
		return nil
	}
	sc := &Conn{nc: c, raw: raw, own: own}
	sc.readFn, sc.writeFn, sc.peekFn = sc.read, sc.write, sc.peekOnce
	return sc
}

// ownSocket is a TCP connection whose socket is not in Go's poller but an
// event loop's (package evloop): its SyscallConn waits its own way, and it
// keeps track of whether its socket is empty. SetDrained records that a
// read found it so (it took less than it asked for), and ReadQuiet reports
// whether it still is: no readiness came, and no wait took one, since.
// Unlike Go's poller, an event loop keeps the readiness it saw until a wait
// takes it, so a read that starts by waiting loses nothing (Go's
// RawConn.Read clears the readiness it saw before it calls).
type ownSocket interface {
	syscall.Conn
	SetDrained(bool)
	ReadQuiet() bool
}

// Raw is the connection's syscall.RawConn, for a caller that waits on the
// socket itself.
func (c *Conn) Raw() syscall.RawConn { return c.raw }

// PeerClosed reports whether the peer has closed its side of the
// connection or reset it: the next read would end. Like Pending, it
// neither consumes, nor waits, nor locks, so it may run while another
// goroutine reads or waits on the connection. Unread data means false: the
// peer may still be there.
func (c *Conn) PeerClosed() bool {
	closed := false
	c.raw.Control(func(fd uintptr) {
		n, e := peek(fd)
		closed = (e == 0 && n == 0) || e == syscall.ECONNRESET
	})
	return closed
}

// Pending reports whether a read would not wait: data, the end of the
// stream or an error is there (or the connection is closed). For a
// connection nobody reads, such as an idle one in a pool: it neither
// consumes nor waits, and takes no lock.
func (c *Conn) Pending() bool {
	if c.quiet() {
		return false
	}
	c.peekErr = 0
	if c.raw.Control(c.peekFn) != nil {
		return true // closed
	}
	return c.peekErr != syscall.EAGAIN
}

func (c *Conn) peekOnce(fd uintptr) {
	if !readable(fd) {
		c.peekErr = syscall.EAGAIN
	}
}

// readable reports whether a read of the socket would not wait: data, the
// end of the stream or an error is there. A poll with a zero timeout, not
// a peek: TCP answers a poll from the socket's state without taking the
// socket's lock, which a peek takes (and then processes what queued up
// behind it). A raw system call: it never blocks.
func readable(fd uintptr) bool { return polls(fd, pollIn|pollRDHup) }

// Writable reports whether a write to the socket would not wait for the
// peer to take what was sent before: its send buffer has room (or the
// connection failed, which a write will find). Like Pending, it neither
// waits nor takes a lock: for a caller that cannot see another goroutine's
// write wait (a TLS connection's, which does not pass through Write).
func (c *Conn) Writable() bool {
	w := true
	if c.raw.Control(func(fd uintptr) { w = polls(fd, pollOut) }) != nil {
		return true // closed: a write fails at once
	}
	return w
}

// polls reports whether poll(2) with a zero timeout finds any of events
// (or an error) on the socket. A raw system call: it never blocks.
func polls(fd uintptr, events int16) bool {
	pfd := struct {
		fd      int32
		events  int16
		revents int16
	}{fd: int32(fd), events: events}
	var zero syscall.Timespec
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		if e != syscall.EINTR {
			return e != 0 || n > 0 // an error: let the call find it
		}
	}
}

// poll(2) event bits (POLLIN, POLLOUT, POLLRDHUP), which package syscall
// lacks.
const (
	pollIn    = 0x1
	pollOut   = 0x4
	pollRDHup = 0x2000
)

// peek looks at the socket's next byte without taking it or waiting: n is
// 1 when there is one, 0 at the end of the stream; EAGAIN when nothing has
// arrived. A raw system call: it never blocks (see the package comment).
func peek(fd uintptr) (int, syscall.Errno) {
	var b [1]byte
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// Read reads as net.Conn.Read does: at least one byte, or an error (io.EOF
// once the peer has closed its side).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerr = p, 0, nil
	// A socket known to be empty is waited on first: a read would fail.
	c.skip = c.quiet()
	err := c.raw.Read(c.readFn)
	c.rbuf = nil
	if c.own != nil {
		c.own.SetDrained(err == nil && c.rerr == nil && c.rn < len(p))
	}
	if err != nil {
		return 0, err
	}
	return c.rn, c.rerr
}

// quiet reports whether the socket is known to have nothing to read: it
// was empty at the last read and its event loop has seen nothing since.
func (c *Conn) quiet() bool {
	return c.own != nil && c.own.ReadQuiet()
}

func (c *Conn) read(fd uintptr) bool {
	if c.skip {
		c.skip = false
		if c.BeforeWait != nil {
			c.BeforeWait()
		}
		return false
	}
	for {
		n, e := sysRead(fd, c.rbuf)
		switch e {
		case 0:
			c.rn = n
			if n == 0 {
				c.rerr = io.EOF
			}
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			if c.BeforeWait != nil {
				c.BeforeWait()
			}
			return false // wait in the poller, then be called again
		default:
			c.rerr = c.opError("read", e)
			return true
		}
	}
}

// Write writes all of p, waiting in the poller while the socket's buffer
// is full, as net.Conn.Write does.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wbuf, c.wn, c.werr = p, 0, nil
	err := c.raw.Write(c.writeFn)
	c.wbuf = nil
	if err == nil {
		err = c.werr
	}
	return c.wn, err
}

func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, e := sysWrite(fd, rest)
		switch e {
		case 0:
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			if c.BeforeWriteWait != nil {
				c.BeforeWriteWait()
			}
			return false
		default:
			c.werr = c.opError("write", e)
			return true
		}
	}
	return true
}

// opError wraps a failed call as net.Conn wraps it, so callers that look
// for *net.OpError or an errno (errors.Is(err, syscall.ECONNRESET)) see the
// same error either way.
func (c *Conn) opError(op string, e syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError(op, e)}
}
