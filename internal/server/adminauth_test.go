package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/testcerts"
)

// adminAuthEnv is a started server whose admin section is written by the
// test, with a CA, the admin API's certificate (admin.pem, admin-key.pem)
// and the CA bundle (ca.pem) beside the config file.
type adminAuthEnv struct {
	t       *testing.T
	dir     string
	cfgPath string
	srv     *Server
	ca      *testcerts.CA
	backend *testBackend
}

func (e *adminAuthEnv) writeConfig(admin string) {
	e.t.Helper()
	src := fmt.Sprintf("data_dir: %q\nshutdown_timeout: 2s\nadmin:\n  listen: \"127.0.0.1:0\"\n%s", filepath.Join(e.dir, "data"), admin) +
		onePool("round_robin", "", e.backend)
	if err := os.WriteFile(e.cfgPath, []byte(src), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func startAdminAuth(t *testing.T, admin string) *adminAuthEnv {
	t.Helper()
	e := &adminAuthEnv{t: t, dir: t.TempDir(), ca: testcerts.NewCA(t, "rampart test CA"), backend: newTestBackend(t, "b1")}
	e.cfgPath = filepath.Join(e.dir, "rampart.yaml")
	c, k := e.ca.Server(t)
	testcerts.Write(t, e.dir, "admin.pem", c)
	testcerts.Write(t, e.dir, "admin-key.pem", k)
	testcerts.Write(t, e.dir, "ca.pem", e.ca.PEM)
	e.writeConfig(admin)
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if e.srv, err = New(cfg, testLogger()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	return e
}

// client returns a client that trusts the test CA, presenting certs.
func (e *adminAuthEnv) client(tc *tls.Config) *http.Client {
	if tc == nil {
		tc = &tls.Config{}
	}
	if tc.RootCAs == nil {
		tc.RootCAs = e.ca.Pool()
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: tc, DisableKeepAlives: true}
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// call sends method path to the admin API at scheme:// with an optional
// bearer token.
func (e *adminAuthEnv) call(c *http.Client, scheme, method, path, token string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, scheme+"://"+e.srv.AdminAddr()+path, nil)
	if err != nil {
		return nil, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body), nil
}

func (e *adminAuthEnv) lastAuditActor() audit.Actor {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dir, "data", "audit", "audit.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var en audit.Entry
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &en); err != nil {
		e.t.Fatal(err)
	}
	return en.Actor
}

func TestAdminAuthMTLSListener(t *testing.T) {
	e := startAdminAuth(t, "  tls:\n    cert_file: admin.pem\n    key_file: admin-key.pem\n    client_ca_file: ca.pem\n")
	alice := e.ca.ClientCert(t, "alice")

	// A client certificate from the CA: admin (the default client_role),
	// recorded by its CN.
	c := e.client(&tls.Config{Certificates: []tls.Certificate{alice}})
	resp, body, err := e.call(c, "https", "GET", "/api/v1/status", "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET status with a client certificate: %v %v %s", err, resp, body)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("TLS state %+v", resp.TLS)
	}
	resp, body, err = e.call(c, "https", "POST", "/api/v1/pools/p/backends/b1/quarantine", "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("quarantine with a client certificate: %v %v %s", err, resp, body)
	}
	if a := e.lastAuditActor(); a != (audit.Actor{Type: "api", ID: "alice", IP: "127.0.0.1", AuthMethod: "mtls"}) {
		t.Fatalf("audit actor %+v, want alice by mtls", a)
	}

	// No certificate, or one from another CA: the handshake fails.
	if resp, _, err := e.call(e.client(nil), "https", "GET", "/api/v1/status", ""); err == nil {
		t.Fatalf("without a client certificate: %d, want a handshake failure", resp.StatusCode)
	}
	other := testcerts.NewCA(t, "another CA").ClientCert(t, "mallory")
	if resp, _, err := e.call(e.client(&tls.Config{Certificates: []tls.Certificate{other}}), "https", "GET", "/api/v1/status", ""); err == nil {
		t.Fatalf("with a certificate from another CA: %d, want a handshake failure", resp.StatusCode)
	}
	// TLS 1.1 is refused, even with a good certificate.
	old := e.client(&tls.Config{Certificates: []tls.Certificate{alice}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if _, _, err := e.call(old, "https", "GET", "/api/v1/status", ""); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1 client: %v, want a protocol version alert", err)
	}
	// Plain HTTP gets nothing but the refusal.
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: testTimeout}
	if resp, body, err := e.call(plain, "http", "GET", "/api/v1/status", ""); err == nil && resp.StatusCode == 200 {
		t.Fatalf("plain HTTP to the TLS admin API: 200 %s", body)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestAdminAuthTokensOverTLSAndReload: tokens over TLS without client
// certificates; a reload revokes a token at once, and one that drops TLS
// (on loopback) serves new connections in plain HTTP.
func TestAdminAuthTokensOverTLSAndReload(t *testing.T) {
	const opsToken, ciToken = "ops-3f9a1c7e5b2d4f6a8c0e", "ci-7b5d3f1a9c8e6b4d2f0a"
	tokens := fmt.Sprintf("  tokens:\n    - {name: ops, sha256: %s, role: operator}\n    - {name: ci, sha256: %s, role: viewer}\n",
		sha256Hex(opsToken), sha256Hex(ciToken))
	tlsSection := "  tls: {cert_file: admin.pem, key_file: admin-key.pem}\n"
	e := startAdminAuth(t, tlsSection+tokens)
	c := e.client(nil)

	resp, body, err := e.call(c, "https", "POST", "/api/v1/pools/p/backends/b1/drain", opsToken)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("drain with the operator token: %v %v %s", err, resp, body)
	}
	if a := e.lastAuditActor(); a != (audit.Actor{Type: "api", ID: "ops", IP: "127.0.0.1", AuthMethod: "token"}) {
		t.Fatalf("audit actor %+v, want ops by token", a)
	}
	resp, body, err = e.call(c, "https", "POST", "/api/v1/pools/p/backends/b1/restore", ciToken)
	if err != nil || resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(body, `token \"ci\" has role viewer; POST /api/v1/pools/p/backends/b1/restore needs operator`) {
		t.Fatalf("restore with the viewer token: %v %v %s", err, resp, body)
	}
	resp, body, err = e.call(c, "https", "GET", "/metrics", "")
	if err != nil || resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="rampart-admin"` {
		t.Fatalf("metrics without a token: %v %v %s", err, resp, body)
	}

	// Revoke ops by reloading.
	e.writeConfig(tlsSection + fmt.Sprintf("  tokens:\n    - {name: ci, sha256: %s, role: viewer}\n", sha256Hex(ciToken)))
	if err := e.srv.Reload(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	if resp, body, err := e.call(c, "https", "GET", "/api/v1/status", opsToken); err != nil || resp.StatusCode != 401 {
		t.Fatalf("revoked token after reload: %v %v %s", err, resp, body)
	}
	if resp, body, err := e.call(c, "https", "GET", "/api/v1/status", ciToken); err != nil || resp.StatusCode != 200 {
		t.Fatalf("remaining token after reload: %v %v %s", err, resp, body)
	}

	// Drop TLS and tokens (allowed on loopback): new connections are plain.
	e.writeConfig("")
	if err := e.srv.Reload(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	plain := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: testTimeout}
	if resp, body, err := e.call(plain, "http", "GET", "/api/v1/status", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("plain HTTP after TLS was dropped: %v %v %s", err, resp, body)
	}
}
