package server

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// A quarantine follows the host: the same address under another id (the
// backend renamed in the file and reloaded, or registered anew through the
// API) stays out of rotation, until a restore, which restores the host
// under every id.
func TestQuarantineFollowsTheAddress(t *testing.T) {
	a := newTestBackend(t, "a")
	b := newTestBackend(t, "b")
	pool := func(aID string) string {
		return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    backends: [{id: %s, address: %q}, {id: b, address: %q}]
`, aID, a.addr(), b.addr())
	}
	e := startEnv(t, pool("a"))
	if _, err := e.srv.Registry().Quarantine("p", "a"); err != nil {
		t.Fatal(err)
	}
	// Renamed in the file: a-renamed is the same host.
	if err := e.reload(pool("a-renamed")); err != nil {
		t.Fatal(err)
	}
	if st := e.backend("p", "a-renamed").State(); st != proxy.StateQuarantined {
		t.Fatalf("a renamed by a reload is %s, want quarantined", st)
	}
	assertNoTraffic(t, e, a, 6)
	// Registered under a new id.
	st, err := e.srv.Registry().Register("p", config.Backend{ID: "a-again", Address: a.addr(), Weight: 1})
	if err != nil || st.State != proxy.StateQuarantined {
		t.Fatalf("register at a quarantined address: %+v %v, want quarantined", st, err)
	}
	assertNoTraffic(t, e, a, 6)
	// And after another reload.
	if err := e.srv.Reload(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	assertNoTraffic(t, e, a, 6)

	// Restoring the host under one id restores it under every id.
	if _, err := e.srv.Registry().Restore("p", "a-renamed"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a-renamed", "a-again"} {
		if st := e.backend("p", id).State(); st != proxy.StateActive {
			t.Fatalf("%s after the restore: %s, want active", id, st)
		}
	}
	if err := e.srv.Reload(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	if got := e.countHits(9, "/", nil); got["a"] != 6 || got["b"] != 3 {
		t.Fatalf("after the restore and a reload: %v, want a (twice in the pool) 6 and b 3", got)
	}
}

// Quarantining the last available backend of a pool says what follows
// (its requests get 503); one with others left does not warn.
func TestQuarantineLastBackendWarns(t *testing.T) {
	a, b := newTestBackend(t, "a"), newTestBackend(t, "b")
	e := startEnv(t, onePool("round_robin", "", a, b))
	st, err := e.srv.Registry().Quarantine("p", "a")
	if err != nil || st.Warning != "" {
		t.Fatalf("first quarantine: %+v %v, want no warning", st, err)
	}
	st, err = e.srv.Registry().Quarantine("p", "b")
	if err != nil || !strings.Contains(st.Warning, `pool "p" has no available backend now`) {
		t.Fatalf("quarantine of the last backend: warning %q %v", st.Warning, err)
	}
	assertGeneric(t, e.get("/"), 503, a, b)
}

// Restoring a backend that was in rotation says that nothing changed.
func TestRestoreActiveBackendWarns(t *testing.T) {
	e := startEnv(t, onePool("round_robin", "", newTestBackend(t, "a")))
	st, err := e.srv.Registry().Restore("p", "a")
	if err != nil || !strings.Contains(st.Warning, "nothing changed") {
		t.Fatalf("restore of an active backend: warning %q %v", st.Warning, err)
	}
	e.srv.Registry().Quarantine("p", "a")
	if st, _ := e.srv.Registry().Restore("p", "a"); st.Warning != "" {
		t.Fatalf("restore of a quarantined backend warns %q", st.Warning)
	}
}
