package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rampart-proxy/rampart/internal/acl"
)

// rlConfig is aclConfig's setup (a trusted loopback proxy, so tests pick
// client addresses with X-Forwarded-For, and 203.0.113.7 allowlisted) with
// rate_limits.
func rlConfig(b *testBackend, limits string) string {
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1/32]}
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools: [{name: p, backends: %s}]
logging: {access_log: {path: access.log}}
security:
  ip_lists:
    allowlist: [203.0.113.7]
  rate_limits:
%s`, backendsYAML(b), limits)
}

func (e *testEnv) reqFrom(method, path, client string, hdr http.Header) resp {
	e.t.Helper()
	h := http.Header{"X-Forwarded-For": {client}}
	for k, v := range hdr {
		h[k] = v
	}
	return e.do(method, e.url("web", path), "", h, nil)
}

func wantHeaders(t *testing.T, r resp, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// Per-IP: burst 3 and almost no refill; the 4th request is a 429 with the
// exact headers, Rampart's error page, the record and the metric.
func TestRateLimitPerIP(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 3}\n"))
	for i := range 3 {
		if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	r := e.reqFrom("GET", "/", "198.51.100.1", nil)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("4th request: %d, want 429", r.status)
	}
	wantHeaders(t, r, map[string]string{
		"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3000",
		"Retry-After": "1000", "Content-Type": "text/plain; charset=utf-8",
	})
	id := r.header.Get("X-Request-Id")
	if id == "" || r.body != "429 Too Many Requests\nrequest_id: "+id+"\n" {
		t.Errorf("body %q (request id %q)", r.body, id)
	}
	if got := b.hits.Load(); got != 3 {
		t.Errorf("backend saw %d requests, want 3", got)
	}
	// Another client is not affected.
	if r := e.reqFrom("GET", "/", "198.51.100.2", nil); r.status != 200 {
		t.Fatalf("other client: %d", r.status)
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 5)
	if l := lines[3]; l["rate_limited"] != true || l["rate_limit_tier"] != "per_ip" || l["status_code"] != 429.0 {
		t.Errorf("log line of the 429: %v", l)
	}
	if l := lines[0]; l["rate_limited"] != false || l["rate_limit_tier"] != "" {
		t.Errorf("log line of an allowed request: %v", l)
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="per_ip",stage="rate_limit"}`); v != "1" {
		t.Errorf("blocked metric = %q, want 1", v)
	}
}

// Every 429 is an offence: the third within an hour blocks the client.
func TestRateLimitOffenderBlocks(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 1}\n"))
	if r := e.reqFrom("GET", "/", "198.51.100.9", nil); r.status != 200 {
		t.Fatalf("first: %d", r.status)
	}
	for i := range 3 {
		if r := e.reqFrom("GET", "/", "198.51.100.9", nil); r.status != 429 {
			t.Fatalf("violation %d: %d, want 429", i, r.status)
		}
	}
	if n := e.srv.ACL().Dynamic().Len(acl.Blocklist); n != 1 {
		t.Fatalf("dynamic blocklist has %d entries after 3 violations, want 1", n)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.9", nil); r.status != http.StatusForbidden {
		t.Fatalf("after the block: %d, want 403", r.status)
	}
}

func TestRateLimitEndpointWindow(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, "    endpoints: [{path: /api/login, limit: 5, window: 1m, key: ip, methods: [POST]}]\n"))
	for i := range 5 {
		if r := e.reqFrom("POST", "/api/login", "198.51.100.1", nil); r.status != 200 {
			t.Fatalf("login %d: %d", i, r.status)
		}
	}
	r := e.reqFrom("POST", "/api/login", "198.51.100.1", nil)
	if r.status != 429 || !strings.Contains(r.body, "rate limit for /api/login: 5 requests per 1m0s\n") {
		t.Fatalf("6th login: %d %q, want 429 naming the endpoint's limit", r.status, r.body)
	}
	wantHeaders(t, r, map[string]string{"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0"})
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	// Other paths, other methods and other clients are unaffected.
	for _, c := range []struct{ method, path, client string }{
		{"POST", "/api/other", "198.51.100.1"}, {"GET", "/api/login", "198.51.100.1"}, {"POST", "/api/login", "198.51.100.2"},
	} {
		if r := e.reqFrom(c.method, c.path, c.client, nil); r.status != 200 {
			t.Errorf("%+v: %d", c, r.status)
		}
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 6)
	if lines[5]["rate_limit_tier"] != "endpoint" {
		t.Errorf("tier %v", lines[5]["rate_limit_tier"])
	}
}

