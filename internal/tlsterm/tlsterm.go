// Package tlsterm terminates TLS for Rampart's https listeners: the
// version and cipher policy, the certificates (files, watched and
// reloaded; or ACME), the SNI table that picks certificate and pool,
// session ticket keys, OCSP stapling and certificate expiry warnings.
//
// A Terminator belongs to one listener for the life of its socket. Its
// tls.Config is fixed; every handshake reads the current state through
// GetConfigForClient, so a reload or a certificate rotation swaps that
// state atomically and never fails a handshake in progress.
//
// Policy notes. TLS 1.3 cipher suites are not configurable in Go: all
// three (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305) are always enabled,
// so cipher_suites orders and restricts the TLS 1.2 suites only. Go also
// ignores PreferServerCipherSuites: it picks the suite itself, preferring
// AES-GCM when both ends have AES hardware and ChaCha20-Poly1305
// otherwise, which is what a server preference list would be written for.
package tlsterm

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// Options are what a Terminator needs beyond its listener's config.
type Options struct {
	Log *slog.Logger
	// ACME obtains the certificates that have an acme block; nil when
	// none has (see ACMEProvider).
	ACME ACMEProvider
	// Now is the clock (tests move it); default time.Now. It dates and
	// ages session tickets, and decides certificate validity and expiry
	// warnings.
	Now func() time.Time
	// PollInterval is how often certificate files are checked for
	// changes (and OCSP staples and expiry for work due); default 1s.
	PollInterval time.Duration
}

// ACMEProvider serves the certificates Rampart obtains through ACME and
// answers TLS-ALPN-01 challenges (ClientHellos offering "acme-tls/1").
type ACMEProvider interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// Certificates describes what it holds (for the API and metrics).
	Certificates() []CertInfo
}

// acmeALPN is the protocol of TLS-ALPN-01 challenges (RFC 8737).
const acmeALPN = "acme-tls/1"

// DefaultPollInterval is Options.PollInterval when it is not set.
const DefaultPollInterval = time.Second

// Terminator is one https listener's TLS.
type Terminator struct {
	opts    Options
	state   atomic.Pointer[state]
	base    *tls.Config
	tickets ticketKeys
	expiry  expiryWarnings

	stop      context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
}

// state is everything a handshake reads, replaced as a whole.
type state struct {
	listener string
	certs    map[string]*certSlot // by config name
	order    []*certSlot
	sni      *sniTable
	ocsp     bool

	plain     *tls.Config // without sni_routing
	reject    *tls.Config // unknown name under default reject
	challenge *tls.Config // TLS-ALPN-01
}

// New builds the Terminator of listener l and starts its background work
// (file watching, OCSP, expiry checks); Close stops it.
func New(cfg *config.Config, l config.Listener, opts Options) (*Terminator, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	t := &Terminator{opts: opts}
	st, err := t.build(cfg, l, nil)
	if err != nil {
		return nil, err
	}
	t.state.Store(st)
	t.base = &tls.Config{GetConfigForClient: t.configForClient}
	t.checkExpiry(st)
	ctx, cancel := context.WithCancel(context.Background())
	t.stop = cancel
	t.done.Add(1)
	go t.maintain(ctx)
	return t, nil
}

// TLSConfig is the config for tls.Server; it never changes.
func (t *Terminator) TLSConfig() *tls.Config { return t.base }

// Update applies a reloaded config; on error the running state stays.
// Certificates whose files did not change keep their OCSP staple.
func (t *Terminator) Update(cfg *config.Config, l config.Listener) error {
	st, err := t.build(cfg, l, t.state.Load())
	if err != nil {
		return err
	}
	t.state.Store(st)
	t.checkExpiry(st)
	return nil
}

// Entry returns the SNI entry for a server name (as the connection
// negotiated it), or nil when the listener has no sni_routing or the name
// matches no entry (and the default does not serve).
func (t *Terminator) Entry(serverName string) *Entry {
	e, _ := t.state.Load().sni.lookup(strings.ToLower(serverName))
	return e
}

// Close stops background work (file watching, OCSP refresh, expiry
// checks) and waits for it. Handshakes keep working with the last state.
func (t *Terminator) Close() {
	t.closeOnce.Do(func() {
		t.stop()
		t.done.Wait()
	})
}

