package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A malformed chunked request body is the client's fault: 400, never 502
// (which would blame, and count against, the backend). When the bad bytes
// come with the head, the backend never sees the request; when they come
// later, the backend sees it cut short.
func TestMalformedChunkedBody(t *testing.T) {
	b := newTestBackend(t, "b1")
	got := make(chan error, 4)
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		io.WriteString(w, "read")
	})
	e := startEnv(t, onePool("round_robin", "logging:\n  access_log:\n    path: access.log\n", b))
	const head = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	send := func(parts ...string) *http.Response {
		t.Helper()
		c, err := net.Dial("tcp", e.srv.Addr("web"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i, p := range parts {
			if i > 0 {
				time.Sleep(100 * time.Millisecond) // the first part is on its way to the backend
			}
			io.WriteString(c, p)
		}
		c.SetReadDeadline(time.Now().Add(testTimeout))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		resp.Body.Close()
		return resp
	}

	// In one piece: refused before routing.
	if resp := send(head + "zz\r\nhello\r\n0\r\n\r\n"); resp.StatusCode != 400 {
		t.Fatalf("malformed chunk size with the head: %d, want 400", resp.StatusCode)
	}
	if n := b.hits.Load(); n != 0 {
		t.Fatalf("the backend received %d requests, want none", n)
	}
	// In two pieces: the body is on its way when the bad chunk comes.
	if resp := send(head+"5\r\nhello\r\n", "zz\r\nworld\r\n0\r\n\r\n"); resp.StatusCode != 400 {
		t.Fatalf("malformed chunk size after the head: %d, want 400", resp.StatusCode)
	}
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("the backend read a whole body from a malformed upload")
		}
	case <-time.After(testTimeout):
		t.Fatal("the backend never saw the cut-short upload")
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 2)
	errs := map[any]bool{}
	for _, l := range lines {
		if l["status_code"] != 400.0 {
			t.Errorf("access log line with status %v, want 400: %v", l["status_code"], l)
		}
		errs[l["error"]] = true
	}
	if !errs["request_body_400"] {
		t.Errorf("no access log line with error request_body_400: %v", lines)
	}
}

// A backend answer whose body is malformed from its first byte, read with
// its head, gets the client a generic 502 (and none of the backend's
// fields), logged as backend_bad_response; the connection closed with no
// status at all before. Malformed further on, the answer is cut (the
// status is already out), as before.
func TestMalformedResponseBody(t *testing.T) {
	var late atomic.Bool
	addr := serveRaw(t, func(c net.Conn) error {
		head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend-Field: 1\r\n\r\n"
		if !late.Load() {
			_, err := io.WriteString(c, head+"zz\r\nhello\r\n0\r\n\r\n")
			return err
		}
		io.WriteString(c, head+"5\r\nhello\r\n")
		time.Sleep(50 * time.Millisecond)
		_, err := io.WriteString(c, "zz\r\nworld\r\n0\r\n\r\n")
		return err
	})
	e := startEnv(t, rawPool(addr))
	r := e.get("/")
	if r.status != http.StatusBadGateway || r.header.Get("X-Backend-Field") != "" || !strings.HasPrefix(r.body, "502 Bad Gateway") {
		t.Fatalf("malformed first chunk: %d %q %v, want a generic 502 without the backend's fields", r.status, r.body, r.header)
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 1)
	if l := lines[0]; l["status_code"] != 502.0 || l["error"] != "backend_bad_response" {
		t.Fatalf("access log: %v, want 502 backend_bad_response", l)
	}
	late.Store(true)
	res, err := e.client.Get(e.url("web", "/late"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || err == nil {
		t.Fatalf("malformed later chunk: %d %q, read error %v; want the 200 already sent and the body cut", res.StatusCode, body, err)
	}
}

// A status code HTTP does not define (999) is refused with a generic 502
// on every path: the direct client's reader refuses it (a GET, a POST read
// whole, a POST streamed), and so does the http.Transport path (a POST with
// Expect; http.Transport would relay any three digits).
func TestUndefinedStatusCode(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) error {
		_, err := io.WriteString(c, "HTTP/1.1 999 Whatever\r\nContent-Length: 2\r\n\r\nok")
		return err
	})
	e := startEnv(t, rawPool(addr))
	assertGeneric(t, e.get("/"), http.StatusBadGateway)
	assertGeneric(t, e.do(http.MethodPost, e.url("web", "/"), "", nil, strings.NewReader("x")), http.StatusBadGateway)
	assertGeneric(t, e.do(http.MethodPost, e.url("web", "/"), "", nil, unsized("x")), http.StatusBadGateway)
	assertGeneric(t, e.do(http.MethodPost, e.url("web", "/"), "", http.Header{"Expect": {"100-continue"}}, unsized("x")), http.StatusBadGateway)
	for i, l := range accessLogLines(t, filepath.Join(e.dir, "access.log"), 4) {
		if l["status_code"] != 502.0 || l["error"] != "backend_bad_response" {
			t.Errorf("access log line %d: %v %v, want 502 backend_bad_response", i, l["status_code"], l["error"])
		}
	}
}

