package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/proxy"
	"github.com/rampart-proxy/rampart/internal/testnet"
)

// onePool is a config with one listener "web" and one pool "p" behind a
// catch-all route; extra is appended to the pool.
func onePool(algorithm, extra string, bs ...*testBackend) string {
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    algorithm: %s
    backends: %s
%s`, algorithm, backendsYAML(bs...), extra)
}

// assertGeneric checks an error answer Rampart wrote itself: the status,
// a body that names the request id, and nothing about backends.
func assertGeneric(t *testing.T, r resp, status int, bs ...*testBackend) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d (body %q)", r.status, status, r.body)
	}
	id := r.header.Get("X-Request-Id")
	if id == "" || !strings.Contains(r.body, "request_id: "+id) {
		t.Errorf("body %q does not carry the request_id %q", r.body, id)
	}
	for _, b := range bs {
		_, port, _ := net.SplitHostPort(b.addr())
		if strings.Contains(r.body, b.addr()) || strings.Contains(r.body, ":"+port) {
			t.Errorf("error body %q reveals backend %s (%s)", r.body, b.id, b.addr())
		}
	}
	if strings.Contains(r.body, "127.0.0.1") || strings.Contains(strings.ToLower(r.body), "dial") {
		t.Errorf("error body %q is not generic", r.body)
	}
	if s := r.header.Get("Server"); s != "" {
		t.Errorf("Server header %q on an error answer", s)
	}
}

func TestRoutingThroughProxy(t *testing.T) {
	bs := newTestBackends(t, "exact", "exactv1", "wild", "anyapi", "anyroot")
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: any-root, match: {path_prefix: /}, pool: anyroot}
  - {name: any-api, match: {path_prefix: /api}, pool: anyapi}
  - {name: wild, match: {host: "*.example.com", path_prefix: /api}, pool: wild}
  - {name: exact, match: {host: api.example.com, path_prefix: /api}, pool: exact}
  - {name: exact-v1, match: {host: api.example.com, path_prefix: /api/v1}, pool: exactv1}
pools:
  - {name: exact, backends: %s}
  - {name: exactv1, backends: %s}
  - {name: wild, backends: %s}
  - {name: anyapi, backends: %s}
  - {name: anyroot, backends: %s}
`, backendsYAML(bs[0]), backendsYAML(bs[1]), backendsYAML(bs[2]), backendsYAML(bs[3]), backendsYAML(bs[4])))

	cases := []struct{ host, path, want string }{
		{"api.example.com", "/api", "exact"},
		{"api.example.com", "/api/x", "exact"},
		{"api.example.com", "/api/v1/users", "exactv1"},
		{"api.example.com", "/api/v10", "exact"},
		{"API.Example.com:8080", "/api/v1", "exactv1"},
		{"www.example.com", "/api/x", "wild"},
		{"WWW.EXAMPLE.COM:1234", "/api", "wild"},
		{"a.b.example.com", "/api/x", "anyapi"},
		{"example.com", "/api", "anyapi"},
		{"other.test", "/api", "anyapi"},
		{"other.test", "/apix", "anyroot"},
		{"www.example.com", "/apix", "anyroot"},
		{"api.example.com", "/", "anyroot"},
	}
	for _, c := range cases {
		r := e.do(http.MethodGet, e.url("web", c.path), c.host, nil, nil)
		if r.status != http.StatusOK || r.body != c.want {
			t.Errorf("Host %s path %s: %d %q, want 200 %q", c.host, c.path, r.status, r.body, c.want)
		}
	}
	// The backend receives the client's Host, path and query unchanged.
	r := e.do(http.MethodGet, e.url("web", "/api/v1/x?q=1&r=%2F"), "api.example.com", nil, nil)
	if r.status != 200 {
		t.Fatal(r.status)
	}
	bs[1].setHandler(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Host, r.URL.Path, r.URL.RawQuery)
	})
	r = e.do(http.MethodGet, e.url("web", "/api/v1/x?q=1&r=%2F"), "api.example.com", nil, nil)
	if r.body != "api.example.com /api/v1/x q=1&r=%2F" {
		t.Errorf("backend saw %q", r.body)
	}
}

func TestNoRouteIs404Generic(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: api, match: {host: api.example.com, path_prefix: /api}, pool: p}
pools:
  - {name: p, backends: %s}
`, backendsYAML(b)))
	for _, c := range []struct{ host, path string }{
		{"other.test", "/api"},
		{"api.example.com", "/apix"},
		{"x.api.example.com", "/api"},
	} {
		r := e.do(http.MethodGet, e.url("web", c.path), c.host, nil, nil)
		assertGeneric(t, r, http.StatusNotFound, b)
		if !strings.Contains(r.body, "request_id") {
			t.Errorf("404 body %q has no request_id", r.body)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend received %d requests without a route", n)
	}
	if r := e.do(http.MethodGet, e.url("web", "/api/x"), "api.example.com", nil, nil); r.status != 200 || r.body != "a" {
		t.Errorf("routed request: %d %q", r.status, r.body)
	}
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	bs := newTestBackends(t, "a", "b", "c")
	e := startEnv(t, onePool("round_robin", "", bs...))
	got := e.countHits(300, "/", nil)
	for _, b := range bs {
		if got[b.id] != 100 || b.hits.Load() != 100 {
			t.Errorf("backend %s: %d answers, %d received; want exactly 100 of 300 (all: %v)", b.id, got[b.id], b.hits.Load(), got)
		}
	}
}

func TestWeightedRoundRobinProportions(t *testing.T) {
	bs := newTestBackends(t, "a", "b", "c")
	cfg := fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    algorithm: weighted_round_robin
    backends:
      - {id: a, address: %q, weight: 3}
      - {id: b, address: %q, weight: 2}
      - {id: c, address: %q, weight: 1}
`, bs[0].addr(), bs[1].addr(), bs[2].addr())
	e := startEnv(t, cfg)
	got := e.countHits(600, "/", nil)
	want := map[string]int{"a": 300, "b": 200, "c": 100}
	for id, n := range want {
		if got[id] != n {
			t.Errorf("backend %s: %d of 600, want %d (all: %v)", id, got[id], n, got)
		}
	}
	// Smooth: the heaviest backend never gets more than weight-many in a row.
	run, last := 0, ""
	for i := 0; i < 60; i++ {
		r := e.get("/")
		if r.body == last {
			run++
		} else {
			run, last = 1, r.body
		}
		if run > 3 {
			t.Fatalf("backend %s answered %d requests in a row", last, run)
		}
	}
}

