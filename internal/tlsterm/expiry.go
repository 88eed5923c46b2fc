package tlsterm

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

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

// Certificates describes the listener's certificates: the files it
// serves, and those of the ACME provider that bear the name of one of
// this listener's ACME certificates.
func (t *Terminator) Certificates() []CertInfo {
	st := t.state.Load()
	out := make([]CertInfo, 0, len(st.order))
	now := t.opts.Now()
	var acme []CertInfo
	if t.opts.ACME != nil {
		acme = t.opts.ACME.Certificates()
	}
	for _, s := range st.order {
		if s.isACME() {
			for _, ci := range acme {
				if ci.Name == s.name {
					ci.Listener, ci.Source = st.listener, "acme"
					ci.DaysLeft = daysLeft(ci.NotAfter, now)
					out = append(out, ci)
				}
			}
			continue
		}
		lc := s.cur.Load()
		leaf := lc.cert.Leaf
		out = append(out, CertInfo{
			Listener: st.listener, Name: s.name, Source: "file", File: s.certFile,
			Subject: leaf.Subject.String(), SANs: slices.Clone(leaf.DNSNames), Issuer: leaf.Issuer.String(),
			KeyType: keyType(leaf), NotAfter: leaf.NotAfter, DaysLeft: daysLeft(leaf.NotAfter, now),
			OCSP: len(lc.cert.OCSPStaple) > 0,
		})
	}
	return out
}

// ExpirySeconds maps each certificate name to the seconds left until it
// expires (negative once expired), for
// rampart_certificate_expiry_seconds{listener,certificate}.
func (t *Terminator) ExpirySeconds() map[string]float64 {
	now := t.opts.Now()
	out := map[string]float64{}
	for _, ci := range t.Certificates() {
		out[ci.Name] = ci.NotAfter.Sub(now).Seconds()
	}
	return out
}

// Listener returns the name of the listener the Terminator serves.
func (t *Terminator) Listener() string { return t.state.Load().listener }

func daysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

func keyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

// expiryThresholds are the days left at which a warning is logged, once
// each per certificate; 0 is the warning that it has expired.
var expiryThresholds = []int{30, 14, 7, 1, 0}

// expiryCheckEvery is how often expiry is checked beside the checks at
// load and reload.
const expiryCheckEvery = time.Hour

// expiryWarnings remembers, per certificate, which warnings were logged
// for which certificate (a renewed one starts afresh).
type expiryWarnings struct {
	mu      sync.Mutex
	marks   map[string]expiryMark
	checked time.Time
}

type expiryMark struct {
	notAfter time.Time
	warned   int // index into expiryThresholds of the last warning; -1 none
}

// checkExpiry logs the expiry warnings that are due for the state's file
// certificates (the ACME provider renews its own).
func (t *Terminator) checkExpiry(st *state) {
	now := t.opts.Now()
	w := &t.expiry
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checked = now
	if w.marks == nil {
		w.marks = map[string]expiryMark{}
	}
	for _, s := range st.order {
		if s.isACME() {
			continue
		}
		leaf := s.cur.Load().cert.Leaf
		m, ok := w.marks[s.name]
		if !ok || !m.notAfter.Equal(leaf.NotAfter) {
			m = expiryMark{notAfter: leaf.NotAfter, warned: -1}
		}
		left := leaf.NotAfter.Sub(now)
		due := -1
		for i, days := range expiryThresholds {
			if left <= time.Duration(days)*24*time.Hour {
				due = i
			}
		}
		if due > m.warned {
			m.warned = due
			msg := "tls: certificate expires soon"
			if expiryThresholds[due] == 0 {
				msg = "tls: certificate has expired"
			}
			t.opts.Log.Warn(msg, "listener", st.listener, "certificate", s.name, "file", s.certFile,
				"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "days_left", daysLeft(leaf.NotAfter, now),
				"threshold_days", expiryThresholds[due])
		}
		w.marks[s.name] = m
	}
}

// expiryCheckDue reports whether the hourly check is due.
func (t *Terminator) expiryCheckDue() bool {
	t.expiry.mu.Lock()
	defer t.expiry.mu.Unlock()
	return t.opts.Now().Sub(t.expiry.checked) >= expiryCheckEvery
}
