package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// slowBackend answers /slow only once gate opens and /stream with a first
// part at once and a second part once gate opens; anything else gets its id.
func slowBackend(t *testing.T, id string, g *gate) *testBackend {
	b := newTestBackend(t, id)
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend-Id", id)
		switch r.URL.Path {
		case "/slow":
			block(r, g.ch)
			io.WriteString(w, "slow-done")
		case "/stream":
			io.WriteString(w, "part-1\n")
			w.(http.Flusher).Flush()
			block(r, g.ch)
			io.WriteString(w, "part-2\n")
		default:
			io.WriteString(w, id)
		}
	})
	return b
}

// goGet sends a GET in the background; the result arrives on the channel.
func (e *testEnv) goGet(path string) <-chan result { return e.goDo(http.MethodGet, path, nil) }

// goPost sends a POST of body (a pipe, a slow reader: an upload that is
// still going on) in the background; the result arrives on the channel.
func (e *testEnv) goPost(path string, body io.Reader) <-chan result {
	return e.goDo(http.MethodPost, path, body)
}

func (e *testEnv) goDo(method, path string, body io.Reader) <-chan result {
	ch := make(chan result, 1)
	url := e.url("web", path)
	go func() {
		r, err := doRequest(e.client, method, url, "", nil, body)
		ch <- result{r, err}
	}()
	return ch
}

type result struct {
	r   resp
	err error
}

func waitResult(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testTimeout + time.Second):
		t.Fatal("request did not finish")
		return result{}
	}
}

// assertNoTraffic sends n requests and checks that none reaches b.
func assertNoTraffic(t *testing.T, e *testEnv, b *testBackend, n int) {
	t.Helper()
	before := b.hits.Load()
	got := e.countHits(n, "/", nil)
	if after := b.hits.Load(); after != before || got[b.id] != 0 {
		t.Fatalf("backend %s received %d of %d requests (%v)", b.id, after-before, n, got)
	}
}

func TestQuarantine(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	b := newTestBackend(t, "b")
	e := startEnv(t, onePool("round_robin", "", a, b))

	// An in-flight streaming response from a (round robin starts with a).
	res, err := e.client.Get(e.url("web", "/stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if line, err := readLineTimeout(br); err != nil || line != "part-1\n" || res.Header.Get("X-Backend-Id") != "a" {
		t.Fatalf("stream: %q %v from %s", line, err, res.Header.Get("X-Backend-Id"))
	}
	if n := e.backend("p", "a").InFlight(); n != 1 {
		t.Fatalf("in flight on a: %d", n)
	}

	st, err := e.srv.Registry().Quarantine("p", "a")
	if err != nil || st.State != proxy.StateQuarantined {
		t.Fatalf("Quarantine: %+v %v", st, err)
	}
	// From the moment the call returns, nothing reaches a.
	assertNoTraffic(t, e, a, 20)

	// The in-flight response was cut: the client sees a broken body, not
	// a clean end and not a timeout.
	rest, err := io.ReadAll(br)
	if err == nil {
		t.Fatalf("in-flight response to a quarantined backend completed: %q", rest)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("in-flight response: %v, want unexpected EOF (cut)", err)
	}
	eventually(t, "in-flight count back to 0", func() bool { return e.backend("p", "a").InFlight() == 0 })

	// Persisted: it is on disk...
	data, err := os.ReadFile(filepath.Join(e.dir, "data", proxy.StateFileName))
	if err != nil || !strings.Contains(string(data), `"quarantined"`) {
		t.Fatalf("state file: %s, %v", data, err)
	}
	// ...a new server on the same data_dir starts with a quarantined...
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	secondInstance(t, cfg)
	s2, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	e2 := &testEnv{t: t, dir: e.dir, cfgPath: e.cfgPath, srv: s2, client: e.client}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s2.Shutdown(ctx)
	}()
	if st := e2.backend("p", "a").State(); st != proxy.StateQuarantined {
		t.Fatalf("after restart: a is %s", st)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	assertNoTraffic(t, e2, a, 6)

	// ...and so does a reload of the same file.
	if err := e.srv.Reload(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	if st := e.backend("p", "a").State(); st != proxy.StateQuarantined {
		t.Fatalf("after reload: a is %s", st)
	}
	assertNoTraffic(t, e, a, 6)

	// Restore brings it back.
	if st, err := e.srv.Registry().Restore("p", "a"); err != nil || st.State != proxy.StateActive {
		t.Fatalf("Restore: %+v %v", st, err)
	}
	if got := e.countHits(10, "/", nil); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("after restore: %v", got)
	}
	data, _ = os.ReadFile(filepath.Join(e.dir, "data", proxy.StateFileName))
	if strings.Contains(string(data), `"quarantined"`) {
		t.Errorf("state file still has the quarantine after restore: %s", data)
	}
}

// Lifecycle calls name what they did not find.
func TestQuarantineUnknownBackend(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b))
	if _, err := e.srv.Registry().Quarantine("p", "nope"); !errors.Is(err, proxy.ErrUnknownBackend) {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := e.srv.Registry().Quarantine("nope", "a"); !errors.Is(err, proxy.ErrUnknownPool) {
		t.Errorf("unknown pool: %v", err)
	}
}

