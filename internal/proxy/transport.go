package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/clock"
	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// Errors the handler turns into generic responses.
var (
	ErrNoBackend   = errors.New("no available backend")
	ErrBackendCut  = errors.New("request cut: backend quarantined or drain timed out")
	errQuarantined = errors.New("backend left rotation while the request was being sent")
	// ErrClientGone: the client closed its connection while its request
	// waited for the backend's answer, which was then abandoned (nginx's
	// 499).
	ErrClientGone = errors.New("client closed its connection while waiting for the backend")
)

// RoundTrip sends a request prepared by httputil.ReverseProxy (requests with
// a body, upgrades) through http.Transport.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	return p.forward(req, nil)
}

// forward chooses a backend, sends the request to it and, when connecting
// fails for an idempotent request, tries another one. Selection lives here
// rather than in the handler so that a retry is one more loop iteration with
// the failed backend excluded. With a non-nil direct, req is the client's own
// request and goes through the direct client (upstreamconn.go).
func (p *Pool) forward(req *http.Request, direct *directRequest) (*http.Response, error) {
	rec := pipeline.FromContext(req.Context())
	s := p.settings.Load()
	key := ""
	if s.algorithm == "consistent_hash" {
		if s.hashKey.Header != "" {
			key = req.Header.Get(s.hashKey.Header)
		}
		if key == "" {
			// Without the header, the client's address: hashing "" would
			// send every such request to one backend.
			key = rec.ClientIP
		}
	}
	var tried []*Backend // nil until a retry: most requests never allocate it
	retryable := isIdempotent(req.Method)
	var body *unsentBody
	if retryable && direct == nil && req.Body != nil && req.Body != http.NoBody {
		// An idempotent request with a body (PUT, DELETE) may go to
		// another backend as long as none of its body has left. (The
		// direct path has the body whole in hand.)
		body = &unsentBody{ReadCloser: req.Body}
		out := *req // a RoundTripper leaves the caller's request as it is
		out.Body = body
		req = &out
	}
	var lastErr error = ErrNoBackend
	for attempt := 0; attempt <= s.cfg.Retries; attempt++ {
		b := p.members.Load().selector.Select(key, tried)
		if b == nil {
			return nil, lastErr
		}
		rec.Attempts++
		rec.BackendID, rec.BackendServer = b.ID, b.Address
		resp, err := p.roundTripTo(b, req, rec, direct)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		dialFailed := isDialError(err)
		if dialFailed {
			if why := b.observeConnectFailure(s.cfg.OutlierDetection); why != "" {
				p.ejected(b, why, s.cfg.OutlierDetection)
			}
		} else if code := backendFault(err); code != 0 {
			// An answer Rampart refused or that did not come counts as
			// the 5xx the client gets (nginx's max_fails counts error,
			// timeout and invalid_header too): a backend that passes its
			// health checks but breaks real traffic is ejected.
			if why := b.observeStatus(code, s.cfg.OutlierDetection); why != "" {
				p.ejected(b, why, s.cfg.OutlierDetection)
			}
		}
		if !(dialFailed || errors.Is(err, errQuarantined)) || !retryable || body.started() || req.Context().Err() != nil {
			return nil, err
		}
		tried = append(tried, b)
	}
	return nil, lastErr
}

