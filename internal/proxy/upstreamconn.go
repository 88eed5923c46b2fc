package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rampart-proxy/rampart/internal/clock"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/httpwire"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/sockio"
)

// Rampart's own HTTP/1.1 client for the common case: a request without an
// upgrade, with no body, a small one of known length (maxBufferedBody) sent
// with its head, or a larger or chunked one streamed (upstreamstream.go).
// http.Transport runs two goroutines per backend connection and hands every
// request and response between them over channels; on a proxy that is a
// large share of the CPU per request (see docs/decisions/0001-http-engine.md).
// Here the request goroutine writes the request and reads the response
// itself, on a connection taken from the backend's idle list. Larger or
// chunked bodies, upgrades and anything unusual still go through
// http.Transport, which handles Expect: 100-continue, trailers and protocol
// switches.

// idleConnTimeout bounds how long an idle connection is trusted; backends
// usually close theirs after 60–120 s, and a reused connection that the
// backend already closed costs a retry.
const idleConnTimeout = 50 * time.Second

type upstreamConn struct {
	cut  atomic.Bool // closed by a quarantine or drain-timeout cut
	gone atomic.Bool // closed because the client left (abandon)
	// wait is the connection's request waiting for its answer, for the
	// client's leaving to abandon (pipeline.Waiting).
	wait     pipeline.Wait
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer // writes to wire
	wire     wireWriter
	lastUsed time.Time
	// readDeadline is the deadline last set on c (see armReadDeadline).
	readDeadline time.Time
	// writeBy bounds the sending of a request body (zero: no bound);
	// writeArmed says whether it is set on c (see armWriteDeadline).
	// writeWait, while a streamed body is sent, bounds each wait for the
	// backend to take more of it instead.
	writeBy     time.Time
	writeWait   time.Duration
	writeArmed  bool
	sendBlocked chan struct{} // a streamed body's bodySender.blocked
	// stream is the request body being streamed to the backend (nil when
	// there is none); the connection is reused only once it is all sent.
	stream *bodySender
	// bodyCtx is the request's context while the answer's body is still
	// to come after its head (nil otherwise): its client leaving abandons
	// the body too (exchange hands over the wait it registered, which
	// directBody.releaseConn ends), and each read waits at most
	// bodyTimeout (the pool's read_timeout) for the backend.
	bodyCtx     context.Context
	bodyTimeout time.Duration
	// raw and await send a request and wait for its answer without a
	// failed read (see send); nil on a TLS connection.
	raw     syscall.RawConn
	await   func(fd uintptr) bool
	sent    bool
	sendErr error
	// sock is the TCP socket under c (a TLS connection's underlying one
	// too), for drained; nil for other connections.
	sock *sockio.Conn
	// head, hop, added and replaced are reused by every response read on
	// the connection (see readResponse).
	head     []byte
	memo     httpwire.HeadMemo
	hop      http.Header
	added    []string
	replaced []savedField
	// tls is the backend TLS the connection was made under (nil:
	// plaintext); it is reused only while that is still the pool's.
	tls *backendTLS
	// activeIdx is the connection's index in its backend's active list
	// while it carries a request, -1 otherwise (guarded by Backend.mu).
	activeIdx int
}

func newUpstreamConn(c net.Conn, bt *backendTLS) *upstreamConn {
	uc := &upstreamConn{c: c, wire: wireWriter{w: c}, hop: make(http.Header, 4), tls: bt, activeIdx: -1}
	uc.wait.Abandon = uc.abandon
	var r io.Reader = c
	if sc := sockio.New(c); sc != nil {
		// Raw system calls on a plaintext connection (see internal/sockio).
		r, uc.wire.w = sc, sc
		uc.raw, uc.await = sc.Raw(), uc.flushThenWait
		uc.sock = sc
		sc.BeforeWriteWait = uc.armWriteDeadline
	} else {
		uc.sock = sockio.New(underlying(c)) // TLS
	}
	uc.br = bufio.NewReaderSize(r, 4096)
	uc.bw = bufio.NewWriterSize(&uc.wire, 4096)
	return uc
}

// abandon ends the wait for an answer whose client left: closing the
// connection fails the read in progress, and exchange reports ErrClientGone.
func (uc *upstreamConn) abandon() {
	uc.gone.Store(true)
	uc.c.Close()
}