func TestRateLimitGlobal503(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, "    global: {requests_per_second: 0.001, burst: 2}\n"))
	for i := range 2 {
		if r := e.reqFrom("GET", "/", fmt.Sprintf("198.51.100.%d", i+1), nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	r := e.reqFrom("GET", "/", "198.51.100.3", nil)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1000" {
		t.Fatalf("3rd request: %d Retry-After %q, want 503 and 1000", r.status, r.header.Get("Retry-After"))
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="global",stage="rate_limit"}`); v != "1" {
		t.Errorf("blocked metric = %q", v)
	}
	// A 503 of the global limit is not the client's offence.
	if n := e.srv.ACL().Dynamic().Len(acl.Blocklist); n != 0 {
		t.Errorf("%d blocks", n)
	}
}

func TestRateLimitAllowlistExempt(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, `    global: {requests_per_second: 0.001, burst: 1}
    per_ip: {requests_per_second: 0.001, burst: 1}
    endpoints: [{path: /api/login, limit: 1, window: 1m}]
`))
	for i := range 5 {
		if r := e.reqFrom("GET", "/api/login", "203.0.113.7", nil); r.status != 200 {
			t.Fatalf("allowlisted request %d: %d", i, r.status)
		}
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 200 {
		t.Fatalf("first unlisted: %d", r.status)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 503 {
		t.Fatalf("second unlisted: %d, want the global 503", r.status)
	}
}

// A reload keeps every client's state; changed limits apply to the next
// check.
func TestRateLimitReloadKeepsBuckets(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 2}\n"))
	for range 2 {
		e.reqFrom("GET", "/", "198.51.100.1", nil)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 429 {
		t.Fatalf("%d, want 429", r.status)
	}
	if err := e.reload(rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 2}\n    endpoints: [{path: /x, limit: 1, window: 1s}]\n")); err != nil {
		t.Fatal(err)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 429 {
		t.Fatalf("after reload: %d, want the bucket still empty", r.status)
	}
	if err := e.reload(rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 3}\n")); err != nil {
		t.Fatal(err)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 200 {
		t.Fatalf("after raising burst to 3: %d, want the one extra token", r.status)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 429 {
		t.Fatalf("%d, want 429", r.status)
	}
}

const testSecret = "0123456789abcdef0123456789abcdef"

func signHS256(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRateLimitPerUserJWT(t *testing.T) {
	b := newTestBackend(t, "a")
	secret := filepath.Join(t.TempDir(), "jwt.secret")
	if err := os.WriteFile(secret, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, rlConfig(b, fmt.Sprintf(`    per_ip: {requests_per_second: 0.001, burst: 1}
    per_user:
      key: {jwt_claim: sub}
      jwt: {algorithms: [HS256], secret_file: %q}
      tiers: {free: {requests_per_second: 0.001, burst: 2}, pro: {requests_per_second: 0.001, burst: 4}}
      users: {alice: pro}
      default_tier: free
`, secret)))
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	exp := time.Now().Add(time.Hour).Unix()

	// alice (pro, burst 4) from one IP gets more than the per-IP burst of 1,
	// counted by sub wherever she comes from.
	alice := signHS256(t, testSecret, jwt.MapClaims{"sub": "alice", "exp": exp})
	for i := range 4 {
		if r := e.reqFrom("GET", "/", fmt.Sprintf("198.51.100.%d", 1+i%2), bearer(alice)); r.status != 200 {
			t.Fatalf("alice request %d: %d", i, r.status)
		}
	}
	r := e.reqFrom("GET", "/", "198.51.100.3", bearer(alice))
	if r.status != 429 || r.header.Get("X-RateLimit-Limit") != "4" {
		t.Fatalf("alice's 5th: %d limit %q, want 429 with her tier's limit 4", r.status, r.header.Get("X-RateLimit-Limit"))
	}
	// bob is verified but not listed: default tier free (burst 2).
	bob := signHS256(t, testSecret, jwt.MapClaims{"sub": "bob"})
	for i := range 2 {
		if r := e.reqFrom("GET", "/", "198.51.100.4", bearer(bob)); r.status != 200 {
			t.Fatalf("bob %d: %d", i, r.status)
		}
	}
	if r := e.reqFrom("GET", "/", "198.51.100.4", bearer(bob)); r.status != 429 || r.header.Get("X-RateLimit-Limit") != "2" {
		t.Fatalf("bob's 3rd: %d limit %q", r.status, r.header.Get("X-RateLimit-Limit"))
	}

	// Tokens that do not verify are anonymous: limited per IP (burst 1),
	// never by the claimed sub (alice's bucket is empty anyway; "carol"
	// would get a fresh one).
	parts := strings.Split(signHS256(t, testSecret, jwt.MapClaims{"sub": "carol"}), ".")
	none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	cases := map[string]string{
		"forged":    signHS256(t, "another-secret-another-secret-xx", jwt.MapClaims{"sub": "carol"}),
		"alg none":  none,
		"expired":   signHS256(t, testSecret, jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(-time.Minute).Unix()}),
		"malformed": "not.a.token",
		"tampered":  parts[0] + "." + parts[1] + "x." + parts[2],
	}
	n := 10
	for name, tok := range cases {
		n++
		client := fmt.Sprintf("198.51.100.%d", n)
		if r := e.reqFrom("GET", "/", client, bearer(tok)); r.status != 200 {
			t.Fatalf("%s: first request %d", name, r.status)
		}
		r := e.reqFrom("GET", "/", client, bearer(tok))
		if r.status != 429 || r.header.Get("X-RateLimit-Limit") != "1" {
			t.Errorf("%s token: second request %d limit %q, want the per-IP 429 (limit 1)", name, r.status, r.header.Get("X-RateLimit-Limit"))
		}
	}
}

// Header identities count only when listed: anyone can send any value.
func TestRateLimitPerUserHeader(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, `    per_ip: {requests_per_second: 0.001, burst: 1}
    per_user:
      key: {header: X-API-Key}
      tiers: {pro: {requests_per_second: 0.001, burst: 3}}
      users: {key-123: pro}
`))
	k := http.Header{"X-Api-Key": {"key-123"}}
	for i := range 3 {
		if r := e.reqFrom("GET", "/", "198.51.100.1", k); r.status != 200 {
			t.Fatalf("listed key %d: %d", i, r.status)
		}
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", k); r.status != 429 {
		t.Fatalf("listed key 4th: %d", r.status)
	}
	// Unlisted keys, fresh for every request, do not escape the per-IP limit.
	if r := e.reqFrom("GET", "/", "198.51.100.2", http.Header{"X-Api-Key": {"r1"}}); r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.2", http.Header{"X-Api-Key": {"r2"}}); r.status != 429 {
		t.Fatalf("unlisted key bypassed per-IP: %d", r.status)
	}
}

// A trusted proxy that sends a request without a usable X-Forwarded-For is
// limited like any client, but never auto-blocked: the block would shut
// out every client behind it.
func TestTrustedProxyNeverAutoBlocked(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 1}\n")+
		"  dynamic_blocklist: {auto_block: {rate_limit_violations: {count: 2, window: 5m, duration: 1h}}}\n")
	var codes []int
	for range 5 { // no X-Forwarded-For: the peer, a trusted proxy, is the client
		codes = append(codes, e.do(http.MethodGet, e.url("web", "/"), "", nil, nil).status)
	}
	if fmt.Sprint(codes) != "[200 429 429 429 429]" {
		t.Fatalf("requests from the proxy itself: %v, want one 200 and then 429s", codes)
	}
	if d := e.srv.acl.Check(netip.MustParseAddr("127.0.0.1")); d.Action != acl.ActionNone {
		t.Fatalf("the trusted proxy was put on a list: %+v", d)
	}
	if r := e.reqFrom(http.MethodGet, "/", "198.51.100.20", nil); r.status != 200 {
		t.Fatalf("a client behind the proxy: %d, want 200", r.status)
	}
	// A client behind it is blocked as usual.
	for range 4 {
		e.reqFrom(http.MethodGet, "/", "198.51.100.21", nil)
	}
	eventually(t, "198.51.100.21 auto-blocked", func() bool {
		return e.srv.acl.Check(netip.MustParseAddr("198.51.100.21")).Action == acl.ActionDeny
	})
}

// A HEAD runs the backend's GET handler and its status leaks the answer
// (an OTP check), so an endpoint limit on GET counts it.
func TestRateLimitEndpointGETCountsHEAD(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, "    endpoints: [{path: /otp, limit: 3, window: 1m, key: ip, methods: [GET]}]\n"))
	for i, m := range []string{"GET", "HEAD", "HEAD"} {
		if r := e.reqFrom(m, "/otp", "198.51.100.1", nil); r.status != 200 {
			t.Fatalf("request %d (%s): %d", i, m, r.status)
		}
	}
	for _, m := range []string{"HEAD", "GET"} {
		if r := e.reqFrom(m, "/otp", "198.51.100.1", nil); r.status != 429 {
			t.Errorf("%s past the limit: %d, want 429", m, r.status)
		}
	}
	if r := e.reqFrom("POST", "/otp", "198.51.100.1", nil); r.status != 200 {
		t.Errorf("POST, not limited: %d", r.status)
	}
}
