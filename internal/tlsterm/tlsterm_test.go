package tlsterm

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/rampart-proxy/rampart/internal/config"
)

// policyFixture serves api.example.com (ECDSA) with the given tls keys.
func policyFixture(t *testing.T, tlsKeys string) (*testCA, string) {
	t.Helper()
	dir := t.TempDir()
	ca := newTestCA(t)
	ca.issue(t, leafSpec{dns: []string{"api.example.com"}}).write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n"+tlsKeys+"  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	return ca, serve(t, newTerminator(t, cfg, l, Options{}))
}

func TestVersions(t *testing.T) {
	ca, addr := policyFixture(t, "")
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c := client(ca, "api.example.com")
		c.MinVersion, c.MaxVersion = v, v
		if _, err := dial(addr, c); !isAlert(err, "protocol version") {
			t.Errorf("client at %s: %v, want a protocol version alert", tls.VersionName(v), err)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := client(ca, "api.example.com")
		c.MinVersion, c.MaxVersion = v, v
		cs, err := dial(addr, c)
		if err != nil || cs.Version != v {
			t.Errorf("client at %s: %v, version %s", tls.VersionName(v), err, tls.VersionName(cs.Version))
		}
	}

	ca, addr = policyFixture(t, "  min_version: TLSv1.3\n")
	c := client(ca, "api.example.com")
	c.MaxVersion = tls.VersionTLS12
	if _, err := dial(addr, c); !isAlert(err, "protocol version") {
		t.Errorf("TLS 1.2 client with min_version TLSv1.3: %v", err)
	}
	ca, addr = policyFixture(t, "  max_version: TLSv1.2\n")
	if cs, err := dial(addr, client(ca, "api.example.com")); err != nil || cs.Version != tls.VersionTLS12 {
		t.Errorf("max_version TLSv1.2: %v, %s", err, tls.VersionName(cs.Version))
	}
}

func TestCipherSuitesCurvesALPN(t *testing.T) {
	ca, addr := policyFixture(t, "  cipher_suites: [TLS_AES_128_GCM_SHA256, ECDHE-ECDSA-AES256-GCM-SHA384]\n  ecdh_curves: [P-384]\n")
	tls12 := func(suites ...uint16) *tls.Config {
		c := client(ca, "api.example.com")
		c.MaxVersion, c.CipherSuites = tls.VersionTLS12, suites
		return c
	}
	if _, err := dial(addr, tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)); !isAlert(err, "handshake failure") {
		t.Errorf("suite not in cipher_suites: %v, want a handshake failure", err)
	}
	cs, err := dial(addr, tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384))
	if err != nil || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 || cs.CurveID != tls.CurveP384 {
		t.Errorf("TLS 1.2: %v, suite %s, curve %s", err, tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
	}
	// TLS 1.3 suites are Go's; the curve list applies.
	c := client(ca, "api.example.com")
	c.CurvePreferences = []tls.CurveID{tls.X25519}
	if _, err := dial(addr, c); err == nil {
		t.Error("client without P-384 was served")
	}
	c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP384}
	c.NextProtos = []string{"h2", "http/1.1"}
	if cs, err := dial(addr, c); err != nil || cs.Version != tls.VersionTLS13 || cs.CurveID != tls.CurveP384 || cs.NegotiatedProtocol != "h2" {
		t.Errorf("TLS 1.3: %v, %s, curve %s, alpn %q", err, tls.VersionName(cs.Version), cs.CurveID, cs.NegotiatedProtocol)
	}
	c.NextProtos = []string{"http/1.1"}
	if cs, err := dial(addr, c); err != nil || cs.NegotiatedProtocol != "http/1.1" {
		t.Errorf("ALPN http/1.1: %v, %q", err, cs.NegotiatedProtocol)
	}
}

// Without cipher_suites, TLS 1.2 offers only ECDHE with AEAD: Go's own
// defaults, which a listener used to get, include the CBC-SHA suites that
// cipher_suites refuses by name.
func TestDefaultCipherSuitesAreAEAD(t *testing.T) {
	ca, addr := policyFixture(t, "")
	for _, cbc := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA} {
		c := client(ca, "api.example.com")
		c.MaxVersion, c.CipherSuites = tls.VersionTLS12, []uint16{cbc}
		if _, err := dial(addr, c); !isAlert(err, "handshake failure") {
			t.Errorf("%s offered alone: %v, want a handshake failure", tls.CipherSuiteName(cbc), err)
		}
	}
	c := client(ca, "api.example.com")
	c.MaxVersion = tls.VersionTLS12
	if cs, err := dial(addr, c); err != nil || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 && cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 && cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Errorf("TLS 1.2 with a default client: %v, suite %s", err, tls.CipherSuiteName(cs.CipherSuite))
	}
}

