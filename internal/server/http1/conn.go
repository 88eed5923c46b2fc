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
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/clock"
	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/sockio"
)

// conn is one client connection. Its buffers, request, URL, header maps and
// response writer are reused for every request it carries: a keep-alive
// request costs one allocation for its head instead of net/http's dozens.
type conn struct {
	srv *Server
	rwc net.Conn
	// sock reads and writes rwc's socket without the scheduler's
	// system-call bookkeeping when it is a TCP connection (see
	// internal/sockio); nil otherwise.
	sock *sockio.Conn
	// idle: awaitNext is reading for the next request (see beforeWait).
	idle bool
	// wroteAt is when the last metered write ended (writeMetered), for
	// the idle deadline after the answer's final flush: the clock is not
	// read twice in a row.
	wroteAt time.Time
	// writerReleases counts the write buffer's returns to its pool (for
	// tests).
	writerReleases int
	// hc is the connection as the hooks (ConnContext, OnClose, HTTP/2) see
	// it: rwc, or what Server.Preface made of it. Only the connection's own
	// goroutine changes it, before the hooks read it.
	hc net.Conn
	// tc is the TLS connection on a TLS listener, after the handshake:
	// requests are read from and answers written to it (see tls.go).
	tc *tlsConn
	br *bufio.Reader
	bw *bufio.Writer

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
	// scratch is the handler's slot for state that outlives one request
	// (response.ConnScratch).
	scratch any

	// active is true from the first byte of a request until its response
	// is finished; Shutdown closes only connections that are not active.
	active   atomic.Bool
	hijacked atomic.Bool
	// reqs counts the connection's requests, so that watchClients can tell
	// a request that is still in progress from the next one; watchSeq and
	// goneSeq are watchClients' own (the request it saw last, the last one
	// it reported).
	reqs              atomic.Uint64
	watchSeq, goneSeq uint64

	// cr is what br reads from. While flushOnRead is set (the connection's
	// own goroutine is between handlers), answers still buffered for
	// pipelining are flushed before a read that may block, so a client
	// waiting for them is never stuck behind it.
	cr          connReader
	cw          connWriter
	flushOnRead atomic.Bool

	// contMu orders the automatic 100 Continue, which a body read may send
	// from any goroutine (a proxy's transport reads bodies on its own),
	// with the handler's writes; canContinue says the client still waits
	// for it.
	contMu      sync.Mutex
	canContinue atomic.Bool

	// pol is the policy of the request being served (read once per request).
	pol *policy
	// meter watches the arrival of a request body with a BodyTimeout or a
	// MinBodyRate; connReader hands it the reads while it is on. bodyStop
	// tells it to give up at the next deadline instead of moving it.
	meter    rateMeter
	bodyStop atomic.Bool
	// writeTimeout and writeDeadline: see connWriter; minReadRate and
	// wmeter: see writeMetered.
	writeTimeout  time.Duration
	writeDeadline time.Time
	minReadRate   int64
	wmeter        writeMeter
	// slowSeen has a bit per slow indicator already reported (see slow).
	slowSeen atomic.Uint32
	// handedOff: the HTTP/2 server owns the connection and tells OnClose
	// when it closes it.
	handedOff bool
	// linger: the connection closes with a request body left unread, so
	// the close waits a little for it (see lingerClose): for lingerBytes
	// of it, and lingerAllowance more.
	linger      bool
	lingerBytes int64
}

type connReader struct{ c *conn }

func (cr *connReader) Read(p []byte) (int, error) {
	c := cr.c
	if c.flushOnRead.Load() && c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			return 0, err
		}
	}
	if c.meter.on {
		return c.readBody(p)
	}
	return c.read(p)
}

// read reads the request stream: decrypted on a TLS connection.
func (c *conn) read(p []byte) (int, error) {
	if c.tc != nil {
		return c.tc.Read(p)
	}
	return c.sockRead(p)
}

