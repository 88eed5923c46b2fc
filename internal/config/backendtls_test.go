package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

// backendTLSFiles writes the files of the backend_tls tests into a temp
// directory: ca.pem (root), ca-inter.pem (root and intermediate), Rampart's
// client certificate and key, a key that matches nothing, a server-only
// certificate, an expired client certificate, and CRLs: current, from
// another CA, stale, and junk.
func backendTLSFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := testcerts.NewCA(t, "internal root")
	inter := root.Intermediate(t, "internal backends")
	other := testcerts.NewCA(t, "someone else")
	w := func(name string, data []byte) { testcerts.Write(t, dir, name, data) }
	w("ca.pem", root.PEM)
	w("ca-inter.pem", append(append([]byte{}, root.PEM...), inter.PEM...))
	c, k := root.Issue(t, testcerts.Leaf{CN: "rampart-lb", Client: true})
	w("client.pem", c)
	w("client-key.pem", k)
	_, otherKey := root.Issue(t, testcerts.Leaf{CN: "x", Client: true})
	w("other-key.pem", otherKey)
	sc, sk := root.Issue(t, testcerts.Leaf{CN: "server-only", DNS: []string{"a.example.com"}})
	w("server.pem", sc)
	w("server-key.pem", sk)
	ec, ek := expiredClientCert(t, root)
	w("expired.pem", ec)
	w("expired-key.pem", ek)
	w("inter.crl", inter.CRL(t))
	w("root.crl", root.CRL(t))
	w("other.crl", other.CRL(t))
	w("stale.crl", inter.CRLValid(t, time.Now().Add(-time.Hour)))
	w("junk.crl", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	w("junk.pem", []byte("not a certificate\n"))
	return dir
}

func expiredClientCert(t *testing.T, ca *testcerts.CA) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "old-lb"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// backendTLSDoc is a valid config whose pool has the backend_tls block
// made of lines (each indented under it): "backend_tls:" is on line 9, the
// first of lines on line 10.
func backendTLSDoc(lines ...string) string {
	var sb strings.Builder
	sb.WriteString(`listeners:
  - {name: public, listen: ":8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
    backend_tls:
`)
	for _, l := range lines {
		sb.WriteString("      " + l + "\n")
	}
	return sb.String()
}

func parseBackendTLS(t *testing.T, dir string, lines ...string) (*BackendTLS, error) {
	t.Helper()
	cfg, err := Parse(filepath.Join(dir, "rampart.yaml"), []byte(backendTLSDoc(lines...)))
	if err != nil {
		return nil, err
	}
	return cfg.Pools[0].BackendTLS, nil
}