// smallBodyLimit is a config with one route limited to 64-byte bodies in
// front of b, with an access log; poolExtra is added to the pool.
func smallBodyLimit(b *testBackend, poolExtra string) string {
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p, max_body_bytes: 64}
pools:
  - name: p
    backends: %s
    %s
logging: {access_log: {path: access.log}}
`, backendsYAML(b), poolExtra)
}

// A client that leaves before sending all of its body is logged 499
// client_closed, not 502 backend_unreachable, and the backend is not
// blamed (no outlier ejection); a streamed body over max_body_bytes is
// counted as blocked like one announced too large.
func TestClientLeavesMidBody(t *testing.T) {
	b := newTestBackend(t, "b")
	e := startEnv(t, smallBodyLimit(b, "outlier_detection: {consecutive_5xx: 1, ejection_time: 1m}"))
	addr := strings.TrimPrefix(e.url("web", ""), "http://")
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123456789")
		time.Sleep(100 * time.Millisecond) // the body's first bytes have been read
		c.Close()
	}
	if r := e.get("/after"); r.status != 200 {
		t.Fatalf("GET after the abandoned uploads: %d (backend ejected?)", r.status)
	}
	big := e.do(http.MethodPost, e.url("web", "/big"), "", nil, io.MultiReader(strings.NewReader(strings.Repeat("x", 200)))) // no length: chunked
	if big.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body over max_body_bytes: %d, want 413", big.status)
	}
	// By path: the second upload's line may come after the next request's
	// (its client's leaving is noticed while that request is served).
	uploads := 0
	for _, l := range accessLogLines(t, filepath.Join(e.dir, "access.log"), 4) {
		if l["path"] != "/up" {
			continue
		}
		if uploads++; l["status_code"] != 499.0 || l["error"] != "client_closed" {
			t.Errorf("abandoned upload %d: %v %v, want 499 client_closed", uploads, l["status_code"], l["error"])
		}
	}
	if uploads != 2 {
		t.Errorf("%d access log lines for the 2 abandoned uploads", uploads)
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="max_body_bytes",stage="request_limits"}`); v != "1" {
		t.Errorf("max_body_bytes blocked count %q, want 1", v)
	}
}

// A small body of known length is read whole before a backend is chosen
// (the direct path, as nginx buffers one): the backend gets it in one
// piece, and a client that sends less than it announced, or that breaks a
// limit, never gets a request to the backend at all.
func TestSmallBodyWholeBeforeBackend(t *testing.T) {
	b := newTestBackend(t, "b")
	got := make(chan string, 4)
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.Path + " " + strconv.Itoa(len(body)) + " " + fmt.Sprint(err)
		io.WriteString(w, "ok")
	})
	e := startEnv(t, smallBodyLimit(b, ""))
	addr := strings.TrimPrefix(e.url("web", ""), "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123456789")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if r := e.do(http.MethodPost, e.url("web", "/big"), "", nil, strings.NewReader(strings.Repeat("x", 65))); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("65 bytes over a 64-byte limit: %d, want 413", r.status)
	}
	full := strings.Repeat("y", 64)
	if r := e.do(http.MethodPost, e.url("web", "/full"), "", nil, strings.NewReader(full)); r.status != 200 || r.body != "ok" {
		t.Fatalf("full POST: %d %q", r.status, r.body)
	}
	if g := <-got; g != "POST /full 64 <nil>" {
		t.Fatalf("backend got %q, want the full POST only", g)
	}
	select {
	case g := <-got:
		t.Fatalf("backend also got %q", g)
	default:
	}
	byPath := map[any]map[string]any{}
	for _, l := range accessLogLines(t, filepath.Join(e.dir, "access.log"), 3) {
		byPath[l["path"]] = l
	}
	if l := byPath["/cut"]; l["status_code"] != 499.0 || l["error"] != "client_closed" || l["backend_id"] != "" {
		t.Errorf("cut upload logged %v %v backend %q, want 499 client_closed and no backend", l["status_code"], l["error"], l["backend_id"])
	}
}

