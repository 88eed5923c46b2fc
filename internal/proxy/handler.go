package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"

	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// Handler proxies requests to the pool in their record's Target. One Handler
// serves every pool: the pool is chosen by the router (stage 6) and found
// here through the record, so reloads that add pools need no new handler.
//
// The reverse proxy engine is net/http/httputil: it streams bodies in both
// directions, removes hop-by-hop headers, handles trailers, 1xx responses
// and protocol upgrades (WebSocket). Rampart supplies the transport (backend
// selection, retries, cut on quarantine) and the error responses.
type Handler struct {
	rp *httputil.ReverseProxy
}

// poolOf returns the pool the router chose for r (the record's Target).
func poolOf(r *http.Request) *Pool {
	p, _ := pipeline.FromContext(r.Context()).Target.(*Pool)
	return p
}

// NewHandler returns the proxying stage. httputil.ReverseProxy's own
// messages (a body copy cut midway, which the access log already records
// with its reason) go to log at debug level, not to the standard logger's
// unstructured stderr.
func NewHandler(log *slog.Logger) *Handler {
	h := &Handler{}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      poolTransport{},
		FlushInterval:  -1, // stream responses as they come; buffering is the client's socket's job
		BufferPool:     bufferPool{},
		ErrorHandler:   errorHandler,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ModifyResponse: upgradeRequestID,
	}
	return h
}

// upgradeRequestID gives a 101 answer Rampart's X-Request-Id in place of
// any the backend sent. Other answers get it from the server's response
// writer when their head is written; a 101 is written by the reverse proxy
// on the hijacked connection, past that writer.
func upgradeRequestID(res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	if id := pipeline.FromContext(res.Request.Context()).RequestID; id != "" {
		res.Header["X-Request-Id"] = []string{id}
	}
	return nil
}

// ServeHTTP proxies r to the pool in its context. Most traffic (no
// upgrade, no Expect, no trailers: directEligible) takes the direct path;
// see docs/decisions/0001-http-engine.md for why and what it saves.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if directEligible(r) {
		serveDirect(w, r)
		return
	}
	// http.Transport reads the body and the answer in goroutines of its
	// own, which the request waits for: not on an event loop.
	evloop.Detach(r.Context())
	r = r.WithContext(withResponseWatch(r.Context()))
	h.rp.ServeHTTP(w, r)
}