// backendFault is the status a failed exchange gets the client when the
// backend is to blame: 502 for an answer Rampart will not relay, 504 for
// one that did not come in time; 0 otherwise (a cut, a client gone, the
// client's own body).
func backendFault(err error) int {
	switch {
	case isClientBodyError(err):
		// The client's body broke a limit or timed out (a 408 says
		// Timeout too): nothing the backend did.
		return 0
	case errors.As(err, new(errBadResponse)):
		return http.StatusBadGateway
	case isResponseTimeout(err) && !errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return 0
}

// roundTripTo sends req to one backend, in a way that quarantining the
// backend aborts it: the direct client registers its connection with the
// backend, which closes it on a cut; http.Transport gets a context that the
// cut cancels.
func (p *Pool) roundTripTo(b *Backend, req *http.Request, rec *pipeline.Record, direct *directRequest) (*http.Response, error) {
	b.inflight.Add(1)
	if direct != nil {
		s := p.settings.Load()
		start := clock.Now()
		resp, err := p.roundTripDirect(req.Context(), b, direct, start, &s.cfg)
		if err != nil {
			b.inflight.Add(-1)
			return nil, err
		}
		p.observe(b, rec, resp, start)
		return resp, nil // its directBody frees the in-flight slot

	}
	cut := b.cutContext()
	// Re-check after taking the cut context: a quarantine that happened
	// between selection and here must not let this request through.
	if b.State() == StateQuarantined {
		b.inflight.Add(-1)
		return nil, errQuarantined
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	stop := context.AfterFunc(cut, func() { cancel(ErrBackendCut) })
	wait := &pipeline.Wait{Abandon: func() { cancel(ErrClientGone) }}
	pipeline.Waiting(req.Context(), wait)
	start := time.Now()
	out := req.WithContext(ctx)
	tr := p.transport.Load()
	out.URL.Scheme = "http"
	if tr.DialTLSContext != nil { // backend_tls (newTransport)
		out.URL.Scheme = "https"
	}
	out.URL.Host = b.Address
	resp, err := tr.RoundTrip(out)
	pipeline.DoneWaiting(req.Context(), wait)
	if err != nil {
		err = answerFault(out.Context(), err)
	}
	if err == nil {
		// http.Transport takes any three digits, any HTTP version and
		// any number of fields; the direct path's reader refuses what
		// HTTP/1 does not define, and so does this one (a status below
		// 100 made the engine panic).
		switch {
		case resp.StatusCode < 100 || resp.StatusCode > 599:
			err = errBadResponse("status code " + strconv.Itoa(resp.StatusCode))
		case resp.ProtoMajor != 1:
			err = errBadResponse("version " + resp.Proto)
		case len(resp.Header) > maxResponseFields:
			err = errBadResponse("too many header fields")
		}
		if err != nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		stop()
		cancel(nil)
		b.inflight.Add(-1)
		if c := context.Cause(ctx); errors.Is(c, ErrBackendCut) || errors.Is(c, ErrClientGone) {
			err = c
		}
		return nil, err
	}
	p.observe(b, rec, resp, start)
	if resp.StatusCode != http.StatusSwitchingProtocols && (resp.Trailer != nil || len(resp.TransferEncoding) > 0) {
		// Trailers as on the direct path (trailers.go).
		resp.Body = &trailerFilter{ReadCloser: resp.Body, resp: resp, allowed: announcedTrailers(resp.Trailer)}
	}
	tb := &trackedBody{rc: resp.Body, b: b, stop: stop, cancel: func() { cancel(nil) }, ctx: ctx, rec: rec}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgraded connection (WebSocket) outlives RoundTrip; closing the
		// backend side on a cut ends both copy loops of the proxy.
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			stop()
			ub := &upgradedBody{ReadWriteCloser: rwc, tb: tb}
			tb.stop = context.AfterFunc(cut, func() { rwc.Close() })
			resp.Body = ub
			return resp, nil
		}
	}
	if t := p.settings.Load().cfg.ReadTimeout.D(); t > 0 {
		// read_timeout between two reads of the body, as on the direct
		// path; http.Transport has no such limit, so a timer cancels.
		tb.readTimeout = t
		tb.idle = time.AfterFunc(t, func() { cancel(errReadTimeout) })
	}
	resp.Body = tb
	return resp, nil
}

// errReadTimeout is the cause of a body read_timeout cut on the
// http.Transport path.
var errReadTimeout = errors.New("backend sent nothing within read_timeout")

// observe records the backend's answer in the request record and feeds
// passive outlier detection.
func (p *Pool) observe(b *Backend, rec *pipeline.Record, resp *http.Response, start time.Time) {
	ms := float64(time.Since(start).Microseconds()) / 1000
	rec.UpstreamTimeMs = ms
	rec.TargetProcessingTimeMs = ms
	rec.TargetStatusCode = resp.StatusCode
	od := p.settings.Load().cfg.OutlierDetection
	if why := b.observeStatus(resp.StatusCode, od); why != "" {
		p.ejected(b, why, od)
	}
}

// trackedBody releases the backend's in-flight slot when the proxy is done
// with the response body.
type trackedBody struct {
	rc     io.ReadCloser
	b      *Backend
	stop   func() bool
	cancel func()
	once   sync.Once
	// ctx and rec: a read that fails because the backend was cut says so
	// in the record (the proxy then aborts the answer).
	ctx context.Context
	rec *pipeline.Record
	// idle cancels the request when the body's next bytes take longer
	// than readTimeout (nil: no limit).
	idle        *time.Timer
	readTimeout time.Duration
}

