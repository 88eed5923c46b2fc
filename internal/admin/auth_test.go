package admin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
	"github.com/rampart-proxy/rampart/internal/testcerts"
)

// envOptions configure newEnvWith.
type envOptions struct {
	Options
	logTo io.Writer // the API's log, when set
}

// fakeSource feeds the metrics of the fake instance.
type fakeSource struct{ reg *proxy.Registry }

func (s fakeSource) Pools() []proxy.PoolStatus       { return s.reg.Status() }
func (fakeSource) ActiveConnections() map[string]int { return nil }
func (fakeSource) AccessLogDropped() int64           { return 0 }
func (fakeSource) Reloads() int64                    { return 0 }
func (fakeSource) ReloadFailures() (int64, bool)     { return 0, false }

const (
	viewerToken   = "viewer-token-4cbd6f0e1a7f2b9c"
	operatorToken = "operator-token-9e1d3c5b7a2f4e6d"
	adminToken    = "admin-token-2a4c6e8f0b1d3f5a"
)

func hashOf(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// tokenAdmin is an admin section with a token for each role (named view,
// ops and root) and the given failure limit.
func tokenAdmin(max int) *config.Admin {
	return &config.Admin{Listen: "127.0.0.1:0",
		Tokens: []config.AdminToken{
			{Name: "view", SHA256: hashOf(viewerToken), Role: "viewer"},
			{Name: "ops", SHA256: hashOf(operatorToken), Role: "operator"},
			{Name: "root", SHA256: strings.ToUpper(hashOf(adminToken)), Role: "admin"},
		},
		AuthFailures: config.AuthFailures{Max: max, Window: config.Duration(time.Minute), Block: config.Duration(5 * time.Minute)},
	}
}

func fixed(a *config.Admin) func() *config.Admin { return func() *config.Admin { return a } }

// send calls the API with token as a bearer token (none when empty) and
// returns the status, headers and body.
func (e *env) send(method, path, token string) (int, http.Header, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.sendReq(req)
}

func (e *env) sendReq(req *http.Request) (int, http.Header, string) {
	e.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(data)
}

// examplePath turns a routes pattern into a request that reaches it.
func examplePath(pattern string) (method, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", pattern
	}
	if path == "/" {
		path = "/api/v1/no-such-endpoint"
	}
	return method, strings.NewReplacer("{pool}", "web", "{id}", "b1", "{action}", "restore", "{list}", "blocklist", "{entry...}", "198.51.100.9").Replace(path)
}

