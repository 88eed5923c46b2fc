// Package http1 is Rampart's HTTP/1.1 server engine.
//
// net/http's server costs a proxy more than the proxying itself: a
// goroutine wake-up and an extra read per request for its background
// disconnect check, and some thirty allocations per request for the
// request, its header map and the response plumbing (measured in
// docs/decisions/0001-http-engine.md). This engine serves http.Handler, so
// every pipeline stage stays a plain net/http middleware, but it reads
// requests synchronously on the connection's goroutine and reuses a
// connection's request, header maps, response writer and buffers for each
// request it carries.
//
// Its parser is strict by design (a proxy in front of other parsers must
// never let two of them read one byte stream differently): single spaces in
// the request line, no whitespace before a header's colon, no obs-fold, no
// bare CR or control characters, exactly one Host, Content-Length and
// Transfer-Encoding never together, Transfer-Encoding only "chunked".
// Refused requests get a short 4xx and the connection is closed; they never
// reach a handler.
//
// Connections that open with the HTTP/2 preface are handed to net/http's
// HTTP/2 server when h2c is enabled. With a TLSConfig every connection is
// TLS (tls.go), and those that negotiate "h2" go to the same HTTP/2 server.
package http1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/evloop"
)

// Server serves HTTP/1.1, over TLS when configured (and hands HTTP/2
// connections, h2c or ALPN "h2", to net/http).
type Server struct {
	Handler http.Handler
	// ConnContext derives a connection's context (per-connection data the
	// handler reads, such as the parsed peer address).
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// Admit, when set, is asked about every accepted connection before
	// anything is read from it (the connection guard: IP blocklists); a
	// refused connection is closed at once.
	Admit func(c net.Conn) bool
	// OnClose, when set, is told when an admitted connection is done with
	// (closed, or handed over by a hijack or to HTTP/2): the connection
	// guard releases its per-IP count there. It is called exactly once
	// for every connection Admit let in.
	OnClose func(c net.Conn)
	// Preface, when set, runs on the connection's goroutine before its
	// first request is read, within the first request's header timeout: it
	// may read a preamble (a PROXY protocol header) from r, whose bytes past
	// it stay buffered for the request, and returns the connection that
	// ConnContext, OnClose and the HTTP/2 server see in c's place (e.g. with
	// the client's address as RemoteAddr). ok false closes the connection;
	// a non-nil hc is still what OnClose is given. Without Preface,
	// ConnContext runs at accept and nothing is added to the hot path.
	Preface func(c net.Conn, r *bufio.Reader) (hc net.Conn, ok bool)
	// OnRefused is told about every request refused before reaching the
	// handler (malformed, oversized, too slow), for logs and metrics, with
	// what was parsed of it (nil before its request line was).
	OnRefused func(connCtx context.Context, status int, reason string, req *RefusedRequest)
	// OnHTTP2Error, when set, is told of every HTTP/2 protocol error by
	// its net/http name (e.g. "too_many_early_resets"), for metrics, and
	// of "max_resets_per_second" when a client's resets close its
	// connection (HTTP2Limits.MaxResetsPerSecond).
	OnHTTP2Error func(errType string)
	// OnSlow, when set, is told of every slow-client indicator (SlowHeader,
	// SlowBody, ...) that ended a connection or its request, at most once
	// per indicator and connection; c is what OnClose is given.
	OnSlow func(c net.Conn, indicator string)
	// OnClientGone, when set, is told when the client of a request that
	// has been in progress for a while (see ClientWatchInterval) has
	// closed its side of the connection or reset it, with the
	// connection's context (ConnContext's result): the handler can then
	// stop waiting for a backend nobody will read the answer of. nginx
	// notices the same through its event loop; here one goroutine per
	// Server looks at the long-running requests once per interval, so a
	// fast request costs nothing. A client that half-closes after its
	// request counts as gone, as in nginx.
	OnClientGone func(connCtx context.Context)
	// ClientWatchInterval is how often the requests in progress are
	// looked at for OnClientGone: a request is looked at once it has been
	// in progress for one to two intervals, then once per interval.
	// Default DefaultClientWatchInterval (1 s).
	ClientWatchInterval time.Duration

	// The first Policy (see Policy for each field); Configure replaces it.
	Limits            Limits        // zero fields take DefaultLimits
	ReadHeaderTimeout time.Duration // default 10 s
	IdleTimeout       time.Duration // default 60 s
	BodyTimeout       time.Duration
	MinBodyRate       int64
	RateWindow        time.Duration
	WriteTimeout      time.Duration
	MinReadRate       int64
	AllowedMethods    []string
	// H2C serves connections that start with the HTTP/2 preface.
	H2C bool

	// Loops, when set, runs plaintext connections (no TLSConfig) on these
	// event loops instead of a goroutine each (see package evloop): same
	// code, resumed by the loop in the order their sockets become ready.
	Loops *evloop.Group
	// TLSConfig, when set, makes every connection TLS (see tls.go); it is
	// fixed for the listener's life, and what changes (certificates, SNI
	// table) comes through its GetConfigForClient. Connections that
	// negotiate "h2" by ALPN are served by the HTTP/2 server, with or
	// without H2C; ConnContext reads the handshake's facts with ConnTLS.
	TLSConfig *tls.Config
	// OnTLSError, when set, is told of every failed handshake with one of
	// the TLS* reasons; c is what OnClose is given. A connection closed
	// before sending a byte is not reported.
	OnTLSError func(c net.Conn, reason string, err error)
	Log        *slog.Logger

	pol     atomic.Pointer[policy]
	baseCtx context.Context
	once    sync.Once
	h2      *h2Server
	// tlsConfig is TLSConfig wrapped to record each ClientHello.
	tlsConfig *tls.Config

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	connWG    sync.WaitGroup
	// watching: the goroutine of watchClients runs (while there are
	// connections and OnClientGone is set).
	watching bool
}

