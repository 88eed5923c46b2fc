package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/testcerts"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// adminFiles writes a CA, a server certificate and key it signed, and a
// second key that matches nothing into a temp directory, which it returns.
func adminFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "admin test CA")
	c, k := ca.Server(t)
	_, otherKey := ca.Server(t)
	testcerts.Write(t, dir, "admin.pem", c)
	testcerts.Write(t, dir, "admin-key.pem", k)
	testcerts.Write(t, dir, "other-key.pem", otherKey)
	testcerts.Write(t, dir, "ca.pem", ca.PEM)
	testcerts.Write(t, dir, "junk.pem", []byte("not a certificate\n"))
	// Opening a FIFO blocks until someone writes: the loader must not.
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// parseAdmin parses an admin section (starting on line 1) followed by the
// minimal valid rest, in dir.
func parseAdmin(dir, admin string) (*Config, error) {
	return Parse(filepath.Join(dir, "rampart.yaml"), []byte(admin+valid))
}

func TestAdminAuthConfigAccepted(t *testing.T) {
	dir := adminFiles(t)
	for _, tc := range []struct{ name, admin string }{
		{"loopback without authentication", "admin:\n  listen: 127.0.0.1:9090\n"},
		{"localhost without authentication", "admin:\n  listen: localhost:9090\n"},
		{"IPv6 loopback without authentication", "admin:\n  listen: \"[::1]:9090\"\n"},
		{"tokens on loopback without TLS", "admin:\n  listen: 127.0.0.1:9090\n  tokens:\n    - {name: ops, sha256: " + sha("t1") + ", role: operator}\n"},
		{"tokens beyond loopback with TLS", "admin:\n  listen: 0.0.0.0:9443\n  tls: {cert_file: admin.pem, key_file: admin-key.pem}\n  tokens:\n    - {name: ops, sha256: " + sha("t1") + ", role: operator}\n"},
		{"mTLS beyond loopback", "admin:\n  listen: 10.1.2.3:9443\n  tls: {cert_file: admin.pem, key_file: admin-key.pem, client_ca_file: ca.pem}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseAdmin(dir, tc.admin); err != nil {
				t.Fatalf("refused:\n%v", err)
			}
		})
	}
}

