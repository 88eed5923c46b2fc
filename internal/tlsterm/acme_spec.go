package tlsterm

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/rampart-proxy/rampart/internal/config"
)

// ACME challenge types the provider can answer.
const (
	acmeHTTP01    = "http-01"
	acmeTLSALPN01 = "tls-alpn-01"
)

// acmeDefaultChallenges is the order tried without a challenges setting:
// TLS-ALPN-01 first, as it needs only the https listener that serves the
// certificate anyway.
var acmeDefaultChallenges = []string{acmeTLSALPN01, acmeHTTP01}

const acmeDefaultRenewBefore = 30 * 24 * time.Hour

// acmeSpec is one certificate as the config asks for it. Identical acme
// blocks on several listeners are one acmeSpec with several refs.
type acmeSpec struct {
	id          string   // CA and domains: what identifies the certificate
	domains     []string // lower case, unique, in config order
	directory   string
	email       string
	caFile      string         // resolved; "" trusts the system roots
	roots       *x509.CertPool // caFile's certificates
	caSum       string         // caFile's content hash: a changed file means a new client
	challenges  []string
	renewBefore time.Duration
	refs        []acmeRef
}

// acmeRef is a listener's certificate entry that uses an acmeSpec.
type acmeRef struct{ listener, name string }

// acmeSpecs collects and checks the acme blocks of cfg, in config order.
// The config validator reports the same problems with their lines; these
// errors keep a provider from being built on a config that skipped it.
func acmeSpecs(cfg *config.Config) ([]*acmeSpec, error) {
	var out []*acmeSpec
	byID := map[string]*acmeSpec{}
	byDomain := map[string]*acmeSpec{}
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		for _, c := range l.TLS.Certificates {
			if c.ACME == nil {
				continue
			}
			s, err := newACMESpec(cfg, c.ACME)
			if err != nil {
				return nil, fmt.Errorf("listener %q certificate %q: acme: %w", l.Name, c.Name, err)
			}
			ref := acmeRef{listener: l.Name, name: c.Name}
			if prev := byID[s.id]; prev != nil {
				if !prev.sameSettings(s) {
					return nil, fmt.Errorf("listener %q certificate %q: acme: same domains as listener %q certificate %q but other settings (email, ca_certificate, challenges, renew_before must match)",
						l.Name, c.Name, prev.refs[0].listener, prev.refs[0].name)
				}
				prev.refs = append(prev.refs, ref)
				continue
			}
			for _, d := range s.domains {
				if prev := byDomain[d]; prev != nil {
					return nil, fmt.Errorf("listener %q certificate %q: acme: domain %q is also in listener %q certificate %q, with other domains or another CA; one name, one ACME certificate",
						l.Name, c.Name, d, prev.refs[0].listener, prev.refs[0].name)
				}
				byDomain[d] = s
			}
			s.refs = []acmeRef{ref}
			byID[s.id] = s
			out = append(out, s)
		}
	}
	return out, nil
}

func newACMESpec(cfg *config.Config, c *config.ACME) (*acmeSpec, error) {
	s := &acmeSpec{directory: c.DirectoryURL, email: c.Email, renewBefore: c.RenewBefore.D()}
	if len(c.Domains) == 0 {
		return nil, fmt.Errorf("no domains")
	}
	for _, d := range c.Domains {
		d = acmeName(d)
		if err := acmeCheckDomain(d); err != nil {
			return nil, err
		}
		if !slices.Contains(s.domains, d) {
			s.domains = append(s.domains, d)
		}
	}
	if s.directory == "" {
		s.directory = acme.LetsEncryptURL
	}
	if u, err := url.Parse(s.directory); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("directory_url %q is not an https URL", s.directory)
	}
	if strings.ContainsAny(s.email, " \t\r\n,") || (s.email != "" && !strings.Contains(s.email, "@")) {
		return nil, fmt.Errorf("email %q is not an address", s.email)
	}
	if c.CACertificate != "" {
		s.caFile = cfg.Resolve(c.CACertificate)
		b, err := os.ReadFile(s.caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_certificate: %w", err)
		}
		sum := sha256.Sum256(b)
		s.caSum = hex.EncodeToString(sum[:8])
		s.roots = x509.NewCertPool()
		if !s.roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca_certificate %s: no PEM certificate in it", s.caFile)
		}
	}
	for _, ch := range c.Challenges {
		ch = strings.ToLower(ch)
		if ch != acmeHTTP01 && ch != acmeTLSALPN01 {
			return nil, fmt.Errorf("challenge %q is not supported (use http-01, tls-alpn-01)", ch)
		}
		if !slices.Contains(s.challenges, ch) {
			s.challenges = append(s.challenges, ch)
		}
	}
	if len(s.challenges) == 0 {
		s.challenges = acmeDefaultChallenges
	}
	switch {
	case s.renewBefore < 0:
		return nil, fmt.Errorf("renew_before %s is negative", s.renewBefore)
	case s.renewBefore == 0:
		s.renewBefore = acmeDefaultRenewBefore
	}
	sorted := slices.Sorted(slices.Values(s.domains))
	sum := sha256.Sum256([]byte(s.directory + "\n" + strings.Join(sorted, ",")))
	s.id = acmeCADir(s.directory) + "/" + sorted[0] + "-" + hex.EncodeToString(sum[:4])
	return s, nil
}

// acmeCheckDomain refuses names a CA cannot validate by HTTP-01 or
// TLS-ALPN-01: wildcards need DNS-01, which Rampart does not do.
func acmeCheckDomain(d string) error {
	if strings.Contains(d, "*") {
		return fmt.Errorf("domain %q: a wildcard needs the dns-01 challenge, which is not supported (list the names)", d)
	}
	if net.ParseIP(d) != nil {
		return fmt.Errorf("domain %q: an IP address, not a DNS name", d)
	}
	if len(d) > 253 || !strings.Contains(d, ".") {
		return fmt.Errorf("domain %q is not a fully qualified DNS name", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain %q is not a valid DNS name", d)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("domain %q is not a valid DNS name (use the punycode form of an IDN)", d)
			}
		}
	}
	return nil
}

func (s *acmeSpec) sameSettings(o *acmeSpec) bool {
	return s.email == o.email && s.caFile == o.caFile && s.renewBefore == o.renewBefore &&
		slices.Equal(s.challenges, o.challenges)
}

// acmeDir is where the provider keeps accounts and certificates.
func acmeDir(cfg *config.Config) string {
	d := cfg.DataDir
	if d == "" {
		d = config.DefaultDataDir
	}
	return filepath.Join(d, "acme")
}

// acmeCADir names a CA's directory under data_dir/acme after its URL
// ("acme-v02.api.letsencrypt.org-directory"), so that an operator sees
// which CA a file belongs to.
func acmeCADir(directory string) string {
	u, _ := url.Parse(directory)
	return acmeFileName(u.Host + strings.ReplaceAll(u.Path, "/", "-"))
}

// acmeFileName keeps letters, digits, '.', '-' and '_' of s; anything
// else becomes '_'.
func acmeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