func TestConsistentHashByHeader(t *testing.T) {
	bs := newTestBackends(t, "a", "b", "c")
	e := startEnv(t, onePool("consistent_hash", "    hash_key: header:X-User\n", bs...))
	owner := map[string]string{}
	used := map[string]bool{}
	for round := 0; round < 3; round++ {
		for u := 0; u < 30; u++ {
			user := fmt.Sprintf("user-%d", u)
			r := e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-User": {user}}, nil)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			if prev, ok := owner[user]; ok && prev != r.body {
				t.Fatalf("user %s went to %s, earlier to %s", user, r.body, prev)
			}
			owner[user] = r.body
			used[r.body] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("30 users all hashed to %v: the key is not used", used)
	}
	// Taking one backend out moves only its own users.
	var out string
	for _, b := range bs {
		if used[b.id] {
			out = b.id
			break
		}
	}
	if _, err := e.srv.Registry().Quarantine("p", out); err != nil {
		t.Fatal(err)
	}
	for user, was := range owner {
		r := e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-User": {user}}, nil)
		if r.status != 200 || r.body == out {
			t.Fatalf("user %s: %d %q with %s quarantined", user, r.status, r.body, out)
		}
		if was != out && r.body != was {
			t.Errorf("user %s moved from %s to %s although %s was not touched", user, was, r.body, was)
		}
	}
}

// forwardPath is one of the ways a request reaches its backend, for tests
// that must hold on all of them.
type forwardPath struct {
	method string
	body   func() io.Reader
	// expect adds Expect: 100-continue, which only httputil.ReverseProxy
	// and http.Transport handle.
	expect bool
}

// header returns h, with Expect on the http.Transport path.
func (p forwardPath) header(h http.Header) http.Header {
	if p.expect {
		h = h.Clone()
		h.Set("Expect", "100-continue")
	}
	return h
}

// bothPaths runs a header test over every forwarding path: a bodiless GET,
// a POST with a small body of known length (read whole) and one with a
// chunked body (streamed) take the direct client; a POST with Expect takes
// httputil.ReverseProxy. The rules of what the backend sees must be the
// same on all of them.
func bothPaths(t *testing.T, f func(t *testing.T, p forwardPath)) {
	for name, p := range map[string]forwardPath{
		"direct-GET":         {http.MethodGet, func() io.Reader { return nil }, false},
		"direct-POST":        {http.MethodPost, func() io.Reader { return strings.NewReader("payload") }, false},
		"direct-POST-stream": {http.MethodPost, func() io.Reader { return unsized("payload") }, false},
		"reverseproxy-POST":  {http.MethodPost, func() io.Reader { return unsized("payload") }, true},
	} {
		t.Run(name, func(t *testing.T) { f(t, p) })
	}
}

func TestHopByHopHeadersNotForwarded(t *testing.T) { bothPaths(t, testHopByHopHeadersNotForwarded) }

func testHopByHopHeadersNotForwarded(t *testing.T, p forwardPath) {
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		// Read: a net/http server that leaves an Expect request's body
		// unread answers "Connection: close" instead of the handler's own
		// Connection field, and X-Secret-Hop would be end-to-end.
		io.Copy(io.Discard, r.Body)
		// Hop-by-hop headers of the response must not reach the client.
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "backend-internal")
		w.Header().Set("Keep-Alive", "timeout=99")
		w.Header().Set("X-End-To-End", "kept")
		io.WriteString(w, "ok")
	})
	e := startEnv(t, onePool("round_robin", "", b))
	hdr := http.Header{
		"Connection":       {"keep-alive, X-Foo"},
		"X-Foo":            {"listed-in-connection"},
		"Keep-Alive":       {"timeout=5"},
		"Proxy-Connection": {"keep-alive"},
		"Te":               {"gzip"},
		"X-Keep":           {"end-to-end"},
	}
	r := e.do(p.method, e.url("web", "/"), "", p.header(hdr), p.body())
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	got := b.header()
	for _, h := range []string{"X-Foo", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade"} {
		if v, ok := got[h]; ok {
			t.Errorf("hop-by-hop header %s: %q reached the backend", h, v)
		}
	}
	if c := got.Get("Connection"); strings.Contains(strings.ToLower(c), "x-foo") {
		t.Errorf("Connection %q reached the backend", c)
	}
	if got.Get("X-Keep") != "end-to-end" {
		t.Errorf("end-to-end header lost: %v", got)
	}
	if v := r.header.Get("X-Secret-Hop"); v != "" {
		t.Errorf("response header listed in Connection reached the client: %q", v)
	}
	if v := r.header.Get("Keep-Alive"); v != "" {
		t.Errorf("response Keep-Alive reached the client: %q", v)
	}
	if r.header.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end response header lost: %v", r.header)
	}
}

