package tlsterm

// ACME certificates (RFC 8555): obtained when missing, renewed before they
// expire, kept in data_dir/acme, served by SNI.
//
// The provider speaks ACME through golang.org/x/crypto/acme directly
// rather than through its autocert Manager, because autocert cannot honour
// the configuration:
//   - challenges: autocert always tries TLS-ALPN-01 first and has no way
//     to turn it off, so "challenges: [http-01]" would still make the CA
//     attempt (and fail, and count against its failed-validation limits)
//     a TLS-ALPN-01 validation;
//   - one certificate per acme block: autocert obtains one certificate per
//     host name on its first handshake, while a block's domains belong in
//     one certificate, obtained at start, not when a client first asks;
//   - renewal it cannot be told about: autocert renews silently (no log of
//     a failure, no Retry-After from the CA honoured between attempts, no
//     way to stop renewing a certificate removed by a reload) and renews
//     in a loop when renew_before exceeds the CA's certificate lifetime.
// The trust of ca_certificate it could honour (Client.HTTPClient); the
// rest is this file and acme_obtain.go, a small amount of code over the
// library's protocol implementation.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/rampart-proxy/rampart/internal/config"
)

// ACMEOptions are what the ACME provider needs beyond the config.
type ACMEOptions struct {
	Log *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RetryMin and RetryMax bound the wait after a failed obtain: it starts
	// at RetryMin and doubles up to RetryMax (defaults 1m and 6h). A CA's
	// Retry-After (on a rate limit) is honoured when it is longer.
	RetryMin, RetryMax time.Duration
	// MinCertAge is the youngest a certificate may be when it is renewed,
	// whatever renew_before says; default a third of its lifetime. It keeps
	// a renew_before longer than the CA's certificates live (6-day
	// certificates with the 30-day default) from renewing in a loop.
	MinCertAge time.Duration
}

var _ ACMEProvider = (*ACME)(nil)

// ACME obtains, renews and serves the certificates that have an acme
// block, for every listener. It implements ACMEProvider; its HTTPHandler
// answers HTTP-01 challenges for the http listeners.
type ACME struct {
	opts     ACMEOptions
	log      *slog.Logger
	dir      string // data_dir/acme
	chal     acmeChallenges
	accounts acmeAccounts

	byName atomic.Pointer[map[string]*acmeCert] // served name → certificate

	mu      sync.Mutex // serialises Start, Update and Close
	certs   map[string]*acmeCert
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	closed  bool
}

// acmeCert is one certificate under management: one acme block (or
// several identical ones on different listeners).
type acmeCert struct {
	spec    atomic.Pointer[acmeSpec] // replaced by Update
	file    string
	current atomic.Pointer[tls.Certificate] // Leaf set; nil until obtained
	wake    chan struct{}                   // Update changed the spec
	stop    context.CancelFunc
	done    chan struct{}

	// Used by the run goroutine only.
	challengeTurn int    // rotates the preferred challenge after a failed validation
	warnedSerial  string // the certificate whose short lifetime was logged
}

// NewACME builds the provider for every certificate with an acme block in
// cfg, loading those already stored in data_dir/acme; it returns nil, nil
// when there is none. It contacts no CA until Start.
func NewACME(cfg *config.Config, opts ACMEOptions) (*ACME, error) {
	specs, err := acmeSpecs(cfg)
	if err != nil || len(specs) == 0 {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Minute
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(6*time.Hour, opts.RetryMin)
	}
	a := &ACME{opts: opts, log: opts.Log, dir: acmeDir(cfg), certs: map[string]*acmeCert{}}
	if err := acmeMkdir(a.dir); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	for _, s := range specs {
		a.certs[s.id] = a.newCert(s, nil)
	}
	a.publish()
	return a, nil
}

// newCert loads a certificate's stored copy. Without one, it serves
// what prev (the certificate the same names had before a reload) held,
// for the names that still match, until its own is obtained.
func (a *ACME) newCert(s *acmeSpec, prev map[string]*acmeCert) *acmeCert {
	m := &acmeCert{file: a.certFile(s), wake: make(chan struct{}, 1)}
	m.spec.Store(s)
	if c := a.loadCert(m.file, s); c != nil {
		m.current.Store(c)
		return m
	}
	for _, d := range s.domains {
		if old := prev[d]; old != nil {
			if c := old.current.Load(); c != nil && c.Leaf.VerifyHostname(d) == nil {
				m.current.Store(c)
				break
			}
		}
	}
	return m
}

// publish rebuilds the name table from a.certs (a.mu held, or during
// construction).
func (a *ACME) publish() {
	t := map[string]*acmeCert{}
	for _, m := range a.certs {
		for _, d := range m.spec.Load().domains {
			t[d] = m
		}
	}
	a.byName.Store(&t)
}

