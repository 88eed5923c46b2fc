package config

import (
	"slices"
	"strconv"
	"time"
)

// TLS termination for client listeners (DESIGN §3 listeners[].tls and
// listeners[].sni_routing).
//
//	listeners:
//	  - name: public
//	    listen: ":8443"
//	    protocol: https
//	    tls:
//	      min_version: TLSv1.2               # TLSv1.2 | TLSv1.3 (1.0 and 1.1 refused)
//	      max_version: TLSv1.3
//	      cipher_suites: [TLS_AES_256_GCM_SHA384, ECDHE-ECDSA-AES256-GCM-SHA384]
//	      ecdh_curves: [X25519, P-256, P-384]
//	      session_tickets: true              # keys rotated automatically
//	      session_timeout: 3600              # seconds a session may be resumed
//	      ocsp_stapling: true
//	      certificates:
//	        - {name: cert-api, cert_file: certs/api.pem, key_file: certs/api-key.pem}
//	        - {name: cert-api-rsa, cert_file: certs/api-rsa.pem, key_file: certs/api-rsa-key.pem}
//	        - {name: cert-www, acme: {domains: [www.example.com], email: ops@example.com}}
//	      hsts: {enabled: true, max_age: 31536000, include_subdomains: true, preload: true}
//	    sni_routing:
//	      - {sni: api.example.com, certificate: cert-api, pool: pool-api}
//	      - {sni: "*.example.com", certificate: cert-www, pool: pool-default}
//	      - default: {action: reject}

// ListenerTLS is an https listener's termination policy.
type ListenerTLS struct {
	MinVersion string `yaml:"min_version"` // default TLSv1.2
	MaxVersion string `yaml:"max_version"` // default TLSv1.3
	// CipherSuites are IANA (TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384) or
	// OpenSSL (ECDHE-ECDSA-AES256-GCM-SHA384) names; weak suites (RC4,
	// 3DES, NULL, CBC) are refused. Empty: Go's secure defaults. TLS 1.3
	// suites are accepted by name but Go always offers all three.
	CipherSuites []string `yaml:"cipher_suites"`
	// ECDHCurves: X25519, P-256, P-384, P-521, X25519MLKEM768.
	ECDHCurves     []string    `yaml:"ecdh_curves"`
	SessionTickets OnByDefault `yaml:"session_tickets"`
	// SessionTimeout is how long (seconds) a session may be resumed;
	// default 3600.
	SessionTimeout int  `yaml:"session_timeout"`
	OCSPStapling   bool `yaml:"ocsp_stapling"`
	// Certificates are the listener's certificates, referred to by name
	// from sni_routing. Without sni_routing, a client gets the
	// certificate whose names match its SNI (ECDSA or RSA, whichever it
	// supports), or the first one.
	Certificates []Certificate `yaml:"certificates"`
	HSTS         *HSTS         `yaml:"hsts"`
}

// Certificate is one certificate: from files, or obtained through ACME.
type Certificate struct {
	Name     string `yaml:"name"`
	CertFile string `yaml:"cert_file"` // PEM: leaf first, then intermediates
	KeyFile  string `yaml:"key_file"`
	// AllowExpired lets an expired certificate load (it is an error
	// otherwise).
	AllowExpired bool  `yaml:"allow_expired"`
	ACME         *ACME `yaml:"acme"`
}

// ACME obtains and renews a certificate automatically (RFC 8555). The
// account and certificates are kept in data_dir/acme.
type ACME struct {
	Domains []string `yaml:"domains"`
	Email   string   `yaml:"email"`
	// DirectoryURL is the CA's directory; default Let's Encrypt
	// (https://acme-v02.api.letsencrypt.org/directory).
	DirectoryURL string `yaml:"directory_url"`
	// CACertificate is a PEM bundle trusted for the directory's HTTPS (a
	// private CA, or pebble in tests); default: the system roots.
	CACertificate string `yaml:"ca_certificate"`
	// Challenges offered: http-01, tls-alpn-01 (default both). HTTP-01
	// needs an http listener on port 80 reachable by the CA; TLS-ALPN-01
	// an https listener on 443.
	Challenges []string `yaml:"challenges"`
	// RenewBefore is how long before expiry a certificate is renewed;
	// default 720h (30 days).
	RenewBefore Duration `yaml:"renew_before"`
}

