package server

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// probeLog records, for every health probe that reaches a backend, whether
// the backend was failing it and whether Rampart considered the backend
// healthy at that moment. Probes of one pool run one round at a time and a
// round's verdicts are recorded before the next round starts, so at the
// arrival of a probe every earlier probe has been counted.
type probeLog struct {
	mu      sync.Mutex
	entries []probeEntry
}

type probeEntry struct {
	failing bool
	healthy bool // Rampart's verdict when this probe arrived
}

func (l *probeLog) add(e probeEntry) {
	l.mu.Lock()
	l.entries = append(l.entries, e)
	l.mu.Unlock()
}

func (l *probeLog) snapshot() []probeEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]probeEntry(nil), l.entries...)
}

func TestActiveHealthCheckEjectsAndRestores(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	a := bs[0]
	e := startEnv(t, onePool("round_robin",
		"    health_check: {path: /healthz, interval: 100ms, timeout: 90ms, healthy_threshold: 2, unhealthy_threshold: 3}\n", bs...))
	ba := func() bool { return e.backend("p", "a").Healthy() }

	log := &probeLog{}
	probe := func(n int64, failing bool) { log.add(probeEntry{failing: failing, healthy: ba()}) }
	a.onProbe.Store(&probe)

	eventually(t, "first probes of a", func() bool { return a.probes.Load() >= 2 })
	if got := e.countHits(10, "/", nil); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("healthy pool: %v", got)
	}

	// a starts failing its health check.
	a.healthFail.Store(true)
	eventually(t, "a marked unhealthy", func() bool { return !ba() })
	entries := log.snapshot()
	fails := 0
	for _, en := range entries {
		if !en.failing {
			continue
		}
		fails++
		// At the arrival of the k-th failing probe, k-1 failures are
		// counted: a must stay healthy until the 3rd has been answered.
		if fails <= 3 && !en.healthy {
			t.Fatalf("a was ejected before the failing probe %d arrived (unhealthy_threshold is 3): %+v", fails, entries)
		}
	}
	if fails < 3 {
		t.Fatalf("a ejected after %d failing probes, want at least 3", fails)
	}

	// Requests stop reaching it.
	before := a.hits.Load()
	if got := e.countHits(20, "/", nil); got["b"] != 20 {
		t.Fatalf("with a unhealthy: %v", got)
	}
	if a.hits.Load() != before {
		t.Fatalf("unhealthy backend a received %d requests", a.hits.Load()-before)
	}
	st := e.srv.Registry().Status()
	if len(st) != 1 || st[0].Available != 1 {
		t.Fatalf("status: %+v", st)
	}
	for _, bst := range st[0].Backends {
		if bst.ID == "a" && (bst.Healthy || bst.Available) {
			t.Errorf("status of a: %+v", bst)
		}
	}

	// a passes again and comes back after 2 passing probes.
	mark := len(log.snapshot())
	a.healthFail.Store(false)
	eventually(t, "a healthy again", ba)
	passes := 0
	for _, en := range log.snapshot()[mark:] {
		if en.failing {
			continue
		}
		passes++
		if passes <= 2 && en.healthy {
			t.Fatalf("a restored before passing probe %d arrived (healthy_threshold is 2)", passes)
		}
	}
	if passes < 2 {
		t.Fatalf("a restored after %d passing probes, want at least 2", passes)
	}
	eventually(t, "requests reach a again", func() bool {
		r := e.get("/")
		return r.status == 200 && r.body == "a"
	})
}

// A backend that does not answer its probe within the timeout is as dead
// as one that answers 503.
func TestHealthCheckTimeoutCountsAsFailure(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	a := bs[0]
	release := newGate()
	defer release.open()
	var slow atomic.Bool // while set, probes of a hang
	hang := func(n int64, failing bool) {
		if slow.Load() {
			select {
			case <-release.ch:
			case <-time.After(2 * time.Second):
			}
		}
	}
	a.onProbe.Store(&hang)
	e := startEnv(t, onePool("round_robin",
		"    health_check: {path: /healthz, interval: 100ms, timeout: 50ms, healthy_threshold: 1, unhealthy_threshold: 2}\n", bs...))
	eventually(t, "probes", func() bool { return a.probes.Load() >= 1 })
	slow.Store(true)
	eventually(t, "a unhealthy after probe timeouts", func() bool { return !e.backend("p", "a").Healthy() })
	if got := e.countHits(6, "/", nil); got["b"] != 6 {
		t.Fatalf("with a unhealthy: %v", got)
	}
	slow.Store(false)
	release.open()
	eventually(t, "a healthy again", func() bool { return e.backend("p", "a").Healthy() })
}

// A quarantined backend is not probed: the operator isolated it.
func TestQuarantinedBackendNotProbed(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	a := bs[0]
	e := startEnv(t, onePool("round_robin",
		"    health_check: {path: /healthz, interval: 100ms, timeout: 90ms}\n", bs...))
	eventually(t, "probes", func() bool { return a.probes.Load() >= 1 })
	if _, err := e.srv.Registry().Quarantine("p", "a"); err != nil {
		t.Fatal(err)
	}
	// Let a round that may have started before the quarantine finish.
	m := bs[1].probes.Load()
	eventually(t, "two more rounds", func() bool { return bs[1].probes.Load() >= m+2 })
	n := a.probes.Load()
	target := bs[1].probes.Load() + 3
	eventually(t, "three more rounds", func() bool { return bs[1].probes.Load() >= target })
	if got := a.probes.Load(); got != n {
		t.Fatalf("quarantined backend probed %d more times", got-n)
	}
}

