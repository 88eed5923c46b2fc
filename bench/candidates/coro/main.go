//go:build linux

// Command coro is the "coro" engine candidate: the eventloop candidate's
// epoll loop, but each client connection's handling written as straight-line
// code (read a head, send it, read the answer, write it), running as a
// coroutine (iter.Pull) that the loop resumes when a socket it waits on is
// ready. A coroutine switch is a direct hand-over between two goroutines on
// the same thread, without the scheduler's run queue or Go's network poller,
// and the loop resumes connections in the order their sockets became ready.
//
// It answers whether a proxy can keep the goroutine-per-connection style of
// code (Rampart's) and still get the event loop's cost per request: the
// difference between this candidate and eventloop is the price of the
// coroutines. It does what the other candidates do per request and no more
// (see package rawio).
package main

import (
	"iter"
	"syscall"

	"github.com/rampart-proxy/rampart/bench/candidates/internal/cand"
	"github.com/rampart-proxy/rampart/bench/candidates/internal/rawio"
)

// task is one client connection's coroutine.
type task struct {
	fd    int
	next  func() (struct{}, bool)
	yield func(struct{}) bool
}

type reactor struct {
	ep     *rawio.Epoll
	waiter []*task // by fd: the task waiting for that socket
	addrs  []syscall.Sockaddr
	idle   [][]int // per backend: idle connections
	rr     int
}

// Every socket is registered once, edge-triggered, for both directions: a
// task always tries its call before it waits, so an event that came while
// it waited for another socket is never needed.
const events = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | 1<<31 // EPOLLET, negative in package syscall

func main() {
	cfg := cand.Parse("coro")
	r := &reactor{ep: rawio.NewEpoll()}
	for _, b := range cfg.Backends {
		r.addrs = append(r.addrs, rawio.Sockaddr(b))
	}
	r.idle = make([][]int, len(r.addrs))
	lfd := rawio.Listen(cfg.Listen)
	r.ep.Add(lfd, syscall.EPOLLIN)
	for {
		for _, ev := range r.ep.Wait() {
			fd := int(ev.Fd)
			if fd == lfd {
				r.accept(lfd)
			} else if fd < len(r.waiter) && r.waiter[fd] != nil {
				r.resume(r.waiter[fd])
			}
		}
	}
}

func (r *reactor) register(fd int) {
	for fd >= len(r.waiter) {
		r.waiter = append(r.waiter, make([]*task, len(r.waiter)+64)...)
	}
	r.ep.Add(fd, events)
}

func (r *reactor) accept(lfd int) {
	for fd := rawio.Accept(lfd); fd >= 0; fd = rawio.Accept(lfd) {
		r.register(fd)
		t := &task{fd: fd}
		t.next, _ = iter.Pull(func(yield func(struct{}) bool) {
			t.yield = yield
			r.serve(t)
		})
		r.resume(t)
	}
}

// resume runs t until it waits again or ends.
func (r *reactor) resume(t *task) {
	if _, alive := t.next(); !alive {
		syscall.Close(t.fd)
	}
}

// wait gives the thread back to the loop until fd is ready.
func (r *reactor) wait(t *task, fd int) {
	r.waiter[fd] = t
	t.yield(struct{}{})
	r.waiter[fd] = nil
}

// read appends what fd has to *buf, waiting until there is something:
// false at the end of the stream, on an error or with a full buffer.
func (r *reactor) read(t *task, fd int, buf *[]byte) bool {
	b := *buf
	for len(b) < cap(b) {
		n, e := rawio.Read(fd, b[len(b):cap(b)])
		switch {
		case e == syscall.EAGAIN:
			r.wait(t, fd)
			continue
		case e == syscall.EINTR:
			continue
		case e != 0 || n == 0:
			return false
		}
		*buf = b[:len(b)+n]
		return true
	}
	return false
}

// write writes all of p, waiting while fd's buffer is full.
func (r *reactor) write(t *task, fd int, p []byte) bool {
	for len(p) > 0 {
		n, e := rawio.Write(fd, p)
		switch {
		case e == syscall.EAGAIN:
			r.wait(t, fd)
		case e == syscall.EINTR:
		case e != 0:
			return false
		default:
			p = p[n:]
		}
	}
	return true
}

// backendConn takes an idle connection to the next backend (round robin),
// or dials one.
func (r *reactor) backendConn() int {
	i := r.rr % len(r.addrs)
	r.rr++
	if n := len(r.idle[i]); n > 0 {
		fd := r.idle[i][n-1]
		r.idle[i] = r.idle[i][:n-1]
		return fd
	}
	fd := rawio.Dial(r.addrs[i])
	if fd >= 0 {
		r.register(fd)
	}
	return fd
}

// serve is one client connection, start to end, as a goroutine-per-
// connection server would write it.
func (r *reactor) serve(t *task) {
	in := make([]byte, 0, rawio.BufSize)
	ans := make([]byte, 0, rawio.BufSize)
	out := make([]byte, 0, rawio.BufSize)
	for {
		end := rawio.HeadEnd(in)
		for ; end < 0; end = rawio.HeadEnd(in) {
			if !r.read(t, t.fd, &in) {
				return
			}
		}
		req, ok := rawio.Request(out[:0], in[:end])
		if !ok {
			rawio.Write(t.fd, rawio.Resp501)
			return
		}
		in = in[:copy(in, in[end:])]
		idx := r.rr % len(r.addrs)
		b := r.backendConn()
		if b < 0 || !r.write(t, b, req) {
			rawio.Write(t.fd, rawio.Resp502)
			return
		}
		resp, ok := rawio.ReadAnswer(func(buf *[]byte) bool { return r.read(t, b, buf) }, &ans, out[:0])
		if !ok {
			syscall.Close(b)
			rawio.Write(t.fd, rawio.Resp502)
			return
		}
		r.idle[idx] = append(r.idle[idx], b)
		out = resp
		if !r.write(t, t.fd, resp) {
			return
		}
	}
}
