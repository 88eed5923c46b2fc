package http1

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HTTP2Limits bound every HTTP/2 connection; zero fields take
// DefaultHTTP2Limits. The header list a stream may send is the policy's
// MaxHeaderBytes (net/http adds its per-field allowance).
type HTTP2Limits struct {
	MaxConcurrentStreams      int // streams open at once per connection
	MaxHeaderTableSize        int // HPACK dynamic table, both directions
	MaxReadFrameSize          int // largest frame accepted from a client
	MaxReceiveBufferPerStream int // flow-control window of a request body
	// MaxResetsPerSecond: a client resetting more streams than this within
	// a second gets GOAWAY and its connection is closed (rapid reset).
	MaxResetsPerSecond int
}

// DefaultHTTP2Limits are HTTP2Limits' defaults.
var DefaultHTTP2Limits = HTTP2Limits{
	MaxConcurrentStreams:      100,
	MaxHeaderTableSize:        4096,
	MaxReadFrameSize:          16 << 10,
	MaxReceiveBufferPerStream: 1 << 20,
	MaxResetsPerSecond:        200,
}

// h2Server serves the h2c connections the HTTP/1 loop recognised by their
// preface, and the TLS connections that negotiated "h2" (decrypted, they
// are h2c to it: net/http sees no *tls.Conn, so its preface check runs),
// with net/http's HTTP/2 implementation (flow control, stream limits,
// rapid-reset and CONTINUATION-flood mitigation) fed from a channel
// listener. Its limits are those of the policy in force when the first
// listener starts serving; a reload does not change them (net/http reads
// them while connections run).
type h2Server struct {
	hs    *http.Server
	ln    *chanListener
	start sync.Once
	srv   *Server // the HTTP/1 server handing connections over
	// maxResets, headerTimeout and onAbuse are set by serve, before any
	// hand-off (see h2Conn).
	maxResets     int
	headerTimeout time.Duration
	onAbuse       func(reason string)
}

func newH2Server(s *Server) *h2Server {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h := &h2Server{
		srv: s,
		hs: &http.Server{
			Handler:   h2Gate{s},
			Protocols: &protos,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if s.ConnContext != nil {
					ctx = s.ConnContext(ctx, c)
				}
				return context.WithValue(ctx, h2ConnKey{}, c)
			},
		},
		ln: &chanListener{ch: make(chan net.Conn), done: make(chan struct{})},
	}
	if s.Log != nil {
		h.hs.ErrorLog = slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)
	}
	return h
}

// serve applies p's limits and starts serving, once.
func (h *h2Server) serve(p *policy, countError func(string)) {
	h.start.Do(func() {
		l := p.HTTP2
		d := DefaultHTTP2Limits
		if l.MaxConcurrentStreams <= 0 {
			l.MaxConcurrentStreams = d.MaxConcurrentStreams
		}
		if l.MaxHeaderTableSize <= 0 {
			l.MaxHeaderTableSize = d.MaxHeaderTableSize
		}
		if l.MaxReadFrameSize <= 0 {
			l.MaxReadFrameSize = d.MaxReadFrameSize
		}
		if l.MaxReceiveBufferPerStream <= 0 {
			l.MaxReceiveBufferPerStream = d.MaxReceiveBufferPerStream
		}
		if l.MaxResetsPerSecond <= 0 {
			l.MaxResetsPerSecond = d.MaxResetsPerSecond
		}
		h.maxResets = l.MaxResetsPerSecond
		h.headerTimeout = p.ReadHeaderTimeout
		if countError != nil {
			h.onAbuse = countError
		}
		h.hs.ReadHeaderTimeout = p.ReadHeaderTimeout
		h.hs.IdleTimeout = p.IdleTimeout
		h.hs.MaxHeaderBytes = p.MaxHeaderBytes
		h.hs.HTTP2 = &http.HTTP2Config{
			MaxConcurrentStreams:          l.MaxConcurrentStreams,
			MaxDecoderHeaderTableSize:     l.MaxHeaderTableSize,
			MaxEncoderHeaderTableSize:     l.MaxHeaderTableSize,
			MaxReadFrameSize:              l.MaxReadFrameSize,
			MaxReceiveBufferPerStream:     l.MaxReceiveBufferPerStream,
			MaxReceiveBufferPerConnection: max(l.MaxReceiveBufferPerStream, 1<<20),
			WriteByteTimeout:              p.WriteTimeout,
			PermitProhibitedCipherSuites:  false,
			CountError:                    streamErrorsOnly(countError),
		}
		go h.hs.Serve(h.ln)
	})
}

