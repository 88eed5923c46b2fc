package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/server/http1"
	"github.com/rampart-proxy/rampart/internal/tlsterm"
)

// TLS on client listeners (issue 3). An https listener owns a
// tlsterm.Terminator for the life of its socket: the engine handshakes
// with its config (http1/tls.go), a reload updates it in place. What the
// handshake established is computed once per connection (tlsFacts) and
// read by every request on it: the record's TLS fields, the SNI entry
// (domain fronting is refused with 421, and the entry's pool serves
// requests no route matches), HSTS.

// tlsFacts is what a connection's handshake established.
type tlsFacts struct {
	protocol string // "TLSv1.3", as nginx's $ssl_protocol
	cipher   string // IANA name
	sni      string
	resumed  bool
	ja3, ja4 string
	// entry is the SNI entry the connection was accepted under (nil: the
	// listener has no sni_routing).
	entry *tlsterm.Entry
	state *tls.ConnectionState // for r.TLS on HTTP/2 requests
}

func newTLSFacts(ti *http1.TLSInfo, term *tlsterm.Terminator) *tlsFacts {
	st := &ti.State
	f := &tlsFacts{
		protocol: tlsVersionName(st.Version),
		cipher:   tls.CipherSuiteName(st.CipherSuite),
		sni:      st.ServerName,
		resumed:  st.DidResume,
		entry:    term.Entry(st.ServerName),
		state:    st,
	}
	if ti.Hello != nil {
		f.ja3, f.ja4 = tlsterm.JA3(ti.Hello), tlsterm.JA4(ti.Hello)
	}
	return f
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return "unknown"
}

// fill copies the facts into a request's record.
func (f *tlsFacts) fill(rec *pipeline.Record) {
	rec.SSLProtocol, rec.SSLCipher, rec.SNI, rec.TLSResumed = f.protocol, f.cipher, f.sni, f.resumed
	rec.JA3, rec.JA4 = f.ja3, f.ja4
}

// connContext is the listeners' ConnContext: the peer and local address,
// and on an https listener the handshake's facts.
func (e *entry) connContext(ctx context.Context, c net.Conn) context.Context {
	ci := newConnInfo(c)
	if ti := http1.ConnTLS(c); ti != nil && e.l.term != nil {
		ci.tls = newTLSFacts(ti, e.l.term)
	}
	// The slot carries each request's record on HTTP/1 (entry.ServeHTTP).
	return pipeline.WithSlot(context.WithValue(ctx, connInfoKey{}, ci))
}

// tlsFailed is the engine's OnTLSError: a refused handshake is counted
// (rampart_blocked_total{stage="tls"}) and logged at debug; it never
// reached a handler, so it has no access-log line.
func (e *entry) tlsFailed(c net.Conn, reason string, err error) {
	e.srv.metrics.Blocked("tls", reason)
	e.srv.log.Debug("TLS handshake refused", "listener", *e.l.name.Load(), "client", c.RemoteAddr().String(),
		"reason", reason, "error", err.Error())
}

// newTerminator builds the TLS of an https listener.
func (s *Server) newTerminator(cfg *config.Config, lc config.Listener) (*tlsterm.Terminator, error) {
	opts := tlsterm.Options{Log: s.log}
	if s.acme != nil { // never a typed nil in the interface
		opts.ACME = s.acme
	}
	return tlsterm.New(cfg, lc, opts)
}

// hasACME reports whether cfg has a certificate with an acme block.
func hasACME(cfg *config.Config) bool {
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		for _, c := range l.TLS.Certificates {
			if c.ACME != nil {
				return true
			}
		}
	}
	return false
}

// terminatorProblem reports a listener's TLS that cannot be built at its
// tls line.
func terminatorProblem(cfg *config.Config, lc config.Listener, err error) config.Problem {
	i := indexOfListener(cfg, lc.Name)
	line := cfg.Line("listeners[" + strconv.Itoa(i) + "].tls")
	if line == 0 {
		line = cfg.Line("listeners[" + strconv.Itoa(i) + "]")
	}
	return config.Problem{File: cfg.File, Line: line, Msg: "listener " + strconv.Quote(lc.Name) + ": tls: " + err.Error()}
}