// A backend's trailers reach the client only when announced and allowed
// in a trailer: an announced Set-Cookie and an unannounced Host are
// dropped, an announced X-Checksum is relayed; on every path.
func TestBackendTrailersFiltered(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) error {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Set-Cookie\r\n\r\n"+
			"2\r\nok\r\n0\r\nX-Checksum: abc\r\nSet-Cookie: a=b\r\nHost: evil.example\r\n\r\n")
		return err
	})
	e := startEnv(t, rawPool(addr))
	for _, method := range probePaths {
		res, err := e.client.Do(newProbe(method, e.url("web", "/")))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("%s: body %q", method, b)
		}
		if got := fmt.Sprint(res.Trailer); got != "map[X-Checksum:[abc]]" {
			t.Errorf("%s: trailers %s, want only X-Checksum", method, got)
		}
		if res.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s: a trailer's Set-Cookie reached the header", method)
		}
	}
}

// rawPool is a config with one listener and one route to a pool of the
// raw backend at addr, with an access log; poolKeys are more lines of the
// pool ("read_timeout: 1s").
func rawPool(addr string, poolKeys ...string) string {
	keys := ""
	for _, k := range poolKeys {
		keys += "    " + k + "\n"
	}
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    backends: [{id: raw, address: %q}]
%slogging: {access_log: {path: access.log}}
`, addr, keys)
}

// probePaths are the forwarding paths newProbe takes a request on: a
// bodiless GET and a POST with a one-byte chunked body (streamed) on the
// direct client, and the same POST with Expect: 100-continue through
// httputil.ReverseProxy and http.Transport.
var probePaths = []string{"GET", "POST", "POST+Expect"}

// newProbe is a request to url on one of probePaths.
func newProbe(path, url string) *http.Request {
	method, expect := strings.CutSuffix(path, "+Expect")
	var body io.Reader
	if method == http.MethodPost {
		body = unsized("x")
	}
	req, _ := http.NewRequest(method, url, body)
	if expect {
		req.Header.Set("Expect", "100-continue")
	}
	return req
}

// A request the engine refuses is logged with what it had parsed of it:
// a smuggling attempt's line names its method, path and host.
func TestRefusedRequestLoggedWithItsRequestLine(t *testing.T) {
	e := startEnv(t, rawPool(deadAddr(t)))
	addr := strings.TrimPrefix(e.url("web", ""), "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /admin/x?a=1 HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != 400 {
		t.Fatalf("CL+TE: %v %v, want 400", res, err)
	}
	l := lastLogLine(t, e, 1)
	if l["method"] != "POST" || l["path"] != "/admin/x" || l["query"] != "a=1" || l["host"] != "app.example" || l["status_code"] != 400.0 {
		t.Fatalf("refusal logged as %v %v %v %v %v", l["method"], l["path"], l["query"], l["host"], l["status_code"])
	}
}

// A refused request's target is logged as an accepted one's would be:
// decoded, its secrets masked, an absolute form's userinfo left out.
func TestRefusedRequestTargetSanitised(t *testing.T) {
	e := startEnv(t, rawPool(deadAddr(t)))
	addr := strings.TrimPrefix(e.url("web", ""), "http://")
	for i, tc := range []struct{ target, path, query string }{
		{"http://user:SECRETPW@app.example/x?token=S1", "/x", "token=[MASKED]"},
		{"/x%3Btoken=SECRET2", "/x;token=[MASKED]", ""},
		{"/y%3Btoken=SECRET3%zz?a=1", "/y;token=[MASKED]", "a=1"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// An obsolete line folding gets the request refused by the engine.
		io.WriteString(c, "GET "+tc.target+" HTTP/1.1\r\nHost: app.example\r\nX-A: b\r\n c\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || res.StatusCode != 400 {
			t.Fatalf("%s: %v %v, want 400", tc.target, res, err)
		}
		l := lastLogLine(t, e, i+1)
		if l["path"] != tc.path || l["query"] != tc.query {
			t.Errorf("%s logged as path %q query %q, want %q %q", tc.target, l["path"], l["query"], tc.path, tc.query)
		}
	}
}

// Answers HTTP/1 does not define, or that would make Rampart work or
// buffer without bound, are a generic 502 on every path (the direct
// client's GET and POSTs, read whole or streamed, and http.Transport's POST
// with Expect): a status below 100 (the engine
// panicked on the POST path), another HTTP version, a head larger than
// 64 KiB (relayed whole on the POST path), and more than ten interim
// answers (relayed and flushed without end).
func TestHostileBackendAnswers(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"status 099", "HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n"},
		{"HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"huge head", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 200<<10) + "\r\nContent-Length: 2\r\n\r\nok"},
		{"interim flood", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", 50) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveRaw(t, func(c net.Conn) error {
				_, err := io.WriteString(c, tc.answer)
				return err
			})
			e := startEnv(t, rawPool(addr))
			for _, r := range []resp{
				e.get("/"),
				e.do(http.MethodPost, e.url("web", "/"), "", nil, strings.NewReader("x")),
				e.do(http.MethodPost, e.url("web", "/"), "", nil, unsized("x")),
				e.do(http.MethodPost, e.url("web", "/"), "", http.Header{"Expect": {"100-continue"}}, unsized("x")),
			} {
				if r.status != http.StatusBadGateway || !strings.HasPrefix(r.body, "502 Bad Gateway") {
					t.Errorf("%d %.80q, want a generic 502", r.status, r.body)
				}
			}
			for i, l := range accessLogLines(t, filepath.Join(e.dir, "access.log"), 4) {
				if l["status_code"] != 502.0 || l["error"] != "backend_bad_response" {
					t.Errorf("access log line %d: %v %v, want 502 backend_bad_response", i, l["status_code"], l["error"])
				}
			}
		})
	}
}

// A backend that stops in the middle of a body is given read_timeout
// between two reads (nginx's proxy_read_timeout): then the client's answer
// is cut and the backend connection closed, on both paths (it held both
// connections until the backend closed, however long). A client that
// leaves meanwhile abandons the body at once (499).
func TestBackendStallsMidBody(t *testing.T) {
	closed := make(chan struct{}, 10)
	addr := serveRaw(t, func(c net.Conn) error {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("a", 1000))
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 64)
		for { // stalled until Rampart lets go
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		closed <- struct{}{}
		return io.EOF
	})
	e := startEnv(t, rawPool(addr, "read_timeout: 1s"))
	for i, method := range probePaths {
		start := time.Now()
		res, err := e.client.Do(newProbe(method, e.url("web", "/stall")))
		if err != nil {
			t.Fatal(err)
		}
		n, rerr := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n != 1000 || rerr == nil || time.Since(start) > 8*time.Second {
			t.Errorf("%s: %d, %d bytes, read error %v after %v; want 200, 1000 bytes and a cut after about 1 s", method, res.StatusCode, n, rerr, time.Since(start))
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the stalled backend connection is still open", method)
		}
		if l := lastLogLine(t, e, i+1); l["error"] != "backend_timeout" {
			t.Errorf("%s: logged %v %v, want backend_timeout", method, l["status_code"], l["error"])
		}
	}

	e2 := startEnv(t, rawPool(addr, "read_timeout: 60s"))
	c, err := net.Dial("tcp", strings.TrimPrefix(e2.url("web", ""), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.ReadFull(c, make([]byte, 40)); err != nil { // the answer has begun
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-closed:
	case <-time.After(8 * time.Second):
		t.Fatal("the client left but the stalled backend connection is still open")
	}
	if l := lastLogLine(t, e2, 1); l["error"] != "client_closed" {
		t.Errorf("client gone mid-body: logged %v %v, want client_closed", l["status_code"], l["error"])
	}
}

// Passive outlier detection counts the 502s and 504s Rampart makes of a
// backend's answers (malformed, or not in time), not only the 5xx the
// backend sends itself: a backend that passes its health checks but
// breaks real traffic is ejected.
func TestOutlierEjectionCountsRefusedAnswers(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"malformed", "GARBAGE\r\n\r\n"},
		{"no answer", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveRaw(t, func(c net.Conn) error {
				if tc.answer == "" {
					time.Sleep(2 * time.Second)
					return io.EOF
				}
				_, err := io.WriteString(c, tc.answer)
				return err
			})
			e := startEnv(t, rawPool(addr, "response_header_timeout: 300ms", "outlier_detection: {consecutive_5xx: 3, ejection_time: 1m}"))
			for i := range 3 {
				if r := e.get("/"); r.status != http.StatusBadGateway && r.status != http.StatusGatewayTimeout {
					t.Fatalf("request %d: %d, want 502 or 504", i, r.status)
				}
			}
			if r := e.get("/"); r.status != http.StatusServiceUnavailable {
				t.Fatalf("after three refused answers: %d, want 503 (the backend ejected)", r.status)
			}
		})
	}
}

// A request the engine refuses on a listener behind a trusted proxy is
// logged under the client of its X-Forwarded-For, as an accepted one is
// (it was logged under the proxy, the client nowhere), with its Host.
func TestRefusedRequestBehindTrustedProxy(t *testing.T) {
	e := startEnv(t, strings.Replace(rawPool(deadAddr(t)), `listen: "127.0.0.1:0"}`, `listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1]}`, 1))
	addr := strings.TrimPrefix(e.url("web", ""), "http://")
	for i, head := range []string{
		"TRACE /t HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
		"POST /t HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.9\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, head)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || res.StatusCode < 400 {
			t.Fatalf("request %d: %v %v, want a refusal", i, res, err)
		}
		l := lastLogLine(t, e, i+1)
		if l["client_ip"] != "203.0.113.9" || l["x_forwarded_for"] != "203.0.113.9, 127.0.0.1" || l["host"] != "app.example" {
			t.Errorf("request %d logged as client %v, x_forwarded_for %v, host %v; want the proxy's client and the host", i, l["client_ip"], l["x_forwarded_for"], l["host"])
		}
	}
}

// httputil.ReverseProxy's own messages (a body copy cut midway, which the
// access log records with its reason) go to Rampart's log at debug level,
// not as unstructured lines on the standard logger's stderr.
func TestReverseProxyMessagesStayInTheLog(t *testing.T) {
	var std bytes.Buffer
	log.SetOutput(&std)
	defer log.SetOutput(os.Stderr)
	addr := serveRaw(t, func(c net.Conn) error {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort") // then closes mid-body
		return io.EOF
	})
	e := startEnv(t, rawPool(addr))
	res, err := e.client.Post(e.url("web", "/"), "text/plain", strings.NewReader("x"))
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	lastLogLine(t, e, 1)
	if std.Len() > 0 {
		t.Errorf("written to the standard logger: %q", std.String())
	}
}

// A chunked body whose size lines, arriving with the head, announce more
// than max_body_bytes is refused 413 before any of it reaches a backend,
// as a Content-Length over the limit is; a body within it passes.
func TestChunkedBodyAnnouncedOverLimit(t *testing.T) {
	b := newTestBackend(t, "b")
	e := startEnv(t, smallBodyLimit(b, ""))
	send := func(body string) int {
		t.Helper()
		c, err := net.DialTimeout("tcp", e.srv.Addr("web"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	// 0x1000 bytes announced by the first line, 40 of them sent.
	if got := send("1000\r\n" + strings.Repeat("x", 40)); got != http.StatusRequestEntityTooLarge {
		t.Errorf("first chunk announcing 4096 bytes over a 64-byte limit: %d, want 413", got)
	}
	// Two chunks within the limit, a third announcing too much.
	if got := send("20\r\n" + strings.Repeat("a", 32) + "\r\n10\r\n" + strings.Repeat("b", 16) + "\r\n20\r\n"); got != http.StatusRequestEntityTooLarge {
		t.Errorf("chunks announcing 96 bytes over a 64-byte limit: %d, want 413", got)
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("the backend saw %d of the refused requests", n)
	}
	if got := send("20\r\n" + strings.Repeat("a", 32) + "\r\n0\r\n\r\n"); got != http.StatusOK {
		t.Errorf("a chunked body of 32 bytes: %d, want 200", got)
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="max_body_bytes",stage="request_limits"}`); v != "2" {
		t.Errorf("max_body_bytes blocked count %q, want 2", v)
	}
}
