package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/testcerts"
)

// tlsCert is a certificate for the listener TLS tests.
type tlsCert struct {
	dns       []string
	rsaBits   int // 0: ECDSA P-256
	notBefore time.Time
	notAfter  time.Time
	client    bool
}

// writeTLSCert writes name.pem and name-key.pem, self-signed.
func writeTLSCert(t *testing.T, dir, name string, c tlsCert) {
	t.Helper()
	var key crypto.Signer
	var err error
	if c.rsaBits > 0 {
		key, err = rsa.GenerateKey(rand.Reader, c.rsaBits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.notBefore.IsZero() {
		c.notBefore = time.Now().Add(-time.Hour)
	}
	if c.notAfter.IsZero() {
		c.notAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	usage := x509.ExtKeyUsageServerAuth
	if c.client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: c.dns, NotBefore: c.notBefore, NotAfter: c.notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	testcerts.Write(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	testcerts.Write(t, dir, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func listenerTLSFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTLSCert(t, dir, "api", tlsCert{dns: []string{"api.example.com"}})
	writeTLSCert(t, dir, "api-rsa", tlsCert{dns: []string{"api.example.com"}, rsaBits: 2048})
	writeTLSCert(t, dir, "wild", tlsCert{dns: []string{"*.example.com", "example.com"}})
	writeTLSCert(t, dir, "other", tlsCert{dns: []string{"other.example.org"}})
	writeTLSCert(t, dir, "expired", tlsCert{dns: []string{"old.example.com"}, notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	writeTLSCert(t, dir, "future", tlsCert{dns: []string{"new.example.com"}, notBefore: time.Now().Add(24 * time.Hour), notAfter: time.Now().Add(48 * time.Hour)})
	writeTLSCert(t, dir, "short-rsa", tlsCert{dns: []string{"api.example.com"}, rsaBits: 1024})
	writeTLSCert(t, dir, "client", tlsCert{dns: []string{"api.example.com"}, client: true})
	testcerts.Write(t, dir, "ca.pem", testcerts.NewCA(t, "acme test CA").PEM)
	testcerts.Write(t, dir, "junk.pem", []byte("not PEM\n"))
	return dir
}

// tlsListenerDoc is a valid config around an https listener whose keys
// after "protocol: https" (line 4) are lines, indented under the listener:
// the first of lines is line 5.
func tlsListenerDoc(lines ...string) string {
	var sb strings.Builder
	sb.WriteString(`listeners:
  - name: public
    listen: ":8443"
    protocol: https
`)
	for _, l := range lines {
		sb.WriteString("    " + l + "\n")
	}
	sb.WriteString(`routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`)
	return sb.String()
}

// tlsBase is the tls section of a valid listener with certificates named
// api (ECDSA), api-rsa and wild (*.example.com); first+N is the line of
// lines[N] that follow it.
var tlsBase = []string{
	"tls:",
	"  certificates:",
	"    - {name: api, cert_file: api.pem, key_file: api-key.pem}",
	"    - {name: api-rsa, cert_file: api-rsa.pem, key_file: api-rsa-key.pem}",
	"    - {name: wild, cert_file: wild.pem, key_file: wild-key.pem}",
}

func withBase(lines ...string) []string { return append(append([]string{}, tlsBase...), lines...) }

func parseTLSListener(t *testing.T, dir string, lines ...string) (*Config, error) {
	t.Helper()
	return Parse(filepath.Join(dir, "rampart.yaml"), []byte(tlsListenerDoc(lines...)))
}

func TestListenerTLSDefaultsAndFullConfig(t *testing.T) {
	dir := listenerTLSFiles(t)
	cfg, err := parseTLSListener(t, dir, withBase()...)
	if err != nil {
		t.Fatal(err)
	}
	lt := cfg.Listeners[0].TLS
	if lt.MinVersion != "TLSv1.2" || lt.MaxVersion != "TLSv1.3" || lt.SessionTimeout != 3600 || !lt.SessionTickets.On() || lt.OCSPStapling {
		t.Fatalf("defaults: %+v", lt)
	}

	cfg, err = parseTLSListener(t, dir,
		"tls:",
		"  min_version: TLSv1.2",
		"  max_version: TLSv1.3",
		"  cipher_suites: [TLS_AES_256_GCM_SHA384, ECDHE-ECDSA-AES256-GCM-SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ecdhe-ecdsa-chacha20-poly1305]",
		"  ecdh_curves: [X25519, P-256, prime256v1, secp384r1, X25519MLKEM768]",
		"  session_tickets: false",
		"  session_timeout: 600",
		"  ocsp_stapling: true",
		"  certificates:",
		"    - {name: api, cert_file: api.pem, key_file: api-key.pem}",
		"    - {name: api-rsa, cert_file: api-rsa.pem, key_file: api-rsa-key.pem}",
		"    - {name: old, cert_file: expired.pem, key_file: expired-key.pem, allow_expired: true}",
		"    - name: www",
		"      acme:",
		"        domains: [www.example.com, shop.example.com]",
		"        email: ops@example.com",
		"        directory_url: http://127.0.0.1:14000/dir",
		"        ca_certificate: ca.pem",
		"        challenges: [tls-alpn-01]",
		"  hsts: {enabled: true, include_subdomains: true, preload: true}",
		"sni_routing:",
		"  - {sni: api.example.com, certificate: api, pool: web}",
		"  - {sni: API2.example.com, pool: web}",
		"  - {sni: www.example.com, certificate: www}",
		"  - default: {action: reject}",
	)
	if err != nil {
		t.Fatal(err)
	}
	lt = cfg.Listeners[0].TLS
	if lt.SessionTickets.On() || lt.SessionTimeout != 600 || lt.SessionTimeoutDuration() != 10*time.Minute || !lt.OCSPStapling {
		t.Fatalf("explicit values: %+v", lt)
	}
	a := lt.Certificates[3].ACME
	if a.RenewBefore.D() != 720*time.Hour || len(a.Challenges) != 1 || a.DirectoryURL != "http://127.0.0.1:14000/dir" {
		t.Fatalf("acme: %+v", a)
	}
	if got := lt.HSTS.Header(); got != "max-age=31536000; includeSubDomains; preload" {
		t.Fatalf("HSTS header %q", got)
	}

	// An acme block alone gets the default directory and both challenges.
	cfg, err = parseTLSListener(t, dir, "tls:", "  certificates:", "    - {name: www, acme: {domains: [www.example.com]}}")
	if err != nil {
		t.Fatal(err)
	}
	a = cfg.Listeners[0].TLS.Certificates[0].ACME
	if a.DirectoryURL != DefaultACMEDirectoryURL || strings.Join(a.Challenges, ",") != "http-01,tls-alpn-01" {
		t.Fatalf("acme defaults: %+v", a)
	}

	// An http listener may redirect to https.
	if _, err := Parse(filepath.Join(dir, "r.yaml"), []byte(strings.Replace(valid, `":8080"}`, `":8080", redirect_to_https: true}`, 1))); err != nil {
		t.Fatal(err)
	}
}

func TestNameTables(t *testing.T) {
	for name, want := range map[string]uint16{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		"ECDHE-RSA-AES256-GCM-SHA384":             tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		"ECDHE-RSA-CHACHA20-POLY1305":             tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		"TLS_CHACHA20_POLY1305_SHA256":            tls.TLS_CHACHA20_POLY1305_SHA256,
	} {
		if got, err := CipherSuite(name); err != nil || got != want {
			t.Errorf("CipherSuite(%q) = %#x, %v; want %#x", name, got, err, want)
		}
	}
	weak := map[string]string{
		"RC4-SHA":                               "RC4 is broken",
		"TLS_ECDHE_RSA_WITH_RC4_128_SHA":        "RC4 is broken",
		"DES-CBC3-SHA":                          "Sweet32",
		"TLS_RSA_WITH_3DES_EDE_CBC_SHA":         "Sweet32",
		"TLS_RSA_WITH_NULL_SHA256":              "do not encrypt",
		"ECDHE-RSA-AES128-SHA":                  "CBC",
		"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA":  "CBC",
		"ECDHE-ECDSA-AES256-SHA384":             "CBC",
		"AES128-GCM-SHA256":                     "forward secrecy",
		"TLS_RSA_WITH_AES_256_GCM_SHA384":       "forward secrecy",
		"DHE-RSA-AES128-GCM-SHA256":             "finite-field DHE",
		"ADH-AES128-GCM-SHA256":                 "anonymous",
		"EXP-RC4-MD5":                           "export",
		"TLS_ECDHE_ECDSA_WITH_AES_128_CCM":      "CCM",
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2": "", // a typo: unknown, not weak
		"FOO":                                   "",
	}
	for name, why := range weak {
		_, err := CipherSuite(name)
		switch {
		case err == nil:
			t.Errorf("CipherSuite(%q) accepted", name)
		case why == "" && !strings.HasPrefix(err.Error(), "unknown cipher suite"):
			t.Errorf("CipherSuite(%q) = %v, want unknown", name, err)
		case why != "" && (!strings.Contains(err.Error(), "is refused: ") || !strings.Contains(err.Error(), why)):
			t.Errorf("CipherSuite(%q) = %v, want refused because %s", name, err, why)
		}
	}
	for name, want := range map[string]tls.CurveID{"X25519": tls.X25519, "p-256": tls.CurveP256, "secp384r1": tls.CurveP384, "P-521": tls.CurveP521, "X25519MLKEM768": tls.X25519MLKEM768} {
		if got, err := ECDHCurve(name); err != nil || got != want {
			t.Errorf("ECDHCurve(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ECDHCurve("P-224"); err == nil {
		t.Error("P-224 accepted")
	}
	if v, err := TLSVersion("TLSv1.3"); err != nil || v != tls.VersionTLS13 {
		t.Errorf("TLSv1.3: %v %v", v, err)
	}
	if !CoversName([]string{"*.example.com"}, "a.example.com") || CoversName([]string{"*.example.com"}, "a.b.example.com") || CoversName([]string{"*.example.com"}, "example.com") {
		t.Error("CoversName wildcard: one label only")
	}
	if !CoversPattern([]string{"*.example.com"}, "*.example.com") || CoversPattern([]string{"a.example.com"}, "*.example.com") {
		t.Error("CoversPattern")
	}
}

func TestListenerTLSMistakes(t *testing.T) {
	dir := listenerTLSFiles(t)
	const first = 10 // the line after tlsBase
	cases := []struct {
		name  string
		lines []string
		line  int
		msg   string
	}{
		{"https without tls", nil, 4,
			`listener "public": protocol https needs a tls section with at least one certificate`},
		{"tls without certificates", []string{"tls:", "  min_version: TLSv1.2"}, 5,
			`listener "public": tls needs at least one certificate`},
		{"TLS 1.1", withBase("  min_version: TLSv1.1"), first,
			`listener "public": tls.min_version TLSv1.1 is refused: TLS 1.0 and 1.1 are broken (use TLSv1.2 or TLSv1.3)`},
		{"TLS 1.0 as max", withBase("  max_version: TLSv1.0"), first,
			`listener "public": tls.max_version TLSv1.0 is refused`},
		{"unknown version", withBase("  min_version: SSLv3"), first,
			`listener "public": tls.min_version "SSLv3" is not a TLS version (use TLSv1.2 or TLSv1.3)`},
		{"min above max", withBase("  min_version: TLSv1.3", "  max_version: TLSv1.2"), first,
			`listener "public": tls.min_version TLSv1.3 is above max_version TLSv1.2`},
		{"weak cipher suite", withBase("  cipher_suites:", "    - ECDHE-RSA-AES128-GCM-SHA256", "    - DES-CBC3-SHA"), first + 2,
			`listener "public": tls.cipher_suites: cipher suite "DES-CBC3-SHA" is refused: DES and 3DES use 64-bit blocks (Sweet32)`},
		{"CBC cipher suite", withBase("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256]"), first,
			`listener "public": tls.cipher_suites: cipher suite "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" is refused: CBC suites`},
		{"unknown cipher suite", withBase("  cipher_suites: [ECDHE-ECDSA-AES129-GCM-SHA256]"), first,
			`listener "public": tls.cipher_suites: unknown cipher suite "ECDHE-ECDSA-AES129-GCM-SHA256"`},
		{"only TLS 1.3 suites with TLS 1.2 allowed", withBase("  cipher_suites: [TLS_AES_128_GCM_SHA256]"), first,
			`listener "public": tls.cipher_suites names only TLS 1.3 suites`},
		{"unknown curve", withBase("  ecdh_curves: [X25519, brainpoolP256r1]"), first,
			`listener "public": tls.ecdh_curves: unknown ECDH curve "brainpoolP256r1"`},
		{"only hybrid curves with TLS 1.2 allowed", withBase("  ecdh_curves: [X25519MLKEM768]"), first,
			`listener "public": tls.ecdh_curves names only post-quantum hybrids, which TLS 1.2 cannot use`},
		{"session_timeout 0", withBase("  session_timeout: 0"), first,
			`listener "public": tls.session_timeout must be between 1 and 604800 seconds`},
		{"negative session_timeout", withBase("  session_timeout: -5"), first,
			`listener "public": tls.session_timeout must be between 1 and 604800 seconds`},
		{"negative hsts max_age", withBase("  hsts:", "    enabled: true", "    max_age: -1"), first + 2,
			`listener "public": tls.hsts.max_age must be 0 or more seconds`},
		{"duplicate certificate name", withBase("    - {name: api, cert_file: other.pem, key_file: other-key.pem}"), first,
			`listener "public": duplicate certificate name "api"`},
		{"certificate without a name", withBase("    - {cert_file: other.pem, key_file: other-key.pem}"), first,
			`listener "public": certificate has no name`},
		{"files and acme", withBase("    - name: both", "      cert_file: other.pem", "      key_file: other-key.pem", "      acme: {domains: [a.example.com]}"), first + 3,
			`listener "public": certificate "both" has both files and acme`},
		{"cert_file without key_file", withBase("    - {name: half, cert_file: other.pem}"), first,
			`listener "public": certificate "half" needs cert_file and key_file (PEM), or an acme block`},
		{"missing certificate file", withBase("    - name: gone", "      cert_file: gone.pem", "      key_file: other-key.pem"), first + 1,
			`listener "public": certificate "gone": cert_file cannot read "` + filepath.Join(dir, "gone.pem") + `": no such file or directory`},
		{"certificate file not PEM", withBase("    - name: junk", "      cert_file: junk.pem", "      key_file: other-key.pem"), first + 1,
			`listener "public": certificate "junk": cert_file "junk.pem": holds no PEM CERTIFICATE block`},
		{"missing key file", withBase("    - name: nokey", "      cert_file: other.pem", "      key_file: gone-key.pem"), first + 2,
			`listener "public": certificate "nokey": key_file cannot read`},
		{"key that does not match", withBase("    - name: mixed", "      cert_file: other.pem", "      key_file: api-key.pem"), first + 2,
			`listener "public": certificate "mixed": key_file "api-key.pem": the private key does not match the certificate in cert_file`},
		{"expired certificate", withBase("    - name: old", "      cert_file: expired.pem", "      key_file: expired-key.pem"), first + 1,
			`listener "public": certificate "old" (expired.pem) expired on `},
		{"not yet valid certificate", withBase("    - name: new", "      cert_file: future.pem", "      key_file: future-key.pem"), first + 1,
			`listener "public": certificate "new" (future.pem) is not valid before `},
		{"short RSA key", withBase("    - name: short", "      cert_file: short-rsa.pem", "      key_file: short-rsa-key.pem"), first + 1,
			`listener "public": certificate "short" (short-rsa.pem) has an RSA key of 1024 bits; 2048 or more is needed`},
		{"client certificate", withBase("    - name: client", "      cert_file: client.pem", "      key_file: client-key.pem"), first + 1,
			`listener "public": certificate "client" (client.pem) is not valid for servers`},
		{"acme without domains", withBase("    - name: www", "      acme: {email: ops@example.com}"), first + 1,
			`listener "public": certificate "www": acme.domains is required`},
		{"acme wildcard", withBase("    - name: www", "      acme:", "        domains:", `          - "*.example.com"`), first + 3,
			`listener "public": certificate "www": acme.domains: "*.example.com" is a wildcard: wildcard certificates need the DNS-01 challenge, which Rampart does not do`},
		{"acme IP address", withBase("    - name: www", "      acme:", "        domains: [192.0.2.1]"), first + 2,
			`listener "public": certificate "www": acme.domains: "192.0.2.1" is not a fully qualified host name`},
		{"acme email", withBase("    - name: www", "      acme:", "        domains: [www.example.com]", "        email: ops-at-example"), first + 3,
			`listener "public": certificate "www": acme.email "ops-at-example" is not an e-mail address`},
		{"acme http directory", withBase("    - name: www", "      acme:", "        domains: [www.example.com]", "        directory_url: http://acme.example.com/dir"), first + 3,
			`listener "public": certificate "www": acme.directory_url "http://acme.example.com/dir" must use https`},
		{"acme dns-01", withBase("    - name: www", "      acme:", "        domains: [www.example.com]", "        challenges: [http-01, dns-01]"), first + 3,
			`listener "public": certificate "www": acme.challenges: unknown challenge "dns-01"`},
		{"acme missing CA file", withBase("    - name: www", "      acme:", "        domains: [www.example.com]", "        ca_certificate: nope.pem"), first + 3,
			`listener "public": certificate "www": acme.ca_certificate: cannot read`},
		{"acme with allow_expired", withBase("    - name: www", "      allow_expired: true", "      acme: {domains: [www.example.com]}"), first + 1,
			`listener "public": certificate "www": allow_expired applies to certificate files`},
		{"unknown key in tls", withBase("  min_verison: TLSv1.2"), first,
			`unknown key "min_verison" in a listener's tls`},
		{"unknown key in acme", withBase("    - name: www", "      acme: {domains: [www.example.com], mail: a@example.com}"), first + 1,
			`unknown key "mail" in acme`},
		{"redirect_to_https on https", append([]string{"redirect_to_https: true"}, tlsBase...), 5,
			`listener "public": redirect_to_https applies to http listeners (this one is https already)`},

		// sni_routing
		{"sni pattern with two wildcard labels", withBase("sni_routing:", `  - {sni: "*.*.example.com", certificate: wild}`), first + 1,
			`listener "public": sni_routing: sni "*.*.example.com" is not an exact host name or a one-label wildcard`},
		{"sni pattern with inner wildcard", withBase("sni_routing:", `  - {sni: "a.*.example.com", certificate: wild}`), first + 1,
			`listener "public": sni_routing: sni "a.*.example.com" is not an exact host name`},
		{"sni wildcard on a top-level domain", withBase("sni_routing:", `  - {sni: "*.com", certificate: wild}`), first + 1,
			`listener "public": sni_routing: sni "*.com" is not an exact host name`},
		{"sni IP address", withBase("sni_routing:", `  - {sni: 192.0.2.1, certificate: api}`), first + 1,
			`listener "public": sni_routing: sni "192.0.2.1" is an IP address`},
		{"sni entry without sni", withBase("sni_routing:", `  - {certificate: api}`), first + 1,
			`listener "public": sni_routing entry has no sni`},
		{"unknown certificate", withBase("sni_routing:", `  - {sni: api.example.com, certificate: nope}`), first + 1,
			`listener "public": sni_routing: certificate "nope" is not one of this listener's certificates (api, api-rsa, wild)`},
		{"unknown pool", withBase("sni_routing:", `  - {sni: api.example.com, certificate: api, pool: nope}`), first + 1,
			`listener "public": sni_routing: pool "nope" is not defined under pools`},
		{"duplicate sni", withBase("sni_routing:", `  - {sni: api.example.com, certificate: api}`, `  - {sni: API.example.com, certificate: wild}`), first + 2,
			`listener "public": sni_routing: duplicate sni "API.example.com" (entry 0 has it already)`},
		{"two defaults", withBase("sni_routing:", `  - default: {action: reject}`, `  - default: {action: serve, certificate: wild}`), first + 2,
			`listener "public": sni_routing has more than one default entry`},
		{"unknown default action", withBase("sni_routing:", `  - default: {action: drop}`), first + 1,
			`listener "public": sni_routing default action "drop" is unknown (reject or serve)`},
		{"serve without certificate", withBase("sni_routing:", `  - default: {action: serve, pool: web}`), first + 1,
			`listener "public": sni_routing default action serve needs a certificate`},
		{"reject with certificate", withBase("sni_routing:", `  - default: {action: reject, certificate: api}`), first + 1,
			`listener "public": sni_routing default action reject refuses the handshake: it takes no certificate or pool`},
		{"entry with sni and default", withBase("sni_routing:", `  - {sni: a.example.com, default: {action: reject}}`), first + 1,
			`listener "public": sni_routing: an entry is either {sni, certificate, pool} or {default:`},
		{"certificate that does not cover the name", withBase("sni_routing:", `  - {sni: www.example.com, certificate: api}`), first + 1,
			`listener "public": sni_routing: certificate "api" does not cover "www.example.com" (its names: api.example.com); clients would refuse it`},
		{"exact certificate for a wildcard entry", withBase("sni_routing:", `  - {sni: "*.example.com", certificate: api}`), first + 1,
			`listener "public": sni_routing: certificate "api" does not cover "*.example.com"`},
		{"wildcard certificate two labels down", withBase("sni_routing:", `  - {sni: a.b.example.com, certificate: wild}`), first + 1,
			`listener "public": sni_routing: certificate "wild" does not cover "a.b.example.com"`},
		{"acme certificate that does not cover the name", withBase("    - {name: www, acme: {domains: [www.example.com]}}", "sni_routing:", `  - {sni: shop.example.com, certificate: www}`), first + 2,
			`listener "public": sni_routing: certificate "www" does not cover "shop.example.com" (its names: www.example.com)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTLSListener(t, dir, tc.lines...)
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != tc.line || !strings.HasPrefix(ps[0].Msg, tc.msg) {
				t.Fatalf("Parse:\n%v\nwant exactly one problem:\n%s:%d: %s...", err, filepath.Join(dir, "rampart.yaml"), tc.line, tc.msg)
			}
		})
	}
}

// The https-only keys are refused on an http listener.
func TestHTTPListenerRefusesTLSKeys(t *testing.T) {
	dir := listenerTLSFiles(t)
	d := strings.Replace(valid, `  - {name: public, listen: ":8080"}`, `  - name: public
    listen: ":8080"
    tls: {certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]}
    sni_routing: [{sni: api.example.com, certificate: api}]`, 1)
	_, err := Parse(filepath.Join(dir, "h.yaml"), []byte(d))
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 2 ||
		ps[0].Line != 4 || ps[0].Msg != `listener "public": tls applies to https listeners (set protocol: https, or remove tls)` ||
		ps[1].Line != 5 || ps[1].Msg != `listener "public": sni_routing applies to https listeners (set protocol: https, or remove sni_routing)` {
		t.Fatalf("Parse: %v", err)
	}
}