// TestAdminAuthEveryEndpointEveryRole calls every endpoint of the routes
// table with no credentials, a wrong token and a token of each role, and
// checks 401 / 403 / served according to the table, and that mutating
// calls are recorded with the token's name as the actor.
func TestAdminAuthEveryEndpointEveryRole(t *testing.T) {
	e := newEnvWith(t, envOptions{Options: Options{Config: fixed(tokenAdmin(1000))}})
	creds := []struct {
		name, token, id string
		role            Role
	}{
		{"no credentials", "", "", RoleNone},
		{"bad token", "not-a-configured-token", "", RoleNone},
		{"viewer", viewerToken, "view", RoleViewer},
		{"operator", operatorToken, "ops", RoleOperator},
		{"admin", adminToken, "root", RoleAdmin},
	}
	for _, rt := range routes {
		method, path := examplePath(rt.pattern)
		for _, c := range creds {
			before := len(e.lines())
			code, h, body := e.send(method, path, c.token)
			what := fmt.Sprintf("%s %s (%s, needs %s) as %s", method, path, rt.pattern, rt.role, c.name)
			switch {
			case c.role == RoleNone:
				if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer ") || h.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s: %d %q %s, want 401 problem+json with a Bearer challenge", what, code, h.Get("WWW-Authenticate"), body)
				}
			case c.role < rt.role:
				if code != 403 || h.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s: %d %s, want 403 problem+json", what, code, body)
				}
			default:
				if code == 401 || code == 403 || code == 429 || code >= 500 {
					t.Errorf("%s: %d %s, want it served (2xx or a 4xx that is not about authentication)", what, code, body)
				}
			}
			ents := e.entries()
			served := c.role >= rt.role
			switch {
			case served && method != "GET":
				if len(ents) != before+1 {
					t.Errorf("%s: %d new audit entries, want 1", what, len(ents)-before)
					continue
				}
				want := audit.Actor{Type: "api", ID: c.id, IP: "127.0.0.1", AuthMethod: "token"}
				if got := ents[len(ents)-1].Actor; got != want {
					t.Errorf("%s: audit actor %+v, want %+v", what, got, want)
				}
			case !served && method != "GET":
				// A mutating call refused for its credentials or role is
				// recorded as such, with whoever the caller proved to be.
				if len(ents) != before+1 {
					t.Errorf("%s: %d new audit entries, want 1 (api.denied)", what, len(ents)-before)
					continue
				}
				en := ents[len(ents)-1]
				want := audit.Actor{Type: "api", ID: c.id, IP: "127.0.0.1"}
				if c.id != "" {
					want.AuthMethod = "token"
				}
				if en.Action != audit.ActionAPIDenied || en.Result != audit.ResultRefused || en.Actor != want ||
					en.Resource.ID != method+" "+path || string(en.Details) != fmt.Sprintf(`{"status":%d}`, code) {
					t.Errorf("%s: recorded as %+v %s, want api.denied refused by %+v", what, en, en.Details, want)
				}
			case len(ents) != before:
				t.Errorf("%s: %d new audit entries, want none", what, len(ents)-before)
			}
		}
	}
}

// undeclared returns the patterns registered on a's mux that the routes
// table does not declare.
func undeclared(a *API) []string {
	var out []string
	for _, p := range a.mux.patterns {
		if !slices.ContainsFunc(routes, func(r route) bool { return r.pattern == p }) {
			out = append(out, p)
		}
	}
	return out
}

func TestAdminAuthRoutesTableCoversTheMux(t *testing.T) {
	a := New(&fakeInstance{}, slog.New(slog.DiscardHandler), Options{})
	if u := undeclared(a); len(u) > 0 {
		t.Fatalf("endpoints registered without a role in the routes table: %v", u)
	}
	if len(a.mux.patterns) != len(routes) {
		t.Fatalf("%d patterns registered, %d in the table", len(a.mux.patterns), len(routes))
	}
	for _, rt := range routes {
		method, _, _ := strings.Cut(rt.pattern, " ")
		if rt.role == RoleNone {
			t.Errorf("%s: no role", rt.pattern)
		}
		if method != "GET" && strings.HasPrefix(rt.pattern, method+" ") && rt.role < RoleOperator {
			t.Errorf("%s changes something but needs only %s", rt.pattern, rt.role)
		}
	}

	// An endpoint registered beside the table is caught by the check
	// above, and refused at run time even to an admin.
	called := false
	a.mux.HandleFunc("POST /api/v1/sneaky", func(http.ResponseWriter, *http.Request) { called = true })
	if u := undeclared(a); !slices.Equal(u, []string{"POST /api/v1/sneaky"}) {
		t.Fatalf("undeclared = %v", u)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "http://127.0.0.1:9090/api/v1/sneaky", nil)
	r.RemoteAddr = "127.0.0.1:4242"
	a.ServeHTTP(w, r)
	if w.Code != 500 || called {
		t.Fatalf("undeclared endpoint: %d, handler called %v; want 500 and not called", w.Code, called)
	}
}

