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