// streamErrorsOnly passes on net/http's reports of errors that end one
// stream (with RST_STREAM) and drops those of errors that end the
// connection: each of those ends it with a GOAWAY, which h2Conn.serverFrame
// counts, with the connection errors net/http does not report, so counting
// both counted one refused connection twice. net/http's keys are
// "stream_<code>_<what>" and "conn_<code>_<what>" from the connection, and
// "frame_<what>" from the frame parser, all of whose errors end the
// connection but two (frameStreamErrors).
func streamErrorsOnly(count func(string)) func(string) {
	if count == nil {
		return nil
	}
	return func(key string) {
		if strings.HasPrefix(key, "stream_") || frameStreamErrors[key] {
			count(key)
		}
	}
}

// frameStreamErrors are the frame parser's reports of errors that end a
// stream, not the connection (net/http's h2_bundle.go: a WINDOW_UPDATE of
// 0 on a stream, a HEADERS frame's padding longer than the frame).
var frameStreamErrors = map[string]bool{"frame_windowupdate_zero_inc_stream": true, "frame_headers_pad_too_big": true}

// hand gives c to the HTTP/2 server; if it is shutting down, c is closed.
func (h *h2Server) hand(c net.Conn) {
	select {
	case h.ln.ch <- c:
	case <-h.ln.done:
		c.Close()
	}
}

// chanListener is a net.Listener whose connections come from the HTTP/1
// accept loop.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return chanAddr{} }

type chanAddr struct{}

func (chanAddr) Network() string { return "h2c" }
func (chanAddr) String() string  { return "h2c" }

// h2Gate applies to HTTP/2 streams the checks the HTTP/1 parser makes on a
// request head and net/http's HTTP/2 server does not: the policy's
// methods (and no CONNECT), and a well-formed :authority (or Host). A
// refused stream is answered and reported as the HTTP/1 engine's refusals
// are; only the stream ends, not the connection.
type h2Gate struct{ s *Server }

// slowReporter reports a stream's slow-client indicators as its
// connection's (h2Conn.slow).
func (g h2Gate) slowReporter(r *http.Request) func(string) {
	c, _ := r.Context().Value(h2ConnKey{}).(*h2Conn)
	if c == nil {
		return func(string) {}
	}
	return c.slow
}

// h2ConnKey is the context key of a stream's *h2Conn (see newH2Server).
type h2ConnKey struct{}

func (g h2Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := g.s.pol.Load()
	status, reason := 0, ""
	switch {
	case r.Method == http.MethodConnect:
		status, reason = http.StatusMethodNotAllowed, "CONNECT is not supported"
	case !p.allows(r.Method):
		status, reason = http.StatusMethodNotAllowed, "method not allowed"
	case !validH2Path(r.Method, r.RequestURI) || r.URL.User != nil:
		status, reason = http.StatusBadRequest, "malformed request target"
	case r.Host == "":
		status, reason = http.StatusBadRequest, "missing Host header"
	case !validHost(r.Host):
		status, reason = http.StatusBadRequest, "malformed Host header"
	case len(r.Header["Content-Type"]) > 1:
		status, reason = http.StatusBadRequest, severalContentTypes
	}
	if status == 0 {
		for k := range r.Header {
			if strings.IndexByte(k, '_') >= 0 {
				delete(r.Header, k) // as on HTTP/1 (httpwire.ParseFields)
			}
		}
		ctl := http.NewResponseController(w)
		slow := g.slowReporter(r)
		if r.Body != nil && r.Body != http.NoBody && (p.BodyTimeout > 0 || p.MinBodyRate > 0) {
			r.Body = newH2Body(r.Body, ctl, p, slow)
		}
		if p.WriteTimeout > 0 || p.MinReadRate > 0 {
			w = newH2Writer(w, ctl, p, slow)
		}
		g.s.Handler.ServeHTTP(w, r)
		return
	}
	if g.s.OnRefused != nil {
		g.s.OnRefused(r.Context(), status, reason, &RefusedRequest{Method: r.Method, Target: r.RequestURI, Host: r.Host, XForwardedFor: r.Header["X-Forwarded-For"]})
	}
	h := w.Header()
	for _, f := range p.refusalFields { // security.headers, as on HTTP/1
		h[f[0]] = []string{f[1]}
	}
	body := refusalBody(status)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// validH2Path applies to a stream's :path the HTTP/1 request target's
// checks: the path and query only (RFC 9113 §8.3.1; "*" for OPTIONS), and
// no control characters, spaces or fragment. A "#" would hide the query
// from the WAF (which stops at it) while the backend parses it, and a
// space would split the request line the backend gets.
func validH2Path(method, path string) bool {
	if path == "*" {
		return method == http.MethodOptions
	}
	return strings.HasPrefix(path, "/") && validTarget(path)
}