func TestForwardedHeadersFromUntrustedPeer(t *testing.T) {
	bothPaths(t, testForwardedHeadersFromUntrustedPeer)
}

func testForwardedHeadersFromUntrustedPeer(t *testing.T, p forwardPath) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b)+"logging: {access_log: {path: access.log}}\n")
	r := e.do(p.method, e.url("web", "/x"), "shop.example.com:8080", p.header(http.Header{
		"X-Forwarded-For":   {"1.2.3.4"},
		"X-Forwarded-Host":  {"evil.test"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=1.2.3.4;proto=https"},
		"X-Real-Ip":         {"1.2.3.4"},
	}), p.body())
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	got := b.header()
	if v := got.Values("X-Forwarded-For"); len(v) != 1 || v[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For at backend = %q, want [127.0.0.1] (spoofed value must be replaced)", v)
	}
	if v := got.Get("X-Forwarded-Host"); v != "shop.example.com:8080" {
		t.Errorf("X-Forwarded-Host = %q, want the client's Host", v)
	}
	if v := got.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want [http]", v)
	}
	if v := got.Get("Forwarded"); v != "" {
		t.Errorf("spoofed Forwarded header passed through: %q", v)
	}
	if v := got.Get("X-Real-Ip"); v != "" {
		t.Errorf("spoofed X-Real-IP header passed through: %q", v)
	}
	lines := accessLogLines(t, e.dir+"/access.log", 1)
	if ip := lines[0]["client_ip"]; ip != "127.0.0.1" {
		t.Errorf("access log client_ip = %v, want 127.0.0.1", ip)
	}
	if v := lines[0]["x_forwarded_for"]; v != "127.0.0.1" {
		t.Errorf("access log x_forwarded_for = %v", v)
	}
}

func TestForwardedHeadersFromTrustedPeer(t *testing.T) {
	bothPaths(t, testForwardedHeadersFromTrustedPeer)
}