// serveDirect forwards a request through the direct client, its body (if
// any) read first when it is small, else streamed, and streams the answer
// back, with the same header rules as rewrite().
func serveDirect(w http.ResponseWriter, r *http.Request) {
	p := poolOf(r)
	if p == nil {
		errorHandler(w, r, ErrNoBackend)
		return
	}
	d := directRequest{req: r, rec: pipeline.FromContext(r.Context()), w: w}
	// The copy buffer is taken once there is something to put in it: a
	// request's body, else the answer's. Held across the backend's wait by
	// every request in flight, it would be that many more live buffers.
	var bp *[]byte
	switch {
	case r.ContentLength > maxBufferedBody || r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		d.stream, d.streamLen = r.Body, r.ContentLength // upstreamstream.go
		// The body is sent by a goroutine of its own, which the request
		// waits for at the end: not on an event loop.
		evloop.Detach(r.Context())
	case r.ContentLength > 0:
		bp = buffers.Get().(*[]byte)
		defer buffers.Put(bp)
		body := (*bp)[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, body); err != nil {
			errorHandler(w, r, bodyReadError(r, err))
			return
		}
		d.reqBody = body
	}
	resp, err := p.forward(r, &d)
	if err != nil {
		errorHandler(w, r, err)
		return
	}
	defer resp.Body.Close()
	if bp == nil {
		bp = buffers.Get().(*[]byte)
		defer buffers.Put(bp)
	}
	buf := *bp // the request's body, if any, has gone out
	// The start of the body, when it came with the head (most answers
	// come whole), is read before the status goes out: a body that is
	// malformed from its first byte then gets the client a 502, not a
	// connection closed with nothing (the status is still unsent).
	n, rerr := 0, error(nil)
	if db, ok := resp.Body.(*directBody); ok && db.rc != nil && db.uc.br.Buffered() > 0 { // rc is nil for a HEAD
		if n, rerr = db.Read(buf); rerr != nil && rerr != io.EOF {
			db.uc.undoFields(w.Header())
			if db.uc.cut.Load() {
				rerr = ErrBackendCut
			} else {
				rerr = errBadResponse("body: " + rerr.Error())
			}
			errorHandler(w, r, rerr)
			return
		}
	}
	// The backend's header fields are in w.Header() already (readFields).
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		w.Header()["Trailer"] = keys
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	flusher, _ := w.(http.Flusher)
	for ; ; n = 0 {
		if n == 0 && rerr == nil { // nothing left from the read before the status
			n, rerr = resp.Body.Read(buf)
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // client gone; the body's Close drops the backend conn
			}
			// Flush every chunk so streamed answers (SSE, long polls)
			// reach the client as the backend sends them. The last one
			// goes out when the handler returns, after the request's
			// record is logged: a client's next request is then never
			// logged before this one.
			if flusher != nil && rerr == nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The backend failed or was cut mid-answer: the client must
			// see a broken response, not a short one that looks complete.
			if db, ok := resp.Body.(*directBody); ok {
				var se interface{ HTTPStatus() int }
				switch {
				case errors.As(db.clientErr, &se):
					// The client's body broke a limit or timed out mid-answer
					// (the backend was cut for it).
					d.rec.Error = "request_body_" + strconv.Itoa(se.HTTPStatus())
				case db.clientErr == ErrClientGone:
					d.rec.Error = "client_closed"
				case db.uc.cut.Load():
					d.rec.Error = "backend_cut"
				case db.uc.gone.Load():
					d.rec.Error = "client_closed" // the client left while the backend stalled
				case isResponseTimeout(rerr):
					d.rec.Error = "backend_timeout" // read_timeout between two reads
				}
			}
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range resp.Trailer {
		w.Header()[http.TrailerPrefix+k] = vv
	}
}

// rewrite builds the outbound request. httputil has already removed
// hop-by-hop headers and every incoming Forwarded/X-Forwarded-* header
// (Rewrite mode); Rampart sets them from what it verified itself.
func rewrite(pr *httputil.ProxyRequest) {
	rec := pipeline.FromContext(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	pr.Out.Host = pr.In.Host // keep the client's Host, as nginx does with proxy_set_header Host $host
	// A client's claim about its own address, dropped as on the direct
	// path (skipForward).
	delete(pr.Out.Header, "X-Real-Ip")
	if rec.XForwardedFor != "" {
		pr.Out.Header["X-Forwarded-For"] = []string{rec.XForwardedFor}
	}
	pr.Out.Header["X-Forwarded-Host"] = []string{pr.In.Host}
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	pr.Out.Header["X-Forwarded-Proto"] = []string{proto}
	if rec.RequestID != "" {
		pr.Out.Header["X-Request-Id"] = []string{rec.RequestID}
	}
}

// poolTransport dispatches to the transport of the request's pool.
type poolTransport struct{}

func (poolTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	p := poolOf(r)
	if p == nil {
		return nil, ErrNoBackend
	}
	return p.RoundTrip(r)
}

// errorHandler answers generically: status, short reason and request id,
// never a backend address or a Go error string.
func errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	rec := pipeline.FromContext(r.Context())
	status, reason := http.StatusBadGateway, "backend_unreachable"
	var se interface{ HTTPStatus() int }
	switch {
	case errors.As(err, &se) && se.HTTPStatus() >= 400:
		// The client's request body broke a limit (max_body_bytes, body
		// timeout, minimum rate): the answer is about the request.
		status = se.HTTPStatus()
		reason = "request_body_" + strconv.Itoa(status)
		if status == 499 { // the client left mid-body (nginx's 499)
			reason = "client_closed"
		}
	case errors.Is(err, ErrNoBackend):
		status, reason = http.StatusServiceUnavailable, "no_backend"
		rec.BackendID, rec.BackendServer = "", ""
	case errors.Is(err, ErrBackendCut):
		reason = "backend_cut"
	case errors.Is(err, ErrClientGone):
		status, reason = 499, "client_closed"
	case errors.As(err, new(errBadResponse)):
		reason = "backend_bad_response" // framing Rampart will not relay
	case tlsReason(err) != "":
		// Why the backend was refused (backend_tls: certificate revoked,
		// ...) goes to the log; the client gets the generic 502.
		reason = tlsReason(err)
	case errors.Is(err, context.DeadlineExceeded) || isResponseTimeout(err):
		status, reason = http.StatusGatewayTimeout, "backend_timeout"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this answer. 499 as in nginx.
		status, reason = 499, "client_closed"
	}
	rec.Error = reason
	pipeline.WriteError(w, r, status)
}

// bodyReadError is what reading a request body whole failed with, for
// errorHandler: the client's doing, never the backend's (none was chosen).
// The HTTP/1 engine's errors say which limit or that the client left; an
// HTTP/2 stream's do not: a stream the client reset (its context is done)
// is a client gone (499), anything else a body that did not match its
// Content-Length (400).
func bodyReadError(r *http.Request, err error) error {
	var se interface{ HTTPStatus() int }
	switch {
	case errors.As(err, &se):
		return err
	case r.Context().Err() != nil:
		return ErrClientGone
	}
	return errShortBody
}

// errShortBody is a request body that ended before its Content-Length or
// broke its framing (bodyReadError).
var errShortBody error = shortBodyError{}

type shortBodyError struct{}

func (shortBodyError) Error() string   { return "request body does not match its Content-Length" }
func (shortBodyError) HTTPStatus() int { return http.StatusBadRequest }

// bufferPool reuses the 32 KiB copy buffers of the proxy.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