func TestDrainLetsInFlightFinish(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	b := newTestBackend(t, "b")
	e := startEnv(t, onePool("round_robin", "    drain_timeout: 10s\n", a, b))

	slow := e.goGet("/slow") // round robin: a
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })

	st, done, err := e.srv.Registry().Drain("p", "a")
	if err != nil || st.State != proxy.StateDraining || st.InFlight != 1 {
		t.Fatalf("Drain: %+v %v", st, err)
	}
	select {
	case <-done:
		t.Fatal("drain done while a request is in flight")
	default:
	}
	assertNoTraffic(t, e, a, 10)

	g.open()
	r := waitResult(t, slow)
	if r.err != nil || r.r.status != 200 || r.r.body != "slow-done" {
		t.Fatalf("in-flight request during drain: %+v %v", r.r, r.err)
	}
	waitChan(t, "drain done", done)
	if n := e.backend("p", "a").InFlight(); n != 0 {
		t.Errorf("in flight after drain: %d", n)
	}
	if st := e.backend("p", "a").State(); st != proxy.StateDraining {
		t.Errorf("state after drain: %s", st)
	}
	assertNoTraffic(t, e, a, 4)
	if _, err := e.srv.Registry().Restore("p", "a"); err != nil {
		t.Fatal(err)
	}
	if got := e.countHits(4, "/", nil); got["a"] != 2 {
		t.Errorf("after restore: %v", got)
	}
}

func TestDrainTimeoutCutsSlowRequest(t *testing.T) {
	g := newGate()
	defer g.open() // released only at the end: slower than the drain timeout
	a := slowBackend(t, "a", g)
	b := newTestBackend(t, "b")
	e := startEnv(t, onePool("round_robin", "    drain_timeout: 300ms\n", a, b))

	slow := e.goGet("/slow")
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })
	_, done, err := e.srv.Registry().Drain("p", "a")
	if err != nil {
		t.Fatal(err)
	}
	waitChan(t, "drain done after the timeout", done)
	r := waitResult(t, slow)
	if r.err != nil {
		t.Fatal(r.err)
	}
	assertGeneric(t, r.r, http.StatusBadGateway, a, b)
	eventually(t, "in flight 0", func() bool { return e.backend("p", "a").InFlight() == 0 })
	assertNoTraffic(t, e, a, 4)
}