// Start obtains the missing certificates in the background at once, and
// renews each one renew_before its expiry, until Close.
func (a *ACME) Start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started || a.closed {
		return
	}
	a.started = true
	for _, m := range a.certs {
		a.startCert(m)
	}
}

func (a *ACME) startCert(m *acmeCert) {
	ctx, stop := context.WithCancel(a.ctx)
	m.stop, m.done = stop, make(chan struct{})
	go a.run(ctx, m)
}

// Close stops obtaining and renewing, waiting for an attempt in progress
// to give up. Certificates already obtained stay served.
func (a *ACME) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.cancel()
	var running []*acmeCert
	for _, m := range a.certs {
		if m.done != nil {
			running = append(running, m)
		}
	}
	a.mu.Unlock()
	for _, m := range running {
		<-m.done
	}
}

// Update applies a reloaded config: certificates with new domains (or a
// new CA) are obtained, removed ones are no longer served nor renewed, and
// changed settings (email, challenges, renew_before) apply from the next
// attempt. On error nothing changes.
func (a *ACME) Update(cfg *config.Config) error {
	specs, err := acmeSpecs(cfg)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errors.New("acme: provider closed")
	}
	prev := *a.byName.Load()
	next := make(map[string]*acmeCert, len(specs))
	for _, s := range specs {
		if m := a.certs[s.id]; m != nil {
			m.spec.Store(s)
			select {
			case m.wake <- struct{}{}:
			default:
			}
			next[s.id] = m
			continue
		}
		m := a.newCert(s, prev)
		next[s.id] = m
		if a.started {
			a.startCert(m)
		}
	}
	var removed []*acmeCert
	for id, m := range a.certs {
		if next[id] == nil {
			removed = append(removed, m)
		}
	}
	a.certs = next
	a.publish()
	a.mu.Unlock()
	for _, m := range removed {
		if m.stop != nil {
			m.stop()
			<-m.done
		}
		s := m.spec.Load()
		msg := "acme certificate removed from the config"
		if acmeStillReferenced(s.refs[0], specs) {
			msg = "acme certificate replaced: its domains or CA changed"
		}
		a.log.Info(msg, "certificate", s.refs[0].name, "listener", s.refs[0].listener, "domains", s.domains, "ca", s.directory)
	}
	return nil
}

// IsACMEChallenge reports whether hello is a CA's TLS-ALPN-01
// validation: it offers "acme-tls/1" and nothing else (RFC 8737). Such a
// handshake must get the ACME provider's certificate and negotiate
// acme.ALPNProto, whatever the listener's SNI table says.
func IsACMEChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

func acmeStillReferenced(r acmeRef, specs []*acmeSpec) bool {
	for _, s := range specs {
		if slices.Contains(s.refs, r) {
			return true
		}
	}
	return false
}

// GetCertificate returns the certificate for hello's server name, or,
// for a CA's TLS-ALPN-01 validation (a hello offering only "acme-tls/1"),
// the challenge certificate. The listener's tls.Config must list
// acme.ALPNProto ("acme-tls/1") in NextProtos for that handshake to
// complete.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := acmeName(hello.ServerName)
	if IsACMEChallenge(hello) {
		if c := a.chal.alpnCert(name); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("tlsterm: no TLS-ALPN-01 challenge pending for %q", name)
	}
	m := (*a.byName.Load())[name]
	if m == nil {
		return nil, fmt.Errorf("tlsterm: no acme certificate for %q", name)
	}
	c := m.current.Load()
	if c == nil || c.Leaf.VerifyHostname(name) != nil {
		return nil, fmt.Errorf("tlsterm: acme certificate for %q not obtained yet", name)
	}
	return c, nil
}

// Certificates describes the certificates obtained so far, one entry per
// listener and name that uses each; one still being obtained is not
// listed.
func (a *ACME) Certificates() []CertInfo {
	now := a.opts.Now()
	var out []CertInfo
	for _, m := range acmeUnique(*a.byName.Load()) {
		c := m.current.Load()
		if c == nil {
			continue
		}
		leaf := c.Leaf
		for _, r := range m.spec.Load().refs {
			out = append(out, CertInfo{
				Listener: r.listener, Name: r.name, Source: "acme", File: m.file,
				Subject: leaf.Subject.String(), SANs: leaf.DNSNames, Issuer: leaf.Issuer.String(),
				KeyType: acmeKeyType(leaf), NotAfter: leaf.NotAfter, DaysLeft: int(leaf.NotAfter.Sub(now).Hours() / 24),
			})
		}
	}
	slices.SortFunc(out, func(x, y CertInfo) int {
		return strings.Compare(x.Listener+"\x00"+x.Name, y.Listener+"\x00"+y.Name)
	})
	return out
}