// armReadDeadline bounds the wait for the answer's head (the pool's
// response_header_timeout), or for the next bytes of its body
// (read_timeout), from now, moving the deadline only when clock.Rearm says
// so (not on every request or read).
func (uc *upstreamConn) armReadDeadline(now time.Time, timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	if clock.Rearm(uc.readDeadline, now, timeout) {
		uc.readDeadline = now.Add(timeout)
		uc.c.SetReadDeadline(uc.readDeadline)
	}
}

// armWriteDeadline sets writeBy as c's write deadline, once: sockio calls
// it when a write is about to wait for the socket's buffer to drain (a
// backend that does not read the body), so the deadline costs nothing on
// the writes that go out at once.
func (uc *upstreamConn) armWriteDeadline() {
	if uc.writeWait > 0 { // a streamed body: from each wait
		uc.writeArmed = true
		uc.c.SetWriteDeadline(clock.Now().Add(uc.writeWait))
		select {
		case uc.sendBlocked <- struct{}{}:
		default:
		}
		return
	}
	if !uc.writeBy.IsZero() && !uc.writeArmed {
		uc.writeArmed = true
		uc.c.SetWriteDeadline(uc.writeBy)
	}
}

// isResponseTimeout reports whether err is a backend's answer that did not
// come in time (a read deadline, or http.Transport's ResponseHeaderTimeout),
// as opposed to a connect timeout.
func isResponseTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout() && !isDialError(err)
}

// wireWriter is what an upstream connection's buffered writer writes to:
// the connection, counting the writes, so that send knows whether part of
// a request head went out before it was complete.
type wireWriter struct {
	w      io.Writer // the connection, or its sockio.Conn
	writes int
}

func (w *wireWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.w.Write(p)
}

// send writes the request head buffered in uc.bw and, on a plaintext TCP
// connection, waits until the backend's answer can be read.
//
// Why wait here: a read right after the write finds no answer yet (the
// backend has not run), fails with EAGAIN and only then parks in the
// network poller, one system call per request for nothing. Waiting first
// is only safe if the wait begins before the request leaves: the poller
// forgets a readiness it saw before a read operation starts, and with
// edge-triggered epoll an answer that arrived in between would never wake
// the wait. So the head is flushed from inside the raw read operation,
// which clears the readiness and then calls flushThenWait. The head must
// also leave in that one flush: if part of it went out before (a head
// larger than the buffer), the backend may already have answered, and
// this falls back to the plain flush.
func (uc *upstreamConn) send() error {
	if uc.raw == nil || uc.wire.writes > 0 || uc.br.Buffered() > 0 {
		return uc.bw.Flush()
	}
	uc.sent, uc.sendErr = false, nil
	if err := uc.raw.Read(uc.await); err != nil {
		return err
	}
	return uc.sendErr
}

// flushThenWait is send's raw read function: called first, it flushes the
// head and asks to wait; called again once the connection is readable, it
// is done. The answer is then read through uc.br as usual.
func (uc *upstreamConn) flushThenWait(uintptr) bool {
	if uc.sent {
		return true
	}
	uc.sent = true
	uc.sendErr = uc.bw.Flush()
	return uc.sendErr != nil
}

// connPool is a backend's list of idle keep-alive connections, used LIFO so
// the warmest connection is reused and surplus ones age out.
type connPool struct {
	mu   sync.Mutex
	idle []*upstreamConn
	// retired: the backend left its pool; connections that come back
	// from requests still in flight are closed, not kept.
	retired bool
}

// get and put take the time from the caller, which has it already. get
// returns only a connection made under bt, the pool's backend TLS now.
func (cp *connPool) get(now time.Time, bt *backendTLS) *upstreamConn {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for n := len(cp.idle); n > 0; n = len(cp.idle) {
		uc := cp.idle[n-1]
		cp.idle[n-1] = nil
		cp.idle = cp.idle[:n-1]
		if now.Sub(uc.lastUsed) < idleConnTimeout && uc.tls == bt {
			return uc
		}
		uc.c.Close()
	}
	return nil
}

func (cp *connPool) put(uc *upstreamConn, max int, now time.Time) {
	uc.lastUsed = now
	cp.mu.Lock()
	if len(cp.idle) < max && !cp.retired {
		cp.idle = append(cp.idle, uc)
		cp.mu.Unlock()
		return
	}
	cp.mu.Unlock()
	uc.c.Close()
}

// closeIdle closes every idle connection (quarantine, reload).
func (cp *connPool) closeIdle() { cp.close(false) }