func (t *trackedBody) Read(p []byte) (int, error) {
	if t.idle != nil {
		t.idle.Reset(t.readTimeout)
	}
	n, err := t.rc.Read(p)
	if err != nil && err != io.EOF {
		switch cause := context.Cause(t.ctx); {
		case errors.Is(cause, ErrBackendCut):
			t.rec.Error = "backend_cut"
		case errors.Is(cause, errReadTimeout):
			t.rec.Error = "backend_timeout"
		}
	}
	return n, err
}

func (t *trackedBody) Close() error {
	err := t.rc.Close()
	t.release()
	return err
}

// release frees the in-flight slot once, whichever close comes first.
func (t *trackedBody) release() {
	t.once.Do(func() {
		if t.idle != nil {
			t.idle.Stop()
		}
		t.stop()
		t.cancel()
		t.b.inflight.Add(-1)
	})
}

type upgradedBody struct {
	io.ReadWriteCloser
	tb *trackedBody
}

func (u *upgradedBody) Close() error {
	err := u.ReadWriteCloser.Close()
	u.tb.release()
	return err
}

// unsentBody is the body of a request that may be retried on another
// backend: the retry is allowed only while nothing of it has been read.
// Until then it also keeps http.Transport's Close after a failed connect
// (RoundTrip closes the body on every error) from ending it, so the next
// backend gets it whole; the handler's own Close ends it in any case.
type unsentBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (b *unsentBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.ReadCloser.Read(p)
}

func (b *unsentBody) Close() error {
	if !b.read.Load() {
		return nil
	}
	return b.ReadCloser.Close()
}

// started reports whether some of the body may have been sent (false for
// no body at all).
func (b *unsentBody) started() bool { return b != nil && b.read.Load() }

func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// isDialError reports whether the request never reached the backend, which
// is what makes a retry safe even for requests that are not idempotent. A
// backend refused at the TLS handshake never saw the request either.
func isDialError(err error) bool {
	var op *net.OpError
	var bte *BackendTLSError
	return errors.As(err, &op) && op.Op == "dial" || errors.As(err, &bte)
}

// responseWatch follows a backend's answer on the http.Transport path: it
// ends the request after maxInterim interim answers, as the direct path
// does (exchange), and notes that an answer began. Its hooks must be in
// the request's context before httputil.ReverseProxy adds its own (which
// relays interim answers): composed hooks return the older one's error.
// http.Transport limits interim answers only when no hook is set. Why an
// exchange failed is read from it because the transport may report the
// request body's write, cut when it closed the connection, instead.
type responseWatch struct {
	n        int // interim answers, counted on the transport's read loop
	tooMany  atomic.Bool
	answered atomic.Bool // a byte of the answer came
}

type responseWatchKey struct{}

// withResponseWatch returns ctx with a responseWatch and its hooks.
func withResponseWatch(ctx context.Context) context.Context {
	w := &responseWatch{}
	ctx = context.WithValue(ctx, responseWatchKey{}, w)
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse:       w.got1xx,
		GotFirstResponseByte: func() { w.answered.Store(true) },
	})
}

func (w *responseWatch) got1xx(int, textproto.MIMEHeader) error {
	if w.n++; w.n > maxInterim {
		w.tooMany.Store(true)
		return errTooManyInterim
	}
	return nil
}

// answerFault returns the errBadResponse that err, a failed exchange on
// the http.Transport path, hides, or err: an answer refused for its
// interim answers or its head's size, or one that began and could not be
// read (a malformed head, or cut before its end), is the backend's fault.
func answerFault(ctx context.Context, err error) error {
	w, _ := ctx.Value(responseWatchKey{}).(*responseWatch)
	switch {
	case w != nil && w.tooMany.Load():
		return errTooManyInterim
	case strings.Contains(err.Error(), "server response headers exceeded"):
		// MaxResponseHeaderBytes (its error has no type).
		return errBadResponse("head too large")
	case w != nil && w.answered.Load() && !isResponseTimeout(err) && ctx.Err() == nil && !errors.As(err, new(errBadResponse)):
		return errBadResponse("answer not readable: " + err.Error())
	}
	return err
}
