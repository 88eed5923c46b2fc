// Package e2e builds the rampart binary once and drives it as an operator
// would: real processes, real sockets (loopback only), real signals.
package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	res := run(t, 10*time.Second, "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "rampart") {
		t.Fatalf("rampart version: want exit 0 and output starting with \"rampart\"\n%s", res)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()

	t.Run("quickstart is valid", func(t *testing.T) {
		path := filepath.Join(moduleRoot, "examples", "quickstart.yaml")
		res := run(t, 10*time.Second, "validate", "-c", path)
		if res.code != 0 || !strings.Contains(res.stdout, "OK") {
			t.Fatalf("validate %s: want exit 0 and OK\n%s", path, res)
		}
	})

	t.Run("every mistake reported with its line", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		writeFile(t, path, badConfig)
		res := run(t, 10*time.Second, "validate", "-c", path)
		if res.code != 1 {
			t.Fatalf("validate of a bad file: want exit 1\n%s", res)
		}
		out := res.stdout + res.stderr
		for _, want := range []struct {
			line int
			text string
		}{
			{3, "admin.listen"},
			{6, "99999"},
			{8, `unknown key "bogus_key"`},
			{12, `pool "missing"`},
			{15, `unknown algorithm "fastest"`},
		} {
			prefix := fmt.Sprintf("%s:%d: ", path, want.line)
			if !hasLine(out, prefix, want.text) {
				t.Errorf("want a line starting with %q that mentions %q", prefix, want.text)
			}
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	})

	t.Run("bad line in a list file", func(t *testing.T) {
		// serve reads list files; validate must refuse what serve would.
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "block.txt"), "192.0.2.1\n# comment\n\nbad-entry\n")
		path := filepath.Join(dir, "r.yaml")
		writeFile(t, path, `listeners:
  - {name: public, listen: "127.0.0.1:8080"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends: [{id: w1, address: "127.0.0.1:9001"}]
security:
  ip_lists: {blocklist_files: [block.txt]}
`)
		res := run(t, 10*time.Second, "validate", "-c", path)
		if res.code != 1 || !hasLine(res.stdout+res.stderr, "block.txt:4: ", `"bad-entry" is not an IP address or CIDR`) {
			t.Fatalf("validate with a bad list file: want exit 1 and block.txt:4: ...bad-entry...\n%s", res)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "does-not-exist.yaml")
		res := run(t, 10*time.Second, "validate", "-c", path)
		if res.code != 1 || !strings.Contains(res.stdout+res.stderr, path) {
			t.Fatalf("validate of a missing file: want exit 1 naming %s\n%s", path, res)
		}
	})
}

// badConfig has five mistakes on known lines (3, 6, 8, 12, 15).
const badConfig = `data_dir: data
admin:
  listen: 0.0.0.0:9090
listeners:
  - name: public
    listen: 127.0.0.1:99999
    protocol: http
    bogus_key: 1
routes:
  - name: all
    match: {path_prefix: /}
    pool: missing
pools:
  - name: web
    algorithm: fastest
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`

// hasLine reports whether out has a line that starts with prefix and
// contains text.
func hasLine(out, prefix, text string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, text) {
			return true
		}
	}
	return false
}

func TestServeRefusesInvalidConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, path, badConfig)
	// run bounds the wait: a serve that starts anyway fails the test
	// instead of hanging it.
	res := run(t, 10*time.Second, "serve", "-c", path)
	if res.code != 1 {
		t.Fatalf("serve with an invalid file: want exit 1\n%s", res)
	}
	if !hasLine(res.stdout+res.stderr, path+":8: ", "bogus_key") {
		t.Fatalf("serve with an invalid file: want FILE:LINE: problems\n%s", res)
	}
}

func TestServeListenAddressInUse(t *testing.T) {
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	ports := freePorts(t, 3)
	dir := t.TempDir()
	path := filepath.Join(dir, "rampart.yaml")
	writeFile(t, path, fmt.Sprintf(`data_dir: data
admin:
  listen: 127.0.0.1:%d
listeners:
  - name: first
    listen: 127.0.0.1:%d
  - name: taken
    listen: %s
routes:
  - name: all
    match: {path_prefix: /}
    pool: web
pools:
  - name: web
    backends:
      - {id: web-1, address: 127.0.0.1:%d}
`, ports[0], ports[1], held.Addr().String(), ports[2]))
	line := lineOf(t, path, "listen: "+held.Addr().String())

	res := run(t, 10*time.Second, "serve", "-c", path)
	if res.code != 1 {
		t.Fatalf("serve with a listen address in use: want exit 1\n%s", res)
	}
	if !hasLine(res.stdout+res.stderr, fmt.Sprintf("%s:%d: ", path, line), "address already in use") {
		t.Fatalf("serve with a listen address in use: want %s:%d: ... address already in use\n%s", path, line, res)
	}
	// Nothing stays bound: the other listener's port is free again.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if err != nil {
		t.Fatalf("listener %q's port still bound after the refused start: %v", "first", err)
	}
	ln.Close()
}