// A drain that times out while a response is streaming cuts the stream:
// the client sees a broken answer (never one that ends as if complete),
// and the access log says backend_cut; on the direct path (a GET, a POST
// whose body is streamed) and on the http.Transport path (a POST with
// Expect, whose chunked answer httputil.ReverseProxy relays: it aborts
// only under a server that sets http.ServerContextKey).
func TestDrainTimeoutCutsStream(t *testing.T) {
	for _, path := range probePaths {
		method, _, _ := strings.Cut(path, "+")
		t.Run(path, func(t *testing.T) {
			g := newGate()
			defer g.open()
			a := slowBackend(t, "a", g)
			e := startEnv(t, onePool("round_robin", "    drain_timeout: 300ms\nlogging: {access_log: {path: access.log}}\n", a, newTestBackend(t, "b")))
			res, err := e.client.Do(newProbe(path, e.url("web", "/stream")))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			if line, err := readLineTimeout(br); err != nil || line != "part-1\n" {
				t.Fatalf("%q %v", line, err)
			}
			_, done, _ := e.srv.Registry().Drain("p", "a")
			waitChan(t, "drain done", done)
			// With Expect, the backend (which does not read the body) never
			// asks for it, so the client's body is still unread when the
			// cut closes the connection, and TCP says so with a reset: as
			// broken an answer as an early end.
			if _, err := io.ReadAll(br); !errors.Is(err, io.ErrUnexpectedEOF) && !(strings.HasSuffix(path, "+Expect") && isReset(err)) {
				t.Fatalf("stream after drain timeout: %v, want unexpected EOF", err)
			}
			if l := lastLogLine(t, e, 1); l["error"] != "backend_cut" || l["method"] != method {
				t.Fatalf("access log: %s error %q, want %s backend_cut", l["method"], l["error"], method)
			}
		})
	}
}

// A drain waited for through the API says how many requests its timeout
// cut, and answers once they have left the in-flight count.
func TestDrainWaitReportsCutRequests(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	e := startEnv(t, onePool("round_robin", "    drain_timeout: 300ms\n", a, newTestBackend(t, "b")))
	slow := e.goGet("/slow")
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })
	status, _, m := adminCall(t, e, "POST", "/pools/p/backends/a/drain?wait=true", "")
	if status != 200 || m["cut_at_drain_timeout"] != 1.0 || m["in_flight"] != 0.0 {
		t.Fatalf("drain?wait=true: %d %v, want cut_at_drain_timeout 1 and in_flight 0", status, m)
	}
	waitResult(t, slow)
	// Restored and drained again with nothing in flight: nothing cut.
	adminCall(t, e, "POST", "/pools/p/backends/a/restore", "")
	status, _, m = adminCall(t, e, "POST", "/pools/p/backends/a/drain?wait=true", "")
	if _, ok := m["cut_at_drain_timeout"]; status != 200 || ok {
		t.Fatalf("idle drain?wait=true: %d %v, want no cut_at_drain_timeout", status, m)
	}
}

func TestDeregisterAndRegister(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	b := newTestBackend(t, "b")
	c := newTestBackend(t, "c")
	e := startEnv(t, onePool("round_robin", "    drain_timeout: 10s\n", a, b))
	reg := e.srv.Registry()

	// Deregister drains first: the in-flight request completes.
	slow := e.goGet("/slow")
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })
	_, removed, err := reg.Deregister("p", "a")
	if err != nil {
		t.Fatal(err)
	}
	assertNoTraffic(t, e, a, 6)
	select {
	case <-removed:
		t.Fatal("removed while a request is in flight")
	default:
	}
	if e.backend("p", "a") == nil {
		t.Fatal("a left the pool before its drain finished")
	}
	g.open()
	if r := waitResult(t, slow); r.err != nil || r.r.status != 200 {
		t.Fatalf("in-flight during deregister: %+v %v", r.r, r.err)
	}
	waitChan(t, "deregistered", removed)
	if e.backend("p", "a") != nil {
		t.Fatal("a still a member after deregistration")
	}
	assertNoTraffic(t, e, a, 6)

	// Register adds a backend that then takes traffic.
	st, err := reg.Register("p", config.Backend{ID: "c", Address: c.addr()})
	if err != nil || st.State != proxy.StateActive || st.Source != "api" {
		t.Fatalf("Register: %+v %v", st, err)
	}
	if got := e.countHits(10, "/", nil); got["b"] != 5 || got["c"] != 5 {
		t.Fatalf("after register: %v", got)
	}
	if _, err := reg.Register("p", config.Backend{ID: "c", Address: c.addr()}); !errors.Is(err, proxy.ErrExists) {
		t.Errorf("second register of c: %v", err)
	}
	if _, err := reg.Register("p", config.Backend{ID: "d", Address: "no-port"}); !errors.Is(err, proxy.ErrInvalid) {
		t.Errorf("invalid address: %v", err)
	}

	// Re-registering a quarantined id keeps it quarantined.
	if _, err := reg.Quarantine("p", "b"); err != nil {
		t.Fatal(err)
	}
	_, removed, err = reg.Deregister("p", "b")
	if err != nil {
		t.Fatal(err)
	}
	waitChan(t, "b deregistered", removed)
	if e.backend("p", "b") != nil {
		t.Fatal("b still a member")
	}
	st, err = reg.Register("p", config.Backend{ID: "b", Address: b.addr()})
	if err != nil || st.State != proxy.StateQuarantined {
		t.Fatalf("re-registered quarantined b: %+v %v", st, err)
	}
	assertNoTraffic(t, e, b, 6)

	// All of it survives a reload and a restart.
	if err := e.srv.Reload(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	check := func(e *testEnv, when string) {
		if e.backend("p", "a") != nil {
			t.Errorf("%s: deregistered a is back", when)
		}
		if bb := e.backend("p", "b"); bb == nil || bb.State() != proxy.StateQuarantined {
			t.Errorf("%s: b = %+v, want quarantined", when, bb)
		}
		if cc := e.backend("p", "c"); cc == nil || cc.State() != proxy.StateActive {
			t.Errorf("%s: registered c = %+v", when, cc)
		}
	}
	check(e, "after reload")
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	secondInstance(t, cfg)
	s2, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown(context.Background())
	check(&testEnv{t: t, srv: s2}, "after restart")
}