func TestBackendTLSConfigDefaultsAndLoading(t *testing.T) {
	dir := backendTLSFiles(t)

	b, err := parseBackendTLS(t, dir, "ca_certificate: ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	m := b.Material()
	if !b.On() || !b.Verifies() || b.MinVersion != "TLSv1.2" || m == nil || m.Roots == nil || m.MinVersion != tls.VersionTLS12 || m.ClientCert != nil || m.CRLs != nil {
		t.Fatalf("defaults: %+v, material %+v", b, m)
	}

	b, err = parseBackendTLS(t, dir,
		"enabled: true",
		"verify_certificate: true",
		"ca_certificate: ca-inter.pem",
		"client_certificate: client.pem",
		"client_key: client-key.pem",
		"sni_hostname: backend.internal.example.com",
		"min_version: TLSv1.3",
		`allowed_sans: ["*.api.internal.example.com", "b1.internal.example.com", "10.0.0.7", "::1"]`,
		"crl_file: inter.crl")
	if err != nil {
		t.Fatal(err)
	}
	m = b.Material()
	if m == nil || m.ClientCert == nil || m.ClientCert.Leaf.Subject.CommonName != "rampart-lb" || len(m.CRLs) != 1 || m.MinVersion != tls.VersionTLS13 {
		t.Fatalf("full block: material %+v", m)
	}

	// A file holding several CRLs (PEM blocks) loads them all.
	multi := string(readFile(t, filepath.Join(dir, "inter.crl"))) + string(readFile(t, filepath.Join(dir, "root.crl")))
	testcerts.Write(t, dir, "both.crl", []byte(multi))
	b, err = parseBackendTLS(t, dir, "ca_certificate: ca-inter.pem", "crl_file: both.crl")
	if err != nil || len(b.Material().CRLs) != 2 {
		t.Fatalf("two CRLs: %v", err)
	}

	// Disabled: nothing is loaded and nothing applies.
	b, err = parseBackendTLS(t, dir, "enabled: false", "ca_certificate: missing.pem")
	if err != nil || b.Material() != nil {
		t.Fatalf("disabled block: %v, material %v", err, b.Material())
	}
	// Encryption without verification needs no CA.
	b, err = parseBackendTLS(t, dir, "verify_certificate: false")
	if err != nil || b.Material() == nil || b.Material().Roots != nil {
		t.Fatalf("verify_certificate false: %v", err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := readPEMFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fingerprint follows settings and file contents, so a reload knows
// when pooled connections were made under other settings.
func TestBackendTLSConfigFingerprint(t *testing.T) {
	dir := backendTLSFiles(t)
	lines := []string{"ca_certificate: ca-inter.pem", "crl_file: current.crl"}
	testcerts.Write(t, dir, "current.crl", readFile(t, filepath.Join(dir, "inter.crl")))
	fp := func(extra ...string) [32]byte {
		t.Helper()
		b, err := parseBackendTLS(t, dir, append(append([]string{}, lines...), extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		return b.Material().Fingerprint
	}
	a := fp()
	if fp() != a {
		t.Fatal("same file, different fingerprints")
	}
	if fp("sni_hostname: x.example.com") == a {
		t.Error("sni_hostname change kept the fingerprint")
	}
	testcerts.Write(t, dir, "current.crl", readFile(t, filepath.Join(dir, "root.crl")))
	if fp() == a {
		t.Error("new CRL content kept the fingerprint")
	}
}

func TestBackendTLSConfigMistakes(t *testing.T) {
	dir := backendTLSFiles(t)
	const first = 10 // line of the block's first key
	cases := []struct {
		name  string
		lines []string
		line  int
		msg   string
	}{
		{"unknown min_version", []string{"ca_certificate: ca.pem", "min_version: TLSv1.4"},
			first + 1, `pool "web": backend_tls.min_version "TLSv1.4" is not a TLS version (use TLSv1.2 or TLSv1.3)`},
		{"TLS 1.1", []string{"ca_certificate: ca.pem", "min_version: TLSv1.1"},
			first + 1, `pool "web": backend_tls.min_version TLSv1.1 is refused: TLS 1.0 and 1.1 are broken (use TLSv1.2 or TLSv1.3)`},
		{"verification without ca_certificate", []string{"enabled: true"},
			first - 1, `pool "web": backend_tls.verify_certificate is on but ca_certificate is not set`},
		{"missing CA file", []string{"ca_certificate: nope.pem"},
			first, `pool "web": backend_tls.ca_certificate: cannot read "` + filepath.Join(dir, "nope.pem") + `": no such file or directory`},
		{"CA file not PEM", []string{"ca_certificate: junk.pem"},
			first, `pool "web": backend_tls.ca_certificate "junk.pem": holds no PEM certificate`},
		{"client certificate without key", []string{"ca_certificate: ca.pem", "client_certificate: client.pem"},
			first - 1, `pool "web": backend_tls.client_certificate and client_key go together`},
		{"missing client certificate", []string{"ca_certificate: ca.pem", "client_certificate: nope.pem", "client_key: client-key.pem"},
			first + 1, `pool "web": backend_tls.client_certificate: cannot read`},
		{"client key that does not match", []string{"ca_certificate: ca.pem", "client_certificate: client.pem", "client_key: other-key.pem"},
			first + 2, `pool "web": backend_tls.client_key "other-key.pem": the private key does not match the certificate in client_certificate`},
		{"server certificate as client certificate", []string{"ca_certificate: ca.pem", "client_certificate: server.pem", "client_key: server-key.pem"},
			first + 1, `pool "web": backend_tls.client_certificate "server.pem" is not valid for client authentication`},
		{"expired client certificate", []string{"ca_certificate: ca.pem", "client_certificate: expired.pem", "client_key: expired-key.pem"},
			first + 1, `pool "web": backend_tls.client_certificate "expired.pem" expired on`},
		{"CRL that does not parse", []string{"ca_certificate: ca.pem", "crl_file: junk.crl"},
			first + 1, `pool "web": backend_tls.crl_file "junk.crl": CRL 1 does not parse`},
		{"CRL file without a CRL", []string{"ca_certificate: ca.pem", "crl_file: ca.pem"},
			first + 1, `pool "web": backend_tls.crl_file "ca.pem": holds no PEM "X509 CRL" block`},
		{"CRL of another CA", []string{"ca_certificate: ca.pem", "crl_file: other.crl"},
			first + 1, `pool "web": backend_tls.crl_file "other.crl": CRL 1 (issuer "CN=someone else") is not signed by a certificate in ca_certificate`},
		{"CRL of an intermediate not in ca_certificate", []string{"ca_certificate: ca.pem", "crl_file: inter.crl"},
			first + 1, `pool "web": backend_tls.crl_file "inter.crl": CRL 1 (issuer "CN=internal backends") is not signed by a certificate in ca_certificate (a CRL of an intermediate CA needs that intermediate in ca_certificate)`},
		{"stale CRL", []string{"ca_certificate: ca-inter.pem", "crl_file: stale.crl"},
			first + 1, `pool "web": backend_tls.crl_file "stale.crl": CRL 1 (issuer "CN=internal backends") is stale`},
		{"missing CRL file", []string{"ca_certificate: ca.pem", "crl_file: nope.crl"},
			first + 1, `pool "web": backend_tls.crl_file "nope.crl": cannot read`},
		{"bad allowed_sans entry", []string{"ca_certificate: ca.pem", "allowed_sans:", `  - "*.*.example.com"`},
			first + 2, `pool "web": backend_tls.allowed_sans: "*.*.example.com" is not a DNS name, a one-label wildcard`},
		{"IP address as sni_hostname", []string{"ca_certificate: ca.pem", "sni_hostname: 10.0.0.1"},
			first + 1, `pool "web": backend_tls.sni_hostname "10.0.0.1" must be a host name (no IP address, port or wildcard)`},
		{"wildcard sni_hostname", []string{"ca_certificate: ca.pem", `sni_hostname: "*.example.com"`},
			first + 1, `pool "web": backend_tls.sni_hostname "*.example.com" must be a host name`},
		{"allowed_sans without verification", []string{"verify_certificate: false", "allowed_sans: [a.example.com]"},
			first + 1, `pool "web": backend_tls.allowed_sans has no effect with verify_certificate: false`},
		{"crl_file without verification", []string{"verify_certificate: false", "crl_file: inter.crl"},
			first + 1, `pool "web": backend_tls.crl_file has no effect with verify_certificate: false`},
		{"unknown key", []string{"ca_certificate: ca.pem", "ca_file: ca.pem"},
			first + 1, `unknown key "ca_file" in backend_tls (check the spelling; see DESIGN §3)`},
		{"verify_certificate not a boolean", []string{"ca_certificate: ca.pem", "verify_certificate: maybe"},
			first + 1, "wrong type: a string `maybe` where true/false is expected"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseBackendTLS(t, dir, tc.lines...)
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != tc.line || !strings.HasPrefix(ps[0].Msg, tc.msg) {
				t.Fatalf("Parse:\n%v\nwant exactly one problem:\n%s:%d: %s...", err, filepath.Join(dir, "rampart.yaml"), tc.line, tc.msg)
			}
		})
	}
}