func testForwardedHeadersFromTrustedPeer(t *testing.T, p forwardPath) {
	b := newTestBackend(t, "a")
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1]}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
logging: {access_log: {path: access.log}}
`, backendsYAML(b)))
	r := e.do(p.method, e.url("web", "/"), "", p.header(http.Header{"X-Forwarded-For": {"1.2.3.4"}}), p.body())
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if v := b.header().Values("X-Forwarded-For"); len(v) != 1 || v[0] != "1.2.3.4, 127.0.0.1" {
		t.Errorf("X-Forwarded-For at backend = %q, want [\"1.2.3.4, 127.0.0.1\"]", v)
	}
	// Without a header the peer is the client.
	e.get("/")
	if v := b.header().Get("X-Forwarded-For"); v != "127.0.0.1" {
		t.Errorf("X-Forwarded-For without incoming header = %q", v)
	}
	lines := accessLogLines(t, e.dir+"/access.log", 2)
	if ip := lines[0]["client_ip"]; ip != "1.2.3.4" {
		t.Errorf("access log client_ip = %v, want 1.2.3.4 (believed from trusted peer)", ip)
	}
	if ip := lines[1]["client_ip"]; ip != "127.0.0.1" {
		t.Errorf("access log client_ip = %v, want 127.0.0.1", ip)
	}
}

func TestRequestIDHeader(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b))

	// Absent: generated, the same at the backend and in the response.
	r := e.get("/")
	id := r.header.Get("X-Request-Id")
	if id == "" {
		t.Fatal("no X-Request-Id in the response")
	}
	if v := b.header().Values("X-Request-Id"); len(v) != 1 || v[0] != id {
		t.Errorf("backend saw X-Request-Id %q, response has %q", v, id)
	}
	if id2 := e.get("/").header.Get("X-Request-Id"); id2 == id || id2 == "" {
		t.Errorf("second request id %q (first %q)", id2, id)
	}

	// A sane client id is kept end to end.
	r = e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-Request-Id": {"trace-42.abc_DEF:1"}}, nil)
	if v := r.header.Values("X-Request-Id"); len(v) != 1 || v[0] != "trace-42.abc_DEF:1" {
		t.Errorf("response X-Request-Id = %q, want the client's", v)
	}
	if v := b.header().Get("X-Request-Id"); v != "trace-42.abc_DEF:1" {
		t.Errorf("backend X-Request-Id = %q, want the client's", v)
	}

	// An id with odd characters is replaced, at the backend and in the answer.
	for _, bad := range []string{`x" onload="alert(1)`, "a b", "../../etc", strings.Repeat("a", 200)} {
		r = e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-Request-Id": {bad}}, nil)
		got := r.header.Get("X-Request-Id")
		if got == bad || got == "" {
			t.Errorf("bad id %q kept in the response (%q)", bad, got)
		}
		if v := b.header().Get("X-Request-Id"); v != got {
			t.Errorf("backend X-Request-Id %q differs from the response's %q", v, got)
		}
	}

	// A backend that sets its own X-Request-Id does not produce a second
	// value in the answer: the client sees one id, Rampart's.
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "backend-made")
		io.WriteString(w, "ok")
	})
	r = e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-Request-Id": {"client-1"}}, nil)
	if v := r.header.Values("X-Request-Id"); len(v) != 1 || v[0] != "client-1" {
		t.Errorf("response X-Request-Id = %q, want [client-1]", v)
	}
}

// A backend that sends an informational 103 Early Hints before its answer:
// the final answer still carries Rampart's request id.
func TestRequestIDAfterEarlyHints(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	})
	e := startEnv(t, onePool("round_robin", "", b))
	r := e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-Request-Id": {"hinted-1"}}, nil)
	if r.status != 200 || r.body != "final" {
		t.Fatalf("%d %q", r.status, r.body)
	}
	if v := r.header.Values("X-Request-Id"); len(v) != 1 || v[0] != "hinted-1" {
		t.Errorf("final response X-Request-Id = %q, want [hinted-1]", v)
	}
}

func TestStreamingResponseArrivesInParts(t *testing.T) {
	// Chunked (length unknown) and with a Content-Length: both must be
	// relayed as the backend flushes, not when it finishes.
	for _, length := range []string{"", "16"} {
		t.Run("content-length="+length, func(t *testing.T) {
			release := newGate()
			defer release.open()
			b := newTestBackend(t, "a")
			b.setHandler(func(w http.ResponseWriter, r *http.Request) {
				if length != "" {
					w.Header().Set("Content-Length", length)
				}
				io.WriteString(w, "chunk-1\n")
				w.(http.Flusher).Flush()
				block(r, release.ch)
				io.WriteString(w, "chunk-2\n")
			})
			e := startEnv(t, onePool("round_robin", "", b))
			res, err := e.client.Get(e.url("web", "/stream"))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			br := bufio.NewReader(res.Body)
			line, err := readLineTimeout(br)
			if err != nil || line != "chunk-1\n" {
				t.Fatalf("first part: %q, %v (the response is buffered until the backend finishes?)", line, err)
			}
			release.open()
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "chunk-2\n" {
				t.Fatalf("rest: %q, %v", rest, err)
			}
		})
	}
}

// readLineTimeout reads one line, failing instead of hanging.
func readLineTimeout(br *bufio.Reader) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := br.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(testTimeout):
		return "", errors.New("timed out")
	}
}

func TestStreamingRequestBodyReachesBackendEarly(t *testing.T) {
	firstPart := make(chan string, 1)
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		br := bufio.NewReader(r.Body)
		line, _ := br.ReadString('\n')
		firstPart <- line
		rest, _ := io.ReadAll(br)
		fmt.Fprintf(w, "%s|%s", strings.TrimSpace(line), rest)
	})
	e := startEnv(t, onePool("round_robin", "", b))

	pr, pw := io.Pipe()
	defer pw.Close()
	done := e.goPost("/upload", pr)
	if _, err := io.WriteString(pw, "part-1\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-firstPart:
		if got != "part-1\n" {
			t.Fatalf("backend read %q", got)
		}
	case <-time.After(testTimeout):
		t.Fatal("the first part of the body did not reach the backend before the client finished sending")
	}
	io.WriteString(pw, "part-2")
	pw.Close()
	if res := waitResult(t, done); res.err != nil || res.r.status != 200 || res.r.body != "part-1|part-2" {
		t.Fatalf("answer: %+v, %v", res.r, res.err)
	}
}

// wsEcho is a backend that switches protocols on "Upgrade: websocket" and
// then echoes every byte back.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	// The backend's own request id: the client must see Rampart's only.
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Request-Id: backend-id\r\n\r\n")
	brw.Flush()
	conn.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 1024)
	for {
		n, err := brw.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wsDial performs a raw upgrade handshake over TCP and returns the
// connection and a reader positioned after the 101 response.
func wsDial(t *testing.T, addr string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(testTimeout))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, res
}

func TestWebSocketUpgrade(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(wsEcho)
	e := startEnv(t, onePool("round_robin", "logging: {access_log: {path: access.log}}\n", b))
	conn, br, res := wsDial(t, e.srv.Addr("web"))
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	if !strings.EqualFold(res.Header.Get("Upgrade"), "websocket") {
		t.Errorf("Upgrade header %q", res.Header.Get("Upgrade"))
	}
	for _, msg := range []string{"hello", "second message", strings.Repeat("x", 5000)} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
		if string(got) != msg {
			t.Fatalf("echo = %q, want %q", got[:min(len(got), 20)], msg[:min(len(msg), 20)])
		}
	}
	if n := e.backend("p", "a").InFlight(); n != 1 {
		t.Errorf("in-flight during the upgraded connection = %d, want 1", n)
	}
	conn.Close()
	eventually(t, "in-flight back to 0 after the WebSocket closed", func() bool { return e.backend("p", "a").InFlight() == 0 })
	l := lastLogLine(t, e, 1)
	if l["status_code"] != 101.0 || l["target_status_code"] != 101.0 {
		t.Errorf("access log of the upgrade: status %v target %v, want 101 101", l["status_code"], l["target_status_code"])
	}
	if ids := res.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] != l["request_id"] {
		t.Errorf("X-Request-Id of the 101: %q, want exactly the logged %v", ids, l["request_id"])
	}
}

// The bytes relayed through an upgraded connection are the request's and
// the response's sizes in the access log (client to backend, backend to
// client; the heads are not counted, as for any request), and its
// request_time_ms covers the tunnel's life: a WebSocket carrying megabytes
// out shows them.
func TestWebSocketBytesLogged(t *testing.T) {
	const up, down = 10000, 3<<20 + 7 // bytes client → backend, backend → client
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(testTimeout))
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		if _, err := io.ReadFull(brw, make([]byte, up)); err != nil {
			return
		}
		brw.Write(bytes.Repeat([]byte("d"), down))
		brw.Flush()
		io.Copy(io.Discard, brw) // until the client closes
	})
	e := startEnv(t, onePool("round_robin", "logging: {access_log: {path: access.log}}\n", b))
	conn, br, res := wsDial(t, e.srv.Addr("web"))
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	if _, err := conn.Write(bytes.Repeat([]byte("u"), up)); err != nil {
		t.Fatal(err)
	}
	if n, err := io.CopyN(io.Discard, br, down); err != nil {
		t.Fatalf("read %d of the %d bytes the backend sent: %v", n, down, err)
	}
	const held = 300 * time.Millisecond
	time.Sleep(held) // the tunnel stays open a while
	conn.Close()
	l := lastLogLine(t, e, 1)
	if l["status_code"] != 101.0 || l["request_size_bytes"] != float64(up) || l["response_size_bytes"] != float64(down) {
		t.Errorf("access log of the tunnel: status %v, request_size_bytes %v, response_size_bytes %v; want 101, %d, %d",
			l["status_code"], l["request_size_bytes"], l["response_size_bytes"], up, down)
	}
	// At least the time the test held it open after the transfers (the
	// record's clock and the test's are read at different moments, so
	// the test's whole reading is no bound to the millisecond).
	if ms, _ := l["request_time_ms"].(float64); ms < float64(held.Milliseconds()) {
		t.Errorf("request_time_ms %v, want at least the %d ms the tunnel was held open", l["request_time_ms"], held.Milliseconds())
	}
}

// An upgraded connection is in flight: quarantining the backend cuts it.
func TestWebSocketCutOnQuarantine(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(wsEcho)
	e := startEnv(t, onePool("round_robin", "", b))
	conn, br := wsEchoing(t, e)
	if _, err := e.srv.Registry().Quarantine("p", "a"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("upgraded connection still open after quarantine")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("upgraded connection not cut by quarantine (read timed out)")
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		// Rampart speaks HTTP/1.1 to backends.
		fmt.Fprintf(w, "%s %s", r.Proto, r.Header.Get("X-Forwarded-Proto"))
	})
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", h2c: true}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
`, backendsYAML(b)))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: testTimeout}
	res, err := c.Get(e.url("web", "/h2"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.ProtoMajor != 2 {
		t.Fatalf("status %d proto %s, want 200 over HTTP/2", res.StatusCode, res.Proto)
	}
	if string(body) != "HTTP/1.1 http" {
		t.Errorf("backend saw %q", body)
	}
	if res.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id over h2c")
	}
	// HTTP/1.1 still works on the same listener.
	if r := e.get("/"); r.status != 200 {
		t.Errorf("HTTP/1.1 on an h2c listener: %d", r.status)
	}
}