// retire closes every idle connection for good: the backend left its pool.
func (cp *connPool) retire() { cp.close(true) }

func (cp *connPool) close(retire bool) {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle = nil
	cp.retired = cp.retired || retire
	cp.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// maxBufferedBody is the largest request body the direct path takes. It
// reads such a body whole before choosing a backend, as nginx buffers one up
// to its client_body_buffer_size (16 KiB on 64-bit machines): a client that
// sends less than it announced, too slowly or too much gets its 4xx, and no
// backend ever sees part of a request. Larger bodies and bodies of unknown
// length (chunked) are streamed (upstreamstream.go).
const maxBufferedBody = 16 << 10

// directEligible reports whether a client request can take the direct
// path: no upgrade, no Expect, no trailers (an HTTP/2 request may announce
// some; http.Transport carries them on), and a body that says its length
// or is chunked.
func directEligible(req *http.Request) bool {
	hasBody := req.Body != nil && req.Body != http.NoBody
	switch {
	case !hasBody && req.ContentLength > 0: // a length without a body
		return false
	case hasBody && req.ContentLength == 0: // a body that announces none (the engines make no such request)
		return false
	case len(req.Trailer) > 0:
		return false
	}
	if _, up := req.Header["Upgrade"]; up {
		return false
	}
	_, exp := req.Header["Expect"]
	return !exp
}

// directRequest is a client request on the direct path: it is forwarded
// as received, filtered while it is written (see writeRequest), never cloned.
type directRequest struct {
	req *http.Request
	rec *pipeline.Record
	// reqBody is the request's body, read whole (see maxBufferedBody);
	// nil when it has none or it is streamed.
	reqBody []byte
	// stream is the request's body when it is streamed (larger than
	// maxBufferedBody, or chunked), streamLen its length (-1: unknown,
	// sent chunked).
	stream    io.Reader
	streamLen int64
	// streamStarted: part of the streamed body has left the client's
	// connection (set when an exchange that sent it ends).
	streamStarted bool
	// w is the client's answer: the backend's header fields are read
	// straight into its header map, and interim answers (103 Early Hints)
	// are relayed to it. Without one (tests), the fields go to a map of
	// their own and interim answers are dropped.
	w http.ResponseWriter
}

// connScratch is implemented by the ResponseWriter of Rampart's HTTP/1
// engine: a slot that lives as long as the client's connection.
type connScratch interface{ ConnScratch() *any }

// body returns the directBody to read the answer into: the client
// connection's own, reused from one request to the next, when its writer
// offers a slot (HTTP/1: one answer at a time, and the engine clears the
// header map that points into the body's value array before the next
// request begins), else a new one (HTTP/2 streams, tests). Allocation is
// what a one-core proxy pays for twice: each collection ends with a sweep
// of the whole heap that holds the core for milliseconds, and every
// request in flight waits for it.
func (d *directRequest) body() *directBody {
	for w := d.w; w != nil; {
		if s, ok := w.(connScratch); ok {
			slot := s.ConnScratch()
			db, ok := (*slot).(*directBody)
			if !ok {
				db = new(directBody)
				*slot = db
			}
			return db
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	return new(directBody)
}

// header is the map the backend's answer is read into.
func (d *directRequest) header() http.Header {
	if d.w == nil {
		return http.Header{}
	}
	return d.w.Header()
}

// got1xx relays an interim answer, already read into the client's header
// map, to the client.
func (d *directRequest) got1xx(code int, uc *upstreamConn, h http.Header) {
	if d.w == nil {
		uc.undoFields(h)
		return
	}
	d.w.WriteHeader(code)
	clear(h) // interim headers must not leak into the final answer
}

var errStaleConn = errors.New("reused backend connection was closed by the backend")

// roundTripDirect sends d to b on a pooled connection.
// start is when the request left for the backend; it also stamps the
// connection's last use, so the pool needs no clock reads of its own.
func (p *Pool) roundTripDirect(ctx context.Context, b *Backend, d *directRequest, start time.Time, cfg *config.Pool) (*http.Response, error) {
	gen := b.generation()
	bt := p.tls.Load()
	if bt != nil {
		// A TLS connection waits in Go's poller: not on an event loop,
		// which would wait with it.
		evloop.Detach(ctx)
	}
	for attempt := 0; ; attempt++ {
		uc := b.conns.get(start, bt)
		if uc != nil && !uc.drained() {
			// Bytes that arrived while the connection was idle answer no
			// request (a late body of a HEAD, 204 or 304 answer, a backend's
			// bug or worse): read as this request's answer, they would hand
			// this client another's, and the next one this one's. Or the
			// backend closed it. Either way, not reused.
			uc.c.Close()
			uc = nil
		}
		reused := uc != nil
		if !reused {
			c, err := dialBackend(ctx, bt, b.Address, cfg.ConnectTimeout.D())
			if err != nil {
				return nil, err
			}
			// On an event loop, the connection becomes the loop's.
			uc = newUpstreamConn(evloop.Adopted(ctx, c), bt)
		}
		if !b.track(uc, gen) {
			// Quarantined or cut since it was selected: not this backend.
			uc.c.Close()
			return nil, errQuarantined
		}
		resp, err := p.exchange(ctx, b, uc, d, start, cfg)
		if err == nil {
			return resp, nil
		}
		b.untrack(uc)
		uc.c.Close()
		if s := uc.stream; s != nil {
			uc.stream = nil
			s.stop()
		}
		if uc.gone.Load() {
			return nil, ErrClientGone
		}
		if uc.cut.Load() {
			return nil, ErrBackendCut
		}
		// A pooled connection that the backend had closed fails before any
		// byte of an answer arrives; if the request is idempotent, one more
		// try on a fresh connection is safe (its body, if any, is still in
		// d.reqBody, or none of a streamed one was taken from the client).
		// A POST is not sent twice: the backend may have acted on it
		// before it closed the connection.
		if reused && errors.Is(err, errStaleConn) && attempt == 0 && ctx.Err() == nil && isIdempotent(d.req.Method) && !d.streamStarted {
			continue
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
}

func (p *Pool) exchange(ctx context.Context, b *Backend, uc *upstreamConn, d *directRequest, start time.Time, cfg *config.Pool) (*http.Response, error) {
	// Cancelling the request (an HTTP/2 stream reset) must unblock the
	// reads below: closing the connection does. HTTP/1 requests carry a
	// context that is never cancelled, and skip the registration.
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { uc.c.Close() })
	}
	// Its waits yield to this request's event loop, if it has one.
	evloop.Bind(uc.c, ctx)
	if d.stream == nil { // a streamed body's sender arms it when it is done
		uc.armReadDeadline(start, cfg.ResponseHeaderTimeout.D())
	}
	// Until the answer is over, a client that leaves abandons the wait
	// (an HTTP/1 client; an HTTP/2 one resets its stream, above): for the
	// head, and for a body the backend stopped sending (directBody ends
	// the wait then).
	pipeline.Waiting(ctx, &uc.wait)
	waiting := true
	defer func() {
		if waiting {
			pipeline.DoneWaiting(ctx, &uc.wait)
		}
	}()
	uc.wire.writes = 0
	// A request head never fills the socket's buffer; a body may, if the
	// backend does not read it. Sending it then gets the time the answer's
	// head has, not forever: set when a write has to wait (sockio's
	// BeforeWriteWait), or at once where writes do not go through sockio
	// (TLS).
	if wd := cfg.ResponseHeaderTimeout.D(); len(d.reqBody) > 0 && wd > 0 {
		uc.writeBy = start.Add(wd)
		if uc.raw == nil {
			uc.armWriteDeadline()
		}
	}
	err := writeRequest(uc.bw, d)
	switch {
	case err == nil && d.stream != nil:
		// The head goes first, then the body from its own goroutine
		// while this one waits for the answer.
		if err = uc.bw.Flush(); err == nil {
			uc.stream = uc.startBody(d, cfg.ResponseHeaderTimeout.D())
		}
	case err == nil:
		err = uc.send()
	}
	if uc.stream == nil { // else the sender's, until it is done
		uc.writeBy = time.Time{}
		if uc.writeArmed {
			uc.writeArmed = false
			uc.c.SetWriteDeadline(time.Time{})
		}
	}
	if err != nil {
		stop()
		var refused *BackendTLSError
		if errors.Is(err, errBadHeader) || errors.As(err, &refused) || isResponseTimeout(err) {
			return nil, err
		}
		return nil, errStaleConn
	}
	if _, err := uc.br.Peek(1); err != nil {
		if s := uc.stream; s != nil {
			uc.c.Close() // ends the sender's writes, if it is still at it
			s.stop()
			serr := s.result()
			// A read of the client's body that stop ended leaves the
			// body unusable for another try.
			uc.stream, d.streamStarted = nil, s.started || serr == errStreamStopped
			if isClientBodyError(serr) || isResponseTimeout(serr) {
				// The client's body failed (the client's answer), or
				// the backend stopped taking it (504).
				stop()
				return nil, serr
			}
		}
		stop()
		if isResponseTimeout(err) {
			return nil, err
		}
		if refused := (*BackendTLSError)(nil); errors.As(err, &refused) {
			return nil, refused
		}
		if tlsAlert(err) {
			// A TLS 1.3 backend refuses a client certificate only
			// after the handshake, on this first read.
			return nil, tlsFailure(err)
		}
		return nil, errStaleConn
	}
	dst := d.header()
	body := d.body()
	for interim := 0; ; interim++ {
		// An interim answer's fields left dst (got1xx), so its values
		// may be overwritten.
		*body = directBody{uc: uc, b: b, stop: stop, maxIdle: cfg.MaxIdleConnsPerBackend, start: start}
		resp, err := uc.readResponse(d.req, body, dst)
		if err != nil {
			stop()
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if interim == maxInterim {
				uc.undoFields(dst)
				stop()
				return nil, errTooManyInterim
			}
			d.got1xx(resp.StatusCode, uc, dst)
			continue
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			uc.undoFields(dst)
			stop()
			return nil, errors.New("backend switched protocols without an upgrade request")
		}
		if uc.stream != nil {
			// The final head: its body's deadlines are this goroutine's
			// from here on (an interim answer leaves the sender's).
			uc.stream.answered()
		}
		resp.Body = body
		if body.rc == nil {
			// A HEAD, 204 or 304 answer that comes with a body anyway (a
			// common backend bug) leaves bytes behind: drained finds them
			// before the connection carries another request, if they came
			// by then. A 204 or 304 that announces a body says it will
			// send one: that connection is not reused at all, or bytes
			// arriving just after the next request went out would be
			// read as its answer.
			// The client's wait ends before the connection can carry
			// another client's request: a client seen leaving after that
			// would abandon the other's.
			pipeline.DoneWaiting(ctx, &uc.wait)
			waiting = false
			body.releaseConn(!announcesBody(resp, uc))
		} else if resp.ContentLength < 0 || int64(uc.br.Buffered()) < resp.ContentLength {
			// The body is still to come: it may stream for longer than
			// the head was allowed to take, but not stop (read_timeout
			// between reads; directBody.Read moves it).
			if uc.bodyTimeout = cfg.ReadTimeout.D(); uc.bodyTimeout > 0 {
				uc.armReadDeadline(clock.Now(), uc.bodyTimeout)
			} else {
				uc.readDeadline = time.Time{}
				uc.c.SetReadDeadline(time.Time{})
			}
			uc.bodyCtx, waiting = ctx, false
		}
		return resp, nil
	}
}

// directBody is the body of a response on the direct path. Read to its
// end, it returns the connection to the backend's pool; abandoned early, it
// closes it. Close frees the backend's in-flight slot.
//
// It carries the response itself and the backing array of its header
// values; an HTTP/1 client connection reuses one for all its answers
// (directRequest.body), so an answer whose head repeats its backend
// connection's previous one (httpwire.HeadMemo) allocates nothing.
type directBody struct {
	rc      io.Reader // nil when the response has no body
	lr      io.LimitedReader
	uc      *upstreamConn
	b       *Backend
	stop    func() bool
	resp    *http.Response
	maxIdle int
	start   time.Time
	connOut bool // the connection was released
	closed  bool
	// clientErr is the client's request body failing while this answer
	// was relayed (a streamed body, full duplex): what the log says.
	clientErr error

	response http.Response
	// valsArr backs the header's value slices (see readFields). Not the
	// connection's: the client's handler may still read the header after
	// the connection went back to the pool and carries the next response.
	valsArr [16]string
}

func (d *directBody) Read(p []byte) (int, error) {
	if d.connOut || d.rc == nil {
		return 0, io.EOF
	}
	if uc := d.uc; uc.bodyCtx != nil && uc.bodyTimeout > 0 && uc.br.Buffered() == 0 {
		uc.armReadDeadline(clock.Now(), uc.bodyTimeout) // this read waits for the backend
	}
	n, err := d.rc.Read(p)
	if d.rc == &d.lr && d.lr.N == 0 && err == nil {
		err = io.EOF
	}
	if err != nil {
		if err == io.EOF && d.rc == &d.lr && d.lr.N > 0 {
			err = io.ErrUnexpectedEOF // the backend closed mid-body
		}
		d.releaseConn(err == io.EOF) // a close-delimited body has resp.Close set
	}
	return n, err
}

func (d *directBody) Close() error {
	if !d.connOut {
		d.releaseConn(false)
	}
	if !d.closed {
		d.closed = true
		d.b.inflight.Add(-1)
	}
	// The body stays in the client connection's slot until its next
	// request: it must not keep the backend connection (its buffers, or
	// a closed one) and the backend from the collector meanwhile.
	d.uc, d.b, d.rc, d.lr.R, d.stop = nil, nil, nil, nil, nil
	return nil
}

// beforePool, set by tests, sees each connection just before it goes back
// to its backend's pool.
var beforePool func(uc *upstreamConn)

func (d *directBody) releaseConn(reusable bool) {
	d.connOut = true
	uc := d.uc
	if uc.bodyCtx != nil {
		pipeline.DoneWaiting(uc.bodyCtx, &uc.wait)
		uc.bodyCtx = nil
	}
	d.b.untrack(uc)
	// Bytes read past the end of the answer belong to no request: pooled,
	// the connection would hand them to the next client as its answer
	// (and that client's answer to the one after). Only a connection
	// whose reader is empty is reused.
	poolable := d.stop() && reusable && uc.br.Buffered() == 0 && !d.resp.Close && !uc.cut.Load()
	if s := uc.stream; s != nil {
		uc.stream = nil
		d.clientErr = s.clientFailure()
		if !s.finished() && !(poolable && s.eof.Load() && uc.sendGoesOn() && s.awaitLastFlush()) {
			// The answer is over before its sender: a body whose end the
			// client has sent is being flushed (the backend answered
			// before it had it all), and the sender pools the connection
			// once that is done; a body still to come leaves the backend
			// mid-request: not reusable.
			if poolable && s.handOff(uc, d.b, d.maxIdle, d.start) {
				return
			}
			if !s.finished() { // (or it ended meanwhile, and finished says how)
				s.stop()
				poolable = false
			}
		}
	}
	if poolable {
		pool(uc, d.b, d.maxIdle, d.start)
		return
	}
	uc.c.Close()
}

// sendGoesOn reports whether a body sender's last write may be waited for
// (awaitLastFlush): a write that has to wait for the backend tells it so on
// a plaintext connection (sockio's BeforeWriteWait), not on a TLS one, whose
// socket is asked instead whether the backend takes what is sent. Without
// the wait the connection is pooled a moment after the answer, and the
// client's next request, if it comes in that moment, opens another.
func (uc *upstreamConn) sendGoesOn() bool {
	return uc.raw != nil || uc.sock != nil && uc.sock.Writable()
}

// pool puts uc back in b's idle list.
func pool(uc *upstreamConn, b *Backend, maxIdle int, lastUsed time.Time) {
	if beforePool != nil {
		beforePool(uc)
	}
	evloop.Unbind(uc.c) // the next request binds it to its own task
	b.conns.put(uc, maxIdle, lastUsed)
}

// underlying returns the connection below c's layers (TLS, and wrappers
// that say what they wrap with NetConn, as tls.Conn does).
func underlying(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}

// drained reports whether nothing has arrived on an idle connection: its
// reader is empty and a non-waiting peek at the socket finds no byte (and
// no end of stream); on a TLS connection, no record. One system call per
// reuse, which keeps any answer from being read by the wrong request (nginx
// learns the same from its event loop; http.Transport from a read it keeps
// pending on every idle connection).
func (uc *upstreamConn) drained() bool {
	return uc.sock != nil && uc.br.Buffered() == 0 && !uc.sock.Pending()
}

// plainPath reports whether p is non-empty and written the same escaped
// and unescaped (no byte needs percent-encoding), so it can go on the
// request line as it is.
func plainPath(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/!$&'()*+,;=:@", c) >= 0) {
			return false
		}
	}
	return true
}

// writeTarget writes the request target: the path as it is when no byte
// of it needs escaping, else u.RequestURI(), which the common case with a
// query is written like without building the string.
func writeTarget(w *bufio.Writer, u *url.URL) {
	switch {
	case u.RawPath != "" || u.Opaque != "":
		w.WriteString(u.RequestURI())
	case u.RawQuery == "" && plainPath(u.Path):
		w.WriteString(u.Path)
	case u.RawQuery != "" && escapedAsIs(u.Path):
		w.WriteString(u.Path)
		w.WriteByte('?')
		w.WriteString(u.RawQuery)
	default:
		w.WriteString(u.RequestURI())
	}
}

// escapedAsIs reports whether p is non-empty and url.URL.EscapedPath
// leaves it as it is: unreserved characters and the ones it keeps in a
// path ("$&+,/:;=@").
func escapedAsIs(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~$&+,/:;=@", c) >= 0) {
			return false
		}
	}
	return true
}