// hstsValue is the Strict-Transport-Security value of an https listener,
// or "" without hsts.enabled.
func hstsValue(lc *config.Listener) string {
	if lc.Protocol != "https" || lc.TLS == nil || lc.TLS.HSTS == nil || !lc.TLS.HSTS.Enabled {
		return ""
	}
	h := lc.TLS.HSTS
	age := h.MaxAge
	if age <= 0 {
		age = 31536000
	}
	v := "max-age=" + strconv.Itoa(age)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// listenerPolicy is the engine policy of one listener: the global one,
// with HSTS on the engine's own refusals of an https listener.
func listenerPolicy(cfg *config.Config, lc *config.Listener, tlsOn bool) http1.Policy {
	p := enginePolicy(cfg)
	if v := hstsValue(lc); v != "" && tlsOn {
		h := make(map[string]string, len(p.RefusalHeaders)+1)
		for k, x := range p.RefusalHeaders {
			h[k] = x
		}
		h["Strict-Transport-Security"] = v
		p.RefusalHeaders = h
	}
	return p
}

// misdirected reports whether a request on a TLS connection names a host
// its SNI entry does not cover (domain fronting: the client asked for one
// name in the handshake and another in Host): answered 421, never proxied.
func (f *tlsFacts) misdirected(host string) bool {
	return f != nil && f.entry != nil && !f.entry.AllowsHost(normalizeHost(host))
}

// redirectTarget is where an http listener with redirect_to_https sends
// its clients: the first https listener's port (omitted when 443).
type redirectTarget struct {
	listener string // the https listener's name; "" when there is none
	port     string // "" for 443 or none; "0" resolves the bound port per request
}

func newRedirectTarget(cfg *config.Config) *redirectTarget {
	rt := &redirectTarget{}
	for _, l := range cfg.Listeners {
		if l.Protocol == "https" {
			rt.listener = l.Name
			if _, p, err := net.SplitHostPort(l.Listen); err == nil && p != "443" {
				rt.port = p
			}
			break
		}
	}
	return rt
}

// acmeChallengePrefix is where ACME HTTP-01 challenges are asked for
// (RFC 8555 §8.3); an http listener that redirects leaves them alone.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// SetACMEHTTPHandler installs the handler that answers ACME HTTP-01
// challenges on http listeners (the ACME provider's); without one,
// challenge paths on a redirecting listener get 404.
func (s *Server) SetACMEHTTPHandler(h http.Handler) {
	if h == nil {
		s.acmeHTTP.Store(nil)
		return
	}
	s.acmeHTTP.Store(&h)
}

// redirectToHTTPS answers 308 with the same host, path and query on
// https. A Host that is not a plain host name or address is refused:
// it would be copied into Location.
func (e *entry) redirectToHTTPS(rw http.ResponseWriter, r *http.Request, rec *pipeline.Record, to *redirectTarget) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	if host == "" || strings.IndexFunc(host, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-_:[]", c))
	}) >= 0 {
		rec.Error = "redirect_bad_host"
		pipeline.WriteError(rw, r, http.StatusBadRequest)
		return
	}
	port := to.port
	if port == "0" {
		port = ""
		if a := e.srv.Addr(to.listener); a != "" {
			if _, p, err := net.SplitHostPort(a); err == nil && p != "443" {
				port = p
			}
		}
	}
	loc := "https://" + host
	if port != "" {
		loc += ":" + port
	}
	if path := r.URL.EscapedPath(); strings.HasPrefix(path, "/") {
		loc += path
	} else {
		loc += "/" // OPTIONS * (asterisk form): the server as a whole
	}
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	rec.Error = "redirect_to_https"
	h := rw.Header()
	h["Location"] = []string{loc}
	h["Content-Length"] = []string{"0"}
	h["Cache-Control"] = []string{"no-store"}
	rw.WriteHeader(http.StatusPermanentRedirect)
}

// Certificates describes every https listener's certificates, by listener
// name (GET /api/v1/certificates, the expiry metric).
func (s *Server) Certificates() []tlsterm.CertInfo {
	type named struct {
		name string
		term *tlsterm.Terminator
	}
	s.mu.Lock()
	var ts []named
	for _, l := range s.listeners {
		if l.term != nil {
			ts = append(ts, named{*l.name.Load(), l.term})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(ts, func(a, b named) int { return strings.Compare(a.name, b.name) })
	out := []tlsterm.CertInfo{}
	for _, t := range ts {
		out = append(out, t.term.Certificates()...)
	}
	return out
}

// certCollector exports rampart_certificate_expiry_seconds at scrape time.
type certCollector struct{ s *Server }

var certExpiryDesc = prometheus.NewDesc("rampart_certificate_expiry_seconds",
	"Seconds until the certificate's not_after (negative once expired).", []string{"listener", "certificate"}, nil)

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	seen := map[[2]string]bool{}
	for _, ci := range c.s.Certificates() {
		k := [2]string{ci.Listener, ci.Name}
		if seen[k] { // one series per label set, or the scrape fails
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, ci.NotAfter.Sub(now).Seconds(), ci.Listener, ci.Name)
	}
}