// Without h2c on the listener, an HTTP/2 prior-knowledge client is refused.
func TestH2CDisabledByDefault(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: testTimeout}
	res, err := c.Get(e.url("web", "/"))
	if err == nil {
		res.Body.Close()
		if res.ProtoMajor == 2 {
			t.Fatal("HTTP/2 served on a listener without h2c")
		}
	}
	if b.hits.Load() != 0 {
		t.Fatal("request reached the backend")
	}
}

func TestRetryOnConnectFailure(t *testing.T) {
	live := newTestBackend(t, "live")
	dead := deadAddr(t)
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
  - {name: hashed, match: {path_prefix: /ch}, pool: ch}
pools:
  - name: p
    algorithm: round_robin
    retries: 3
    backends: [{id: dead, address: %[1]q}, {id: live, address: %[2]q}]
  - name: ch
    algorithm: consistent_hash
    hash_key: header:X-User
    retries: 3
    backends: [{id: dead, address: %[1]q}, {id: live, address: %[2]q}]
logging: {access_log: {path: access.log}}
`, dead, live.addr()))

	// Round robin starts at the first backend, so the very first request
	// goes to the dead one: a POST with a body is not retried.
	r := e.do(http.MethodPost, e.url("web", "/submit"), "", nil, strings.NewReader("payload"))
	assertGeneric(t, r, http.StatusBadGateway)
	if n := live.hits.Load(); n != 0 {
		t.Fatalf("POST was retried on the live backend (%d requests)", n)
	}

	// Every GET succeeds; with round robin they meet the dead backend
	// first, and with consistent hashing the users that map to the
	// dead backend are retried on the live one, never on the dead one again.
	const n = 20
	users := map[int]string{}
	for i := 0; i < 2*n; i++ {
		var r resp
		if i < n {
			r = e.get("/")
		} else {
			users[i+1] = fmt.Sprintf("user-%d", i)
			r = e.do(http.MethodGet, e.url("web", "/ch"), "", http.Header{"X-User": {users[i+1]}}, nil)
		}
		if r.status != 200 || r.body != "live" {
			t.Fatalf("GET %d: %d %q", i, r.status, r.body)
		}
	}
	if got := live.hits.Load(); got != 2*n {
		t.Fatalf("live backend received %d, want %d", got, 2*n)
	}
	lines := accessLogLines(t, e.dir+"/access.log", 2*n+1)
	post := lines[0]
	if post["method"] != "POST" || post["attempts"] != 1.0 || post["backend_id"] != "dead" || post["status_code"] != 502.0 {
		t.Errorf("POST log line: method %v attempts %v backend %v status %v", post["method"], post["attempts"], post["backend_id"], post["status_code"])
	}
	retried := map[string]int{}
	var deadUser string
	for i, l := range lines[1:] {
		a, _ := l["attempts"].(float64)
		if a < 1 || a > 2 {
			t.Errorf("GET %d (route %v): %v attempts; the dead backend must be tried at most once, then the live one", i, l["route"], a)
		}
		if a == 2 {
			retried[l["route"].(string)]++
			if u, ok := users[i+1]; ok {
				deadUser = u
			}
		}
		if l["backend_id"] != "live" || l["status_code"] != 200.0 {
			t.Errorf("GET %d: backend %v status %v", i, l["backend_id"], l["status_code"])
		}
	}
	// The POST took the dead backend's turn, so the first GET goes to the
	// live one; every later GET starts at the dead one.
	if retried["all"] != n-1 || retried["hashed"] == 0 || deadUser == "" {
		t.Fatalf("retried requests by route: %v; %d round-robin GETs and some hashed users should have met the dead backend", retried, n-1)
	}

	// A PUT (idempotent) with a body of a user that hashes to the dead
	// backend is retried on the live one, which gets the whole body.
	var putBody atomic.Value
	live.setHandler(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		putBody.Store(r.Method + " " + string(b))
		io.WriteString(w, "live")
	})
	r = e.do(http.MethodPut, e.url("web", "/ch"), "", http.Header{"X-User": {deadUser}}, strings.NewReader("put payload"))
	if r.status != 200 || r.body != "live" || putBody.Load() != "PUT put payload" {
		t.Fatalf("PUT to the dead backend: %d %q, live backend got %v; want it retried with its body", r.status, r.body, putBody.Load())
	}
	if got := live.hits.Load(); got != 2*n+1 {
		t.Fatalf("live backend received %d, want %d", got, 2*n+1)
	}

	// A POST of a user that hashes to the dead backend: 502, not retried.
	r = e.do(http.MethodPost, e.url("web", "/ch"), "", http.Header{"X-User": {deadUser}}, strings.NewReader("payload"))
	assertGeneric(t, r, http.StatusBadGateway)
	if got := live.hits.Load(); got != 2*n+1 {
		t.Fatalf("POST to the dead backend was retried on the live one")
	}
}

// Retries stop at the configured count: with retries 0 a connect failure
// is answered 502 even for a GET.
func TestNoRetryWhenRetriesZero(t *testing.T) {
	live := newTestBackend(t, "live")
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    retries: 0
    backends: [{id: dead, address: %q}, {id: live, address: %q}]
`, deadAddr(t), live.addr()))
	r := e.get("/")
	if r.status != http.StatusBadGateway || live.hits.Load() != 0 {
		t.Fatalf("first GET (to the dead backend) with retries 0: %d, live hits %d", r.status, live.hits.Load())
	}
}