// writeRequest buffers the client's request head as the backend must see it,
// applying the same rules as rewrite() on the httputil path: hop-by-hop
// headers and the headers named in Connection are dropped, incoming
// Forwarded/X-Forwarded-* and X-Request-Id are replaced by Rampart's own.
// Values that could split the request (CR, LF, NUL) are never written.
func writeRequest(w *bufio.Writer, d *directRequest) error {
	r := d.req
	w.WriteString(r.Method)
	w.WriteByte(' ')
	writeTarget(w, r.URL)
	w.WriteString(" HTTP/1.1\r\n")
	httpwire.WriteField(w, "Host", r.Host)
	connTokens := r.Header["Connection"]
	for k, vv := range r.Header {
		if k == "Te" {
			// Hop-by-hop, but "TE: trailers" tells the backend the client
			// accepts trailers, as httputil.ReverseProxy also keeps it.
			if slices.Contains(vv, "trailers") {
				w.WriteString("Te: trailers\r\n")
			}
			continue
		}
		if skipForward(k) || (len(connTokens) > 0 && listedInConnection(connTokens, k)) {
			continue
		}
		for _, v := range vv {
			if k == "User-Agent" && v == "" {
				continue
			}
			if !safeHeaderValue(v) {
				return errBadHeader
			}
			httpwire.WriteField(w, k, v)
		}
	}
	if d.rec.XForwardedFor != "" {
		httpwire.WriteField(w, "X-Forwarded-For", d.rec.XForwardedFor)
	}
	httpwire.WriteField(w, "X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		w.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		w.WriteString("X-Forwarded-Proto: http\r\n")
	}
	if d.rec.RequestID != "" {
		httpwire.WriteField(w, "X-Request-Id", d.rec.RequestID)
	}
	switch {
	case len(d.reqBody) > 0:
		writeContentLength(w, int64(len(d.reqBody)))
	case d.stream != nil && d.streamLen >= 0:
		writeContentLength(w, d.streamLen)
	case d.stream != nil:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		// As http.Transport writes it: many servers want a length on a
		// request whose method may carry a body, and refuse one without
		// (411).
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
	w.Write(d.reqBody)
	return nil
}

func writeContentLength(w *bufio.Writer, n int64) {
	w.WriteString("Content-Length: ")
	w.Write(append(strconv.AppendInt(w.AvailableBuffer(), n, 10), "\r\n"...))
}

var errBadHeader = errors.New("header value with CR, LF or NUL")

func safeHeaderValue(v string) bool {
	return !httpwire.HasCRLF(v) && strings.IndexByte(v, 0) < 0
}

// isHopHeader reports whether k (canonical form) is a hop-by-hop header of
// RFC 9110 §7.6.1. A switch, because it runs for every header of every
// request and response.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// skipForward reports whether the direct path never copies request header
// k: hop-by-hop ones, those it writes itself, and client claims Rampart
// replaces.
func skipForward(k string) bool {
	switch k {
	case "Host", "Content-Length", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id",
		"X-Real-Ip": // a client's claim about its own address; X-Forwarded-For is the verified one
		return true
	}
	return isHopHeader(k)
}

// listedInConnection reports whether header name k is named in a
// Connection header, which makes it hop-by-hop for this message.
func listedInConnection(conn []string, k string) bool {
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(tok)) == k {
				return true
			}
		}
	}
	return false
}

// announcesBody reports whether a 204 or 304 answer, which has no body,
// announced one anyway (RFC 9110 §15.3.5, §15.4.5: a sender must not).
// A HEAD answer's Content-Length is the GET answer's, and announces
// nothing.
func announcesBody(resp *http.Response, uc *upstreamConn) bool {
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		return false
	}
	return len(uc.hop["Transfer-Encoding"]) > 0 || resp.ContentLength > 0
}