// sockRead and sockWrite read and write the bytes on the wire (TLS records
// on a TLS connection).
func (c *conn) sockRead(p []byte) (int, error) {
	if c.sock != nil {
		return c.sock.Read(p)
	}
	return c.rwc.Read(p)
}

func (c *conn) sockWrite(p []byte) (int, error) {
	if c.sock != nil {
		return c.sock.Write(p)
	}
	return c.rwc.Write(p)
}

// stream is the connection carrying the HTTP bytes, for a hijacking
// handler.
func (c *conn) stream() net.Conn {
	if c.tc != nil {
		return c.tc
	}
	return c.hc
}

// sendContinue sends the 100 Continue a client waiting with Expect wants
// before its body, unless the final answer has made it moot.
func (c *conn) sendContinue() error {
	if !c.canContinue.Load() {
		return nil
	}
	c.contMu.Lock()
	defer c.contMu.Unlock()
	if !c.canContinue.Load() {
		return nil
	}
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	err := c.bw.Flush()
	// Cleared only once it is out: until then a final answer about to be
	// written (by the handler, while a transport's write loop reads the
	// body and so sends this) waits for the lock in noContinue, and the
	// two never use bw at once.
	c.canContinue.Store(false)
	return err
}

// noContinue is called before the final answer is written: no 100
// Continue follows it, and one being sent is complete first.
func (c *conn) noContinue() {
	if c.canContinue.Load() {
		c.contMu.Lock()
		c.canContinue.Store(false)
		c.contMu.Unlock()
	}
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
	// idleWriter stands in for a connection's write buffer while it waits
	// for its next request: the 4 KiB buffer goes back to the pool, which
	// is most of what an idle keep-alive connection costs. Nothing writes
	// to an idle connection, so this shared, always-empty writer is only
	// ever asked for Buffered(), which is 0.
	idleWriter = bufio.NewWriterSize(io.Discard, 16)
)

// releaseWriter parks the write buffer while the connection is idle;
// acquireWriter takes one back before the next request.
func (c *conn) releaseWriter() {
	if c.bw != idleWriter && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = idleWriter
		c.writerReleases++
	}
}

func (c *conn) acquireWriter() {
	if c.bw == idleWriter {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(&c.cw)
	}
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc, hc: rwc, sock: sockio.New(rwc)}
	if c.sock != nil {
		c.sock.BeforeWait = c.beforeWait
	}
	c.cr.c = c
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.cw.c = c
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(&c.cw)
	c.pol = s.pol.Load()
	if s.Preface == nil && s.tlsConfig == nil {
		c.setContext()
	}
	c.head.hdr = make(http.Header)
	c.resp.c = c
	c.resp.header = make(http.Header)
	return c
}

// setContext derives the connection's context and request template from hc
// (from the TLS connection over it, after a handshake).
func (c *conn) setContext() {
	ctx := c.srv.baseCtx
	if lc, ok := c.rwc.(*evloop.Conn); ok {
		// The handler finds the connection's task through it: to dial
		// backends onto its loop, or to leave it (evloop.Detach).
		ctx = evloop.WithConn(ctx, lc)
	}
	if c.srv.ConnContext != nil {
		ctx = c.srv.ConnContext(ctx, c.stream())
	}
	c.ctx = ctx
	c.tmpl = *(&http.Request{RemoteAddr: c.hc.RemoteAddr().String()}).WithContext(c.ctx)
	if c.tc != nil {
		c.tmpl.TLS = &c.tc.info.State
	}
}

// preface runs Server.Preface and reports whether the connection goes on.
func (c *conn) preface() bool {
	hc, ok := c.srv.Preface(c.rwc, c.br)
	if hc != nil {
		c.hc = hc
	}
	if !ok {
		return false
	}
	if c.srv.tlsConfig == nil {
		c.setContext()
	}
	return true
}