func TestNoHealthyBackendIs503(t *testing.T) {
	b := newTestBackend(t, "a")
	b.healthFail.Store(true)
	e := startEnv(t, onePool("round_robin",
		"    health_check: {path: /healthz, interval: 100ms, timeout: 80ms, unhealthy_threshold: 1}\n", b))
	eventually(t, "backend marked unhealthy", func() bool { return !e.backend("p", "a").Healthy() })
	r := e.get("/")
	assertGeneric(t, r, http.StatusServiceUnavailable, b)
	if b.hits.Load() != 0 {
		t.Errorf("unhealthy backend received %d requests", b.hits.Load())
	}
}

func TestAllQuarantinedIs503(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	e := startEnv(t, onePool("least_connections", "", bs...))
	if r := e.get("/"); r.status != 200 {
		t.Fatalf("before: %d", r.status)
	}
	for _, b := range bs {
		if _, err := e.srv.Registry().Quarantine("p", b.id); err != nil {
			t.Fatal(err)
		}
	}
	before := bs[0].hits.Load() + bs[1].hits.Load()
	for i := 0; i < 5; i++ {
		assertGeneric(t, e.get("/"), http.StatusServiceUnavailable, bs...)
	}
	if after := bs[0].hits.Load() + bs[1].hits.Load(); after != before {
		t.Errorf("quarantined backends received %d requests", after-before)
	}
	if p := e.srv.Registry().Pool("p"); p.Available() != 0 {
		t.Errorf("Available = %d", p.Available())
	}
	for _, b := range bs {
		if st := e.backend("p", b.id).State(); st != proxy.StateQuarantined {
			t.Errorf("backend %s state %s", b.id, st)
		}
	}
}

// An HTTP/1.1 request asking to upgrade to h2c is served as a plain
// request: a backend that accepted the upgrade would get HTTP/2 frames that
// Rampart never parsed, routed or inspected.
func TestH2CUpgradeNotForwarded(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b))
	r := e.do(http.MethodGet, e.url("web", "/x"), "", http.Header{
		"Connection":     {"Upgrade, HTTP2-Settings"},
		"Upgrade":        {"h2c"},
		"Http2-Settings": {"AAMAAABkAAQCAAAAAAIAAAAA"},
	}, nil)
	if r.status != 200 || r.body != "a" {
		t.Fatalf("GET with Upgrade: h2c: %d %q, want 200 from the backend", r.status, r.body)
	}
	got := b.header()
	for _, h := range []string{"Upgrade", "Http2-Settings", "Connection"} {
		if v, ok := got[h]; ok {
			t.Errorf("%s: %q reached the backend", h, v)
		}
	}
}

