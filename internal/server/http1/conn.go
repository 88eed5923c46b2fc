package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one client connection. Its buffers, request, URL, header maps and
// response writer are reused for every request it carries: a keep-alive
// request costs one allocation for its head instead of net/http's dozens.
type conn struct {
	srv *Server
	rwc net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer

	// ctx is ConnContext's result. It is never cancelled: without a
	// background read (net/http's per-request cost) a client that leaves is
	// only noticed when its answer is written, so a cancellation would
	// promise more than it keeps; and an uncancellable context spares the
	// upstream client a cancellation hook per request.
	ctx context.Context
	// readDeadline is the deadline last set on rwc; re-arming it costs a
	// runtime timer update, so it is only moved when it matters.
	readDeadline time.Time
	// tmpl holds the connection's context and RemoteAddr; each request
	// starts as a copy of it, because a Request's context cannot be set
	// without allocating a new Request.
	tmpl http.Request
	req  http.Request
	url  url.URL
	head head
	resp response

	// active is true from the first byte of a request until its response
	// is finished; Shutdown closes only connections that are not active.
	active   atomic.Bool
	hijacked atomic.Bool
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(rwc)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(rwc)
	ctx := s.baseCtx
	if s.ConnContext != nil {
		ctx = s.ConnContext(ctx, rwc)
	}
	c.ctx = ctx
	c.tmpl = *(&http.Request{RemoteAddr: rwc.RemoteAddr().String()}).WithContext(c.ctx)
	c.head.hdr = make(http.Header, 16)
	c.resp.c = c
	c.resp.header = make(http.Header, 16)
	return c
}

// serve runs the connection's request loop until the client leaves, an
// error or a limit ends it, or the server shuts down.
func (c *conn) serve() {
	defer c.close()
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			c.srv.logger().Error("http1: panic serving connection", "remote", c.tmpl.RemoteAddr, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s := c.srv
	for {
		// Between requests the connection is idle: it may wait IdleTimeout
		// for the next one, then has ReadHeaderTimeout to send the head.
		if c.br.Buffered() == 0 {
			if s.shuttingDown() {
				return
			}
			// Re-armed only when it has moved more than a second closer.
			now := time.Now()
			if idle := s.idleTimeout(); c.readDeadline.Sub(now) < idle-time.Second {
				c.setReadDeadline(now.Add(idle))
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		c.active.Store(true)
		if !c.headBuffered() {
			// The head is still arriving: it has ReadHeaderTimeout to
			// complete, however slowly its bytes trickle (slowloris).
			c.setReadDeadline(time.Now().Add(s.readHeaderTimeout()))
		}
		r, err := c.readRequest()
		if err != nil {
			c.refuse(err)
			return
		}
		keep := c.handle(r)
		if c.hijacked.Load() {
			return
		}
		if !keep {
			c.bw.Flush()
			return
		}
		// Pipelined requests already buffered are answered before the
		// responses go out together.
		if c.br.Buffered() == 0 {
			if c.bw.Flush() != nil {
				return
			}
		}
		c.active.Store(false)
	}
}

func (c *conn) setReadDeadline(t time.Time) {
	c.readDeadline = t
	c.rwc.SetReadDeadline(t)
}

// headBuffered reports whether a complete request head is already in the
// read buffer (the common case: it came in one packet).
func (c *conn) headBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// readRequest reads and checks one request head. The returned request is
// the connection's own, valid until the next call.
func (c *conn) readRequest() (*http.Request, error) {
	lineEnd, err := c.head.readHead(c.br, &c.srv.limits)
	if err != nil {
		return nil, err
	}
	r := &c.req
	*r = c.tmpl
	r.URL = &c.url
	if err := c.head.parse(r, lineEnd); err != nil {
		return nil, err
	}
	if err := frame(r, c); err != nil {
		return nil, err
	}
	return r, nil
}

// handle runs the handler for r and completes the response. It reports
// whether the connection can carry another request.
func (c *conn) handle(r *http.Request) (keep bool) {
	w := &c.resp
	w.reset(r)
	b, _ := r.Body.(*body)
	defer func() {
		if c.hijacked.Load() {
			return
		}
		if p := recover(); p != nil {
			if b != nil {
				b.finish()
			}
			panic(p) // serve logs it and closes the connection
		}
	}()
	c.srv.Handler.ServeHTTP(w, r)
	if c.hijacked.Load() {
		return false
	}
	keep = w.finish()
	if b != nil && !b.finish() {
		keep = false
	}
	return keep && !r.Close
}

// refuse answers a request that never reached a handler and reports it.
func (c *conn) refuse(err error) {
	if errors.Is(err, errH2Preface) {
		c.handOffH2()
		return
	}
	var pe *parseError
	if !errors.As(err, &pe) {
		// Timeout, reset or EOF in the middle of a head: nothing to answer
		// that the client would read, except a slow client's 408.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			pe = &parseError{status: http.StatusRequestTimeout, reason: "request head not received in time"}
		} else if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			return
		} else {
			pe = &parseError{status: http.StatusBadRequest, reason: err.Error()}
		}
	}
	if c.srv.OnRefused != nil {
		c.srv.OnRefused(c.ctx, pe.status, pe.reason)
	}
	text := http.StatusText(pe.status)
	body := strconv.Itoa(pe.status) + " " + text + "\n"
	c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	bw := c.bw
	bw.Reset(c.rwc)
	writeStatusLine(bw, pe.status)
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(body)))
	bw.WriteString("\r\n\r\n")
	bw.WriteString(body)
	bw.Flush()
	// Let the client read the answer before the close resets it.
	if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
		c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c.rwc, 64<<10)
	}
}

// handOffH2 passes a connection that opened with the HTTP/2 preface to the
// listener's HTTP/2 server (h2c with prior knowledge), replaying the bytes
// already read.
func (c *conn) handOffH2() {
	if c.srv.h2 == nil {
		if c.srv.OnRefused != nil {
			c.srv.OnRefused(c.ctx, http.StatusHTTPVersionNotSupported, "HTTP/2 without h2c enabled")
		}
		return
	}
	c.rwc.SetReadDeadline(time.Time{})
	pre := &prereadConn{Conn: c.rwc, r: io.MultiReader(strings.NewReader("PRI * HTTP/2.0\r\n"), c.br)}
	c.hijacked.Store(true) // the HTTP/2 server owns it now
	c.srv.untrack(c)
	c.srv.h2.hand(pre)
}

type prereadConn struct {
	net.Conn
	r io.Reader
}

func (c *prereadConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *conn) close() {
	if c.hijacked.Load() {
		return
	}
	c.srv.untrack(c)
	c.rwc.Close()
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
