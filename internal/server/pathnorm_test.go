package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		in, out string // out "" with refused: the refusal
		refused pathRefusal
	}{
		{"/", "/", ""},
		{"/a/b", "/a/b", ""},
		{"/a/../b", "/b", ""},
		{"/a/./b/", "/a/b/", ""},
		{"/a/b/..", "/a/", ""},
		{"/a/b/.", "/a/b/", ""},
		{"//api//x", "/api/x", ""},
		{"///", "/", ""},
		{"/a/%2e%2E/b", "/b", ""},
		{"/a/%2e/b", "/a/b", ""},
		{"/a/.%2e/b", "/b", ""},
		{"/a.b/..c/...", "/a.b/..c/...", ""},
		{"/caf%C3%A9/../x%20y", "/x%20y", ""},
		{"/ADMIN", "/ADMIN", ""},
		{"/..", "", pathAboveRoot},
		{"/../x", "", pathAboveRoot},
		{"/%2e%2e/admin", "", pathAboveRoot},
		{"/a/../../admin", "", pathAboveRoot},
		{"/a%2fb", "", pathEncodedSlash},
		{"/a%2Fb", "", pathEncodedSlash},
		{"/a%5cb", "", pathEncodedSlash},
		{"/a%00b", "", pathNUL},
		{"/a/..%00/b", "", pathNUL},
	}
	for _, c := range cases {
		u, err := url.ParseRequestURI(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		why := normalizePath(u, false)
		if why != c.refused {
			t.Errorf("%s: refusal %q, want %q", c.in, why, c.refused)
			continue
		}
		if why == "" && u.EscapedPath() != c.out {
			t.Errorf("%s: normalised to %q (Path %q), want %q", c.in, u.EscapedPath(), u.Path, c.out)
		}
	}
	// allow_encoded_slashes: kept encoded, one segment.
	u, _ := url.ParseRequestURI("/a%2Fb/../c")
	if why := normalizePath(u, true); why != "" || u.EscapedPath() != "/c" {
		t.Errorf("allowed %%2F: %q %q", why, u.EscapedPath())
	}
	u, _ = url.ParseRequestURI("//x/a%2Fb")
	if why := normalizePath(u, true); why != "" || u.EscapedPath() != "/x/a%2Fb" || u.Path != "/x/a/b" {
		t.Errorf("allowed %%2F: %q %q %q", why, u.EscapedPath(), u.Path)
	}
}

// rawRequest sends a request line as written (no client-side cleaning) and
// returns the status and body. method is one of probePaths: a POST carries
// a chunked body (streamed on the direct client), with Expect for the
// http.Transport path.
func rawRequest(t *testing.T, addr, path, target string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	method, expect := strings.CutSuffix(path, "+Expect")
	body := "\r\n"
	if method == http.MethodPost {
		body = "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
	}
	if expect {
		body = "Expect: 100-continue\r\n" + body
	}
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n%s", method, target, body)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	for err == nil && res.StatusCode == http.StatusContinue { // Expect's interim answer
		res, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The path is normalised before routing, and the backend receives the
// normalised path, on every proxy path (direct for a GET and a streamed
// POST, httputil for a POST with Expect).
func TestPathNormalisedForRoutingAndBackend(t *testing.T) {
	b, other := newTestBackend(t, "b"), newTestBackend(t, "other")
	for _, be := range []*testBackend{b, other} {
		be.setHandler(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", be.id, r.RequestURI)
		})
	}
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: b, match: {path_prefix: /b}, pool: pb}
  - {name: api, match: {path_prefix: /api}, pool: pb}
  - {name: rest, match: {path_prefix: /}, pool: po}
pools:
  - {name: pb, backends: %s}
  - {name: po, backends: %s}
security:
  slowloris_protection: {max_new_connections_per_ip_per_second: 0}
`, backendsYAML(b), backendsYAML(other)))
	addr := e.srv.Addr("web")
	for _, method := range probePaths {
		for _, c := range []struct {
			target string
			status int
			body   string
		}{
			{"/a/../b", 200, "b /b"},
			{"/x/%2e%2e/b/c", 200, "b /b/c"},
			{"//api//x", 200, "b /api/x"},
			{"/api/./x/?q=%2f", 200, "b /api/x/?q=%2f"},
			{"/b/caf%C3%A9", 200, "b /b/caf%C3%A9"},
			{"/b/../other", 200, "other /other"},
			{"/B", 200, "other /B"}, // case-sensitive
			{"/%2e%2e/admin", 400, ""},
			{"/../etc/passwd", 400, ""},
			{"/a%2fb", 400, ""},
			{"/b%5C..%5Cx", 400, ""},
		} {
			status, body := rawRequest(t, addr, method, c.target)
			if status != c.status || (c.body != "" && body != c.body) {
				t.Errorf("%s %s: %d %q, want %d %q", method, c.target, status, body, c.status, c.body)
			}
		}
	}
	// HTTP/1.1 via Go's client and the access log agree too.
	if r := e.get("/b/./x"); r.status != 200 || r.body != "b /b/x" {
		t.Errorf("/b/./x: %d %q", r.status, r.body)
	}
}

func TestPathEncodedSlashesAllowed(t *testing.T) {
	b := newTestBackend(t, "b")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RequestURI) })
	e := startEnv(t, onePool("round_robin", "security:\n  request_limits: {allow_encoded_slashes: true}\n", b))
	if status, body := rawRequest(t, e.srv.Addr("web"), "GET", "//x/../a%2Fb"); status != 200 || body != "/a%2Fb" {
		t.Errorf("allowed encoded slash: %d %q", status, body)
	}
}

// A path-scoped policy (an endpoint rate limit on /admin) cannot be
// bypassed by spelling the path differently.
func TestPathPolicyNotBypassable(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
security:
  slowloris_protection: {max_new_connections_per_ip_per_second: 0}
  dynamic_blocklist: {auto_block: {rate_limit_violations: {enabled: false}}}
  rate_limits:
    endpoints: [{path: /admin*, limit: 1, window: 1m}]
`, backendsYAML(b)))
	addr := e.srv.Addr("web")
	if status, _ := rawRequest(t, addr, "GET", "/admin"); status != 200 {
		t.Fatalf("first /admin: %d", status)
	}
	for _, target := range []string{"/admin", "/x/../admin", "//admin", "/./admin/", "/x/%2e%2e/admin/users", "/admin//users"} {
		if status, _ := rawRequest(t, addr, "GET", target); status != http.StatusTooManyRequests {
			t.Errorf("%s: %d, want 429 (same endpoint)", target, status)
		}
	}
	for _, target := range []string{"/%2e%2e/admin", "/admin%2fusers"} {
		if status, _ := rawRequest(t, addr, "GET", target); status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", target, status)
		}
	}
	// Paths are case-sensitive: /ADMIN is another path (documented); the
	// backend must treat it as another path too.
	if status, _ := rawRequest(t, addr, "GET", "/ADMIN"); status != 200 {
		t.Errorf("/ADMIN: %d", status)
	}
	if n := b.hits.Load(); n != 2 {
		t.Errorf("backend hits %d, want 2", n)
	}
}