// RefusedRequest is what the engine had parsed of a request it refused:
// the method and target of its request line (Target as sent), and its
// host once known (an absolute-form target's, or the Host field's).
type RefusedRequest struct {
	Method, Target, Host string
	// XForwardedFor are the request's X-Forwarded-For fields, as far as
	// they were parsed: behind a trusted proxy, the client is in them.
	XForwardedFor []string
}

// abortingServer is the value of http.ServerContextKey (see init).
var abortingServer = &http.Server{}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

func (s *Server) init() {
	s.once.Do(func() {
		s.pol.Store(compilePolicy(Policy{
			Limits: s.Limits, ReadHeaderTimeout: s.ReadHeaderTimeout, IdleTimeout: s.IdleTimeout,
			BodyTimeout: s.BodyTimeout, MinBodyRate: s.MinBodyRate, RateWindow: s.RateWindow,
			WriteTimeout: s.WriteTimeout, MinReadRate: s.MinReadRate, AllowedMethods: s.AllowedMethods,
		}))
		// httputil.ReverseProxy aborts an answer whose body fails midway
		// (panic(http.ErrAbortHandler), which closes the connection
		// without the last chunk) only under a server that sets
		// ServerContextKey; otherwise it ends the body as if it were
		// complete. This engine handles the abort, so it sets the key; no
		// code here reads the *http.Server it holds.
		s.baseCtx = context.WithValue(context.Background(), http.ServerContextKey, abortingServer)
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		if s.TLSConfig != nil {
			s.tlsConfig = wrapTLSConfig(s.TLSConfig)
		}
		if s.H2C || s.TLSConfig != nil {
			s.h2 = newH2Server(s)
		}
	})
}

func (s *Server) shuttingDown() bool { return s.closing.Load() }

// Serve accepts connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	if s.h2 != nil {
		s.h2.serve(s.pol.Load(), s.OnHTTP2Error)
	}
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE, ECONNABORTED and friends: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger().Warn("http1: accept failed; retrying", "error", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if s.Admit != nil && !s.Admit(rwc) {
			rwc.Close()
			continue
		}
		var lc *evloop.Conn // nil: a goroutine serves it (also if Adopt fails)
		if s.Loops != nil && s.tlsConfig == nil {
			if lc, err = s.Loops.Adopt(rwc); err == nil {
				rwc = lc
			}
		}
		c := s.newConn(rwc)
		if !s.track(c) {
			c.close()
			continue
		}
		if lc != nil {
			lc.Go(c.serve)
		} else {
			go c.serve()
		}
	}
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	if s.OnClientGone != nil && !s.watching {
		s.watching = true
		go s.watchClients()
	}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.connWG.Done()
	}
}

// Shutdown stops accepting, closes idle connections, lets active ones
// finish their current request (their response says Connection: close),
// and returns when all are gone or ctx ends; then Close is the caller's
// choice, as with net/http.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.closeListeners()
	var h2err chan error
	if s.h2 != nil {
		h2err = make(chan error, 1)
		go func() { h2err <- s.h2.hs.Shutdown(ctx) }()
	}
	// A keep-alive client may have sent its next request just before the
	// shutdown, or be sending it now: an idle connection closed at once
	// would fail that request. Idle connections get a short grace, in
	// which a request that arrives is served and answered with
	// Connection: close (HAProxy's idle-close-on-response).
	if s.hasIdle() {
		grace := time.NewTimer(ShutdownIdleGrace)
		select {
		case <-grace.C:
		case <-ctx.Done():
			grace.Stop()
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	if h2err != nil {
		return <-h2err
	}
	return nil
}

// ActiveConns returns the number of open HTTP/1 connections (h2c ones
// are served by net/http and not counted here; OnClose still sees them).
func (s *Server) ActiveConns() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.init()
	s.closing.Store(true)
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	if s.h2 != nil {
		s.h2.hs.Close()
	}
	return nil
}

// Wait returns when every HTTP/1 connection's goroutine has ended (after
// Close, when the handlers still running have returned), or when ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	s.init()
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		ln.Close()
	}
}

// ShutdownIdleGrace is how long Shutdown leaves idle keep-alive
// connections open for a request already on its way.
const ShutdownIdleGrace = 250 * time.Millisecond

// hasIdle reports whether a connection is waiting between requests.
func (s *Server) hasIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if !c.active.Load() {
			return true
		}
	}
	return false
}

// closeIdle closes connections waiting between requests and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if !c.active.Load() {
			// The read it is blocked in fails and its goroutine ends.
			c.rwc.SetReadDeadline(time.Now())
		}
	}
	return len(s.conns) == 0
}
