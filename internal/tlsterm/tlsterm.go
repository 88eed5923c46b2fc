// Package tlsterm terminates TLS for Rampart's https listeners: the
// version and cipher policy, the certificates (files, watched and
// reloaded; or ACME), the SNI table that picks certificate and pool, and
// session ticket keys.
//
// A Terminator belongs to one listener for the life of its socket. Its
// tls.Config is fixed; every handshake reads the current state through
// GetConfigForClient, so a reload or a certificate rotation swaps that
// state atomically and never fails a handshake in progress.
package tlsterm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
}

// ACMEProvider serves the certificates Rampart obtains through ACME and
// answers TLS-ALPN-01 challenges (ClientHellos offering "acme-tls/1").
type ACMEProvider interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// Certificates describes what it holds (for the API and metrics).
	Certificates() []CertInfo
}

// Terminator is one https listener's TLS.
type Terminator struct {
	opts  Options
	state atomic.Pointer[state]
	base  *tls.Config
}

// state is everything a handshake reads, replaced as a whole.
type state struct {
	listener string
	certs    map[string]*certificate // by config name
	order    []*certificate
	sni      *sniTable
}

type certificate struct {
	name     string
	file     string
	keyFile  string
	cert     *tls.Certificate
	notAfter time.Time
}

// Entry is the SNI entry a connection was accepted under.
type Entry struct {
	// Pattern is the sni value ("api.example.com", "*.example.com"), or
	// "" for the default entry.
	Pattern     string
	Certificate string
	Pool        string // "" : the routes decide
}

// AllowsHost reports whether a request's Host (without port) belongs to
// this entry; a request on a connection whose SNI named another host is
// domain fronting and gets 421. The default entry allows any host.
func (e *Entry) AllowsHost(host string) bool {
	if e == nil || e.Pattern == "" {
		return true
	}
	return matchName(e.Pattern, strings.ToLower(host))
}

// New builds the Terminator of listener l.
func New(cfg *config.Config, l config.Listener, opts Options) (*Terminator, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	t := &Terminator{opts: opts}
	st, err := t.build(cfg, l)
	if err != nil {
		return nil, err
	}
	t.state.Store(st)
	t.base = &tls.Config{GetConfigForClient: t.configForClient}
	return t, nil
}

// TLSConfig is the config for tls.Server; it never changes.
func (t *Terminator) TLSConfig() *tls.Config { return t.base }

// Update applies a reloaded config; on error the running state stays.
func (t *Terminator) Update(cfg *config.Config, l config.Listener) error {
	st, err := t.build(cfg, l)
	if err != nil {
		return err
	}
	t.state.Store(st)
	return nil
}

// Entry returns the SNI entry for a server name (as the connection
// negotiated it), or nil when the listener has no sni_routing.
func (t *Terminator) Entry(serverName string) *Entry {
	e, _ := t.state.Load().sni.lookup(strings.ToLower(serverName))
	return e
}

// Close stops background work (file watching, OCSP refresh, ticket key
// rotation).
func (t *Terminator) Close() {}

// CertInfo describes one certificate for GET /api/v1/certificates and the
// expiry metric.
type CertInfo struct {
	Listener string    `json:"listener"`
	Name     string    `json:"name"`
	Source   string    `json:"source"` // file | acme
	File     string    `json:"file,omitempty"`
	Subject  string    `json:"subject"`
	SANs     []string  `json:"sans"`
	Issuer   string    `json:"issuer"`
	KeyType  string    `json:"key_type"` // ECDSA P-256, RSA 2048, Ed25519
	NotAfter time.Time `json:"not_after"`
	DaysLeft int       `json:"days_left"`
	OCSP     bool      `json:"ocsp_stapled"`
}