// A backend restored from quarantine (or registered at run time) takes no
// request until its health check passes: while quarantined it was not
// probed, and after an incident it must prove itself first.
func TestRestoredBackendWaitsForHealthCheck(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	a := bs[0]
	e := startEnv(t, onePool("round_robin",
		"    health_check: {path: /healthz, interval: 100ms, timeout: 90ms, healthy_threshold: 2, unhealthy_threshold: 3}\n", bs...))
	eventually(t, "first probes of a", func() bool { return a.probes.Load() >= 2 })
	reg := e.srv.Registry()
	if _, err := reg.Quarantine("p", "a"); err != nil {
		t.Fatal(err)
	}
	a.healthFail.Store(true) // broken while isolated
	st, err := reg.Restore("p", "a")
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthy {
		t.Fatalf("restored from quarantine: reported healthy before any probe: %+v", st)
	}
	// Several rounds of failing probes: a gets nothing.
	target := a.probes.Load() + 4
	for a.probes.Load() < target {
		if got := e.countHits(4, "/", nil); got["a"] != 0 {
			t.Fatalf("restored a, failing its health check, got requests: %v", got)
		}
	}
	a.healthFail.Store(false)
	eventually(t, "a back in rotation after passing probes", func() bool { return e.countHits(4, "/", nil)["a"] > 0 })

	// Registered at run time: also out until it passes.
	c := newTestBackend(t, "c")
	c.healthFail.Store(true)
	if _, err := reg.Register("p", config.Backend{ID: "c", Address: c.addr()}); err != nil {
		t.Fatal(err)
	}
	target = c.probes.Load() + 3
	for c.probes.Load() < target {
		if got := e.countHits(4, "/", nil); got["c"] != 0 {
			t.Fatalf("registered c, failing its health check, got requests: %v", got)
		}
	}
	c.healthFail.Store(false)
	eventually(t, "c in rotation after passing probes", func() bool { return e.countHits(6, "/", nil)["c"] > 0 })
}

func TestOutlierEjection(t *testing.T) {
	bs := newTestBackends(t, "bad", "good")
	bad := bs[0]
	bad.status.Store(http.StatusInternalServerError)
	const ejection = 2 * time.Second
	e := startEnv(t, onePool("round_robin",
		"    outlier_detection: {consecutive_5xx: 3, ejection_time: 2s}\n", bs...))

	// Round robin alternates from the first backend: bad answers requests
	// 1, 3 and 5, and the third consecutive 5xx ejects it.
	var codes []int
	var before5th time.Time // the ejection cannot start earlier
	for i := 0; i < 6; i++ {
		if i == 4 {
			before5th = time.Now()
		}
		codes = append(codes, e.get("/").status)
	}
	want := []int{500, 200, 500, 200, 500, 200}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("statuses %v, want %v (5xx answers are relayed as they are)", codes, want)
		}
	}
	ejectedAt := time.Now()
	if n := bad.hits.Load(); n != 3 {
		t.Fatalf("bad received %d requests before ejection, want 3", n)
	}
	be := e.backend("p", "bad")
	if !be.Ejected(time.Now()) {
		t.Fatal("bad not ejected after 3 consecutive 5xx")
	}
	if st := e.srv.Registry().Status()[0]; st.Backends[0].EjectedUntil == nil || st.Backends[0].Available {
		t.Errorf("status of ejected backend: %+v", st.Backends[0])
	}
	// It is fine by now, but ejected: no traffic until the ejection ends.
	bad.status.Store(0)
	for i := 0; i < 10; i++ {
		r := e.get("/")
		if r.status != 200 || r.body != "good" {
			if time.Since(ejectedAt) >= ejection {
				t.Skip("machine too slow to observe the ejection window")
			}
			t.Fatalf("during ejection: %d %q", r.status, r.body)
		}
	}
	if n := bad.hits.Load(); n != 3 {
		t.Fatalf("ejected backend received %d requests during ejection", n-3)
	}
	// After ejection_time it takes traffic again.
	eventually(t, "bad back in rotation", func() bool {
		r := e.get("/")
		return r.status == 200 && r.body == "bad"
	})
	if d := time.Since(before5th); d < ejection {
		t.Errorf("bad returned %s after its 3rd 5xx, before the ejection time of %s", d, ejection)
	}
}

// Successes in between reset the count: only consecutive 5xx eject.
func TestOutlierNeedsConsecutive5xx(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin",
		"    outlier_detection: {consecutive_5xx: 3, ejection_time: 30s}\n", b))
	for i := 0; i < 4; i++ {
		b.status.Store(http.StatusBadGateway)
		e.get("/")
		e.get("/")
		b.status.Store(0)
		if r := e.get("/"); r.status != 200 {
			t.Fatalf("round %d: %d (ejected after non-consecutive 5xx?)", i, r.status)
		}
	}
	if e.backend("p", "a").Ejected(time.Now()) {
		t.Fatal("ejected without 3 consecutive 5xx")
	}
	b.status.Store(http.StatusServiceUnavailable)
	for i := 0; i < 3; i++ {
		e.get("/")
	}
	assertGeneric(t, e.get("/"), http.StatusServiceUnavailable, b)
	if n := b.hits.Load(); n != 15 {
		t.Fatalf("backend received %d requests, want 15", n)
	}
	// An operator's restore ends the ejection at once.
	b.status.Store(0)
	if st, err := e.srv.Registry().Restore("p", "a"); err != nil || st.EjectedUntil != nil || !st.Available {
		t.Fatalf("Restore of an ejected backend: %+v %v", st, err)
	}
	if r := e.get("/"); r.status != 200 || r.body != "a" {
		t.Fatalf("after restore: %d %q", r.status, r.body)
	}
}