// HSTS is the Strict-Transport-Security header an https listener adds to
// every response.
type HSTS struct {
	Enabled           bool `yaml:"enabled"`
	MaxAge            int  `yaml:"max_age"` // seconds; default 31536000
	IncludeSubdomains bool `yaml:"include_subdomains"`
	Preload           bool `yaml:"preload"`
}

// SNIRoute is one sni_routing entry: either an SNI pattern (exact, or a
// one-label wildcard "*.example.com") with the certificate and pool it
// selects, or the default for names no entry matches.
type SNIRoute struct {
	SNI         string      `yaml:"sni"`
	Certificate string      `yaml:"certificate"`
	Pool        string      `yaml:"pool"`
	Default     *SNIDefault `yaml:"default"`
}

// SNIDefault is what happens to a handshake whose SNI (or its absence)
// matches no entry: action reject refuses it (unrecognized_name alert);
// action serve answers with Certificate and sends requests to Pool.
type SNIDefault struct {
	Action      string `yaml:"action"` // reject | serve
	Certificate string `yaml:"certificate"`
	Pool        string `yaml:"pool"`
}

// Defaults of listeners[].tls and its acme blocks.
const (
	DefaultTLSMinVersion    = "TLSv1.2"
	DefaultTLSMaxVersion    = "TLSv1.3"
	DefaultSessionTimeout   = 3600 // seconds
	DefaultHSTSMaxAge       = 31536000
	DefaultACMEDirectoryURL = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultACMERenewBefore  = 720 * time.Hour
	ACMEChallengeHTTP01     = "http-01"
	ACMEChallengeTLSALPN01  = "tls-alpn-01"
)

// ACMEChallenges are the challenge types Rampart answers. DNS-01 needs an
// API of the operator's DNS provider, which Rampart does not have.
var ACMEChallenges = []string{ACMEChallengeHTTP01, ACMEChallengeTLSALPN01}

// listenerTLSDefaults fills the defaults of listeners[i].tls. A key that
// is written with the zero value keeps it, so that validation can refuse
// "session_timeout: 0" instead of quietly replacing it.
func (c *Config) listenerTLSDefaults(i int) {
	t := c.Listeners[i].TLS
	if t == nil {
		return
	}
	p := "listeners[" + strconv.Itoa(i) + "].tls"
	zeroDefault(&t.MinVersion, DefaultTLSMinVersion)
	zeroDefault(&t.MaxVersion, DefaultTLSMaxVersion)
	if _, set := c.lines[p+".session_timeout"]; !set {
		t.SessionTimeout = DefaultSessionTimeout
	}
	if h := t.HSTS; h != nil {
		if _, set := c.lines[p+".hsts.max_age"]; !set {
			h.MaxAge = DefaultHSTSMaxAge
		}
	}
	for j := range t.Certificates {
		a := t.Certificates[j].ACME
		if a == nil {
			continue
		}
		zeroDefault(&a.DirectoryURL, DefaultACMEDirectoryURL)
		if len(a.Challenges) == 0 {
			a.Challenges = slices.Clone(ACMEChallenges)
		}
		if a.RenewBefore == 0 {
			a.RenewBefore = Duration(DefaultACMERenewBefore)
		}
	}
}

// SessionTimeoutDuration is session_timeout as a duration.
func (t *ListenerTLS) SessionTimeoutDuration() time.Duration {
	return time.Duration(t.SessionTimeout) * time.Second
}

// Header is the Strict-Transport-Security value, or "" when HSTS is off.
func (h *HSTS) Header() string {
	if h == nil || !h.Enabled {
		return ""
	}
	v := "max-age=" + strconv.Itoa(h.MaxAge)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}
