package http1

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-proxy/rampart/internal/clock"
)

// Policy is what the server enforces on every request it reads. The
// Server's fields give the first one; Configure replaces it while the
// server runs (a config reload), and requests read afterwards follow the
// new one. Zero fields take the defaults noted.
type Policy struct {
	Limits                          // zero fields take DefaultLimits
	ReadHeaderTimeout time.Duration // a request head must be complete within it; default 10 s
	IdleTimeout       time.Duration // a kept-alive connection waits this long for the next request; default 60 s
	// BodyTimeout bounds the arrival of a whole request body, from its
	// first byte being wanted to its last; 0: no bound.
	BodyTimeout time.Duration
	// MinBodyRate closes a connection whose request body arrives slower
	// than this many bytes a second, measured over the last RateWindow
	// (a sliding window moved every quarter window); 0: off.
	MinBodyRate int64
	RateWindow  time.Duration // default 5 s
	// WriteTimeout bounds each write to the client: a client that stops
	// reading its answer is cut off after it; 0: no bound.
	WriteTimeout time.Duration
	// MinReadRate closes a connection whose client reads its answer slower
	// than this many bytes a second while Rampart has bytes waiting for it,
	// measured over the last RateWindow; 0: off. Unlike WriteTimeout it
	// also catches a client that reads just enough to keep every single
	// write under the timeout (slow read).
	MinReadRate int64
	// RefusalHeaders are added to the engine's own refusals (400, 405,
	// 408, 413, 414, 431): security.headers applies to every answer, not
	// only to those the handler writes. X-Content-Type-Options: nosniff
	// is always sent; the engine never sends a Server header.
	RefusalHeaders map[string]string
	// AllowedMethods lists the methods served; others are refused with 405
	// before any handler runs. Empty: any method (CONNECT is always refused).
	AllowedMethods []string
	// HTTP2 bounds h2c connections (zero fields: DefaultHTTP2Limits). It
	// is read when the first listener starts; later changes do not apply.
	HTTP2 HTTP2Limits
}

// DefaultRateWindow is Policy.RateWindow's default.
const DefaultRateWindow = 5 * time.Second

// policy is a Policy with defaults applied and the method list indexed.
type policy struct {
	Policy
	methods map[string]struct{} // nil: any
	// refusalFields are RefusalHeaders in name order, canonical and
	// without the names a refusal writes itself; refusalHeaders is the
	// same as header lines, for the HTTP/1 refusal.
	refusalFields  [][2]string
	refusalHeaders string
}

