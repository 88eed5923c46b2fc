//go:build linux

// Command eventloop is the "eventloop" engine candidate: one goroutine
// that runs its own epoll loop over every client and backend socket, as
// nginx's worker does, with each connection a state machine, instead of a
// goroutine per connection parked in Go's network poller.
//
// It answers one question for docs/decisions/0001-http-engine.md: how much
// of the gap between a goroutine-per-connection proxy (Rampart, the
// fasthttp candidate) and nginx is the Go scheduler's (a goroutine switch
// and a poller wake-up per wait, ready goroutines handed over last-ready
// first), and how much is Go itself. It does what the other candidates do
// per request and no more (see package rawio).
package main

import (
	"syscall"

	"github.com/rampart-proxy/rampart/bench/candidates/internal/cand"
	"github.com/rampart-proxy/rampart/bench/candidates/internal/rawio"
)

type conn struct {
	fd     int
	client bool
	in     []byte // bytes read and not yet used
	out    []byte // bytes still to write (a client that did not take all)
	// client: the backend connection carrying its request; backend: the
	// client it answers (nil while idle in the pool).
	peer    *conn
	backend int // backend index (backend connections)
	closed  bool
}

type loop struct {
	ep      *rawio.Epoll
	conns   []*conn // by fd
	addrs   []syscall.Sockaddr
	idle    [][]*conn // per backend
	next    int
	scratch []byte
}

const (
	evRead  = syscall.EPOLLIN | syscall.EPOLLRDHUP
	evWrite = evRead | syscall.EPOLLOUT
)

func main() {
	cfg := cand.Parse("eventloop")
	l := &loop{ep: rawio.NewEpoll(), scratch: make([]byte, 0, rawio.BufSize)}
	for _, b := range cfg.Backends {
		l.addrs = append(l.addrs, rawio.Sockaddr(b))
	}
	l.idle = make([][]*conn, len(l.addrs))
	lfd := rawio.Listen(cfg.Listen)
	l.ep.Add(lfd, syscall.EPOLLIN)
	for {
		for _, ev := range l.ep.Wait() {
			fd := int(ev.Fd)
			if fd == lfd {
				l.accept(lfd)
				continue
			}
			c := l.conns[fd]
			if c == nil || c.closed {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 && len(c.out) > 0 {
				l.flush(c)
			}
			if ev.Events&(evRead|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 && !c.closed {
				if c.client {
					l.clientReadable(c)
				} else {
					l.backendReadable(c)
				}
			}
		}
	}
}

func (l *loop) track(c *conn) {
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*conn, len(l.conns)+64)...)
	}
	l.conns[c.fd] = c
	l.ep.Add(c.fd, evRead)
}

func (l *loop) accept(lfd int) {
	for fd := rawio.Accept(lfd); fd >= 0; fd = rawio.Accept(lfd) {
		l.track(&conn{fd: fd, client: true, in: make([]byte, 0, rawio.BufSize)})
	}
}

// readInto appends what the socket has to c.in: false when the peer is
// gone or the buffer is full.
func readInto(c *conn) bool {
	for {
		if len(c.in) == cap(c.in) {
			return false
		}
		n, e := rawio.Read(c.fd, c.in[len(c.in):cap(c.in)])
		switch {
		case e == syscall.EAGAIN:
			return true
		case e == syscall.EINTR:
			continue
		case e != 0 || n == 0:
			return false
		}
		c.in = c.in[:len(c.in)+n]
		if len(c.in) < cap(c.in) {
			return true // short read: the socket is empty
		}
	}
}

func (l *loop) close(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	syscall.Close(c.fd) // also leaves the epoll set
	l.conns[c.fd] = nil
	if p := c.peer; p != nil {
		p.peer = nil
		if !c.client {
			l.reply(p, rawio.Resp502)
		} else {
			l.close(p) // its answer would belong to nobody
		}
	}
}

// reply sends a canned answer that ends the connection.
func (l *loop) reply(c *conn, msg []byte) {
	rawio.Write(c.fd, msg)
	l.close(c)
}

func (l *loop) clientReadable(c *conn) {
	if !readInto(c) {
		l.close(c)
		return
	}
	if c.peer == nil && len(c.out) == 0 {
		l.request(c)
	}
}

// request forwards the buffered request head, if complete.
func (l *loop) request(c *conn) {
	end := rawio.HeadEnd(c.in)
	if end < 0 {
		return
	}
	w, ok := rawio.Request(l.scratch[:0], c.in[:end])
	l.scratch = w
	if !ok {
		l.reply(c, rawio.Resp501)
		return
	}
	c.in = c.in[:copy(c.in, c.in[end:])]
	b := l.backendConn()
	if b == nil {
		l.reply(c, rawio.Resp502)
		return
	}
	if n, e := rawio.Write(b.fd, w); e != 0 || n != len(w) {
		l.close(b)
		l.reply(c, rawio.Resp502)
		return
	}
	b.peer, c.peer = c, b
}

// backendConn takes an idle connection to the next backend (round robin),
// or dials one.
func (l *loop) backendConn() *conn {
	i := l.next % len(l.addrs)
	l.next++
	for n := len(l.idle[i]); n > 0; n-- {
		b := l.idle[i][n-1]
		l.idle[i] = l.idle[i][:n-1]
		if !b.closed {
			return b
		}
	}
	fd := rawio.Dial(l.addrs[i])
	if fd < 0 {
		return nil
	}
	b := &conn{fd: fd, backend: i, in: make([]byte, 0, rawio.BufSize)}
	l.track(b)
	return b
}

func (l *loop) backendReadable(b *conn) {
	if !readInto(b) || b.peer == nil {
		l.close(b) // closed, or bytes nobody asked for
		return
	}
	end := rawio.HeadEnd(b.in)
	if end < 0 {
		return
	}
	w, clen, ok := rawio.Response(l.scratch[:0], b.in[:end])
	l.scratch = w
	switch {
	case !ok || end+clen > cap(b.in) || len(b.in) > end+clen:
		l.close(b) // unhandled, or more than the answer: never reused
		return
	case len(b.in) < end+clen:
		return // body still coming
	}
	w = append(w, b.in[end:]...)
	l.scratch = w
	c := b.peer
	b.peer, c.peer = nil, nil
	b.in = b.in[:0]
	l.idle[b.backend] = append(l.idle[b.backend], b)
	l.send(c, w)
	if !c.closed && len(c.out) == 0 && len(c.in) > 0 {
		l.request(c) // pipelined
	}
}

// send writes an answer to the client, keeping what the socket does not
// take for EPOLLOUT.
func (l *loop) send(c *conn, p []byte) {
	n, e := rawio.Write(c.fd, p)
	if e == syscall.EAGAIN {
		n, e = 0, 0
	}
	if e != 0 {
		l.close(c)
		return
	}
	if n < len(p) {
		c.out = append(c.out[:0], p[n:]...)
		l.ep.Mod(c.fd, evWrite)
	}
}

func (l *loop) flush(c *conn) {
	n, e := rawio.Write(c.fd, c.out)
	if e == syscall.EAGAIN {
		return
	}
	if e != 0 {
		l.close(c)
		return
	}
	c.out = c.out[:copy(c.out, c.out[n:])]
	if len(c.out) == 0 {
		l.ep.Mod(c.fd, evRead)
		if c.peer == nil && len(c.in) > 0 {
			l.request(c)
		}
	}
}
