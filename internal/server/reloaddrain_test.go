package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A listener removed by a reload still finishes its requests, and a
// shutdown meanwhile waits for them too (it used to return at once, cutting
// them with no access log line).
func TestShutdownWaitsForListenerRemovedByReload(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	base := onePool("round_robin", "logging: {access_log: {path: access.log}}\n", a)
	extra := freeAddr(t)
	withExtra := strings.Replace(base, "listeners:\n", fmt.Sprintf("listeners:\n  - {name: extra, listen: %q}\n", extra), 1)
	e := startEnv(t, withExtra)

	slow := make(chan result, 1)
	go func() {
		r, err := doRequest(e.client, http.MethodGet, "http://"+extra+"/slow", "", nil, nil)
		slow <- result{r, err}
	}()
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })
	if err := e.reload(base); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while the removed listener had a request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	g.open()
	if r := waitResult(t, slow); r.err != nil || r.r.status != 200 || r.r.body != "slow-done" {
		t.Fatalf("request on the removed listener: %+v %v", r.r, r.err)
	}
	shutdownReturned(t, done)
	if l := lastLogLine(t, e, 1); l["path"] != "/slow" || l["status_code"] != 200.0 {
		t.Fatalf("access log: %v, want the /slow request with 200", l)
	}
}

// A request in flight across a reload that changes the access log is
// logged to the new log (the old one is closed a few seconds after the
// reload, and a longer request lost its line).
func TestRequestAcrossAccessLogChangeIsLogged(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	e := startEnv(t, onePool("round_robin", "logging: {access_log: {path: access.log}}\n", a))
	slow := e.goGet("/slow")
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })
	if err := e.reload(onePool("round_robin", "logging: {access_log: {path: access2.log}}\n", a)); err != nil {
		t.Fatal(err)
	}
	g.open()
	if r := waitResult(t, slow); r.err != nil || r.r.status != 200 {
		t.Fatalf("slow request: %+v %v", r.r, r.err)
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access2.log"), 1)
	if l := lines[0]; l["path"] != "/slow" || l["status_code"] != 200.0 {
		t.Fatalf("new access log: %v, want the /slow request", l)
	}
}

// A reload answer names the changes that wait for a restart (an h2c
// switch on a running listener), and refused reloads are counted, with a
// gauge that says whether the last one was applied.
func TestReloadReportsPendingAndFailures(t *testing.T) {
	a := newTestBackend(t, "a")
	base := onePool("round_robin", "", a)
	e := startEnv(t, base)
	e.write(strings.Replace(base, `listen: "127.0.0.1:0"}`, `listen: "127.0.0.1:0", h2c: true}`, 1))
	status, _, m := adminCall(t, e, "POST", "/config/reload", "")
	if status != 200 || fmt.Sprint(m["pending_restart"]) != "[listener web: h2c]" {
		t.Fatalf("reload changing h2c: %d %v, want pending_restart [listener web: h2c]", status, m)
	}
	// HTTP/2 limits: net/http's HTTP/2 server reads them once.
	e.write(strings.Replace(base, `listen: "127.0.0.1:0"}`, `listen: "127.0.0.1:0", h2c: true}`, 1) + "security: {http2: {max_concurrent_streams: 2}}\n")
	if status, _, m := adminCall(t, e, "POST", "/config/reload", ""); status != 200 || !strings.Contains(fmt.Sprint(m["pending_restart"]), "security.http2") {
		t.Fatalf("reload changing security.http2: %d %v, want it in pending_restart", status, m)
	}
	metric := func(series string) string {
		v, _ := metricValue(e.scrape("/metrics"), series)
		return v
	}
	if f, ok := metric("rampart_config_reload_failures_total"), metric("rampart_config_last_reload_successful"); f != "0" || ok != "1" {
		t.Fatalf("after a good reload: failures %q, last successful %q", f, ok)
	}
	e.write("listeners: [oops\n")
	if status, _, _ := adminCall(t, e, "POST", "/config/reload", ""); status != 422 {
		t.Fatalf("bad reload: %d, want 422", status)
	}
	if f, ok := metric("rampart_config_reload_failures_total"), metric("rampart_config_last_reload_successful"); f != "1" || ok != "0" {
		t.Fatalf("after a refused reload: failures %q, last successful %q, want 1 and 0", f, ok)
	}
}
