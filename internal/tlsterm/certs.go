package tlsterm

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// certSlot is one configured certificate. A file certificate's content
// (loadedCert) is replaced as a whole when its files change or its OCSP
// staple is refreshed, so a handshake always sees a matching pair.
type certSlot struct {
	name         string
	certFile     string // "" for an ACME certificate
	keyFile      string
	allowExpired bool
	acme         *config.ACME
	acmeNames    []string // acme.domains, lower case

	cur atomic.Pointer[loadedCert] // nil for an ACME certificate

	// Only the maintenance goroutine uses these.
	certStamp, keyStamp fileStamp
	checked             time.Time // last full read of the files
	refused             [32]byte  // content last refused (logged once)
	missingSince        time.Time // the files could not be read since (zero: they can)
	missingLogged       bool

	mu       sync.Mutex // guards the OCSP schedule
	ocspDue  time.Time
	ocspBusy bool
}

// loadedCert is a certificate as served: immutable once stored.
type loadedCert struct {
	cert   *tls.Certificate
	names  []string          // DNS SANs, lower case
	issuer *x509.Certificate // the next certificate of the chain, if any
	hash   [32]byte          // of the files' content
	// stapleUntil is the staple's NextUpdate (zero: no staple, or one
	// without a NextUpdate).
	stapleUntil time.Time
}

// fileStamp is what a poll compares before reading a file.
type fileStamp struct {
	size  int64
	mtime time.Time
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{st.Size(), st.ModTime()}, nil
}

func (s *certSlot) isACME() bool { return s.acme != nil }

// covers reports whether the slot's certificate is for host (lower case).
func (s *certSlot) covers(host string) bool {
	if s.isACME() {
		return config.CoversName(s.acmeNames, host)
	}
	return config.CoversName(s.cur.Load().names, host)
}

// newSlot describes a configured certificate; a file certificate is then
// loaded with load.
func newSlot(cfg *config.Config, cc config.Certificate) *certSlot {
	s := &certSlot{name: cc.Name, allowExpired: cc.AllowExpired, acme: cc.ACME}
	if cc.ACME != nil {
		for _, d := range cc.ACME.Domains {
			s.acmeNames = append(s.acmeNames, strings.ToLower(d))
		}
		return s
	}
	s.certFile, s.keyFile = cfg.Resolve(cc.CertFile), cfg.Resolve(cc.KeyFile)
	return s
}

// readFiles reads the slot's files with their stamps, taken before the
// reads so that a write during them is seen by the next poll.
func (s *certSlot) readFiles() (certPEM, keyPEM []byte, cs, ks fileStamp, err error) {
	if cs, err = stampOf(s.certFile); err != nil {
		return
	}
	if ks, err = stampOf(s.keyFile); err != nil {
		return
	}
	if certPEM, err = os.ReadFile(s.certFile); err != nil {
		return
	}
	keyPEM, err = os.ReadFile(s.keyFile)
	return
}

