package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// End to end through a real listener: a request full of secrets reaches
// the backend intact, and none of them reaches the access log file.
func TestAccessLogKeepsSecretsOffDisk(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b)+`logging:
  access_log:
    path: access.log
    sanitize: {truncate_user_agent: 32}
`)
	hdr := http.Header{
		"Authorization": {"Bearer s3cr3t"},
		"Cookie":        {"session=abc"},
		"Referer":       {"https://bob:R3fUserPw@shop.example/login?user=bob&password=hunter2#access_token=fr4gT0k"},
		"User-Agent":    {"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 " + strings.Repeat("Firefox/128.0 ", 10)},
	}
	r := e.do(http.MethodGet, e.url("web", "/pay/4111111111111111/order/1234567812345678?token=xyz&page=2"), "", hdr, nil)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	// The backend got the request as sent: sanitising is for the log only.
	got := b.header()
	if got.Get("Authorization") != "Bearer s3cr3t" || got.Get("Cookie") != "session=abc" {
		t.Fatalf("backend headers %v", got)
	}
	r = e.do(http.MethodPost, e.url("web", "/submit"), "", nil, strings.NewReader("card=4111111111111111&cvv=B0dyS3cret"))
	if r.status != 200 {
		t.Fatalf("POST status %d", r.status)
	}

	path := filepath.Join(e.dir, "access.log")
	lines := accessLogLines(t, path, 2)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cr3t", "session=abc", "xyz", "R3fUserPw", "hunter2", "fr4gT0k", "4111111111111111", "B0dyS3cret", "Firefox/128.0 Firefox"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("%q reached the access log:\n%s", secret, raw)
		}
	}
	l := lines[0]
	if l["query"] != "token=[MASKED]&page=2" {
		t.Errorf("query = %q", l["query"])
	}
	if l["referer"] != "https://[REDACTED]@shop.example/login?user=bob&password=[MASKED]#access_token=[MASKED]" {
		t.Errorf("referer = %q", l["referer"])
	}
	if l["path"] != "/pay/************1111/order/1234567812345678" {
		t.Errorf("path = %q (the card number masked, the order id not)", l["path"])
	}
	if ua, _ := l["user_agent"].(string); len(ua) != 32 || !strings.HasPrefix(ua, "Mozilla/5.0") {
		t.Errorf("user_agent = %q, want its first 32 bytes", ua)
	}
	if lines[1]["method"] != "POST" || lines[1]["request_size_bytes"] != float64(len("card=4111111111111111&cvv=B0dyS3cret")) {
		t.Errorf("POST line: %v", lines[1])
	}
	for _, k := range []string{"ssl_protocol", "waf_action", "ja3", "ja4", "geo_country", "asn", "rate_limited", "connection_reused", "waf_rules_matched"} {
		if _, ok := l[k]; !ok {
			t.Errorf("field %s missing", k)
		}
	}
}

// A reload that changes only the sanitising rules applies them at once,
// on the same file.
func TestAccessLogReloadAppliesNewRules(t *testing.T) {
	b := newTestBackend(t, "a")
	base := onePool("round_robin", "", b) + "logging:\n  access_log:\n    path: access.log\n"
	e := startEnv(t, base)
	e.get("/a?hmac=one")
	accessLogLines(t, filepath.Join(e.dir, "access.log"), 1)
	if err := e.reload(base + "    sanitize: {mask_query_params: \"^hmac$\"}\n"); err != nil {
		t.Fatal(err)
	}
	e.get("/b?hmac=two")
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 2)
	if lines[0]["query"] != "hmac=one" || lines[1]["query"] != "hmac=[MASKED]" {
		t.Fatalf("queries %q, %q", lines[0]["query"], lines[1]["query"])
	}
}

// connection_reused says whether the request came on a connection that had
// carried an earlier one (HTTP/1 keep-alive).
func TestAccessLogConnectionReused(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b)+"logging: {access_log: {path: access.log}}\n")
	for conn, n := range []int{2, 1} {
		c, err := net.DialTimeout("tcp", e.srv.Addr("web"), testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		for i := range n {
			fmt.Fprintf(c, "GET /c%d/r%d HTTP/1.1\r\nHost: a\r\n\r\n", conn, i)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		c.Close()
	}
	want := map[string]bool{"/c0/r0": false, "/c0/r1": true, "/c1/r0": false}
	for _, l := range accessLogLines(t, filepath.Join(e.dir, "access.log"), 3) {
		path, _ := l["path"].(string)
		if w, ok := want[path]; !ok || l["connection_reused"] != w {
			t.Errorf("%s: connection_reused %v, want %v", path, l["connection_reused"], w)
		}
	}
}