func TestReloadBadFileKeepsRunningConfig(t *testing.T) {
	a := newTestBackend(t, "a")
	good := onePool("round_robin", "", a)
	e := startEnv(t, good)
	old := e.srv.Config()

	for _, bad := range []string{
		good + "unknown_key: 1\n",
		strings.Replace(good, "round_robin", "fastest", 1),
		"listeners: [\n",
	} {
		err := e.reload(bad)
		var ps config.Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("reload of a bad file: %v, want config.Problems", err)
		}
		for _, p := range ps {
			if p.File != e.cfgPath || p.Line < 1 {
				t.Errorf("problem without a file:line: %+v", p)
			}
		}
		if e.srv.Config() != old {
			t.Fatal("running config replaced by a bad file")
		}
		if r := e.get("/"); r.status != 200 || r.body != "a" {
			t.Fatalf("after a refused reload: %d %q", r.status, r.body)
		}
	}
	err := e.reload(good + "unknown_key: 1\n")
	if !strings.Contains(err.Error(), "unknown_key") {
		t.Errorf("problem does not name the key: %v", err)
	}
}

func TestReloadChangesRoutesAndPools(t *testing.T) {
	bs := newTestBackends(t, "a", "b", "c")
	a, b, c := bs[0], bs[1], bs[2]
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: one}
pools:
  - {name: one, backends: %s}
`, backendsYAML(a)))
	if r := e.get("/x"); r.body != "a" {
		t.Fatalf("before: %q", r.body)
	}
	err := e.reload(fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: two}
  - {name: old, match: {path_prefix: /old}, pool: one}
pools:
  - {name: one, backends: %s}
  - {name: two, algorithm: round_robin, backends: %s}
`, backendsYAML(a), backendsYAML(b, c)))
	if err != nil {
		t.Fatal(err)
	}
	got := e.countHits(4, "/x", nil)
	if got["b"] != 2 || got["c"] != 2 {
		t.Fatalf("after reload, /x: %v", got)
	}
	if r := e.get("/old/page"); r.body != "a" {
		t.Fatalf("after reload, /old: %q", r.body)
	}
	// A route removed by a reload answers 404.
	if err := e.reload(fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: api, match: {path_prefix: /api}, pool: one}
pools:
  - {name: one, backends: %s}