func TestAdminAuthVerifierComparesEveryHash(t *testing.T) {
	toks := []string{"alpha-7d1f0c2e9b", "bravo-3a8e6f1d0c", "charlie-5b2d7e9f1a", "delta-0e4c8a2b6d"}
	var v verifier
	for i, tok := range toks {
		v = append(v, tokenEntry{name: fmt.Sprintf("t%d", i), sum: sha256.Sum256([]byte(tok)), role: RoleViewer})
	}
	calls := 0
	orig := compare
	compare = func(x, y []byte) int { calls++; return orig(x, y) }
	defer func() { compare = orig }()
	for i, tok := range toks {
		calls = 0
		got, ok := v.verify(tok)
		if !ok || got.name != fmt.Sprintf("t%d", i) {
			t.Errorf("verify(token %d) = %q %v", i, got.name, ok)
		}
		if calls != len(toks) {
			t.Errorf("verify(token %d) compared %d hashes, want all %d (no early exit)", i, calls, len(toks))
		}
	}
	for _, bad := range []string{"", "alpha-7d1f0c2e9", toks[0] + "x", " " + toks[1], hashOf(toks[2])} {
		calls = 0
		if got, ok := v.verify(bad); ok {
			t.Errorf("verify(%q) accepted as %q", bad, got.name)
		}
		if calls != len(toks) {
			t.Errorf("verify(%q) compared %d hashes, want %d", bad, calls, len(toks))
		}
	}
}

// fakeClock is the failure limiter's clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestAdminAuthFailureLimiter(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var mu sync.Mutex
	var reported []netip.Addr
	adm := tokenAdmin(3)
	e := newEnvWith(t, envOptions{Options: Options{Config: fixed(adm), Now: clock.Now,
		OnAuthFailure: func(ip netip.Addr) { mu.Lock(); reported = append(reported, ip); mu.Unlock() }}})
	status := func(token string) (int, string) {
		code, h, _ := e.send("GET", "/api/v1/status", token)
		return code, h.Get("Retry-After")
	}

	// Two failures, then the window passes: the count starts again.
	for i := 0; i < 2; i++ {
		if code, _ := status("wrong"); code != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, code)
		}
	}
	clock.advance(61 * time.Second)
	// Missing credentials are not failures (nothing was guessed).
	for i := 0; i < 5; i++ {
		if code, _ := status(""); code != 401 {
			t.Fatalf("no credentials: %d, want 401", code)
		}
	}
	if code, _ := status("wrong"); code != 401 {
		t.Fatalf("first failure of a new window: %d, want 401", code)
	}
	if code, _ := status("wrong"); code != 401 {
		t.Fatalf("second failure of a new window: %d, want 401", code)
	}
	// The third within the window starts the block.
	code, h, body := e.send("GET", "/api/v1/status", "wrong")
	if code != 429 || h.Get("Retry-After") != "300" || h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("third failure: %d Retry-After %q %s, want 429 with Retry-After 300", code, h.Get("Retry-After"), body)
	}
	// A valid token is served while the block lasts (a neighbour on the
	// same address must not lock operators out); anything else is refused.
	clock.advance(4 * time.Minute)
	if code, _ := status(adminToken); code != 200 {
		t.Fatalf("valid token while blocked: %d, want 200", code)
	}
	if code, ra := status(""); code != 429 || ra != "60" {
		t.Fatalf("no credentials while blocked: %d Retry-After %q, want 429 and 60", code, ra)
	}
	clock.advance(59*time.Second + 500*time.Millisecond)
	if code, ra := status("wrong"); code != 429 || ra != "1" {
		t.Fatalf("wrong token half a second before the end: %d Retry-After %q, want 429 and 1", code, ra)
	}
	clock.advance(500 * time.Millisecond)
	if code, _ := status(adminToken); code != 200 {
		t.Fatalf("valid token after the block: %d, want 200", code)
	}
	// And the count starts from zero again.
	if code, _ := status("wrong"); code != 401 {
		t.Fatalf("failure after the block: %d, want 401", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 6 || reported[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("OnAuthFailure saw %v, want 127.0.0.1 six times", reported)
	}
}

func TestAdminAuthLimiterKeysAndMemory(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	l := newFailureLimiter(clock.Now)
	lim := limits{max: 2, window: time.Minute, block: time.Hour}
	a1, a2 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if _, b, _ := l.fail(a1, lim); b {
		t.Fatal("blocked after one failure")
	}
	if d, b, started := l.fail(a2, lim); !b || !started || d != time.Hour {
		t.Fatal("two failures from one /64 did not block it")
	}
	clock.advance(time.Minute)
	if d, b, started := l.fail(a1, lim); !b || started || d != 59*time.Minute {
		t.Fatalf("a failure during the block: %s %v %v, want 59m, blocked, not a new block", d, b, started)
	}
	if _, b := l.blocked(netip.MustParseAddr("2001:db8:1:2::77")); !b {
		t.Fatal("the rest of the /64 is not blocked")
	}
	if _, b := l.blocked(netip.MustParseAddr("2001:db8:1:3::1")); b {
		t.Fatal("the neighbouring /64 is blocked")
	}
	v4 := netip.MustParseAddr("192.0.2.1")
	l.fail(v4, lim)
	l.fail(netip.MustParseAddr("::ffff:192.0.2.1"), lim) // the same address, IPv4-mapped
	if _, b := l.blocked(v4); !b {
		t.Fatal("IPv4 and IPv4-mapped addresses counted apart")
	}
	if _, b := l.blocked(netip.MustParseAddr("192.0.2.2")); b {
		t.Fatal("an IPv4 neighbour is blocked")
	}

	// Memory is bounded; blocked addresses are kept over ones that are not.
	l.cap = 50
	for i := 0; i < 1000; i++ {
		l.fail(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), lim)
		if n := l.tracked(); n > l.cap {
			t.Fatalf("%d addresses tracked, cap %d", n, l.cap)
		}
	}
	if _, b := l.blocked(v4); !b {
		t.Fatal("a blocked address was forgotten while others were not blocked")
	}
}