func TestQuickstartBalancingAndAccessLog(t *testing.T) {
	t.Parallel()
	inst := quickstart(t)

	hits := spread(t, inst.base+"/", 30)
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		if hits[id] == 0 {
			t.Errorf("%s got none of 30 requests: %v", id, hits)
		}
	}
	if len(hits) != 3 {
		t.Errorf("requests to / answered by %v, want only web-1, web-2 and web-3", hits)
	}

	code, r, hdr := get(t, inst.base+"/api/users")
	if code != http.StatusOK || !strings.HasPrefix(r.Backend, "api-") || r.Pool != "api" {
		t.Fatalf("GET /api/users: status %d, reply %+v; want 200 from an api-* backend", code, r)
	}
	reqID := hdr.Get("X-Request-Id")
	if reqID == "" {
		t.Fatal("GET /api/users: no X-Request-Id in the response")
	}
	if r.XRequestID != reqID || r.XForwardedFor != "127.0.0.1" {
		t.Errorf("backend saw X-Request-Id %q and X-Forwarded-For %q; want %q (the id the client got) and 127.0.0.1",
			r.XRequestID, r.XForwardedFor, reqID)
	}

	// The quickstart listener also speaks HTTP/2 without TLS (h2c, prior
	// knowledge), as curl --http2-prior-knowledge does.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, Protocols: &protos}}
	t.Cleanup(h2c.CloseIdleConnections)
	resp, err := h2c.Get(inst.base + "/h2c")
	if err != nil {
		t.Fatalf("h2c GET: %v", err)
	}
	var h2r reply
	_ = json.NewDecoder(resp.Body).Decode(&h2r)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || !strings.HasPrefix(h2r.Backend, "web-") {
		t.Errorf("h2c GET /h2c: status %d over %s from %q; want 200 over HTTP/2 from a web-* backend", resp.StatusCode, resp.Proto, h2r.Backend)
	}

	// The access log goes to stdout ("-"): one JSON object per request.
	var entry map[string]any
	eventually(t, 5*time.Second, "the access log line of request "+reqID, func() bool {
		entry = findLogLine(inst.stdout.String(), reqID)
		return entry != nil
	})
	for _, field := range []string{"request_id", "status_code", "backend_id", "target_processing_time_ms"} {
		if _, ok := entry[field]; !ok {
			t.Errorf("access log line has no %q: %v", field, entry)
		}
	}
	if entry["status_code"] != float64(200) {
		t.Errorf("access log status_code = %v, want 200", entry["status_code"])
	}
	if entry["backend_id"] != r.Backend {
		t.Errorf("access log backend_id = %v, want %q (the backend that answered)", entry["backend_id"], r.Backend)
	}
	if ms, ok := entry["target_processing_time_ms"].(float64); !ok || ms < 0 {
		t.Errorf("access log target_processing_time_ms = %v, want a number >= 0 for a proxied request", entry["target_processing_time_ms"])
	}
	if entry["path"] != "/api/users" || entry["pool_id"] != "api" {
		t.Errorf("access log path/pool_id = %v/%v, want /api/users/api", entry["path"], entry["pool_id"])
	}
}

// findLogLine returns the JSON access-log line with the given request_id.
func findLogLine(out, requestID string) map[string]any {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["request_id"] == requestID {
			return m
		}
	}
	return nil
}

