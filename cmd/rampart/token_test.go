package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rampart-proxy/rampart/internal/testcerts"
)

func withStdin(t *testing.T, s string) {
	old := stdin
	stdin = strings.NewReader(s)
	t.Cleanup(func() { stdin = old })
}

func TestCtlTokenHash(t *testing.T) {
	const tok = "a-long-enough-token-0123456789"
	sum := sha256.Sum256([]byte(tok))
	want := hex.EncodeToString(sum[:]) + "\n"
	for _, in := range []string{tok, tok + "\n", tok + "\r\n", "  " + tok + "\n\n"} {
		withStdin(t, in)
		code, stdout, stderr := runCmd("ctl", "token", "hash")
		if code != 0 || stdout != want || stderr != "" {
			t.Errorf("token hash of %q: exit %d stdout %q stderr %q, want %q", in, code, stdout, stderr, want)
		}
	}
	withStdin(t, "short\n")
	if code, _, stderr := runCmd("ctl", "token", "hash"); code != 0 || !strings.Contains(stderr, "warning: a 5-character token can be guessed") {
		t.Errorf("short token: exit %d stderr %q", code, stderr)
	}
	for _, in := range []string{"", "\n", "two words\n", "tab\there"} {
		withStdin(t, in)
		if code, stdout, _ := runCmd("ctl", "token", "hash"); code != 1 || stdout != "" {
			t.Errorf("token hash of %q: exit %d stdout %q, want 1 and nothing", in, code, stdout)
		}
	}
}

func TestCtlTokenNew(t *testing.T) {
	code, stdout, stderr := runCmd("ctl", "token", "new")
	tok := strings.TrimSuffix(stdout, "\n")
	sum := sha256.Sum256([]byte(tok))
	if code != 0 || len(tok) != 43 || stderr != "sha256: "+hex.EncodeToString(sum[:])+"\n" {
		t.Fatalf("token new: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if _, again, _ := runCmd("ctl", "token", "new"); again == stdout {
		t.Fatal("token new printed the same token twice")
	}
}

// recorder is an admin API stand-in that remembers the Authorization
// header of each request.
type recorder struct {
	mu   sync.Mutex
	auth []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.auth = append(rec.auth, r.Header.Get("Authorization"))
	rec.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"ok": true}` + "\n"))
}

func (rec *recorder) last() string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.auth[len(rec.auth)-1]
}

func TestCtlSendsTheToken(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	const tok = "ctl-token-5e7a9c1b3d"
	file := testcerts.Write(t, t.TempDir(), "token", []byte(tok+"\n"))
	t.Setenv("RAMPART_ADMIN_TOKEN", "")
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no token", nil, "", ""},
		{"--token", []string{"--token", tok}, "", "Bearer " + tok},
		{"--token-file", []string{"--token-file", file}, "", "Bearer " + tok},
		{"$RAMPART_ADMIN_TOKEN", nil, tok, "Bearer " + tok},
		{"--token-file over the environment", []string{"--token-file", file}, "other", "Bearer " + tok},
	} {
		t.Setenv("RAMPART_ADMIN_TOKEN", tc.env)
		args := append(append([]string{"ctl", "--admin", srv.URL}, tc.args...), "status")
		code, stdout, stderr := runCmd(args...)
		if code != 0 || rec.last() != tc.want {
			t.Errorf("%s: exit %d, Authorization %q, want %q\n%s", tc.name, code, rec.last(), tc.want, stderr)
		}
		if strings.Contains(stdout+stderr, tok) {
			t.Errorf("%s: the token was printed", tc.name)
		}
	}
}

func TestCtlRefusesTokenInClear(t *testing.T) {
	t.Setenv("RAMPART_ADMIN_TOKEN", "")
	// 192.0.2.0/24 is TEST-NET-1: nothing is contacted, the refusal comes first.
	code, _, stderr := runCmd("ctl", "--admin", "http://192.0.2.1:9090", "--token", "tok-0123456789", "status")
	if code != 2 || !strings.Contains(stderr, "refusing to send a token in clear to 192.0.2.1:9090: use an https:// admin URL") {
		t.Fatalf("token over plain HTTP beyond loopback: exit %d %q", code, stderr)
	}
	code, _, stderr = runCmd("ctl", "--admin", "http://127.0.0.1:9", "--cert", "c.pem", "status")
	if code != 2 || !strings.Contains(stderr, "--cacert, --cert and --key need an https:// admin URL") {
		t.Fatalf("--cert with http: exit %d %q", code, stderr)
	}
	code, _, stderr = runCmd("ctl", "--admin", "https://127.0.0.1:9", "--cert", "c.pem", "status")
	if code != 2 || !strings.Contains(stderr, "--cert and --key go together") {
		t.Fatalf("--cert without --key: exit %d %q", code, stderr)
	}
}

func TestCtlMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "ctl test CA")
	sc, sk := ca.Server(t)
	serverCert, err := tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	cc, ck := ca.Issue(t, testcerts.Leaf{CN: "ctl-user", Client: true})
	caFile := testcerts.Write(t, dir, "ca.pem", ca.PEM)
	certFile := testcerts.Write(t, dir, "client.pem", cc)
	keyFile := testcerts.Write(t, dir, "client-key.pem", ck)

	var mu sync.Mutex
	var seen string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.TLS.PeerCertificates[0].Subject.CommonName
		mu.Unlock()
		w.Write([]byte("{}\n"))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	defer srv.Close()

	code, _, stderr := runCmd("ctl", "--admin", srv.URL, "--cacert", caFile, "--cert", certFile, "--key", keyFile, "status")
	mu.Lock()
	got := seen
	mu.Unlock()
	if code != 0 || got != "ctl-user" {
		t.Fatalf("ctl with a client certificate: exit %d, server saw %q\n%s", code, got, stderr)
	}
	if code, _, stderr := runCmd("ctl", "--admin", srv.URL, "--cacert", caFile, "status"); code != 1 || !strings.Contains(stderr, "cannot reach the admin API") {
		t.Fatalf("ctl without a client certificate: exit %d %q", code, stderr)
	}
	if code, _, _ := runCmd("ctl", "--admin", srv.URL, "--cacert", filepath.Join(dir, "missing.pem"), "status"); code != 2 {
		t.Fatalf("missing --cacert file: exit %d, want 2", code)
	}
}