// TestAdminAuthNeverRevealsTokens: no presented token, good or bad, shows
// up in an answer, the log or the audit trail.
func TestAdminAuthNeverRevealsTokens(t *testing.T) {
	var logs syncBuffer
	e := newEnvWith(t, envOptions{Options: Options{Config: fixed(tokenAdmin(100))}, logTo: &logs})
	const bad = "Sup3rSecretWrongToken-0f9e8d7c"
	var answers []string
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/api/v1/status", bad},
		{"POST", "/api/v1/pools/web/backends/b1/quarantine", bad},
		{"POST", "/api/v1/pools/web/backends/b1/quarantine", viewerToken},
		{"POST", "/api/v1/pools/web/backends/b1/quarantine", operatorToken},
		{"GET", "/api/v1/nope", adminToken},
	} {
		code, h, body := e.send(c.method, c.path, c.token)
		answers = append(answers, fmt.Sprint(code, h, body))
	}
	trail, _ := os.ReadFile(e.log)
	for _, tok := range []string{bad, viewerToken, operatorToken, adminToken} {
		for _, where := range []struct{ name, text string }{
			{"answers", strings.Join(answers, "\n")}, {"log", logs.String()}, {"audit trail", string(trail)},
		} {
			if strings.Contains(where.text, tok) || strings.Contains(where.text, tok[:12]) {
				t.Errorf("token %q appears in the %s:\n%s", tok, where.name, where.text)
			}
		}
	}
	if !strings.Contains(logs.String(), "admin API authentication failed") {
		t.Errorf("failures are not logged:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAdminAuthMalformedCredentials(t *testing.T) {
	e := newEnvWith(t, envOptions{Options: Options{Config: fixed(tokenAdmin(100))}})
	for _, hdr := range [][]string{
		{"Basic " + adminToken},
		{"Bearer"},
		{"Bearer "},
		{adminToken},
		{"Bearer " + adminToken + " extra"},
		{"Bearer " + adminToken, "Bearer " + adminToken},
	} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/status", nil)
		req.Header["Authorization"] = hdr
		if code, _, body := e.sendReq(req); code != 401 {
			t.Errorf("Authorization %q: %d %s, want 401", hdr, code, body)
		}
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/status", nil)
	req.Header.Set("Authorization", "bearer   "+adminToken)
	if code, _, body := e.sendReq(req); code != 200 {
		t.Errorf("lower-case scheme and extra spaces: %d %s, want 200", code, body)
	}
}

func TestAdminAuthLoopbackWithoutConfig(t *testing.T) {
	e := newEnv(t)
	// Loopback callers are admins, as before authentication existed...
	if code, _, body := e.send("POST", "/api/v1/config/reload", ""); code != 200 {
		t.Fatalf("loopback reload: %d %s", code, body)
	}
	if a := e.entries()[0].Actor; a != (audit.Actor{Type: "api", IP: "127.0.0.1", AuthMethod: "loopback"}) {
		t.Fatalf("actor %+v", a)
	}
	// ...but a token sent to an API without tokens is refused, not ignored.
	if code, _, body := e.send("GET", "/api/v1/status", adminToken); code != 401 || !strings.Contains(body, "no tokens configured") {
		t.Fatalf("token to an API without tokens: %d %s", code, body)
	}
	// Defence in depth: a caller from beyond loopback is refused (config
	// validation already keeps such a listener from starting).
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/api/v1/status", nil)
	r.RemoteAddr = "192.0.2.10:5555"
	e.api.ServeHTTP(w, r)
	if w.Code != 403 {
		t.Fatalf("non-loopback caller without authentication configured: %d, want 403", w.Code)
	}
}

// TestAdminAuthFollowsReload: the config in force is read per request, so
// a reload revokes a token or changes a role at once.
func TestAdminAuthFollowsReload(t *testing.T) {
	var cur atomic.Pointer[config.Admin]
	cur.Store(tokenAdmin(100))
	e := newEnvWith(t, envOptions{Options: Options{Config: func() *config.Admin { return cur.Load() }}})
	if code, _, _ := e.send("POST", "/api/v1/config/reload", viewerToken); code != 403 {
		t.Fatalf("viewer reload: %d, want 403", code)
	}
	next := tokenAdmin(100)
	next.Tokens = next.Tokens[:2] // root is revoked
	next.Tokens[0].Role = "operator"
	cur.Store(next)
	if code, _, _ := e.send("GET", "/api/v1/status", adminToken); code != 401 {
		t.Fatalf("revoked token: %d, want 401", code)
	}
	if code, _, body := e.send("POST", "/api/v1/config/reload", viewerToken); code != 200 {
		t.Fatalf("promoted token: %d %s, want 200", code, body)
	}
}

// tlsAdmin parses a config whose admin section has TLS files, so that
// they are loaded as in production.
func tlsAdmin(t *testing.T, extra string) *config.Admin {
	t.Helper()
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "test CA")
	c, k := ca.Server(t)
	testcerts.Write(t, dir, "admin.pem", c)
	testcerts.Write(t, dir, "admin-key.pem", k)
	testcerts.Write(t, dir, "ca.pem", ca.PEM)
	src := "admin:\n  listen: 127.0.0.1:0\n  tls: {cert_file: admin.pem, key_file: admin-key.pem" + extra + "}\n" + testConfig
	cfg, err := config.Parse(filepath.Join(dir, "rampart.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Admin
}

func TestAdminAuthFailsClosed(t *testing.T) {
	serve := func(adm *config.Admin) int {
		a := New(&fakeInstance{}, slog.New(slog.DiscardHandler), Options{Config: fixed(adm)})
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/api/v1/status", nil)
		r.RemoteAddr = "127.0.0.1:4242"
		a.ServeHTTP(w, r)
		return w.Code
	}
	// A plain-HTTP request (a connection accepted before a reload turned
	// TLS on) is refused.
	if code := serve(tlsAdmin(t, "")); code != 403 {
		t.Errorf("plain request to a TLS admin API: %d, want 403", code)
	}
	// TLS material that was never loaded (an unvalidated config) refuses
	// everything rather than serving without it.
	if code := serve(&config.Admin{Listen: "127.0.0.1:0", TLS: &config.AdminTLS{CertFile: "x.pem", KeyFile: "y.pem"}}); code != 503 {
		t.Errorf("unloaded TLS material: %d, want 503", code)
	}
	if code := serve(&config.Admin{Listen: "127.0.0.1:0", Tokens: []config.AdminToken{{Name: "x", SHA256: "zz", Role: "admin"}}}); code != 503 {
		t.Errorf("a token hash that is not hex: %d, want 503", code)
	}
}

func TestRoleNames(t *testing.T) {
	for i, name := range config.AdminRoles {
		if r := ParseRole(name); r != Role(i+1) || r.String() != name {
			t.Errorf("ParseRole(%q) = %v", name, r)
		}
	}
	if ParseRole("none") != RoleNone || ParseRole("root") != RoleNone || ParseRole("") != RoleNone {
		t.Error("ParseRole accepts a name that is not a role")
	}
}

// A loopback admin API without credentials is out of reach of web pages:
// a mutating call a browser makes from another site is refused (CSRF: a
// page could quarantine a backend), and so is any call addressed to a
// name other than loopback's (DNS rebinding: a page's own name resolving
// to 127.0.0.1, whose answers it could read).
func TestAdminAuthRefusesBrowsersOfOtherSites(t *testing.T) {
	a := New(&fakeInstance{}, slog.New(slog.DiscardHandler), Options{Config: fixed(&config.Admin{Listen: "127.0.0.1:9090"})})
	serve := func(method, url string, hdr ...string) int {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(method, url, nil)
		r.RemoteAddr = "127.0.0.1:4242"
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		a.ServeHTTP(w, r)
		return w.Code
	}
	const reload = "http://127.0.0.1:9090/api/v1/config/reload"
	for _, c := range []struct {
		name   string
		method string
		url    string
		hdr    []string
		want   int
	}{
		{"cross-site POST", "POST", reload, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 403},
		{"cross-origin POST, Origin only", "POST", reload, []string{"Origin", "https://evil.example"}, 403},
		{"rebound name, GET", "GET", "http://evil.example:9090/api/v1/status", nil, 403},
		{"rebound name, same-origin POST", "POST", "http://evil.example:9090/api/v1/config/reload", []string{"Sec-Fetch-Site", "same-origin"}, 403},
		{"ctl (no browser headers)", "GET", "http://127.0.0.1:9090/api/v1/status", nil, 200},
		{"localhost", "GET", "http://localhost:9090/api/v1/status", nil, 200},
		{"[::1]", "GET", "http://[::1]:9090/api/v1/status", nil, 200},
		{"cross-site GET (opaque to the page)", "GET", "http://127.0.0.1:9090/api/v1/status", []string{"Sec-Fetch-Site", "cross-site"}, 200},
	} {
		if got := serve(c.method, c.url, c.hdr...); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// Refused calls are evidence, but a loop of them, even without any
// credentials (which the failure limiter does not count), adds at most
// auth_failures.max entries per address per window; the path is recorded
// as sent on the wire (no raw bidi or C1 character) and clipped.
func TestAdminAuthDeniedCallsRecordedBounded(t *testing.T) {
	e := newEnvWith(t, envOptions{Options: Options{Config: fixed(tokenAdmin(5))}})
	before := len(e.entries())
	long := "/api/v1/" + strings.Repeat("A", 5000)
	for i := range 40 {
		path := long
		if i == 0 {
			path = "/api/v1/%E2%80%AEabc%C2%9B31m"
		}
		if code, _, _ := e.send("POST", path, ""); code != 401 {
			t.Fatalf("call %d: %d, want 401", i, code)
		}
	}
	ents := e.entries()[before:]
	if len(ents) == 0 || len(ents) > 5 {
		t.Fatalf("%d entries recorded for 40 refused calls, want 1 to 5", len(ents))
	}
	if id := ents[0].Resource.ID; id != "POST /api/v1/%E2%80%AEabc%C2%9B31m" {
		t.Errorf("first entry's resource %q, want the path as sent", id)
	}
	for _, en := range ents {
		if len(en.Resource.ID) > 600 {
			t.Errorf("resource of %d bytes recorded", len(en.Resource.ID))
		}
	}
}