func TestQuarantineSurvivesRestart(t *testing.T) {
	t.Parallel()
	inst := quickstart(t)

	inst.mustCtl(t, "backend", "quarantine", "--pool", "web", "--backend", "web-2")
	hits := spread(t, inst.base+"/", 30)
	if hits["web-2"] != 0 || hits["web-1"] == 0 || hits["web-3"] == 0 {
		t.Fatalf("after quarantining web-2: %v; want web-2 none, web-1 and web-3 some", hits)
	}
	ps, raw := inst.listPool(t, "web")
	if st, _ := ps.state("web-2"); st != "quarantined" || !strings.Contains(raw, "quarantined") {
		t.Fatalf("ctl backend list --pool web: web-2 state %q, want quarantined\n%s", st, raw)
	}
	// data_dir: ../data resolves relative to the config file (dir/etc).
	if _, err := os.Stat(filepath.Join(inst.dir, "data", "backends.json")); err != nil {
		t.Fatalf("quarantine not persisted under data_dir relative to the config file: %v", err)
	}

	// A crash must not return a quarantined backend to rotation.
	inst.kill()
	if !inst.start() {
		t.Fatal("restart on the same ports failed: a port was taken")
	}
	ps, raw = inst.listPool(t, "web")
	if st, _ := ps.state("web-2"); st != "quarantined" {
		t.Fatalf("after kill -9 and restart: web-2 state %q, want quarantined\n%s", st, raw)
	}
	hits = spread(t, inst.base+"/", 30)
	if hits["web-2"] != 0 {
		t.Fatalf("after kill -9 and restart: web-2 got requests: %v", hits)
	}

	// Back from quarantine, web-2 is out until its health check has passed
	// again (it was not probed while quarantined).
	res := inst.mustCtl(t, "backend", "restore", "--pool", "web", "--backend", "web-2")
	if !strings.Contains(res.stdout, `"healthy": false`) {
		t.Fatalf("restore from quarantine: want web-2 reported not yet healthy\n%s", res)
	}
	eventually(t, 15*time.Second, "restored web-2 to take requests", func() bool {
		return spread(t, inst.base+"/", 9)["web-2"] > 0
	})
	ps, raw = inst.listPool(t, "web")
	if st, _ := ps.state("web-2"); st != "active" {
		t.Fatalf("after restore: web-2 state %q, want active\n%s", st, raw)
	}

	// Operator mistakes: exit 1 and a message that says what is wrong.
	res = inst.ctl(t, "backend", "quarantine", "--pool", "no-such-pool", "--backend", "web-2")
	if res.code != 1 || !strings.Contains(res.stderr, "unknown pool") || !strings.Contains(res.stderr, "no-such-pool") {
		t.Errorf("ctl quarantine on an unknown pool: want exit 1 naming the pool\n%s", res)
	}
	res = inst.ctl(t, "backend", "list", "--pool", "no-such-pool")
	if res.code != 1 || !strings.Contains(res.stderr, "unknown pool") {
		t.Errorf("ctl list of an unknown pool: want exit 1 and \"unknown pool\"\n%s", res)
	}
	res = inst.ctl(t, "backend", "restore", "--pool", "web", "--backend", "web-9")
	if res.code != 1 || !strings.Contains(res.stderr, "unknown backend") || !strings.Contains(res.stderr, "web-9") {
		t.Errorf("ctl restore of an unknown backend: want exit 1 naming the backend\n%s", res)
	}
}