`, backendsYAML(a))); err != nil {
		t.Fatal(err)
	}
	assertGeneric(t, e.get("/x"), http.StatusNotFound, a, b, c)
	if r := e.get("/api"); r.body != "a" {
		t.Fatalf("/api: %q", r.body)
	}
	if st := e.srv.Status(); st.Reloads != 2 {
		t.Errorf("reloads = %d", st.Reloads)
	}
}

func TestReloadAddsAndRemovesListeners(t *testing.T) {
	a := newTestBackend(t, "a")
	base := onePool("round_robin", "", a)
	e := startEnv(t, base)
	webAddr := e.srv.Addr("web")
	extra := freeAddr(t)

	withExtra := strings.Replace(base, "listeners:\n", fmt.Sprintf("listeners:\n  - {name: extra, listen: %q}\n", extra), 1)
	if err := e.reload(withExtra); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Addr("extra"); got != extra {
		t.Fatalf("Addr(extra) = %q, want %q", got, extra)
	}
	if r := e.do(http.MethodGet, "http://"+extra+"/", "", nil, nil); r.status != 200 || r.body != "a" {
		t.Fatalf("new listener: %d %q", r.status, r.body)
	}
	if e.srv.Addr("web") != webAddr {
		t.Fatalf("kept listener moved: %s -> %s", webAddr, e.srv.Addr("web"))
	}

	if err := e.reload(base); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Addr("extra"); got != "" {
		t.Fatalf("removed listener still reported at %q", got)
	}
	eventually(t, "removed listener closed", func() bool {
		c, err := net.DialTimeout("tcp", extra, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if r := e.get("/"); r.status != 200 {
		t.Fatalf("kept listener after removing another: %d", r.status)
	}
}

// holdAddr occupies a loopback address for the duration of the test.
func holdAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// assertBindable checks that nothing is left listening on addr.
func assertBindable(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("%s is still bound: %v", addr, err)
		return
	}
	ln.Close()
}

func TestStartFailsOnAddressInUse(t *testing.T) {
	a := newTestBackend(t, "a")
	// start writes a config with an admin address and two listeners,
	// builds a server and starts it; the server must refuse to start.
	start := func(t *testing.T, adminAddr, first, second string) (string, string, config.Problems, *Server) {
		dir := t.TempDir()
		text := fmt.Sprintf(`data_dir: %q
admin:
  listen: %q