// serve runs the connection's request loop until the client leaves, an
// error or a limit ends it, or the server shuts down.
func (c *conn) serve() {
	growStack()
	defer c.close()
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			c.srv.logger().Error("http1: panic serving connection", "remote", c.tmpl.RemoteAddr, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s := c.srv
	c.flushOnRead.Store(true)
	// A new connection waits ReadHeaderTimeout, not IdleTimeout, for its
	// first byte: a client that connects and stays silent is bounded by
	// the header timeout.
	c.setReadDeadline(time.Now().Add(c.pol.ReadHeaderTimeout))
	// A preamble shares that timeout, and so does a TLS handshake.
	if s.Preface != nil && !c.preface() {
		return
	}
	if s.tlsConfig != nil {
		if !c.handshake() {
			return
		}
		if c.tc.info.State.NegotiatedProtocol == "h2" {
			c.handOffH2TLS()
			return
		}
		c.setContext()
	}
	for first := true; ; first = false {
		c.pol = s.pol.Load() // for the idle timeout
		// Between requests the connection is idle: it may wait IdleTimeout
		// for the next one, then has ReadHeaderTimeout to send the head.
		if c.br.Buffered() == 0 {
			if s.shuttingDown() {
				return
			}
			now := c.wroteAt // the answer's flush just read the clock
			if now.IsZero() {
				now = clock.Now()
			}
			idle := c.pol.IdleTimeout
			if !first && clock.Rearm(c.readDeadline, now, idle) {
				c.setReadDeadline(now.Add(idle))
			}
			if c.sock == nil {
				c.releaseWriter() // else when the read waits (awaitNext)
			}
			if !c.awaitNext() {
				return
			}
		}
		c.acquireWriter()
		c.reqs.Add(1)
		c.active.Store(true)
		// The request's policy: one atomic load, so a reload applies from
		// the next request, also on connections already open.
		c.pol = s.pol.Load()
		c.writeTimeout = c.pol.WriteTimeout
		c.minReadRate = c.pol.MinReadRate
		c.wmeter.step = c.pol.RateWindow / 4
		if !c.headBuffered() {
			// The head is still arriving: it has ReadHeaderTimeout to
			// complete, however slowly its bytes trickle (slowloris).
			c.setReadDeadline(time.Now().Add(c.pol.ReadHeaderTimeout))
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
			if c.bw.Flush() == nil && c.linger {
				c.lingerClose()
			}
			return
		}
		// Pipelined requests already buffered are answered before the
		// responses go out together.
		if c.br.Buffered() == 0 {
			c.wroteAt = time.Time{}
			if c.bw.Flush() != nil {
				return
			}
		}
		c.active.Store(false)
	}
}

// awaitNext waits for the first byte of the connection's next request;
// false when the connection ends instead.
//
// The goroutine first lets the others run. Under load, by the time it is
// back the client has usually sent its next request, so the read finds it
// instead of failing (EAGAIN), parking and being woken by the network
// poller; and the connection waits its turn behind those already served
// less recently, as in nginx's event loop, instead of cutting in. In
// same-run comparisons (bench/ab.sh, wrk -c64 saturating one core) that is
// 3.7–6 % more requests per second at 3.5–5.7 % less CPU per request, p99
// 2–3 % lower; in open loop at 5,000 and 15,000 req/s CPU and p99 are
// unchanged within the noise. With nothing else to run the yield returns
// at once.
//
// The write buffer goes back to its pool only if the read has to wait
// (sockio's BeforeWait): a connection whose next request is there keeps
// it, instead of trading it through the pool once per request.
func (c *conn) awaitNext() bool {
	if lc, ok := c.rwc.(*evloop.Conn); ok {
		// A connection that left its loop for its last request (a
		// streamed upload, a handler that blocked) comes back to it.
		lc.Reattach()
	} else {
		runtime.Gosched() // an event loop resumes in readiness order anyway
	}
	c.idle = true
	_, err := c.br.Peek(1)
	c.idle = false
	return err == nil
}

// beforeWait is the socket's BeforeWait: a read for the next request that
// waits means the connection is idle.
func (c *conn) beforeWait() {
	if c.idle {
		c.releaseWriter()
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
	// What a refusal reports (refused) must be this request's.
	c.req.Method, c.req.RequestURI, c.req.Host = "", "", ""
	c.head.hosts = c.head.hosts[:0]
	lineEnd, err := c.head.readHead(c.br, &c.pol.Limits)
	if err != nil {
		return nil, err
	}
	r := &c.req
	*r = c.tmpl
	r.URL = &c.url
	if err := c.head.parse(r, lineEnd); err != nil {
		return nil, err
	}
	if !c.pol.allows(r.Method) {
		return nil, refuse(http.StatusMethodNotAllowed, "method not allowed")
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
				// The connection closes: stop a read in progress in another
				// goroutine, and keep later ones off the pooled reader.
				c.bodyStop.Store(true)
				c.setReadDeadline(time.Now())
				b.abandon()
			}
			panic(p) // serve logs it and closes the connection
		}
	}()
	c.flushOnRead.Store(false)
	c.srv.Handler.ServeHTTP(w, r)
	if c.hijacked.Load() {
		return false
	}
	keep = w.finish() && !r.Close && !c.bodyStop.Load() // bodyStop: see body.Close
	c.flushOnRead.Store(true)
	if b != nil {
		if !keep {
			// The connection closes anyway: what is left of the body is
			// not read (a 413 must not wait for the body it refuses), but
			// the close lingers so the client reads the answer.
			c.linger = !b.abandon()
			c.lingerBytes = b.lingerBytes()
			return false
		}
		// Draining what the handler left of the body may wait for the
		// client: the answer goes out first (see connReader), and the
		// client has ReadHeaderTimeout to send what it announced. Unless
		// it has sent it all already (a body read whole, or that came
		// with its head).
		if !b.restBuffered() {
			c.setReadDeadline(time.Now().Add(c.pol.ReadHeaderTimeout))
		}
		if !b.finish() {
			keep = false
			// More was left than a drain takes (the answer was written
			// without waiting for it): the close lingers over the rest,
			// as above, or its reset could destroy the answer.
			c.linger = b.tooLong
			c.lingerBytes = b.lingerBytes()
		}
	}
	return keep
}