func (t *Terminator) build(cfg *config.Config, l config.Listener, old *state) (*state, error) {
	lt := l.TLS
	if lt == nil {
		return nil, fmt.Errorf("listener %q: no tls section", l.Name)
	}
	if len(lt.Certificates) == 0 {
		return nil, fmt.Errorf("listener %q: no certificates", l.Name)
	}
	st := &state{listener: l.Name, certs: map[string]*certSlot{}, ocsp: lt.OCSPStapling}
	now := t.opts.Now()
	for _, cc := range lt.Certificates {
		s := newSlot(cfg, cc)
		if !s.isACME() {
			if err := s.load(now); err != nil {
				return nil, fmt.Errorf("listener %q: certificate %q: %w", l.Name, cc.Name, err)
			}
			if old != nil {
				s.adopt(old.certs[cc.Name])
			}
		} else if t.opts.ACME == nil {
			t.opts.Log.Warn("tls: ACME certificate configured but no ACME provider runs; it cannot be served",
				"listener", l.Name, "certificate", cc.Name)
		}
		st.certs[cc.Name] = s
		st.order = append(st.order, s)
	}
	pol, err := newPolicy(lt)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	st.sni = newSNITable(l.SNIRouting, st.certs)
	st.plain = t.handshakeConfig(st, pol, nil)
	st.sni.entries(func(e *Entry) { e.cfg = t.handshakeConfig(st, pol, e) })
	// Without certificates, crypto/tls answers unrecognized_name: the
	// alert for a server name this listener does not serve.
	st.reject = pol.config()
	if t.opts.ACME != nil {
		st.challenge = pol.config()
		st.challenge.NextProtos = []string{acmeALPN}
		st.challenge.SessionTicketsDisabled = true
		st.challenge.GetCertificate = t.opts.ACME.GetCertificate
	}
	return st, nil
}

// policy is a listener's version, suite and curve settings.
type policy struct {
	min, max uint16
	suites   []uint16
	curves   []tls.CurveID
	tickets  bool
	timeout  time.Duration
}

func newPolicy(lt *config.ListenerTLS) (*policy, error) {
	p := &policy{tickets: lt.SessionTickets.On(), timeout: lt.SessionTimeoutDuration()}
	var err error
	if p.min, err = config.TLSVersion(lt.MinVersion); err != nil {
		return nil, fmt.Errorf("min_version %w", err)
	}
	if p.max, err = config.TLSVersion(lt.MaxVersion); err != nil {
		return nil, fmt.Errorf("max_version %w", err)
	}
	for _, name := range lt.CipherSuites {
		id, err := config.CipherSuite(name)
		if err != nil {
			return nil, err
		}
		if !config.IsTLS13Suite(id) && !slices.Contains(p.suites, id) {
			p.suites = append(p.suites, id)
		}
	}
	if len(p.suites) == 0 {
		p.suites = config.TLS12Suites() // never Go's defaults, which include CBC
	}
	for _, name := range lt.ECDHCurves {
		id, err := config.ECDHCurve(name)
		if err != nil {
			return nil, err
		}
		p.curves = append(p.curves, id)
	}
	if p.timeout <= 0 {
		p.timeout = config.DefaultSessionTimeout * time.Second
	}
	return p, nil
}

// config is a tls.Config with the policy and no certificate.
func (p *policy) config() *tls.Config {
	return &tls.Config{
		MinVersion:             p.min,
		MaxVersion:             p.max,
		CipherSuites:           p.suites, // ECDHE with AEAD only (newPolicy)
		CurvePreferences:       p.curves,
		SessionTicketsDisabled: true,
	}
}

// handshakeConfig is the config of handshakes under entry e (nil: a
// listener without sni_routing). It is built once per state, so a
// handshake allocates no config.
func (t *Terminator) handshakeConfig(st *state, p *policy, e *Entry) *tls.Config {
	c := p.config()
	c.NextProtos = []string{"h2", "http/1.1"}
	c.Time = t.opts.Now
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return t.certificateFor(st, e, hello)
	}
	if p.tickets {
		c.SessionTicketsDisabled = false
		c.WrapSession = t.wrapSession(p.timeout)
		c.UnwrapSession = t.unwrapSession(p.timeout)
	}
	return c
}

func (t *Terminator) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	st := t.state.Load()
	if st.challenge != nil && slices.Contains(hello.SupportedProtos, acmeALPN) {
		return st.challenge, nil
	}
	e, ok := st.sni.lookup(strings.ToLower(hello.ServerName))
	switch {
	case !ok:
		return st.reject, nil
	case e == nil:
		return st.plain, nil
	}
	return e.cfg, nil
}