// sniFixture: certificates api (ECDSA, api.example.com), api-rsa (RSA,
// api.example.com), wild (*.example.com), fallback (fallback.example.org).
func sniFixture(t *testing.T, routing string) (*testCA, *Terminator, string, map[string]issued) {
	t.Helper()
	dir := t.TempDir()
	ca := newTestCA(t)
	certs := map[string]issued{
		"api":      ca.issue(t, leafSpec{dns: []string{"api.example.com"}}),
		"api-rsa":  ca.issue(t, leafSpec{dns: []string{"api.example.com"}, rsa: true}),
		"wild":     ca.issue(t, leafSpec{dns: []string{"*.example.com"}}),
		"fallback": ca.issue(t, leafSpec{dns: []string{"fallback.example.org"}}),
	}
	for name, c := range certs {
		c.write(t, dir, name)
	}
	cfg, l := listenerConfig(t, dir, `tls:
  certificates:
    - {name: api, cert_file: api.pem, key_file: api-key.pem}
    - {name: api-rsa, cert_file: api-rsa.pem, key_file: api-rsa-key.pem}
    - {name: wild, cert_file: wild.pem, key_file: wild-key.pem}
    - {name: fallback, cert_file: fallback.pem, key_file: fallback-key.pem}
`+routing)
	term := newTerminator(t, cfg, l, Options{})
	return ca, term, serve(t, term), certs
}

func TestSNIRoutingReject(t *testing.T) {
	ca, term, addr, certs := sniFixture(t, `sni_routing:
  - {sni: api.example.com, certificate: api, pool: api}
  - {sni: "*.example.com", certificate: wild, pool: web}
  - default: {action: reject}`)
	got := served(t, addr, client(ca, "api.example.com"))
	if got.SerialNumber.Cmp(certs["api"].leaf.SerialNumber) != 0 {
		t.Errorf("api.example.com got %v", got.DNSNames)
	}
	got = served(t, addr, client(ca, "www.example.com"))
	if got.SerialNumber.Cmp(certs["wild"].leaf.SerialNumber) != 0 {
		t.Errorf("www.example.com got %v", got.DNSNames)
	}
	// A wildcard covers one label: a.b.example.com is unknown, as are
	// other names and a hello without SNI.
	for _, name := range []string{"a.b.example.com", "example.com", "fallback.example.org", "evil.test"} {
		if _, err := dial(addr, client(ca, name)); !isAlert(err, "unrecognized name") {
			t.Errorf("%s: %v, want an unrecognized_name alert", name, err)
		}
	}
	noSNI := &tls.Config{InsecureSkipVerify: true}
	if _, err := dial(addr, noSNI); !isAlert(err, "unrecognized name") {
		t.Errorf("no SNI: %v", err)
	}

	e := term.Entry("API.example.com")
	if e == nil || e.Pattern != "api.example.com" || e.Pool != "api" || e.Certificate != "api" {
		t.Fatalf("Entry(api) = %+v", e)
	}
	if !e.AllowsHost("api.example.com") || !e.AllowsHost("API.Example.com") || e.AllowsHost("www.example.com") {
		t.Error("AllowsHost of the exact entry")
	}
	w := term.Entry("shop.example.com")
	if w == nil || w.Pattern != "*.example.com" || w.Pool != "web" || !w.AllowsHost("shop.example.com") || !w.AllowsHost("other.example.com") || w.AllowsHost("a.b.example.com") {
		t.Errorf("Entry(shop) = %+v", w)
	}
	if term.Entry("a.b.example.com") != nil || term.Entry("") != nil {
		t.Error("unknown names have an entry")
	}
}