// refuse answers a request that never reached a handler and reports it.
func (c *conn) refuse(err error) {
	if errors.Is(err, errH2Preface) {
		if c.reqs.Load() == 1 {
			c.handOffH2()
			return
		}
		// Prior knowledge starts a connection; after a request it is a
		// protocol switch no request asked for (a desync upstream).
		err = refuse(http.StatusBadRequest, "HTTP/2 preface after the first request")
	}
	var pe *parseError
	if !errors.As(err, &pe) {
		// Timeout, reset or EOF in the middle of a head: nothing to answer
		// that the client would read, except a slow client's 408.
		// (The parser's own refusals are all parseErrors: anything else is
		// the connection failing.)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return
		}
		pe = &parseError{status: http.StatusRequestTimeout, reason: "request head not received in time"}
		// The head had started (a silent connection ends in serve's Peek).
		c.slow(SlowHeader)
	}
	if c.srv.OnRefused != nil {
		var rr *RefusedRequest
		if c.req.Method != "" { // parsed for this request (readRequest reset it)
			rr = &RefusedRequest{Method: c.req.Method, Target: c.req.RequestURI, Host: c.req.Host,
				XForwardedFor: c.req.Header["X-Forwarded-For"]}
			if hs := c.head.hosts; rr.Host == "" && len(hs) > 0 {
				rr.Host = hs[0] // refused before framing set r.Host
			}
		}
		c.srv.OnRefused(c.ctx, pe.status, pe.reason, rr)
	}
	body := refusalBody(pe.status)
	c.writeTimeout, c.minReadRate = 0, 0
	c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	// Answers to earlier pipelined requests may still be buffered: they go
	// out first.
	bw := c.bw
	writeStatusLine(bw, pe.status)
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	if c.pol != nil {
		bw.WriteString(c.pol.refusalHeaders) // security.headers
	}
	bw.WriteString("Connection: close\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(body)))
	bw.WriteString("\r\n\r\n")
	bw.WriteString(body)
	bw.Flush()
	c.lingerClose()
}