// A request without the hash header is hashed by its client's address:
// hashing the empty value sent every such request to one backend.
func TestConsistentHashHeaderMissing(t *testing.T) {
	bs := newTestBackends(t, "a", "b", "c")
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1/32]}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    algorithm: consistent_hash
    hash_key: header:X-User
    backends: %s
`, backendsYAML(bs...)))
	used := map[string]bool{}
	for round := 0; round < 2; round++ {
		for c := 1; c <= 30; c++ {
			client := fmt.Sprintf("198.51.100.%d", c)
			r := e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-Forwarded-For": {client}}, nil)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			used[r.body] = true
			again := e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-Forwarded-For": {client}, "X-User": {""}}, nil)
			if again.body != r.body {
				t.Fatalf("client %s went to %s, then (empty X-User) to %s", client, r.body, again.body)
			}
		}
	}
	if len(used) < 2 {
		t.Fatalf("30 clients without X-User all went to %v", used)
	}
}

// An open tunnel (WebSocket) is closed once its client is blocked: the
// ACL is checked per request, and a tunnel has no request after its
// first. The log line says so.
func TestWebSocketCutWhenClientBlocked(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(wsEcho)
	e := startEnv(t, onePool("round_robin", "logging: {access_log: {path: access.log}}\n", b))
	conn, br := wsEchoing(t, e)
	if st, body := rawAdmin(t, e, "POST", "/acls/blocklist", `{"ip":"127.0.0.1","reason":"exfiltration"}`); st != 201 {
		t.Fatalf("block: %d %s", st, body)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("tunnel still relaying after its client was blocked")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("tunnel not closed within 5 s of its client's block")
	}
	if l := lastLogLine(t, e, 1); l["error"] != "blocked_mid_tunnel" || l["acl_action"] != "deny" {
		t.Errorf("logged %v %v, want blocked_mid_tunnel and deny", l["error"], l["acl_action"])
	}
}

// wsEchoing opens a WebSocket through e's listener "web" to a wsEcho
// backend and checks that it echoes.
func wsEchoing(t *testing.T, e *testEnv) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, br, res := wsDial(t, e.srv.Addr("web"))
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", res.StatusCode)
	}
	io.WriteString(conn, "ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo %q, %v", got, err)
	}
	return conn, br
}

// scriptBackend answers each request with the raw answer for its path
// (404 for others), on keep-alive connections.
func scriptBackend(t *testing.T, answers map[string]string) string {
	return testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			head, err := testnet.ReadHead(br)
			if err != nil {
				return
			}
			a, ok := answers[strings.Fields(head)[1]]
			if !ok {
				a = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
			}
			if _, err := io.WriteString(c, a); err != nil {
				return
			}
			if strings.Contains(a, "Connection: close") {
				return
			}
		}
	})
}

var reuseAnswers = map[string]string{
	"/a":     "HTTP/1.1 200 OK\r\nX-A: aaaa\r\nContent-Type: text/a\r\nContent-Length: 1\r\n\r\na",
	"/b":     "HTTP/1.1 201 Created-B\r\nX-B: bbbb\r\nContent-Type: text/b\r\nContent-Length: 1\r\n\r\nb",
	"/early": "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nX-Hint: h\r\n\r\nHTTP/1.1 200 OK\r\nX-Final: f\r\nContent-Length: 1\r\n\r\nf",
	"/head":  "HTTP/1.1 200 OK\r\nX-H: hhhh\r\nContent-Length: 5\r\n\r\n",
	"/nc":    "HTTP/1.1 204 No Content\r\nX-N: nnnn\r\n\r\n",
	"/nm":    "HTTP/1.1 304 Not Modified\r\nEtag: \"e\"\r\n\r\n",
	"/chunk": "HTTP/1.1 200 OK\r\nX-C: cccc\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n",
	"/empty": "HTTP/1.1 200 OK\r\nX-E: eeee\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"/conn":  "HTTP/1.1 200 OK\r\nConnection: X-Drop\r\nX-Drop: 1\r\nX-Keep: k\r\nContent-Length: 1\r\n\r\nc",
	"/many":  manyFields(),
}

// manyFields is an answer with more fields than directBody's value array.
func manyFields() string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\n")
	for i := range 24 {
		fmt.Fprintf(&b, "X-M%02d: v%02d\r\n", i, i)
	}
	b.WriteString("Content-Length: 1\r\n\r\nm")
	return b.String()
}

// Answers on one keep-alive client connection, one at a time and then
// pipelined, each carry their own status, fields, body and trailers and
// none of an earlier answer's (an interim answer's included), and their
// own X-Request-Id: the connection reuses one reader of backend answers,
// and the array its header values live in, for all its requests.
func TestKeepAliveAnswerSequence(t *testing.T) {
	addr := scriptBackend(t, reuseAnswers)
	e := startEnv(t, rawPool(addr))
	c, err := net.Dial("tcp", e.srv.Addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	seq := []struct{ method, path string }{
		{"GET", "/a"}, {"GET", "/b"}, {"GET", "/early"}, {"HEAD", "/head"}, {"GET", "/nc"}, {"GET", "/nm"},
		{"GET", "/chunk"}, {"GET", "/empty"}, {"GET", "/conn"}, {"GET", "/many"}, {"GET", "/a"}, {"GET", "/early"}, {"GET", "/chunk"}, {"GET", "/b"},
	}
	for round, pipelined := range []bool{false, true} {
		if pipelined {
			var all strings.Builder
			for _, s := range seq {
				fmt.Fprintf(&all, "%s %s HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n", s.method, s.path)
			}
			io.WriteString(c, all.String())
		}
		for _, s := range seq {
			if !pipelined {
				fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n", s.method, s.path)
			}
			c.SetReadDeadline(time.Now().Add(testTimeout))
			req, _ := http.NewRequest(s.method, "http://a"+s.path, nil)
			var resp *http.Response
			for {
				resp, err = http.ReadResponse(br, req)
				if err != nil {
					t.Fatalf("round %d %s %s: %v", round, s.method, s.path, err)
				}
				if resp.StatusCode >= 200 {
					break
				}
				if resp.Header.Get("Link") == "" || resp.Header.Get("X-Hint") != "h" {
					t.Errorf("interim: %v", resp.Header)
				}
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("round %d %s %s body: %v", round, s.method, s.path, err)
			}
			h := resp.Header
			if len(h["X-Request-Id"]) != 1 || h.Get("X-Request-Id") == "" {
				t.Errorf("round %d %s %s: X-Request-Id %q", round, s.method, s.path, h["X-Request-Id"])
			}
			check := func(cond bool) {
				t.Helper()
				if !cond {
					t.Errorf("round %d %s %s: %d %q %v trailer %v", round, s.method, s.path, resp.StatusCode, body, h, resp.Trailer)
				}
			}
			switch s.path {
			case "/a":
				check(resp.StatusCode == 200 && h.Get("X-A") == "aaaa" && h.Get("Content-Type") == "text/a" && string(body) == "a" && h.Get("X-B") == "")
			case "/b":
				check(resp.StatusCode == 201 && h.Get("X-B") == "bbbb" && h.Get("Content-Type") == "text/b" && string(body) == "b")
			case "/early":
				check(resp.StatusCode == 200 && h.Get("X-Final") == "f" && h.Get("Link") == "" && h.Get("X-Hint") == "")
			case "/head":
				check(resp.StatusCode == 200 && h.Get("X-H") == "hhhh" && h.Get("Content-Length") == "5")
			case "/nc":
				check(resp.StatusCode == 204 && h.Get("X-N") == "nnnn")
			case "/nm":
				check(resp.StatusCode == 304 && h.Get("Etag") == `"e"`)
			case "/chunk":
				check(resp.StatusCode == 200 && h.Get("X-C") == "cccc" && string(body) == "abc" && resp.Trailer.Get("X-Sum") == "42")
			case "/empty":
				check(resp.StatusCode == 200 && h.Get("X-E") == "eeee" && string(body) == "")
			case "/conn":
				check(resp.StatusCode == 200 && h.Get("X-Drop") == "" && h.Get("X-Keep") == "k")
			case "/many":
				ok := resp.StatusCode == 200
				for i := range 24 {
					ok = ok && h.Get(fmt.Sprintf("X-M%02d", i)) == fmt.Sprintf("v%02d", i)
				}
				check(ok)
			}
		}
	}
}

// An answer whose head the HTTP/1 engine writes only after the handler
// returned (unknown length, empty body: a backend's empty chunked answer)
// still carries the request's X-Request-Id, on both paths.
func TestRequestIDOnHeadWrittenAfterHandler(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) error {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-E: e\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
		return err
	})
	e := startEnv(t, rawPool(addr))
	for _, method := range probePaths {
		c, err := net.Dial("tcp", e.srv.Addr("web"))
		if err != nil {
			t.Fatal(err)
		}
		m, expect := strings.CutSuffix(method, "+Expect")
		req := m + " / HTTP/1.1\r\nHost: a\r\n\r\n"
		if expect {
			req = strings.Replace(req, "\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n", 1)
		}
		if m == "POST" { // chunked: streamed on the direct client, or with Expect through http.Transport
			req = strings.Replace(req, "\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 1)
		}
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		for err == nil && resp.StatusCode == http.StatusContinue {
			resp, err = http.ReadResponse(br, nil)
		}
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if id := resp.Header["X-Request-Id"]; resp.StatusCode != 200 || len(id) != 1 || id[0] == "" {
			t.Errorf("%s: status %d, X-Request-Id %q; want one non-empty id", method, resp.StatusCode, id)
		}
	}
}

// Expect: 100-continue through the http.Transport path, with a backend
// that answers before reading the body: the transport's write loop sends
// the automatic 100 Continue (it reads the body) while the handler writes
// the final answer, and the client gets both whole (fails under -race
// without the engine's ordering; found by a review).
func TestExpectContinueEarlyBackendAnswer(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) error {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nearly")
		return err
	})
	e := startEnv(t, rawPool(addr))
	for i := range 5 {
		c, err := net.Dial("tcp", e.srv.Addr("web"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		br := bufio.NewReader(c)
		time.Sleep(50 * time.Millisecond)
		io.WriteString(c, "hello")
		for {
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusContinue {
				continue
			}
			if resp.StatusCode != http.StatusOK || string(body) != "early" {
				t.Errorf("request %d: final answer %d %q, want 200 \"early\"", i, resp.StatusCode, body)
			}
			break
		}
		c.Close()
	}
}
