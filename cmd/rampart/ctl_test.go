package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// A drain waited for that ended by cutting requests is reported on stderr;
// the command still succeeds (the backend is drained).
func TestCtlDrainWaitWarnsOfCutRequests(t *testing.T) {
	var answer atomic.Value
	answer.Store(`{"pool":"p","id":"a","state":"draining","in_flight":0,"cut_at_drain_timeout":2}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pools/p/backends/a/drain" || r.URL.Query().Get("wait") != "true" {
			http.Error(w, "unexpected "+r.URL.String(), http.StatusNotFound)
			return
		}
		io.WriteString(w, answer.Load().(string))
	}))
	defer srv.Close()
	code, stdout, stderr := runCmd("ctl", "--admin", srv.URL, "backend", "drain", "--pool", "p", "--backend", "a", "--wait")
	if code != 0 || !strings.Contains(stdout, `"cut_at_drain_timeout":2`) ||
		!strings.Contains(stderr, "warning: 2 in-flight request(s) were cut at the pool's drain_timeout") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	answer.Store(`{"pool":"p","id":"a","state":"draining","in_flight":0}`)
	if code, _, stderr := runCmd("ctl", "--admin", srv.URL, "backend", "drain", "--pool", "p", "--backend", "a", "--wait"); code != 0 || stderr != "" {
		t.Fatalf("drain without cuts: exit %d, stderr %q", code, stderr)
	}
}

// --wait is refused where there is nothing to wait for (a quarantine takes
// effect before its answer), instead of being ignored.
func TestCtlWaitOnlyForDrain(t *testing.T) {
	code, _, stderr := runCmd("ctl", "--admin", "http://127.0.0.1:1", "backend", "quarantine", "--pool", "p", "--backend", "a", "--wait")
	if code != 2 || !strings.Contains(stderr, "--wait applies to drain and deregister only") {
		t.Fatalf("quarantine --wait: exit %d, stderr %q", code, stderr)
	}
}
