package server

import (
	"net/http"
	"strings"
	"testing"
)

// ietf_headers: RateLimit-Policy and RateLimit in the draft's syntax on
// allowed answers and refusals, for the tier with the least remaining;
// headers_on_success adds X-RateLimit-* to allowed answers.
func TestRateLimitIETFHeaders(t *testing.T) {
	b := newTestBackend(t, "a")
	limits := `    per_ip: {requests_per_second: 100, burst: 200}
    endpoints: [{path: /api/login, limit: 5, window: 1m}]
    ietf_headers: true
    headers_on_success: true
`
	e := startEnv(t, rlConfig(b, limits))
	r := e.reqFrom("GET", "/", "198.51.100.1", nil)
	if r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	wantHeaders(t, r, map[string]string{
		"RateLimit-Policy": `"per-ip";q=200;w=2`, "RateLimit": `"per-ip";r=199;t=1`,
		"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "199", "X-RateLimit-Reset": "1",
	})
	// On the login endpoint its window is the tighter policy.
	for i := range 5 {
		r := e.reqFrom("POST", "/api/login", "198.51.100.2", nil)
		if r.status != 200 {
			t.Fatalf("login %d: %d", i, r.status)
		}
		want := `"endpoint /api/login";r=` + string(rune('4'-i)) + ";t="
		if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, want) {
			t.Errorf("login %d: RateLimit %q, want %s…", i, got, want)
		}
		wantHeaders(t, r, map[string]string{"RateLimit-Policy": `"endpoint /api/login";q=5;w=60`, "X-RateLimit-Limit": "5"})
	}
	r = e.reqFrom("POST", "/api/login", "198.51.100.2", nil)
	if r.status != http.StatusTooManyRequests || !strings.HasPrefix(r.header.Get("RateLimit"), `"endpoint /api/login";r=0;t=`) {
		t.Fatalf("6th login: %d RateLimit %q", r.status, r.header.Get("RateLimit"))
	}
	wantHeaders(t, r, map[string]string{"RateLimit-Policy": `"endpoint /api/login";q=5;w=60`, "X-RateLimit-Remaining": "0"})

	// ietf_headers alone: the IETF fields but no X-RateLimit-* on
	// allowed answers.
	if err := e.reload(rlConfig(b, strings.Replace(limits, "    headers_on_success: true\n", "", 1))); err != nil {
		t.Fatal(err)
	}
	r = e.reqFrom("GET", "/", "198.51.100.3", nil)
	if r.header.Get("RateLimit") != `"per-ip";r=199;t=1` || r.header.Get("X-RateLimit-Limit") != "" {
		t.Errorf("ietf only: RateLimit %q X-RateLimit-Limit %q", r.header.Get("RateLimit"), r.header.Get("X-RateLimit-Limit"))
	}
	// Neither: allowed answers carry no rate-limit fields, refusals only
	// X-RateLimit-* and Retry-After.
	if err := e.reload(rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 1}\n")); err != nil {
		t.Fatal(err)
	}
	r = e.reqFrom("GET", "/", "198.51.100.4", nil)
	if r.status != 200 || r.header.Get("RateLimit") != "" || r.header.Get("X-RateLimit-Limit") != "" {
		t.Errorf("default allowed answer: %d %v", r.status, r.header)
	}
	r = e.reqFrom("GET", "/", "198.51.100.4", nil)
	if r.status != 429 || r.header.Get("RateLimit") != "" || r.header.Get("RateLimit-Policy") != "" || r.header.Get("X-RateLimit-Limit") != "1" {
		t.Errorf("default refusal: %d %v", r.status, r.header)
	}
}

func TestSFString(t *testing.T) {
	for in, want := range map[string]string{`per-ip`: `"per-ip"`, `a"b\c`: `"a\"b\\c"`, "x\ty\u00e9": `"x_y__"`} {
		if got := sfString(in); got != want {
			t.Errorf("sfString(%q) = %s, want %s", in, got, want)
		}
	}
}