func TestAdminAuthConfigDefaultsAndLoading(t *testing.T) {
	dir := adminFiles(t)
	cfg, err := parseAdmin(dir, doc(`
admin:
  listen: 0.0.0.0:9443
  tls:
    cert_file: admin.pem
    key_file: admin-key.pem
    client_ca_file: ca.pem
  tokens:
    - {name: ops, sha256: `+strings.ToUpper(sha("t1"))+`, role: operator}
    - {name: ci.deploy@example, sha256: `+sha("t2")+`, role: viewer}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Admin
	if a.AuthFailures != (AuthFailures{Max: 10, Window: Duration(time.Minute), Block: Duration(5 * time.Minute)}) {
		t.Errorf("auth_failures defaults %+v", a.AuthFailures)
	}
	if a.TLS.ClientRole != "admin" || !a.MTLS() {
		t.Errorf("client_role default %q, MTLS %v", a.TLS.ClientRole, a.MTLS())
	}
	if a.TLS.Certificate() == nil || a.TLS.Certificate().Leaf == nil || a.TLS.ClientCAs() == nil {
		t.Error("TLS material not loaded by validation")
	}
	if len(a.Tokens) != 2 || a.Tokens[1].Name != "ci.deploy@example" || a.Tokens[1].Role != "viewer" {
		t.Errorf("tokens %+v", a.Tokens)
	}

	cfg, err = parseAdmin(dir, "admin:\n  auth_failures: {max: 3, window: 10s, block: 1h}\n")
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Admin.AuthFailures; f != (AuthFailures{Max: 3, Window: Duration(10 * time.Second), Block: Duration(time.Hour)}) {
		t.Errorf("auth_failures %+v", f)
	}
	if cfg.Admin.TLS != nil || cfg.Admin.MTLS() {
		t.Error("TLS without admin.tls")
	}
}

func TestAdminAuthConfigMistakes(t *testing.T) {
	dir := adminFiles(t)
	tok := func(name, hash, role string) string {
		return "    - name: " + name + "\n      sha256: \"" + hash + "\"\n      role: " + role + "\n"
	}
	cases := []struct {
		name, admin string
		line        int
		msg         string
	}{
		{"non-loopback without authentication", "admin:\n  listen: 0.0.0.0:9090\n",
			2, `admin.listen "0.0.0.0:9090" is not a loopback address; beyond loopback the admin API needs authentication: configure admin.tls.client_ca_file (mTLS) or admin.tokens (with admin.tls), or listen on 127.0.0.1 or ::1`},
		{"non-loopback with TLS but neither mTLS nor tokens", "admin:\n  listen: 192.0.2.7:9443\n  tls: {cert_file: admin.pem, key_file: admin-key.pem}\n",
			2, `admin.listen "192.0.2.7:9443" is not a loopback address; beyond loopback the admin API needs authentication`},
		{"tokens beyond loopback without TLS", "admin:\n  listen: 0.0.0.0:9090\n  tokens:\n" + tok("ops", sha("t"), "operator"),
			3, `admin.listen "0.0.0.0:9090" is not a loopback address and admin.tls is not set: bearer tokens would cross the network in clear; configure admin.tls (cert_file, key_file)`},
		{"hash too short", "admin:\n  tokens:\n" + tok("ops", sha("t")[:63], "operator"),
			4, `admin token "ops": sha256 must be 64 hex digits: the SHA-256 of the token, never the token itself (make it with: rampart ctl token hash < TOKEN_FILE)`},
		{"hash not hex", "admin:\n  tokens:\n" + tok("ops", "g"+sha("t")[1:], "operator"),
			4, `admin token "ops": sha256 must be 64 hex digits`},
		{"raw token instead of a hash", "admin:\n  tokens:\n" + tok("ops", "my-secret-token", "operator"),
			4, `admin token "ops": sha256 must be 64 hex digits`},
		{"hash of the empty token", "admin:\n  tokens:\n" + tok("ops", sha(""), "operator"),
			4, `admin token "ops": sha256 is the hash of an empty token`},
		{"no hash", "admin:\n  tokens:\n    - {name: ops, role: operator}\n",
			3, `admin token "ops" has no sha256 (make it with: rampart ctl token hash < TOKEN_FILE)`},
		{"unknown role", "admin:\n  tokens:\n" + tok("ops", sha("t"), "superuser"),
			5, `admin token "ops": unknown role "superuser" (viewer, operator or admin)`},
		{"no role", "admin:\n  tokens:\n    - {name: ops, sha256: " + sha("t") + "}\n",
			3, `admin token "ops" has no role (viewer, operator or admin)`},
		{"duplicate names", "admin:\n  tokens:\n" + tok("ops", sha("t1"), "operator") + tok("ops", sha("t2"), "viewer"),
			6, `duplicate admin token name "ops"`},
		{"duplicate hashes", "admin:\n  tokens:\n" + tok("ops", sha("t1"), "operator") + tok("ci", strings.ToUpper(sha("t1")), "viewer"),
			7, `admin token "ci" has the same sha256 as token "ops": every token must be different`},
		{"no name", "admin:\n  tokens:\n    - {sha256: " + sha("t") + ", role: viewer}\n",
			3, `admin token has no name (it names the caller in the audit trail)`},
		{"bad name", "admin:\n  tokens:\n" + tok("\"ops team\"", sha("t"), "viewer"),
			3, `admin token name "ops team": use 1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit`},
		{"unknown key in a token", "admin:\n  tokens:\n    - name: ops\n      sha256: " + sha("t") + "\n      role: viewer\n      expires: never\n",
			6, `unknown key "expires" in an admin token (check the spelling; see DESIGN §3)`},
		{"missing cert file", "admin:\n  tls:\n    cert_file: nope.pem\n    key_file: admin-key.pem\n",
			3, `admin.tls.cert_file: cannot read "` + filepath.Join(dir, "nope.pem") + `": no such file or directory`},
		{"missing key file", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: nope-key.pem\n",
			4, `admin.tls.key_file: cannot read "` + filepath.Join(dir, "nope-key.pem") + `": no such file or directory`},
		{"cert file not PEM", "admin:\n  tls:\n    cert_file: junk.pem\n    key_file: admin-key.pem\n",
			3, `admin.tls.cert_file "junk.pem": holds no PEM CERTIFICATE block`},
		{"key that does not match", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: other-key.pem\n",
			4, `admin.tls.key_file "other-key.pem": the private key does not match the certificate in cert_file`},
		{"key file that is a certificate", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: admin.pem\n",
			4, `admin.tls.key_file "admin.pem": found a certificate rather than a key in the PEM for the private key`},
		{"cert file is a directory", "admin:\n  tls:\n    cert_file: .\n    key_file: admin-key.pem\n",
			3, `admin.tls.cert_file: "` + dir + `" is not a regular file`},
		{"cert file is a device", "admin:\n  tls:\n    cert_file: /dev/zero\n    key_file: admin-key.pem\n",
			3, `admin.tls.cert_file: "/dev/zero" is not a regular file`},
		{"client CA is a FIFO", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: admin-key.pem\n    client_ca_file: fifo.pem\n",
			5, `admin.tls.client_ca_file: "` + filepath.Join(dir, "fifo.pem") + `" is not a regular file`},
		{"missing client CA", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: admin-key.pem\n    client_ca_file: nope-ca.pem\n",
			5, `admin.tls.client_ca_file: cannot read "` + filepath.Join(dir, "nope-ca.pem") + `": no such file or directory`},
		{"client CA not PEM", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: admin-key.pem\n    client_ca_file: junk.pem\n",
			5, `admin.tls.client_ca_file "junk.pem" holds no PEM certificate (expected the CA bundle client certificates are issued by)`},
		{"tls without key_file", "admin:\n  tls:\n    cert_file: admin.pem\n",
			2, `admin.tls needs cert_file and key_file (the admin API's certificate and its private key, PEM)`},
		{"client_role without client CA", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: admin-key.pem\n    client_role: viewer\n",
			5, `admin.tls.client_role is the role of client certificates: set admin.tls.client_ca_file too, or remove it`},
		{"unknown client_role", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: admin-key.pem\n    client_ca_file: ca.pem\n    client_role: root\n",
			6, `admin.tls.client_role: unknown role "root" (viewer, operator or admin)`},
		{"unknown key in admin.tls", "admin:\n  tls:\n    cert_file: admin.pem\n    key_file: admin-key.pem\n    ca_file: ca.pem\n",
			5, `unknown key "ca_file" in admin.tls (check the spelling; see DESIGN §3)`},
		{"tokens not a list", "admin:\n  tokens: abc\n",
			2, "wrong type: a string `abc` where a list of admin tokens is expected"},
		{"negative max", "admin:\n  auth_failures:\n    max: -1\n",
			3, `admin.auth_failures.max must be 1 or more (default 10)`},
		{"window without unit", "admin:\n  auth_failures:\n    window: 60\n",
			3, `invalid duration "60" (use a unit, e.g. 5s, 500ms, 1h)`},
		{"unknown key in auth_failures", "admin:\n  auth_failures:\n    limit: 5\n",
			3, `unknown key "limit" in admin.auth_failures (check the spelling; see DESIGN §3)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseAdmin(dir, tc.admin)
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != tc.line || !strings.HasPrefix(ps[0].Msg, tc.msg) {
				t.Fatalf("Parse:\n%v\nwant exactly one problem:\n%s:%d: %s...", err, filepath.Join(dir, "rampart.yaml"), tc.line, tc.msg)
			}
		})
	}
}