func contentHash(certPEM, keyPEM []byte) [32]byte {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// parsePair makes a loadedCert of a certificate chain and its key. A
// certificate that does not match its key (a pair caught half-written),
// has expired (unless allowExpired) or is not valid yet is refused.
func parsePair(certPEM, keyPEM []byte, allowExpired bool, now time.Time) (*loadedCert, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf := pair.Leaf
	switch {
	case now.After(leaf.NotAfter) && !allowExpired:
		return nil, fmt.Errorf("certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	lc := &loadedCert{cert: &pair, hash: contentHash(certPEM, keyPEM)}
	for _, n := range leaf.DNSNames {
		lc.names = append(lc.names, strings.ToLower(n))
	}
	if len(pair.Certificate) > 1 {
		if issuer, err := x509.ParseCertificate(pair.Certificate[1]); err == nil {
			lc.issuer = issuer
		}
	}
	return lc, nil
}

// load reads and parses the slot's files, for a new state.
func (s *certSlot) load(now time.Time) error {
	certPEM, keyPEM, cs, ks, err := s.readFiles()
	if err != nil {
		return err
	}
	lc, err := parsePair(certPEM, keyPEM, s.allowExpired, now)
	if err != nil {
		return fmt.Errorf("%s, %s: %w", s.certFile, s.keyFile, err)
	}
	s.cur.Store(lc)
	s.certStamp, s.keyStamp, s.checked = cs, ks, now
	return nil
}

// adopt takes over what an old slot for the same files learnt (the
// staple and its schedule) when the files have not changed since.
func (s *certSlot) adopt(old *certSlot) {
	if old == nil || old.isACME() || s.isACME() || old.certFile != s.certFile || old.keyFile != s.keyFile {
		return
	}
	oc := old.cur.Load()
	if oc == nil || oc.hash != s.cur.Load().hash {
		return
	}
	s.cur.Store(oc)
	old.mu.Lock()
	due := old.ocspDue
	old.mu.Unlock()
	s.mu.Lock()
	s.ocspDue = due
	s.mu.Unlock()
}

var errNoACME = errors.New("tlsterm: an ACME certificate is configured but no ACME provider runs")

// certificateFor picks the certificate for a handshake under entry e (nil
// without sni_routing): the entry's certificate, then any other that
// names the server, then the first certificate from a file; among those,
// the first one the client supports (an ECDSA certificate for a client
// that offers ECDSA signatures, else the RSA one beside it). When there
// is none (no SNI, or a name no certificate covers, on a listener whose
// certificates all come from ACME) it returns no certificate and no
// error: crypto/tls then refuses the name with unrecognized_name, as it
// does under sni_routing's reject, where an error would be internal_error.
func (t *Terminator) certificateFor(st *state, e *Entry, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(hello.ServerName)
	var preferred *certSlot
	if e != nil {
		preferred = e.slot
	}
	var first *tls.Certificate
	var firstErr error
	n := 0
	// try returns the slot's certificate if the client supports it; the
	// first candidate is remembered as the answer of last resort (the
	// handshake then fails as it would with Go's own selection).
	try := func(s *certSlot, alone bool) *tls.Certificate {
		n++
		var c *tls.Certificate
		if s.isACME() {
			if t.opts.ACME == nil {
				if firstErr == nil {
					firstErr = errNoACME
				}
				return nil
			}
			h := hello
			if !s.covers(name) {
				// The slot's certificate for another name (the default
				// entry's) or none: the provider knows it by its names.
				hc := *hello
				hc.ServerName = s.acmeNames[0]
				h = &hc
			}
			var err error
			if c, err = t.opts.ACME.GetCertificate(h); err != nil || c == nil {
				if firstErr == nil {
					firstErr = err
				}
				return nil
			}
		} else {
			c = s.cur.Load().cert
		}
		if first == nil {
			first = c
		}
		if alone || hello.SupportsCertificate(c) == nil {
			return c
		}
		return nil
	}
	// Count the candidates first: with one, the support check (the
	// costliest part) is skipped, as Go does.
	cands := 0
	if preferred != nil {
		cands++
	}
	for _, s := range st.order {
		if s != preferred && name != "" && s.covers(name) {
			cands++
		}
	}
	if preferred != nil {
		if c := try(preferred, cands == 1); c != nil {
			return c, nil
		}
	}
	for _, s := range st.order {
		if s != preferred && name != "" && s.covers(name) {
			if c := try(s, cands == 1); c != nil {
				return c, nil
			}
		}
	}
	if n == 0 {
		// No certificate names this server (or the client sent no SNI):
		// the first file certificate the client supports.
		for _, s := range st.order {
			if !s.isACME() {
				if c := try(s, false); c != nil {
					return c, nil
				}
			}
		}
	}
	if first != nil {
		return first, nil
	}
	return nil, firstErr
}
