package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runWith is run with extra environment variables and stdin.
func runWith(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, rampartBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("rampart %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// newAdminToken makes a token with `rampart ctl token new` and checks that
// `rampart ctl token hash` gives the hash it printed.
func newAdminToken(t *testing.T) (token, hash string) {
	t.Helper()
	res := run(t, 10*time.Second, "ctl", "token", "new")
	token = strings.TrimSpace(res.stdout)
	hash, ok := strings.CutPrefix(strings.TrimSpace(res.stderr), "sha256: ")
	if res.code != 0 || len(token) < 40 || !ok || len(hash) != 64 {
		t.Fatalf("ctl token new: %s", res)
	}
	res = runWith(t, nil, token+"\n", "ctl", "token", "hash")
	if res.code != 0 || strings.TrimSpace(res.stdout) != hash {
		t.Fatalf("ctl token hash of the new token: %s\nwant %s", res, hash)
	}
	return token, hash
}

// TestAdminAuthE2E runs the real binary with admin tokens: ctl works with
// a token of the right role, and without one exits non-zero with the 401.
func TestAdminAuthE2E(t *testing.T) {
	t.Parallel()
	opsToken, opsHash := newAdminToken(t)
	viewToken, viewHash := newAdminToken(t)
	tokens := fmt.Sprintf("  tokens:\n    - {name: ops, sha256: %s, role: operator}\n    - {name: dashboard, sha256: %s, role: viewer}\n", opsHash, viewHash)

	var (
		p        *proc
		dir      string
		adminURL string
	)
	for attempt := 0; p == nil && attempt < 3; attempt++ {
		dir = t.TempDir()
		path, ports := writeQuickstart(t, dir)
		adminURL = fmt.Sprintf("http://127.0.0.1:%d", ports[9090])
		src, _ := os.ReadFile(path)
		adminLine := fmt.Sprintf("admin:\n  listen: 127.0.0.1:%d\n", ports[9090])
		if !strings.Contains(string(src), adminLine) {
			t.Fatalf("quickstart has no %q", adminLine)
		}
		writeFile(t, path, strings.Replace(string(src), adminLine, adminLine+tokens, 1))
		if res := run(t, 10*time.Second, "validate", "-c", path); res.code != 0 {
			t.Fatalf("validate with tokens: %s", res)
		}
		cand := startServe(t, "-c", path, "--demo-backends")
		// Ready when the admin API answers; without a token that is 401.
		ready := false
		deadline := time.Now().Add(15 * time.Second)
		for !ready && time.Now().Before(deadline) && !cand.exited() {
			if resp, err := client.Get(adminURL + "/api/v1/status"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("GET status without a token: %d, want 401", resp.StatusCode)
				}
				ready = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		switch {
		case ready:
			p = cand
		case cand.exited() && strings.Contains(cand.stderr.String(), "address already in use"):
			t.Logf("a port was taken during start-up; retrying with other ports")
		default:
			t.Fatalf("rampart with tokens not ready\n%s", cand.stderr.String())
		}
	}
	if p == nil {
		t.Fatal("could not start rampart on free ports")
	}
	ctl := func(env []string, args ...string) result {
		return runWith(t, env, "", append([]string{"ctl", "--admin", adminURL}, args...)...)
	}

	// Without a token: exit 1 and the 401 problem.
	res := ctl(nil, "status")
	if res.code == 0 || !strings.Contains(res.stderr, "rampart ctl: authentication required (HTTP 401): this admin API requires a bearer token") {
		t.Fatalf("ctl status without a token: want non-zero exit and the 401 message\n%s", res)
	}
	// A wrong token: 401, and the token is not repeated.
	res = ctl(nil, "--token", "wrong-"+opsToken[:20], "status")
	if res.code == 0 || !strings.Contains(res.stderr, "authentication failed (HTTP 401)") || strings.Contains(res.stderr, opsToken[:20]) {
		t.Fatalf("ctl status with a wrong token:\n%s", res)
	}
	// The viewer token reads but cannot quarantine.
	res = ctl(nil, "--token", viewToken, "status")
	if res.code != 0 || !json.Valid([]byte(res.stdout)) {
		t.Fatalf("ctl --token VIEWER status:\n%s", res)
	}
	res = ctl(nil, "--token", viewToken, "backend", "quarantine", "--pool", "web", "--backend", "web-2")
	if res.code == 0 || !strings.Contains(res.stderr, `forbidden (HTTP 403): token "dashboard" has role viewer`) {
		t.Fatalf("ctl quarantine with the viewer token:\n%s", res)
	}
	// The operator token, from the environment and from a file.
	res = ctl([]string{"RAMPART_ADMIN_TOKEN=" + opsToken}, "backend", "quarantine", "--pool", "web", "--backend", "web-2")
	if res.code != 0 {
		t.Fatalf("ctl quarantine with $RAMPART_ADMIN_TOKEN:\n%s", res)
	}
	tokenFile := filepath.Join(dir, "ops.token")
	if err := os.WriteFile(tokenFile, []byte(opsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = ctl(nil, "--token-file", tokenFile, "backend", "restore", "--pool", "web", "--backend", "web-2")
	if res.code != 0 {
		t.Fatalf("ctl restore with --token-file:\n%s", res)
	}

	// The trail names the token, never shows it; nor does the server log.
	// The viewer's refused quarantine is in it too (api.denied).
	ents := readAuditLog(t, filepath.Join(dir, "data", "audit", "audit.log"))
	if len(ents) != 3 || ents[0].Action != "api.denied" || ents[0].Result != "refused" || ents[0].Actor.ID != "dashboard" ||
		ents[1].Action != "backend.quarantine" || ents[2].Action != "backend.restore" {
		t.Fatalf("audit entries: %+v", ents)
	}
	for _, e := range ents[1:] {
		if e.Actor.Type != "api" || e.Actor.ID != "ops" || e.Actor.IP != "127.0.0.1" {
			t.Fatalf("audit actor %+v, want ops", e.Actor)
		}
	}
	trail, _ := os.ReadFile(filepath.Join(dir, "data", "audit", "audit.log"))
	if !bytes.Contains(trail, []byte(`"auth_method":"token"`)) {
		t.Fatalf("audit trail does not say the caller used a token:\n%s", trail)
	}
	for _, tok := range []string{opsToken, viewToken} {
		if bytes.Contains(trail, []byte(tok)) || strings.Contains(p.stderr.String(), tok) || strings.Contains(p.stdout.String(), tok) {
			t.Fatal("a token appears in the audit trail or the server's output")
		}
	}
}