func TestRegisterDeregister(t *testing.T) {
	t.Parallel()
	inst := quickstart(t)

	// extra-1 answers at once, except /hold, which it answers only when the
	// test releases it (or after 10 s), to have a request in flight during
	// the deregistration.
	var served atomic.Int64 // requests other than health checks
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	var released atomic.Bool
	releaseOnce := func() {
		if released.CompareAndSwap(false, true) {
			close(release)
		}
	}
	extra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			served.Add(1)
		}
		if r.URL.Path == "/hold" {
			select {
			case held <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"backend":"extra-1","pool":"web","path":%q}`+"\n", r.URL.Path)
	}))
	t.Cleanup(extra.Close)
	t.Cleanup(releaseOnce) // before extra.Close
	addr := strings.TrimPrefix(extra.URL, "http://")

	inst.mustCtl(t, "backend", "register", "--pool", "web", "--backend", "extra-1", "--address", addr)
	// The pool has a health check: the new backend takes requests once it
	// has passed (healthy_threshold 2, interval 2 s).
	eventually(t, 15*time.Second, "registered extra-1 to take requests", func() bool {
		return spread(t, inst.base+"/", 8)["extra-1"] > 0 && served.Load() > 0
	})
	ps, raw := inst.listPool(t, "web")
	if st, ok := ps.state("extra-1"); !ok || st != "active" {
		t.Fatalf("ctl backend list: extra-1 missing or not active\n%s", raw)
	}

	// Put one request in flight on extra-1: GET /hold until round robin
	// hands one to it (the web-* ones answer at once).
	type outcome struct {
		code int
		r    reply
		err  error
	}
	holdDone := make(chan outcome, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil}}
		defer c.CloseIdleConnections()
		for i := 0; i < 8; i++ {
			resp, err := c.Get(inst.base + "/hold")
			if err != nil {
				holdDone <- outcome{err: err}
				return
			}
			var r reply
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err != nil || r.Backend == "extra-1" {
				holdDone <- outcome{code: resp.StatusCode, r: r, err: err}
				return
			}
		}
		holdDone <- outcome{err: fmt.Errorf("8 requests to /hold never reached extra-1")}
	}()
	select {
	case <-held:
	case o := <-holdDone:
		t.Fatalf("no request held on extra-1: %+v", o)
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached extra-1's /hold within 10s")
	}

	// deregister --wait drains: no new requests, and it returns only once
	// the held request is done.
	dereg := runAsync(30*time.Second, "ctl", "--admin", inst.adminURL, "backend", "deregister", "--pool", "web", "--backend", "extra-1", "--wait")
	eventually(t, 10*time.Second, "extra-1 to be draining", func() bool {
		ps, _ := inst.listPool(t, "web")
		st, _ := ps.state("extra-1")
		return st == "draining"
	})
	served.Store(0)
	hits := spread(t, inst.base+"/", 12)
	if hits["extra-1"] != 0 || served.Load() != 0 {
		t.Fatalf("draining extra-1 got new requests: %v (served %d)", hits, served.Load())
	}
	select {
	case res := <-dereg:
		t.Fatalf("ctl deregister --wait returned with a request still in flight on the backend:\n%s", res)
	default:
	}

	releaseOnce()
	select {
	case o := <-holdDone:
		if o.err != nil || o.code != http.StatusOK || o.r.Backend != "extra-1" {
			t.Fatalf("request in flight during the drain: %+v; want 200 from extra-1", o)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("request in flight during the drain did not complete")
	}
	var res result
	select {
	case res = <-dereg:
	case <-time.After(35 * time.Second):
		t.Fatal("ctl deregister --wait did not return")
	}
	if res.code != 0 || !strings.Contains(res.stdout, "deregistered") {
		t.Fatalf("ctl deregister --wait: want exit 0 and state deregistered\n%s", res)
	}
	ps, raw = inst.listPool(t, "web")
	if _, ok := ps.state("extra-1"); ok {
		t.Fatalf("extra-1 still listed after deregister --wait\n%s", raw)
	}
	served.Store(0)
	hits = spread(t, inst.base+"/", 30)
	if hits["extra-1"] != 0 || served.Load() != 0 {
		t.Fatalf("deregistered extra-1 still gets requests: %v (served %d)", hits, served.Load())
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	inst := quickstart(t)
	good, err := os.ReadFile(inst.cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	// Before: /v2/ has no route of its own and goes to the default pool.
	if code, r, _ := get(t, inst.base+"/v2/items"); code != http.StatusOK || r.Pool != "web" {
		t.Fatalf("GET /v2/items before reload: %d %+v, want 200 from pool web", code, r)
	}

	// A broken file is refused on SIGHUP; the old config keeps serving.
	broken := string(good) + "bogus_top_level_key: true\n"
	writeFile(t, inst.cfgPath, broken)
	brokenLine := lineOf(t, inst.cfgPath, "bogus_top_level_key")
	inst.signal(syscall.SIGHUP)
	inst.waitStderr("reload refused", 10*time.Second)
	if inst.exited() {
		t.Fatalf("rampart exited after a SIGHUP with a broken file (code %d)", inst.code)
	}
	hits := spread(t, inst.base+"/", 9)
	if len(hits) != 3 {
		t.Fatalf("after a refused reload: %v, want web-1..3 still serving", hits)
	}

	// The same through the admin API: exit 1 and the problem printed.
	res := inst.ctl(t, "reload")
	if res.code != 1 {
		t.Fatalf("ctl reload with a broken file: want exit 1\n%s", res)
	}
	if want := fmt.Sprintf("%s:%d:", inst.cfgPath, brokenLine); !strings.Contains(res.stderr, want) || !strings.Contains(res.stderr, "bogus_top_level_key") {
		t.Fatalf("ctl reload with a broken file: want the problem %q ... bogus_top_level_key printed\n%s", want, res)
	}

	// A fixed file with a new route is taken on SIGHUP.
	fixed := strings.Replace(string(good), "routes:\n", "routes:\n  - name: v2\n    match: {path_prefix: /v2/}\n    pool: api\n", 1)
	if fixed == string(good) {
		t.Fatal("quickstart has no \"routes:\" line to add a route under")
	}
	writeFile(t, inst.cfgPath, fixed)
	inst.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the new /v2/ route to serve from pool api", func() bool {
		code, r, _ := get(t, inst.base+"/v2/items")
		return code == http.StatusOK && r.Pool == "api"
	})
	hits = spread(t, inst.base+"/", 9)
	if len(hits) != 3 {
		t.Fatalf("after the reload: / answered by %v, want web-1..3", hits)
	}
	var st struct {
		Reloads int `json:"reloads"`
	}
	res = inst.mustCtl(t, "status")
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.Reloads != 1 {
		t.Fatalf("ctl status: want reloads 1 (one refused, one applied)\n%s", res)
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()

	// The slow backend holds its answer until the test has checked that
	// rampart refuses new connections (or 5 s pass), so the request is
	// certainly in flight during the shutdown without the test relying on
	// how long anything takes.
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"backend":"slow-1","pool":"slow"}`)
	}))
	t.Cleanup(slow.Close)
	var once atomic.Bool
	releaseOnce := func() {
		if once.CompareAndSwap(false, true) {
			close(release)
		}
	}
	t.Cleanup(releaseOnce) // runs before slow.Close

	var p *proc
	var listen, adminURL string
	for attempt := 0; ; attempt++ {
		ports := freePorts(t, 2)
		listen = fmt.Sprintf("127.0.0.1:%d", ports[0])
		adminURL = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		path := filepath.Join(t.TempDir(), "rampart.yaml")
		writeFile(t, path, fmt.Sprintf(`data_dir: data
shutdown_timeout: 20s
admin:
  listen: 127.0.0.1:%d
listeners:
  - name: public
    listen: %s
routes:
  - name: all
    match: {path_prefix: /}
    pool: slow
pools:
  - name: slow
    backends:
      - {id: slow-1, address: %s}
`, ports[1], listen, strings.TrimPrefix(slow.URL, "http://")))
		p = startServe(t, "-c", path)
		if p.waitReady(adminURL) {
			break
		}
		if attempt == 2 {
			t.Fatal("could not start rampart on free ports")
		}
	}

	type outcome struct {
		code int
		body reply
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		// Its own client: the request must not share a connection with
		// anything else.
		c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil}}
		resp, err := c.Get("http://" + listen + "/slow")
		if err != nil {
			done <- outcome{err: err}
			return
		}
		defer resp.Body.Close()
		var r reply
		err = json.NewDecoder(resp.Body).Decode(&r)
		done <- outcome{code: resp.StatusCode, body: r, err: err}
	}()
	select {
	case <-arrived:
	case o := <-done:
		t.Fatalf("slow request finished before it reached the backend: %+v", o)
	case <-time.After(10 * time.Second):
		t.Fatal("slow request did not reach the backend within 10s")
	}

	p.signal(syscall.SIGTERM)
	eventually(t, 10*time.Second, "new connections to be refused after SIGTERM", func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case o := <-done:
		t.Fatalf("in-flight request ended before its backend answered: %+v", o)
	default:
	}
	if p.exited() {
		t.Fatalf("rampart exited (code %d) with a request still in flight", p.code)
	}

	releaseOnce()
	select {
	case o := <-done:
		if o.err != nil || o.code != http.StatusOK || o.body.Backend != "slow-1" {
			t.Fatalf("in-flight request across SIGTERM: status %d, reply %+v, err %v; want 200 from slow-1", o.code, o.body, o.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("in-flight request did not complete within 15s of SIGTERM")
	}
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("rampart exit code after SIGTERM = %d, want 0\n%s", code, p.stderr.String())
	}
}

// TestShutdownTimeoutFollowsAPIReload: SIGTERM uses the shutdown_timeout of
// the running config, also when that config came from a reload through the
// admin API rather than SIGHUP (it kept the start-up value).
func TestShutdownTimeoutFollowsAPIReload(t *testing.T) {
	t.Parallel()
	inst := quickstart(t)
	good, err := os.ReadFile(inst.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, inst.cfgPath, string(good)+"shutdown_timeout: 7s\n")
	inst.mustCtl(t, "reload")
	inst.signal(syscall.SIGTERM)
	if code := inst.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	if !strings.Contains(inst.stderr.String(), `"timeout":"7s"`) {
		t.Fatalf("shutdown log line does not carry the reloaded shutdown_timeout 7s\n%s", tail(inst.stderr.String(), 2000))
	}
}
