package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/config"
)

func TestAuditTrailOpenedInDataDir(t *testing.T) {
	a := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", a))
	logPath := filepath.Join(e.dir, "data", "audit", "audit.log")
	if e.srv.Audit() == nil || e.srv.Audit().Path() != logPath {
		t.Fatalf("audit trail not opened at %s", logPath)
	}
	if fi, err := os.Stat(filepath.Join(e.dir, "data", "audit", "audit.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key: %v %v", fi, err)
	}
}

func TestReloadRefusesAuditLogChange(t *testing.T) {
	a := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", a))
	err := e.reload(onePool("round_robin", "", a) + "logging:\n  audit_log: {path: other.log}\n")
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 1 || !strings.Contains(ps[0].Msg, "logging.audit_log cannot change on reload") {
		t.Fatalf("reload moving the audit log: %v", err)
	}
	if r := e.get("/"); r.status != 200 {
		t.Fatalf("after the refused reload: status %d", r.status)
	}
}

// A reload that moves the admin API is refused at the admin.listen line,
// naming that setting (it named data_dir's line for both).
func TestReloadRefusesAdminListenChange(t *testing.T) {
	a := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", a))
	body := strings.Replace(configHeader(e.dir), `admin: {listen: "127.0.0.1:0"}`, "admin:\n  listen: \"127.0.0.1:1\"", 1) + onePool("round_robin", "", a)
	if err := os.WriteFile(e.cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	err := e.srv.Reload(e.cfgPath)
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != 3 || !strings.Contains(ps[0].Msg, "admin.listen cannot change on reload") {
		t.Fatalf("reload moving the admin API: %v, want one problem at line 3 about admin.listen", err)
	}
}

// h2c on a running listener changes only at a restart: the status says
// what runs, not what the reloaded file asks for.
func TestStatusH2CAfterReload(t *testing.T) {
	a := newTestBackend(t, "a")
	base := onePool("round_robin", "", a)
	e := startEnv(t, base)
	on := strings.Replace(base, `{name: web, listen: "127.0.0.1:0"}`, `{name: web, listen: "127.0.0.1:0", h2c: true}`, 1)
	if on == base {
		t.Fatal("config template changed; fix the test")
	}
	addr := e.srv.Addr("web")
	if err := e.reload(on); err != nil { // the same listen: key keeps the socket
		t.Fatal(err)
	}
	st := e.srv.Status()
	if len(st.Listeners) != 1 || st.Listeners[0].Address != addr || st.Listeners[0].H2C {
		t.Fatalf("status after a reload asking for h2c: %+v, want h2c false until a restart", st.Listeners)
	}
}