// lingerClose lets the client read the answer before the close: closing a
// socket with unread bytes in it sends a reset, which can destroy the
// answer in the client's receive buffer. It shuts down the sending side
// and discards what still comes, bounded in bytes and time: the rest of
// the body the request announced (an upload the backend answered early;
// up to lingerMax) and lingerAllowance more (what the client sent after
// it: pipelined requests), for 500 ms at most.
func (c *conn) lingerClose() {
	if c.tc != nil {
		c.tc.CloseWrite() // close_notify: the answer is complete
	}
	if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
		c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c.rwc, c.lingerBytes+lingerAllowance)
	}
}

// handOffH2 passes a connection that opened with the HTTP/2 preface to the
// listener's HTTP/2 server (h2c with prior knowledge), replaying the bytes
// already read.
func (c *conn) handOffH2() {
	if !c.srv.H2C || c.tc != nil {
		// Over TLS, HTTP/2 is negotiated by ALPN (handOffH2TLS), never
		// assumed.
		if c.srv.OnRefused != nil {
			c.srv.OnRefused(c.ctx, http.StatusHTTPVersionNotSupported, "HTTP/2 without h2c enabled", nil)
		}
		return
	}
	c.setReadDeadline(time.Time{})
	c.flushOnRead.Store(false)
	if c.bw.Flush() != nil {
		return
	}
	c.clearWriteDeadline()
	if lc, ok := c.rwc.(*evloop.Conn); ok {
		// The HTTP/2 server's goroutines read it from here, while this
		// task may still run on its loop: their waits must not yield for
		// it (evloop.Bind).
		evloop.Unbind(lc)
	}
	h2 := c.srv.h2
	pre := newH2Conn(c.hc, c.hc, io.MultiReader(strings.NewReader("PRI * HTTP/2.0\r\n"), c.br), h2)
	c.hijacked.Store(true) // the HTTP/2 server owns it now
	c.handedOff = true     // and pre tells OnClose when it is closed
	c.srv.untrack(c)
	h2.hand(pre)
}

func (c *conn) close() {
	if c.srv.OnClose != nil && !c.handedOff {
		c.srv.OnClose(c.hc)
	}
	// A hijacked connection belongs to the handler (or the HTTP/2 server)
	// now: forget it, so Shutdown does not wait for it, but leave it open.
	c.srv.untrack(c)
	if c.hijacked.Load() {
		return
	}
	if c.tc != nil {
		// close_notify goes out under crypto/tls's own bounded deadline,
		// not the answer's write limits.
		c.writeTimeout, c.minReadRate = 0, 0
		c.tc.Close()
	} else {
		c.rwc.Close()
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.releaseWriter()
	c.bw = idleWriter
}

// The bytes lingerClose discards: the rest of an announced body up to
// lingerMax, and lingerAllowance more. A client that writes its whole
// upload (and requests pipelined after it) before it reads the answer,
// which the backend gave early, would otherwise have that answer destroyed
// by the reset of a close with bytes of its unread.
const (
	lingerAllowance = 256 << 10
	lingerMax       = 16 << 20
)

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// growStack grows the calling goroutine's stack, while it is still
// shallow, to the 8 KiB a proxied request needs. A goroutine starts on a
// small stack that the runtime doubles as calls go deeper, each time
// copying it and adjusting every frame on it; deep in the proxy's path
// (a system call, a clock reading) that was a fifth of the CPU time of a
// connection that carries one request (bench/instructions.sh with
// BenchmarkProxyRawNewConn). One copy of a shallow stack costs next to
// nothing, and a connection that serves a request grows to 8 KiB anyway.
//
//go:noinline
func growStack() byte {
	var frame [6 << 10]byte // with what is on the stack: 8 KiB
	return frame[growStackIndex]
}

// growStackIndex is never set: reading frame at an index the compiler
// cannot know keeps the array, and so the frame, from being optimised away.
var growStackIndex int