func TestSNIRoutingDefaultServe(t *testing.T) {
	ca, term, addr, certs := sniFixture(t, `sni_routing:
  - {sni: api.example.com, certificate: api, pool: api}
  - default: {action: serve, certificate: fallback, pool: web}`)
	for _, name := range []string{"other.example.net", "a.b.example.com"} {
		c := client(ca, "fallback.example.org")
		c.ServerName = name
		c.InsecureSkipVerify = true // the fallback does not name them
		cs, err := dial(addr, c)
		if err != nil || cs.PeerCertificates[0].SerialNumber.Cmp(certs["fallback"].leaf.SerialNumber) != 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	e := term.Entry("other.example.net")
	if e == nil || e.Pattern != "" || e.Pool != "web" || !e.AllowsHost("anything.example") {
		t.Errorf("default entry %+v", e)
	}
}

// For one name an ECDSA and an RSA certificate coexist: each client gets
// the one it supports, with or without sni_routing.
func TestECDSAAndRSACertificates(t *testing.T) {
	for _, routing := range []string{"", `sni_routing:
  - {sni: api.example.com, certificate: api}
  - default: {action: reject}`} {
		ca, _, addr, certs := sniFixture(t, routing)
		got := served(t, addr, client(ca, "api.example.com"))
		if _, ok := got.PublicKey.(*ecdsa.PublicKey); !ok || got.SerialNumber.Cmp(certs["api"].leaf.SerialNumber) != 0 {
			t.Errorf("routing %q: modern client got %T", routing, got.PublicKey)
		}
		rsaOnly := client(ca, "api.example.com")
		rsaOnly.MaxVersion = tls.VersionTLS12
		rsaOnly.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		got = served(t, addr, rsaOnly)
		if _, ok := got.PublicKey.(*rsa.PublicKey); !ok || got.SerialNumber.Cmp(certs["api-rsa"].leaf.SerialNumber) != 0 {
			t.Errorf("routing %q: RSA-only client got %T", routing, got.PublicKey)
		}
		ecdsaOnly := client(ca, "api.example.com")
		ecdsaOnly.MaxVersion = tls.VersionTLS12
		ecdsaOnly.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		if got := served(t, addr, ecdsaOnly); got.SerialNumber.Cmp(certs["api"].leaf.SerialNumber) != 0 {
			t.Errorf("routing %q: ECDSA-only TLS 1.2 client got %v", routing, got.PublicKey)
		}
	}
}

// Without sni_routing a name picks the certificate that covers it, and a
// name none covers (or no SNI) gets the first certificate.
func TestCertificateByName(t *testing.T) {
	ca, term, addr, certs := sniFixture(t, "")
	if got := served(t, addr, client(ca, "fallback.example.org")); got.SerialNumber.Cmp(certs["fallback"].leaf.SerialNumber) != 0 {
		t.Errorf("fallback.example.org got %v", got.DNSNames)
	}
	if got := served(t, addr, client(ca, "shop.example.com")); got.SerialNumber.Cmp(certs["wild"].leaf.SerialNumber) != 0 {
		t.Errorf("shop.example.com got %v", got.DNSNames)
	}
	cs, err := dial(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil || cs.PeerCertificates[0].SerialNumber.Cmp(certs["api"].leaf.SerialNumber) != 0 {
		t.Errorf("no SNI: %v", err)
	}
	if term.Entry("api.example.com") != nil {
		t.Error("Entry without sni_routing")
	}
}

// fakeACME stands in for the ACME provider (internal/tlsterm/acme*.go).
type fakeACME struct {
	cert  *tls.Certificate
	calls atomic.Int32
	alpn  atomic.Int32
}

func (f *fakeACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.calls.Add(1)
	if slices.Contains(hello.SupportedProtos, "acme-tls/1") {
		f.alpn.Add(1)
	}
	if hello.ServerName != "www.example.com" {
		return nil, errors.New("fakeACME: no certificate")
	}
	return f.cert, nil
}

func (f *fakeACME) Certificates() []CertInfo {
	return []CertInfo{{Name: "www", Source: "acme", SANs: []string{"www.example.com"}, NotAfter: f.cert.Leaf.NotAfter}}
}

func TestACMEDelegation(t *testing.T) {
	for _, routing := range []string{"", `sni_routing:
  - {sni: api.example.com, certificate: api}
  - {sni: www.example.com, certificate: www, pool: web}
  - default: {action: reject}`} {
		dir := t.TempDir()
		ca := newTestCA(t)
		api := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
		api.write(t, dir, "api")
		www := ca.issue(t, leafSpec{dns: []string{"www.example.com"}})
		pair, err := tls.X509KeyPair(www.certPEM, www.keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		acme := &fakeACME{cert: &pair}
		cfg, l := listenerConfig(t, dir, `tls:
  certificates:
    - {name: api, cert_file: api.pem, key_file: api-key.pem}
    - {name: www, acme: {domains: [www.example.com], email: ops@example.com}}
`+routing)
		term := newTerminator(t, cfg, l, Options{ACME: acme})
		addr := serve(t, term)
		if got := served(t, addr, client(ca, "www.example.com")); got.SerialNumber.Cmp(www.leaf.SerialNumber) != 0 {
			t.Errorf("routing %q: www.example.com got %v", routing, got.DNSNames)
		}
		if got := served(t, addr, client(ca, "api.example.com")); got.SerialNumber.Cmp(api.leaf.SerialNumber) != 0 {
			t.Errorf("routing %q: api.example.com got %v", routing, got.DNSNames)
		}
		// A TLS-ALPN-01 challenge hello goes to the provider.
		before := acme.alpn.Load()
		ch := client(ca, "www.example.com")
		ch.NextProtos = []string{"acme-tls/1"}
		cs, err := dial(addr, ch)
		if err != nil || cs.NegotiatedProtocol != "acme-tls/1" || acme.alpn.Load() != before+1 {
			t.Errorf("routing %q: acme-tls/1 hello: %v, alpn %q", routing, err, cs.NegotiatedProtocol)
		}
		infos := term.Certificates()
		if len(infos) != 2 || infos[1].Name != "www" || infos[1].Source != "acme" || infos[1].Listener != "public" {
			t.Errorf("Certificates: %+v", infos)
		}
		if s := term.ExpirySeconds(); s["www"] <= 0 || s["api"] <= 0 {
			t.Errorf("ExpirySeconds: %v", s)
		}
	}
}

// A listener whose certificates all come from ACME has no certificate
// for a hello without SNI, or for a name none of them covers: the
// handshake is refused with unrecognized_name (as a name sni_routing
// rejects), not internal_error. Where sni_routing's default serves an
// ACME certificate, that one is the answer.
func TestACMEOnlyWithoutSNI(t *testing.T) {
	ca := newTestCA(t)
	www := ca.issue(t, leafSpec{dns: []string{"www.example.com"}})
	pair, err := tls.X509KeyPair(www.certPEM, www.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	acme := &fakeACME{cert: &pair}
	noSNI := &tls.Config{InsecureSkipVerify: true}
	for _, routing := range []string{"", `sni_routing:
  - {sni: www.example.com, certificate: www}`} {
		cfg, l := listenerConfig(t, t.TempDir(), `tls:
  certificates:
    - {name: www, acme: {domains: [www.example.com], email: ops@example.com}}
`+routing)
		addr := serve(t, newTerminator(t, cfg, l, Options{ACME: acme}))
		if got := served(t, addr, client(ca, "www.example.com")); got.SerialNumber.Cmp(www.leaf.SerialNumber) != 0 {
			t.Errorf("routing %q: www.example.com got %v", routing, got.DNSNames)
		}
		if _, err := dial(addr, noSNI); !isAlert(err, "unrecognized name") {
			t.Errorf("routing %q: no SNI: %v, want an unrecognized_name alert", routing, err)
		}
		other := client(ca, "evil.test")
		other.InsecureSkipVerify = true
		if _, err := dial(addr, other); !isAlert(err, "unrecognized name") {
			t.Errorf("routing %q: evil.test: %v, want an unrecognized_name alert", routing, err)
		}
	}

	cfg, l := listenerConfig(t, t.TempDir(), `tls:
  certificates:
    - {name: www, acme: {domains: [www.example.com], email: ops@example.com}}
sni_routing:
  - default: {action: serve, certificate: www, pool: web}`)
	addr := serve(t, newTerminator(t, cfg, l, Options{ACME: acme}))
	for _, c := range []*tls.Config{noSNI, {ServerName: "evil.test", InsecureSkipVerify: true}} {
		cs, err := dial(addr, c)
		if err != nil || cs.PeerCertificates[0].SerialNumber.Cmp(www.leaf.SerialNumber) != 0 {
			t.Errorf("default entry serving the ACME certificate, SNI %q: %v", c.ServerName, err)
		}
	}
}

// Update swaps the state; a config that does not load keeps the old one.
func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	a := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
	a.write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	term := newTerminator(t, cfg, l, Options{})
	addr := serve(t, term)
	if _, err := dial(addr, client(ca, "other.example.com")); err == nil || isAlert(err, "unrecognized name") {
		t.Fatalf("without sni_routing any name is served (and fails verification): %v", err)
	}

	b := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
	b.write(t, dir, "api2")
	cfg2, l2 := listenerConfig(t, dir, `tls:
  certificates: [{name: api, cert_file: api2.pem, key_file: api2-key.pem}]
sni_routing:
  - {sni: api.example.com, certificate: api}
  - default: {action: reject}`)
	bad := l2
	badTLS := *l2.TLS
	badTLS.Certificates = []config.Certificate{{Name: "api", CertFile: "gone.pem", KeyFile: "gone-key.pem"}}
	bad.TLS = &badTLS
	if err := term.Update(cfg2, bad); err == nil {
		t.Fatal("Update with a missing file succeeded")
	}
	if got := served(t, addr, client(ca, "api.example.com")); got.SerialNumber.Cmp(a.leaf.SerialNumber) != 0 {
		t.Fatal("failed Update changed the certificate")
	}
	if err := term.Update(cfg2, l2); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, client(ca, "api.example.com")); got.SerialNumber.Cmp(b.leaf.SerialNumber) != 0 {
		t.Error("Update did not change the certificate")
	}
	if _, err := dial(addr, client(ca, "other.example.com")); !isAlert(err, "unrecognized name") {
		t.Errorf("Update did not apply sni_routing: %v", err)
	}
}
