package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func aclConfig(b *testBackend, extra string) string {
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1/32]}
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools: [{name: p, backends: %s}]
logging: {access_log: {path: access.log}}
security:
  ip_lists:
    allowlist: [203.0.113.7]
    blocklist: [203.0.113.0/24, 127.0.0.2/32]
%s`, backendsYAML(b), extra)
}

// getFrom sends GET / with X-Forwarded-For: client through the trusted
// loopback peer.
func (e *testEnv) getFrom(client string) resp {
	e.t.Helper()
	return e.do(http.MethodGet, e.url("web", "/"), "", http.Header{"X-Forwarded-For": {client}}, nil)
}

// Allowlist first, then blocklists (DESIGN §1); the client is the one the
// trusted proxy names.
func TestACLOrderAndRecord(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, aclConfig(b, ""))

	if r := e.getFrom("203.0.113.9"); r.status != http.StatusForbidden || !strings.Contains(r.body, "request_id") {
		t.Fatalf("blocklisted client: %d %q, want a generic 403", r.status, r.body)
	}
	if r := e.getFrom("203.0.113.7"); r.status != 200 {
		t.Fatalf("allowlisted client inside a blocked range: %d, want 200", r.status)
	}
	if r := e.getFrom("198.51.100.1"); r.status != 200 {
		t.Fatalf("unlisted client: %d", r.status)
	}
	if n := b.hits.Load(); n != 2 {
		t.Errorf("backend saw %d requests, want 2 (the blocked one never reaches it)", n)
	}
	lines := accessLogLines(t, e.dir+"/access.log", 3)
	want := []struct{ client, action, source, errs string }{
		{"203.0.113.9", "deny", "static:blocklist", "blocked"},
		{"203.0.113.7", "allow", "static:allowlist", ""},
		{"198.51.100.1", "", "", ""},
	}
	for i, w := range want {
		l := lines[i]
		got := func(k string) string { s, _ := l[k].(string); return s }
		if got("client_ip") != w.client || got("acl_action") != w.action || got("acl_source") != w.source || got("error") != w.errs {
			t.Errorf("line %d: client %q action %q source %q error %q, want %+v", i, got("client_ip"), got("acl_action"), got("acl_source"), got("error"), w)
		}
	}
	text := e.scrape("/metrics")
	if v, _ := metricValue(text, `rampart_blocked_total{reason="static:blocklist",stage="acl"}`); v != "1" {
		t.Errorf("blocked metric = %q, want 1", v)
	}
}

// A blocklisted peer is closed at accept: it never gets an answer.
func TestACLRefusedAtAccept(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, aclConfig(b, ""))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: testTimeout}
	c, err := d.Dial("tcp", e.srv.Addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	got, _ := io.ReadAll(c)
	if len(got) != 0 {
		t.Fatalf("blocked peer got an answer: %q", got)
	}
	if b.hits.Load() != 0 {
		t.Error("a request from a blocked peer reached the backend")
	}
	eventually(t, "accept-time block counted", func() bool {
		v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="static:blocklist",stage="acl_accept"}`)
		return v == "1"
	})
	lines := accessLogLines(t, e.dir+"/access.log", 1)
	if lines[0]["error"] != "blocked_at_accept" || lines[0]["client_ip"] != "127.0.0.2" {
		t.Errorf("log line %v", lines[0])
	}
	// Other peers are served.
	if r := e.get("/"); r.status != 200 {
		t.Errorf("127.0.0.1: %d", r.status)
	}
}

// rawAdmin sends a request to the admin API and returns status and body.
func rawAdmin(t *testing.T, e *testEnv, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.srv.AdminAddr()+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	// Compact "key": value to "key":value so tests can match members.
	return res.StatusCode, strings.ReplaceAll(string(data), `": `, `":`)
}

func TestACLDynamicBlocklistAPI(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, aclConfig(b, ""))
	const client = "198.51.100.50"
	if r := e.getFrom(client); r.status != 200 {
		t.Fatalf("before: %d", r.status)
	}
	st, body := rawAdmin(t, e, "POST", "/acls/blocklist", `{"ip":"`+client+`","reason":"credential stuffing","severity":"high"}`)
	if st != http.StatusCreated || !strings.Contains(body, `"cidr":"198.51.100.50/32"`) {
		t.Fatalf("add: %d %s", st, body)
	}
	// Effective for the very next request.
	if r := e.getFrom(client); r.status != http.StatusForbidden {
		t.Fatalf("after add: %d, want 403", r.status)
	}
	st, body = rawAdmin(t, e, "GET", "/acls/blocklist?contains="+client, "")
	if st != 200 || !strings.Contains(body, "credential stuffing") || !strings.Contains(body, `"total":1`) {
		t.Fatalf("list: %d %s", st, body)
	}
	// Recorded in the audit trail with the entry as "after".
	st, body = rawAdmin(t, e, "GET", "/audit?limit=5", "")
	if st != 200 || !strings.Contains(body, `acl.blocklist.add`) || !strings.Contains(body, "credential stuffing") {
		t.Fatalf("audit: %d %s", st, body)
	}
	st, body = rawAdmin(t, e, "DELETE", "/acls/blocklist/"+url.PathEscape(client+"/32"), "")
	if st != http.StatusNoContent {
		t.Fatalf("remove: %d %s", st, body)
	}
	if r := e.getFrom(client); r.status != 200 {
		t.Fatalf("after remove: %d", r.status)
	}
	st, _ = rawAdmin(t, e, "DELETE", "/acls/blocklist/"+client, "")
	if st != http.StatusNotFound {
		t.Errorf("second remove: %d, want 404", st)
	}
}

func TestACLAPIRefusesBadInput(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, aclConfig(b, ""))
	cases := []struct{ body, field string }{
		{`{"ip":"300.1.2.3"}`, `"field":"ip"`},
		{`{"cidr":"10.0.0.1/8"}`, `"field":"cidr"`}, // host bits set
		{`{"cidr":"0.0.0.0/0"}`, `allow_broad`},     // needs allow_broad
		{`{"ip":"192.0.2.1","severity":"urgent"}`, `"field":"severity"`},
		{`{"ip":"192.0.2.1","expires_at":"2001-01-01T00:00:00Z"}`, `"field":"expires_at"`},
		{`{"ip":"192.0.2.1","colour":"red"}`, `unknown field`},
		{`{"ip":"192.0.2.1"} trailing`, `unexpected data after the JSON object`},
		{`{}`, `"field":"ip"`},
	}
	for _, c := range cases {
		st, body := rawAdmin(t, e, "POST", "/acls/blocklist", c.body)
		if st != http.StatusBadRequest || !strings.Contains(body, c.field) {
			t.Errorf("POST %s: %d %s, want 400 naming %s", c.body, st, body, c.field)
		}
	}
	if st, body := rawAdmin(t, e, "GET", "/acls/blocklist", ""); st != 200 || !strings.Contains(body, `"total":0`) {
		t.Errorf("something was half-applied: %d %s", st, body)
	}
	if st, _ := rawAdmin(t, e, "GET", "/acls/greylist", ""); st != http.StatusNotFound {
		t.Errorf("unknown list: %d", st)
	}
	if st, body := rawAdmin(t, e, "GET", "/acls/feeds", ""); st != 200 || !strings.Contains(body, `"feeds"`) {
		t.Errorf("feeds: %d %s", st, body)
	}
}