func compilePolicy(p Policy) *policy {
	c := &policy{Policy: p}
	if c.MaxRequestLineBytes <= 0 {
		c.MaxRequestLineBytes = DefaultLimits.MaxRequestLineBytes
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultLimits.MaxHeaderBytes
	}
	if c.MaxHeaders <= 0 {
		c.MaxHeaders = DefaultLimits.MaxHeaders
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.RateWindow <= 0 {
		c.RateWindow = DefaultRateWindow
	}
	c.refusalFields = refusalFieldsOf(p.RefusalHeaders)
	var b strings.Builder
	for _, f := range c.refusalFields {
		b.WriteString(f[0] + ": " + f[1] + "\r\n")
	}
	c.refusalHeaders = b.String()
	if len(p.AllowedMethods) > 0 {
		c.methods = make(map[string]struct{}, len(p.AllowedMethods))
		for _, m := range p.AllowedMethods {
			c.methods[m] = struct{}{}
		}
	}
	return c
}

// refusalFieldsOf sorts and filters the refusal headers once per policy,
// so a refusal costs no map walk; names the refusal writes itself are
// skipped.
func refusalFieldsOf(h map[string]string) [][2]string {
	keys := make([]string, 0, len(h))
	for k, v := range h {
		switch http.CanonicalHeaderKey(k) {
		case "X-Content-Type-Options", "Server", "Content-Type", "Content-Length", "Connection":
			continue
		}
		if v != "" && !strings.ContainsAny(k+v, "\r\n\x00") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	fields := make([][2]string, len(keys))
	for i, k := range keys {
		fields[i] = [2]string{http.CanonicalHeaderKey(k), h[k]}
	}
	return fields
}

// refusalBody is the body of every refusal: the status and its text.
func refusalBody(status int) string {
	return strconv.Itoa(status) + " " + http.StatusText(status) + "\n"
}

func (p *policy) allows(method string) bool {
	if p.methods == nil {
		return true
	}
	_, ok := p.methods[method]
	return ok
}

// Configure replaces the policy; requests whose head is read afterwards
// follow it.
func (s *Server) Configure(p Policy) {
	s.init()
	s.pol.Store(compilePolicy(p))
}

// bodyError ends a request body that broke a limit. The handler reading
// the body sees it; HTTPStatus says what to answer (a proxy maps it to its
// error page instead of a 502).
type bodyError struct {
	status int
	reason string
	err    error // what the connection said, if anything
}

func (e *bodyError) Error() string   { return "http1: request body: " + e.reason }
func (e *bodyError) Unwrap() error   { return e.err }
func (e *bodyError) HTTPStatus() int { return e.status }
func (e *bodyError) Timeout() bool   { return e.status == http.StatusRequestTimeout }

var (
	errBodyTimeout = &bodyError{status: http.StatusRequestTimeout, reason: "not received within the body timeout"}
	errBodyTooSlow = &bodyError{status: http.StatusRequestTimeout, reason: "arriving below the minimum data rate"}
)

// clientGone is the error of a body whose client closed its connection
// before sending all of it (err: io.ErrUnexpectedEOF or the reset). Its
// status is nginx's 499: nobody will read the answer.
func clientGone(err error) error {
	return &bodyError{status: StatusClientClosedRequest, reason: "the client closed its connection before sending all of it", err: err}
}

// StatusClientClosedRequest is nginx's 499: the client went away before
// its answer.
const StatusClientClosedRequest = 499

// rateMeter measures a request body's arrival. It runs only inside the
// reads that hit the read deadline: the deadline is moved once every
// quarter window, never per Read.
type rateMeter struct {
	on       bool
	deadline time.Time // end of BodyTimeout; zero: none
	min      int64
	step     time.Duration
	total    int64
	k        int
	at       [4]time.Time
	bytes    [4]int64
}

// startBody arms the body deadlines (one timer update per body).
func (c *conn) startBody() {
	p := c.pol
	if p == nil || (p.BodyTimeout <= 0 && p.MinBodyRate <= 0) {
		if !c.readDeadline.IsZero() {
			c.setReadDeadline(time.Time{})
		}
		return
	}
	now := time.Now()
	m := &c.meter
	*m = rateMeter{on: true, min: p.MinBodyRate, step: p.RateWindow / 4}
	if p.BodyTimeout > 0 {
		m.deadline = now.Add(p.BodyTimeout)
	}
	for i := range m.at {
		m.at[i] = now
	}
	c.setReadDeadline(m.next(now))
}

func (m *rateMeter) next(now time.Time) time.Time {
	if m.min <= 0 {
		return m.deadline
	}
	t := now.Add(m.step)
	if !m.deadline.IsZero() && m.deadline.Before(t) {
		return m.deadline
	}
	return t
}

// readBody is connReader.Read while a body with deadlines arrives.
func (c *conn) readBody(p []byte) (int, error) {
	m := &c.meter
	for {
		n, err := c.read(p)
		m.total += int64(n)
		if err == nil || !isTimeoutErr(err) {
			return n, err
		}
		now := time.Now()
		if !m.deadline.IsZero() && !now.Before(m.deadline) {
			c.slow(BodyTimeout)
			return n, errBodyTimeout
		}
		if m.min <= 0 || c.bodyStop.Load() {
			return n, err // someone else's deadline (a panicking handler)
		}
		m.k++
		j := m.k % len(m.at)
		if m.k >= len(m.at) {
			elapsed := now.Sub(m.at[j])
			if got := m.total - m.bytes[j]; elapsed > 0 && float64(got) < float64(m.min)*elapsed.Seconds() {
				c.slow(SlowBody)
				return n, errBodyTooSlow
			}
		}
		m.at[j], m.bytes[j] = now, m.total
		c.setReadDeadline(m.next(now))
		if n > 0 {
			return n, nil
		}
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(interface{ Timeout() bool })
	return ok && ne.Timeout()
}

// connWriter is what the connection's buffered writer writes to. With a
// WriteTimeout it moves the write deadline before a write when
// clock.Rearm says so: a busy keep-alive connection re-arms it about once a
// second, not once per response.
type connWriter struct{ c *conn }

// With a MinReadRate, writeMetered takes over (see writeMeter).
func (cw *connWriter) Write(p []byte) (int, error) {
	c := cw.c
	if c.tc != nil {
		return c.tc.Write(p) // whose transport is rawWrite
	}
	return c.rawWrite(p)
}

// rawWrite writes to the socket: the answer itself, or on a TLS
// connection the records crypto/tls makes of it (tlsTransport), so the
// write limits act where a timed-out write can be resumed.
func (c *conn) rawWrite(p []byte) (int, error) {
	if c.hijacked.Load() {
		return c.rwc.Write(p)
	}
	if c.minReadRate > 0 {
		return c.writeMetered(p, clock.Now())
	}
	wt := c.writeTimeout
	if wt <= 0 {
		return c.sockWrite(p)
	}
	now := clock.Now()
	if clock.Rearm(c.writeDeadline, now, wt) {
		c.writeDeadline = now.Add(wt)
		c.rwc.SetWriteDeadline(c.writeDeadline)
	}
	n, err := c.sockWrite(p)
	if err != nil && isTimeoutErr(err) {
		c.slow(WriteTimeout)
		c.discardUnsent()
		err = &SlowClientError{Indicator: WriteTimeout, err: err}
	}
	return n, err
}

// clearWriteDeadline leaves the connection without a write deadline of
// ours (hijack, HTTP/2 hand-off).
func (c *conn) clearWriteDeadline() {
	if !c.writeDeadline.IsZero() {
		c.writeDeadline = time.Time{}
		c.rwc.SetWriteDeadline(time.Time{})
	}
}