listeners:
  - name: first
    listen: %q
  - name: busy
    listen: %q
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
`, filepath.Join(dir, "data"), adminAddr, first, second, backendsYAML(a))
		path := filepath.Join(dir, "rampart.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(context.Background()) })
		err = s.Start()
		var ps config.Problems
		if !errors.As(err, &ps) || len(ps) != 1 {
			t.Fatalf("Start with a busy address: %v, want one config problem", err)
		}
		if s.Addr("first") != "" || s.AdminAddr() != "" {
			t.Errorf("failed Start reports addresses: first %q admin %q", s.Addr("first"), s.AdminAddr())
		}
		return path, text, ps, s
	}

	t.Run("listener", func(t *testing.T) {
		held, free, adminAddr := holdAddr(t), freeAddr(t), freeAddr(t)
		path, text, ps, _ := start(t, adminAddr, free, held)
		want := lineOf(t, text, "listen: \""+held+"\"")
		if ps[0].File != path || ps[0].Line != want || !strings.Contains(ps[0].Msg, `"busy"`) || !strings.Contains(ps[0].Msg, "in use") {
			t.Fatalf("problem %s, want %s:%d naming listener busy and the address in use", ps[0], path, want)
		}
		// Nothing stays bound: neither the other listener nor the admin API.
		assertBindable(t, free)
		assertBindable(t, adminAddr)
	})
	t.Run("admin", func(t *testing.T) {
		held, first, second := holdAddr(t), freeAddr(t), freeAddr(t)
		path, text, ps, _ := start(t, held, first, second)
		want := lineOf(t, text, "listen: \""+held+"\"")
		if ps[0].File != path || ps[0].Line != want || !strings.Contains(ps[0].Msg, "admin") {
			t.Fatalf("problem %s, want %s:%d about the admin listener", ps[0], path, want)
		}
		// The listeners, which could be bound, were closed again.
		assertBindable(t, first)
		assertBindable(t, second)
	})
}

func TestReloadFailsOnAddressInUse(t *testing.T) {
	a := newTestBackend(t, "a")
	base := onePool("round_robin", "", a)
	e := startEnv(t, base)
	old := e.srv.Config()
	held, free := holdAddr(t), freeAddr(t)
	bad := strings.Replace(base, "listeners:\n",
		fmt.Sprintf("listeners:\n  - {name: ok, listen: %q}\n  - {name: busy, listen: %q}\n", free, held), 1)
	err := e.reload(bad)
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("reload with a busy address: %v", err)
	}
	text := e.read()
	if want := lineOf(t, text, held); ps[0].Line != want || !strings.Contains(ps[0].Msg, `"busy"`) {
		t.Fatalf("problem %s, want line %d naming listener busy", ps[0], want)
	}
	if e.srv.Config() != old || e.srv.Addr("ok") != "" {
		t.Fatal("a reload that could not bind changed the running config")
	}
	assertBindable(t, free)
	if r := e.get("/"); r.status != 200 {
		t.Fatalf("old config after a failed reload: %d", r.status)
	}
}

func TestReloadRefusesDataDirChange(t *testing.T) {
	a := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", a))
	other := fmt.Sprintf("data_dir: %q\nadmin: {listen: \"127.0.0.1:0\"}\n", t.TempDir()) + onePool("round_robin", "", a)
	if err := os.WriteFile(e.cfgPath, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	var ps config.Problems
	if err := e.srv.Reload(e.cfgPath); !errors.As(err, &ps) {
		t.Fatalf("reload changing data_dir: %v", err)
	}
	if r := e.get("/"); r.status != 200 {
		t.Fatal(r.status)
	}
}

// adminCall sends a request to the admin API and decodes a JSON answer.
func adminCall(t *testing.T, e *testEnv, method, path, body string) (int, string, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+e.srv.AdminAddr()+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s %s: %d, body is not JSON: %q", method, path, res.StatusCode, data)
	}
	return res.StatusCode, res.Header.Get("Content-Type"), m
}

func assertProblem(t *testing.T, status int, ctype string, m map[string]any, want int) {
	t.Helper()
	if status != want || ctype != "application/problem+json" || m["status"] != float64(want) || m["title"] == "" {
		t.Fatalf("got %d %s %v, want a %d problem+json", status, ctype, m, want)
	}
}

func TestAdminAPI(t *testing.T) {
	bs := newTestBackends(t, "a", "b", "c")
	a, b, c := bs[0], bs[1], bs[2]
	good := onePool("round_robin", "", a, b)
	e := startEnv(t, good)

	status, ctype, m := adminCall(t, e, "GET", "/pools", "")
	if status != 200 || ctype != "application/json" {
		t.Fatalf("GET /pools: %d %s", status, ctype)
	}
	pools, _ := m["pools"].([]any)
	if len(pools) != 1 {
		t.Fatalf("pools: %v", m)
	}
	p0 := pools[0].(map[string]any)
	if p0["name"] != "p" || p0["algorithm"] != "round_robin" || p0["available"] != 2.0 || len(p0["backends"].([]any)) != 2 {
		t.Fatalf("pool: %v", p0)
	}

	// Register.
	status, _, m = adminCall(t, e, "POST", "/pools/p/backends", fmt.Sprintf(`{"id": "c", "address": %q}`, c.addr()))
	if status != http.StatusCreated || m["id"] != "c" || m["state"] != "active" || m["source"] != "api" {
		t.Fatalf("register: %d %v", status, m)
	}
	if got := e.countHits(6, "/", nil); got["c"] != 2 {
		t.Fatalf("after register: %v", got)
	}
	status, ctype, m = adminCall(t, e, "POST", "/pools/p/backends", fmt.Sprintf(`{"id": "c", "address": %q}`, c.addr()))
	assertProblem(t, status, ctype, m, http.StatusConflict)

	// Quarantine.
	status, _, m = adminCall(t, e, "POST", "/pools/p/backends/a/quarantine", "")
	if status != 200 || m["state"] != "quarantined" || m["available"] != false {
		t.Fatalf("quarantine: %d %v", status, m)
	}
	assertNoTraffic(t, e, a, 6)
	status, _, m = adminCall(t, e, "POST", "/pools/p/backends/a/restore", "")
	if status != 200 || m["state"] != "active" {
		t.Fatalf("restore: %d %v", status, m)
	}

	// Deregister: 202 at once, gone once drained.
	status, _, m = adminCall(t, e, "DELETE", "/pools/p/backends/b", "")
	if status != http.StatusAccepted || m["id"] != "b" {
		t.Fatalf("deregister: %d %v", status, m)
	}
	eventually(t, "b gone", func() bool { return e.backend("p", "b") == nil })
	assertNoTraffic(t, e, b, 6)

	// Errors: unknown pool or backend, invalid bodies, unknown action.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/pools/nope", ""},
		{"POST", "/pools/nope/backends", `{"id": "x", "address": "127.0.0.1:1"}`},
		{"POST", "/pools/nope/backends/a/quarantine", ""},
		{"DELETE", "/pools/nope/backends/a", ""},
		{"POST", "/pools/p/backends/nope/drain", ""},
		{"POST", "/pools/p/backends/a/explode", ""},
		{"GET", "/nothing-here", ""},
	} {
		status, ctype, m := adminCall(t, e, c.method, c.path, c.body)
		assertProblem(t, status, ctype, m, http.StatusNotFound)
	}
	// An endpoint under another method: 405, saying which it takes.
	status, ctype, m = adminCall(t, e, "PUT", "/acls/blocklist", `{"ip":"192.0.2.1"}`)
	assertProblem(t, status, ctype, m, http.StatusMethodNotAllowed)
	if d, _ := m["detail"].(string); !strings.Contains(d, "GET, POST") {
		t.Errorf("405 detail %q does not name the methods", d)
	}
	for _, body := range []string{
		`{not json`,
		`{"id": "x", "address": "127.0.0.1:1", "colour": "red"}`,
		`{"id": "x", "address": "no-port"}`,
		`{"id": "x y", "address": "127.0.0.1:1"}`,
		`{"id": "x", "address": "127.0.0.1:1", "weight": 5000}`,
		`{"id": "x", "address": "127.0.0.1:1", "weight": 0}`,
		`{"id": "x", "address": "127.0.0.1:1"} trailing`,
		`{"id": "", "address": "127.0.0.1:1"}`,
	} {
		status, ctype, m := adminCall(t, e, "POST", "/pools/p/backends", body)
		assertProblem(t, status, ctype, m, http.StatusBadRequest)
	}
	if e.backend("p", "x") != nil {
		t.Fatal("an invalid registration was applied")
	}

	// Reload through the API: a bad file is refused with its problems.
	e.write(good + "bogus: true\n")
	status, ctype, m = adminCall(t, e, "POST", "/config/reload", "")
	assertProblem(t, status, ctype, m, http.StatusUnprocessableEntity)
	probs, _ := m["problems"].([]any)
	if len(probs) == 0 || !strings.Contains(fmt.Sprint(probs[0]), e.cfgPath+":") || !strings.Contains(fmt.Sprint(probs[0]), "bogus") {
		t.Fatalf("problems: %v", m["problems"])
	}
	if r := e.get("/"); r.status != 200 {
		t.Fatalf("proxy after a refused reload: %d", r.status)
	}
	e.write(good)
	status, _, m = adminCall(t, e, "POST", "/config/reload", "")
	if status != 200 || m["reloaded"] != true {
		t.Fatalf("good reload: %d %v", status, m)
	}
	status, _, m = adminCall(t, e, "GET", "/status", "")
	if status != 200 || m["reloads"] != 1.0 {
		t.Fatalf("status: %d %v", status, m)
	}
}

// Reloads while requests are in flight: no request fails, and every
// request sees one config from start to end.
func TestReloadUnderLoad(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	cfgs := []string{
		onePool("round_robin", "    connect_timeout: 2s\n", bs...),
		onePool("least_connections", "    connect_timeout: 3s\n    max_idle_conns_per_backend: 8\n", bs...),
	}
	e := startEnv(t, cfgs[0])
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				r, err := doRequest(e.client, http.MethodGet, e.url("web", "/"), "", nil, nil)
				if err != nil || r.status != 200 {
					errs <- fmt.Errorf("during reloads: %d %v", r.status, err)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if err := e.reload(cfgs[i%2]); err != nil {
			close(stop)
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	for w := 0; w < 2; w++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(testTimeout):
			t.Fatal("load generator stuck")
		}
	}
}

// Shutdown lets an in-flight request finish and then stops listening.
func TestGracefulShutdown(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	e := startEnv(t, onePool("round_robin", "", a))
	addr := e.srv.Addr("web")
	slow := e.goGet("/slow")
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	eventually(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}
	g.open()
	if r := waitResult(t, slow); r.err != nil || r.r.status != 200 || r.r.body != "slow-done" {
		t.Fatalf("in-flight request during shutdown: %+v %v", r.r, r.err)
	}
	shutdownReturned(t, done)
}

// A request still waiting on its backend when the shutdown's grace period
// ends is cut, and logged, before Shutdown returns (it used to vanish from
// the access log).
func TestShutdownTimeoutLogsCutRequests(t *testing.T) {
	g := newGate()
	defer g.open()
	a := slowBackend(t, "a", g)
	e := startEnv(t, onePool("round_robin", "logging: {access_log: {path: access.log}}\n", a))
	slow := e.goGet("/slow")
	eventually(t, "slow request at a", func() bool { return a.hits.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned no error with a request still in flight past its timeout")
	}
	if r := waitResult(t, slow); r.err == nil && r.r.status == 200 {
		t.Fatalf("the cut request completed: %+v", r.r)
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 1)
	if l := lines[0]; l["path"] != "/slow" || l["error"] != "backend_cut" {
		t.Fatalf("access log line of the cut request: %v, want path /slow and error backend_cut", l)
	}
}

// A kept listener takes a new name and new trusted_proxies at once,
// without a new socket.
func TestReloadListenerSettingsApplyAtOnce(t *testing.T) {
	a := newTestBackend(t, "a")
	base := onePool("round_robin", "", a)
	e := startEnv(t, base)
	addr := e.srv.Addr("web")
	spoof := http.Header{"X-Forwarded-For": {"1.2.3.4"}}
	e.do(http.MethodGet, "http://"+addr+"/", "", spoof, nil)
	if v := a.header().Get("X-Forwarded-For"); v != "127.0.0.1" {
		t.Fatalf("before: X-Forwarded-For %q", v)
	}
	changed := strings.Replace(base, `{name: web, listen: "127.0.0.1:0"}`,
		`{name: front, listen: "127.0.0.1:0", trusted_proxies: ["127.0.0.0/8"]}`, 1)
	if changed == base {
		t.Fatal("config template changed; fix the test")
	}
	if err := e.reload(changed); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Addr("front"); got != addr || e.srv.Addr("web") != "" {
		t.Fatalf("renamed listener: front %q web %q, want front at %s", got, e.srv.Addr("web"), addr)
	}
	if r := e.do(http.MethodGet, "http://"+addr+"/", "", spoof, nil); r.status != 200 {
		t.Fatal(r.status)
	}
	if v := a.header().Get("X-Forwarded-For"); v != "1.2.3.4, 127.0.0.1" {
		t.Fatalf("after reload: X-Forwarded-For %q, want the trusted chain", v)
	}
}

// secondInstance lets cfg start a second server in this process while the
// first still runs on the same data_dir (a restart, without stopping the
// first, which the test goes on using): the dynamic blocklist store admits
// one opener, so the second gets its own.
func secondInstance(t *testing.T, cfg *config.Config) {
	cfg.Security.DynamicBlocklist.Store = filepath.Join(t.TempDir(), "blocklist.db")
}

// shutdownReturned waits for the Shutdown whose result done carries, and
// fails the test if it failed or did not return.
func shutdownReturned(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return")
	}
}
