package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// auditEntry is the part of an audit line the tests look at.
type auditEntry struct {
	Seq      uint64 `json:"seq"`
	EventID  string `json:"event_id"`
	Action   string `json:"action"`
	Result   string `json:"result"`
	Actor    struct{ Type, ID, IP string }
	Resource struct{ Type, ID, Pool string }
	Changes  struct {
		Before struct{ State string } `json:"before"`
		After  struct{ State string } `json:"after"`
	} `json:"changes"`
}

func readAuditLog(t *testing.T, path string) []auditEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditEntry
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var e auditEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("audit line is not JSON: %v\n%s", err, l)
		}
		out = append(out, e)
	}
	return out
}

// post sends an admin POST and returns the status once the answer is in.
func post(t *testing.T, url string) int {
	t.Helper()
	resp, err := client.Post(url, "application/json", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAuditEntrySurvivesKill9: an admin action acknowledged with a 2xx is
// in the signed trail even if the process is killed the moment the answer
// arrives, and `rampart audit verify` proves the trail intact.
func TestAuditEntrySurvivesKill9(t *testing.T) {
	t.Parallel()
	inst := quickstart(t)
	logPath := filepath.Join(inst.dir, "data", "audit", "audit.log")

	if code := post(t, inst.adminURL+"/api/v1/pools/web/backends/web-2/quarantine"); code != http.StatusOK {
		t.Fatalf("quarantine: status %d", code)
	}
	inst.kill() // SIGKILL right after the 2xx: nothing gets a chance to flush

	res := run(t, 10*time.Second, "audit", "pubkey", "-c", inst.cfgPath)
	pub := strings.TrimSpace(res.stdout)
	if res.code != 0 || len(pub) != 44 {
		t.Fatalf("rampart audit pubkey: %s", res)
	}
	res = run(t, 10*time.Second, "audit", "verify", logPath, "--pubkey", pub)
	if res.code != 0 || !strings.HasPrefix(res.stdout, logPath+": OK: 1 entries") {
		t.Fatalf("rampart audit verify after kill -9: %s", res)
	}
	ents := readAuditLog(t, logPath)
	e := ents[0]
	if len(ents) != 1 || e.Seq != 1 || e.Action != "backend.quarantine" || e.Result != "success" ||
		e.Actor.Type != "api" || e.Actor.IP != "127.0.0.1" || e.Resource.ID != "web-2" || e.Resource.Pool != "web" ||
		e.Changes.Before.State != "active" || e.Changes.After.State != "quarantined" {
		t.Fatalf("audit log after kill -9: %+v", ents)
	}
	if !strings.Contains(res.stdout, "event_id "+e.EventID) {
		t.Fatalf("verify does not name the last entry %s:\n%s", e.EventID, res.stdout)
	}

	// The restarted process continues the same chain with the same key,
	// serves it on GET /api/v1/audit, and records a SIGHUP reload as a
	// system action.
	if !inst.start() {
		t.Fatal("restart on the same ports failed: a port was taken")
	}
	if code := post(t, inst.adminURL+"/api/v1/pools/web/backends/web-2/restore"); code != http.StatusOK {
		t.Fatalf("restore: status %d", code)
	}
	inst.signal(syscall.SIGHUP)
	var page struct {
		Entries   []auditEntry `json:"entries"`
		PublicKey string       `json:"public_key"`
	}
	eventually(t, 10*time.Second, "the SIGHUP reload in GET /api/v1/audit", func() bool {
		resp, err := client.Get(inst.adminURL + "/api/v1/audit?order=desc&limit=10")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		page.Entries = nil
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&page) == nil &&
			len(page.Entries) == 3 && page.Entries[0].Action == "config.reload"
	})
	if page.PublicKey != pub || page.Entries[0].Actor.Type != "system" || page.Entries[0].Actor.ID != "sighup" ||
		page.Entries[1].Action != "backend.restore" || page.Entries[1].Changes.After.State != "active" ||
		page.Entries[2].EventID != e.EventID {
		t.Fatalf("GET /api/v1/audit: %+v", page)
	}
	inst.kill()
	res = run(t, 10*time.Second, "audit", "verify", logPath, "--pubkey", pub)
	if res.code != 0 || !strings.HasPrefix(res.stdout, logPath+": OK: 3 entries") {
		t.Fatalf("rampart audit verify after restart and a second kill -9: %s", res)
	}

	// Cutting the last entry off is caught through the checkpoint.
	data, _ := os.ReadFile(logPath)
	lines := strings.SplitAfter(string(data), "\n")
	if err := os.WriteFile(logPath, []byte(strings.Join(lines[:2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	res = run(t, 10*time.Second, "audit", "verify", logPath, "--pubkey", pub)
	if res.code != 1 || !strings.Contains(res.stderr, ": INVALID: line 3 (event_id "+page.Entries[0].EventID+"): missing") {
		t.Fatalf("verify of a trail with its tail cut: want exit 1 naming line 3\n%s", res)
	}
	// ...and a process refuses to start on it rather than erase the evidence.
	res = run(t, 20*time.Second, "serve", "-c", inst.cfgPath)
	if res.code != 1 || !strings.Contains(res.stderr, "entries were cut off the end; refusing to start") {
		t.Fatalf("serve on a cut trail: want exit 1 and a refusal\n%s", res)
	}
}