func acmeUnique(t map[string]*acmeCert) []*acmeCert {
	var out []*acmeCert
	for _, m := range t {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// HTTPHandler answers the CA's HTTP-01 requests under
// /.well-known/acme-challenge/ and passes every other request to next
// (http.NotFoundHandler when nil). Mount it on the http listeners that
// the CA reaches on port 80, in front of any redirect to https.
func (a *ACME) HTTPHandler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	const prefix = "/.well-known/acme-challenge/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ka, ok := a.chal.httpResponse(token)
		if !ok {
			http.Error(w, "no such challenge", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(ka))
	})
}

// acmeMaxSleep bounds one wait of the renewal loop, so that a suspended
// machine or a clock step is noticed within the hour.
const acmeMaxSleep = time.Hour

// run keeps one certificate current until ctx ends: obtain it when
// missing, renew it when due, and after a failure wait, longer each time.
func (a *ACME) run(ctx context.Context, m *acmeCert) {
	defer close(m.done)
	failures := 0
	for {
		at, renewal := a.renewAt(m)
		if wait := at.Sub(a.opts.Now()); wait > 0 {
			if !acmeSleep(ctx, min(wait, acmeMaxSleep), m.wake) {
				return
			}
			continue
		}
		if renewal && failures == 0 {
			s, old := m.spec.Load(), m.current.Load()
			a.log.Info("acme certificate renewal due", "certificate", s.refs[0].name, "domains", s.domains,
				"serial", acmeSerial(old.Leaf), "not_after", old.Leaf.NotAfter)
		}
		err := a.obtain(ctx, m, renewal)
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		delay := a.retryDelay(failures, err)
		s := m.spec.Load()
		attrs := []any{"certificate", s.refs[0].name, "domains", s.domains, "ca", s.directory,
			"error", err.Error(), "attempt", failures, "retry_in", delay.Round(time.Millisecond).String()}
		if c := m.current.Load(); c != nil {
			left := c.Leaf.NotAfter.Sub(a.opts.Now())
			attrs = append(attrs, "serving_not_after", c.Leaf.NotAfter, "days_left", int(left.Hours()/24))
			if left <= 0 {
				a.log.Error("acme certificate expired and could not be renewed", attrs...)
			}
		}
		a.log.Error("acme obtain failed", attrs...)
		if !acmeSleep(ctx, delay, nil) {
			return
		}
	}
}

// renewAt says when m needs a new certificate (see renewTime), and logs
// once per certificate that renew_before had to give way to MinCertAge.
func (a *ACME) renewAt(m *acmeCert) (at time.Time, renewal bool) {
	s, c := m.spec.Load(), m.current.Load()
	at, renewal, floored := a.renewTime(s, c)
	if floored {
		if serial := acmeSerial(c.Leaf); m.warnedSerial != serial {
			m.warnedSerial = serial
			a.log.Warn("acme renew_before is longer than the certificate allows; renewing when it is older",
				"certificate", s.refs[0].name, "renew_before", s.renewBefore.String(),
				"lifetime", c.Leaf.NotAfter.Sub(c.Leaf.NotBefore).String(), "renew_at", at)
		}
	}
	return at, renewal
}

// renewTime is when c must be replaced: at once when there is none (or
// it does not cover s's domains), else renew_before its expiry but not
// before it is MinCertAge old (floored).
func (a *ACME) renewTime(s *acmeSpec, c *tls.Certificate) (at time.Time, renewal, floored bool) {
	if c == nil || !acmeCovers(c.Leaf, s.domains) {
		return time.Time{}, false, false
	}
	leaf := c.Leaf
	at = leaf.NotAfter.Add(-s.renewBefore)
	minAge := a.opts.MinCertAge
	if minAge <= 0 {
		minAge = leaf.NotAfter.Sub(leaf.NotBefore) / 3
	}
	if floor := leaf.NotBefore.Add(minAge); at.Before(floor) {
		return floor, true, true
	}
	return at, true, false
}

// retryDelay is the wait after the n-th failure in a row: doubling from
// RetryMin to RetryMax with a tenth of jitter, or the CA's Retry-After
// when it is rate limiting and asks for longer.
func (a *ACME) retryDelay(n int, err error) time.Duration {
	d := a.opts.RetryMin
	for i := 1; i < n && d < a.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, a.opts.RetryMax)
	d += rand.N(d/10 + 1)
	// acme.RateLimit looks at the error itself, not what it wraps.
	var ae *acme.Error
	if errors.As(err, &ae) {
		if ra, ok := acme.RateLimit(ae); ok && ra > d {
			d = ra
		}
	}
	return d
}

// acmeSleep waits for d, ctx's end (false) or a wake-up.
func acmeSleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

// acmeCovers reports whether leaf names every domain.
func acmeCovers(leaf *x509.Certificate, domains []string) bool {
	for _, d := range domains {
		if !slices.Contains(leaf.DNSNames, d) {
			return false
		}
	}
	return true
}

func acmeName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}
