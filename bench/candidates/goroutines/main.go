//go:build linux

// Command goroutines is the control for the coro candidate: the same
// straight-line handling of a connection (package rawio's head rewriting,
// the same buffers), but each connection its own goroutine reading and
// writing net.Conns, parked in Go's network poller while it waits, as
// Rampart's and the fasthttp candidate's connections are. The difference
// between the two is what the scheduler and the poller cost per request.
package main

import (
	"net"
	"sync"

	"github.com/rampart-proxy/rampart/bench/candidates/internal/cand"
	"github.com/rampart-proxy/rampart/bench/candidates/internal/rawio"
)

type backends struct {
	mu    sync.Mutex
	addrs []string
	idle  [][]net.Conn
	rr    int
}

func main() {
	cfg := cand.Parse("goroutines")
	bs := &backends{addrs: cfg.Backends, idle: make([][]net.Conn, len(cfg.Backends))}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		panic(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c, bs)
	}
}

// take returns an idle connection to the next backend (round robin), or
// dials one, with the backend's index.
func (bs *backends) take() (net.Conn, int) {
	bs.mu.Lock()
	i := bs.rr % len(bs.addrs)
	bs.rr++
	if n := len(bs.idle[i]); n > 0 {
		c := bs.idle[i][n-1]
		bs.idle[i] = bs.idle[i][:n-1]
		bs.mu.Unlock()
		return c, i
	}
	bs.mu.Unlock()
	c, err := net.Dial("tcp", bs.addrs[i])
	if err != nil {
		return nil, i
	}
	return c, i
}

func (bs *backends) put(c net.Conn, i int) {
	bs.mu.Lock()
	bs.idle[i] = append(bs.idle[i], c)
	bs.mu.Unlock()
}

// read appends what c has to *buf: false at the end of the stream, on an
// error or with a full buffer.
func read(c net.Conn, buf *[]byte) bool {
	b := *buf
	if len(b) == cap(b) {
		return false
	}
	n, err := c.Read(b[len(b):cap(b)])
	if err != nil || n == 0 {
		return false
	}
	*buf = b[:len(b)+n]
	return true
}

func serve(c net.Conn, bs *backends) {
	defer c.Close()
	in := make([]byte, 0, rawio.BufSize)
	ans := make([]byte, 0, rawio.BufSize)
	out := make([]byte, 0, rawio.BufSize)
	for {
		end := rawio.HeadEnd(in)
		for ; end < 0; end = rawio.HeadEnd(in) {
			if !read(c, &in) {
				return
			}
		}
		req, ok := rawio.Request(out[:0], in[:end])
		if !ok {
			c.Write(rawio.Resp501)
			return
		}
		in = in[:copy(in, in[end:])]
		b, idx := bs.take()
		if b == nil {
			c.Write(rawio.Resp502)
			return
		}
		if _, err := b.Write(req); err != nil {
			b.Close()
			c.Write(rawio.Resp502)
			return
		}
		resp, ok := rawio.ReadAnswer(func(buf *[]byte) bool { return read(b, buf) }, &ans, out[:0])
		if !ok {
			b.Close()
			c.Write(rawio.Resp502)
			return
		}
		bs.put(b, idx)
		out = resp
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}