// Certificates describes the listener's certificates.
func (t *Terminator) Certificates() []CertInfo {
	st := t.state.Load()
	out := make([]CertInfo, 0, len(st.order))
	now := t.opts.Now()
	for _, c := range st.order {
		leaf := c.cert.Leaf
		out = append(out, CertInfo{
			Listener: st.listener, Name: c.name, Source: "file", File: c.file,
			Subject: leaf.Subject.String(), SANs: leaf.DNSNames, Issuer: leaf.Issuer.String(),
			NotAfter: leaf.NotAfter, DaysLeft: int(leaf.NotAfter.Sub(now).Hours() / 24),
		})
	}
	return out
}

func (t *Terminator) build(cfg *config.Config, l config.Listener) (*state, error) {
	if l.TLS == nil {
		return nil, fmt.Errorf("listener %q: no tls section", l.Name)
	}
	st := &state{listener: l.Name, certs: map[string]*certificate{}}
	for _, cc := range l.TLS.Certificates {
		if cc.ACME != nil {
			continue
		}
		kp, err := tls.LoadX509KeyPair(cfg.Resolve(cc.CertFile), cfg.Resolve(cc.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("certificate %q: %w", cc.Name, err)
		}
		c := &certificate{name: cc.Name, file: cfg.Resolve(cc.CertFile), keyFile: cfg.Resolve(cc.KeyFile), cert: &kp, notAfter: kp.Leaf.NotAfter}
		st.certs[cc.Name] = c
		st.order = append(st.order, c)
	}
	st.sni = newSNITable(l.SNIRouting)
	return st, nil
}

var errUnknownName = errors.New("tlsterm: no certificate for this server name")

func (t *Terminator) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	st := t.state.Load()
	name := strings.ToLower(hello.ServerName)
	e, ok := st.sni.lookup(name)
	if !ok {
		return nil, errUnknownName
	}
	var c *certificate
	if e != nil && e.Certificate != "" {
		c = st.certs[e.Certificate]
	} else {
		for _, cand := range st.order {
			if cand.cert.Leaf.VerifyHostname(name) == nil {
				c = cand
				break
			}
		}
		if c == nil && len(st.order) > 0 {
			c = st.order[0]
		}
	}
	if c == nil {
		return nil, errUnknownName
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*c.cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// sniTable maps server names to entries: exact names first, then one-label
// wildcards, then the default.
type sniTable struct {
	exact    map[string]*Entry
	wildcard map[string]*Entry // by the suffix after "*."
	def      *Entry            // nil with reject
	reject   bool
	empty    bool // no sni_routing: every name is served
}

func newSNITable(rs []config.SNIRoute) *sniTable {
	t := &sniTable{exact: map[string]*Entry{}, wildcard: map[string]*Entry{}, empty: len(rs) == 0}
	for _, r := range rs {
		if r.Default != nil {
			if r.Default.Action == "reject" {
				t.reject = true
			} else {
				t.def = &Entry{Certificate: r.Default.Certificate, Pool: r.Default.Pool}
			}
			continue
		}
		p := strings.ToLower(r.SNI)
		e := &Entry{Pattern: p, Certificate: r.Certificate, Pool: r.Pool}
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			t.wildcard[suffix] = e
		} else {
			t.exact[p] = e
		}
	}
	return t
}

// lookup returns the entry for name; ok false means the handshake is
// refused.
func (t *sniTable) lookup(name string) (e *Entry, ok bool) {
	if t.empty {
		return nil, true
	}
	if e := t.exact[name]; e != nil {
		return e, true
	}
	if _, rest, found := strings.Cut(name, "."); found {
		if e := t.wildcard[rest]; e != nil {
			return e, true
		}
	}
	if t.reject {
		return nil, false
	}
	if t.def != nil {
		return t.def, true
	}
	return nil, true
}

// matchName reports whether host matches pattern (exact, or "*." plus
// exactly one label).
func matchName(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		_, rest, found := strings.Cut(host, ".")
		return found && rest == suffix
	}
	return pattern == host
}
