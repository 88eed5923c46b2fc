package server

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// testRouter builds a router over routes whose pools all exist.
func testRouter(t testing.TB, routes []config.Route) *router {
	t.Helper()
	reg, err := proxy.NewRegistry(t.TempDir(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	seen := map[string]bool{}
	var pools []config.Pool
	for _, r := range routes {
		if !seen[r.Pool] {
			seen[r.Pool] = true
			pools = append(pools, config.Pool{Name: r.Pool, Algorithm: "round_robin",
				Backends: []config.Backend{{ID: "b", Address: "127.0.0.1:1", Weight: 1}}})
		}
	}
	reg.Apply(pools)
	return newRouter(routes, reg)
}

func rt(name, host, prefix string) config.Route {
	return config.Route{Name: name, Match: config.RouteMatch{Host: host, PathPrefix: prefix}, Pool: "pool-" + name}
}

func TestRouterMatch(t *testing.T) {
	r := testRouter(t, []config.Route{
		// File order is deliberately least specific first: precedence must
		// come from specificity, not from the order of the file.
		rt("any-root", "", "/"),
		rt("any-api", "", "/api"),
		rt("any-api-v1", "", "/api/v1"),
		rt("any-slash", "", "/static/"),
		rt("wild-root", "*.example.com", ""),
		rt("wild-admin", "*.example.com", "/admin"),
		rt("exact-api", "api.example.com", "/api"),
		rt("exact-only-docs", "docs.example.org", "/docs"),
	})
	cases := []struct {
		host, path, want string
	}{
		// Path prefixes match whole segments.
		{"other.test", "/api", "any-api"},
		{"other.test", "/api/x", "any-api"},
		{"other.test", "/apix", "any-root"},
		{"other.test", "/api/", "any-api"},
		// Longest prefix wins.
		{"other.test", "/api/v1", "any-api-v1"},
		{"other.test", "/api/v1/users", "any-api-v1"},
		{"other.test", "/api/v10", "any-api"},
		// A prefix ending in "/" matches below it, not the bare name.
		{"other.test", "/static/a.css", "any-slash"},
		{"other.test", "/static", "any-root"},
		{"other.test", "/", "any-root"},
		// Exact host beats wildcard beats any host.
		{"api.example.com", "/api/x", "exact-api"},
		{"www.example.com", "/api/x", "wild-root"},
		{"www.example.com", "/admin/users", "wild-admin"},
		{"www.example.com", "/administrator", "wild-root"},
		// An exact host whose prefixes do not match falls back to the
		// wildcard, then to any host.
		{"api.example.com", "/other", "wild-root"},
		{"docs.example.org", "/blog", "any-root"},
		{"docs.example.org", "/docs/x", "exact-only-docs"},
		// The wildcard covers exactly one label.
		{"a.b.example.com", "/admin", "any-root"},
		{"example.com", "/admin", "any-root"},
		{".example.com", "/admin", "any-root"},
		// Port, upper case and a trailing dot do not change the host.
		{"API.Example.COM:8443", "/api", "exact-api"},
		{"api.example.com.", "/api", "exact-api"},
		{"WWW.EXAMPLE.COM:80", "/admin", "wild-admin"},
		{"[::1]:8080", "/api", "any-api"},
		{"[::1]", "/api", "any-api"},
		{"", "/api", "any-api"},
	}
	for _, c := range cases {
		got := r.match(c.host, c.path)
		if got == nil {
			t.Errorf("match(%q, %q) = nil, want %s", c.host, c.path, c.want)
			continue
		}
		if got.name != c.want {
			t.Errorf("match(%q, %q) = %s, want %s", c.host, c.path, got.name, c.want)
		}
		if got.pool == nil || got.pool.Name != "pool-"+c.want {
			t.Errorf("match(%q, %q): pool %v, want pool-%s", c.host, c.path, got.pool, c.want)
		}
	}
}

func TestRouterNoMatch(t *testing.T) {
	r := testRouter(t, []config.Route{
		rt("exact", "api.example.com", "/v1"),
		rt("wild", "*.example.com", "/v2"),
		rt("any", "", "/public"),
	})
	for _, c := range []struct{ host, path string }{
		{"api.example.com", "/v3"},
		{"api.example.com", "/v1x"},
		{"x.example.com", "/v1"},
		{"x.y.example.com", "/v2"},
		{"example.com", "/v2"},
		{"other.test", "/"},
		{"other.test", "/publicity"},
	} {
		if got := r.match(c.host, c.path); got != nil {
			t.Errorf("match(%q, %q) = %s, want no route", c.host, c.path, got.name)
		}
	}
	if got := r.match("other.test", "/public/x"); got == nil || got.name != "any" {
		t.Errorf("match(other.test, /public/x) = %v, want any", got)
	}
}

// Two routes with the same host and prefix: the file order decides, so a
// config is deterministic.
func TestRouterSameSpecificityKeepsFileOrder(t *testing.T) {
	r := testRouter(t, []config.Route{rt("first", "", "/a"), rt("second", "", "/a")})
	if got := r.match("h", "/a/b"); got == nil || got.name != "first" {
		t.Fatalf("match = %v, want first", got)
	}
}

func TestRouterMatchDoesNotAllocate(t *testing.T) {
	r := testRouter(t, benchRoutes())
	allocs := testing.AllocsPerRun(200, func() {
		if r.match("api.example.com:8443", "/v1/users/42") == nil {
			panic("no match")
		}
		if r.match("www.example.com", "/assets/app.js") == nil {
			panic("no match")
		}
	})
	if allocs != 0 {
		t.Fatalf("router.match allocates %.1f times per call pair, want 0", allocs)
	}
}

func TestClientIP(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name       string
		trusted    []string
		peer       string
		xff        []string
		wantClient string
		wantXFF    string
	}{
		{"untrusted peer, spoofed header discarded", nil, "127.0.0.1", []string{"1.2.3.4"}, "127.0.0.1", "127.0.0.1"},
		{"peer not in trusted list", []string{"10.0.0.0/8"}, "127.0.0.1", []string{"1.2.3.4"}, "127.0.0.1", "127.0.0.1"},
		{"trusted peer without header", []string{"127.0.0.1"}, "127.0.0.1", nil, "127.0.0.1", "127.0.0.1"},
		{"trusted peer, header believed and appended", []string{"127.0.0.1"}, "127.0.0.1", []string{"1.2.3.4"}, "1.2.3.4", "1.2.3.4, 127.0.0.1"},
		{"right-most untrusted entry is the client", []string{"127.0.0.1", "10.0.0.0/8"}, "127.0.0.1",
			[]string{"6.6.6.6, 1.2.3.4, 10.1.2.3"}, "1.2.3.4", "6.6.6.6, 1.2.3.4, 10.1.2.3, 127.0.0.1"},
		{"several header lines are one chain", []string{"127.0.0.1"}, "127.0.0.1",
			[]string{"6.6.6.6", "1.2.3.4"}, "1.2.3.4", "6.6.6.6,1.2.3.4, 127.0.0.1"},
		{"garbage stops the walk at the last verified hop", []string{"127.0.0.0/8"}, "127.0.0.1",
			[]string{"1.2.3.4, not-an-ip, 127.0.0.2"}, "127.0.0.2", "1.2.3.4, not-an-ip, 127.0.0.2, 127.0.0.1"},
		{"all trusted: left-most entry", []string{"127.0.0.0/8"}, "127.0.0.1",
			[]string{"127.0.0.3, 127.0.0.2"}, "127.0.0.3", "127.0.0.3, 127.0.0.2, 127.0.0.1"},
		{"IPv4-mapped peer is unmapped", []string{"127.0.0.1"}, "::ffff:127.0.0.1", []string{"1.2.3.4"}, "1.2.3.4", "1.2.3.4, 127.0.0.1"},
		{"IPv6 client", []string{"::1"}, "::1", []string{"2001:db8::1"}, "2001:db8::1", "2001:db8::1, ::1"},
		// Elements some load balancers write: with a port, an empty one.
		{"address with a port", []string{"127.0.0.1"}, "127.0.0.1", []string{"203.0.113.7:1234"}, "203.0.113.7", "203.0.113.7:1234, 127.0.0.1"},
		{"IPv6 address with a port", []string{"127.0.0.1"}, "127.0.0.1", []string{"[2001:db8::7]:443"}, "2001:db8::7", "[2001:db8::7]:443, 127.0.0.1"},
		{"mapped address with a port", []string{"127.0.0.1"}, "127.0.0.1", []string{"[::ffff:203.0.113.7]:1234"}, "203.0.113.7", "[::ffff:203.0.113.7]:1234, 127.0.0.1"},
		{"trailing comma", []string{"127.0.0.1"}, "127.0.0.1", []string{"203.0.113.7,"}, "203.0.113.7", "203.0.113.7,, 127.0.0.1"},
		// A mapped CIDR trusts the IPv4 peers it maps.
		{"IPv4-mapped trusted CIDR", []string{"::ffff:127.0.0.0/104"}, "127.0.0.1", []string{"1.2.3.4"}, "1.2.3.4", "1.2.3.4, 127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp := newTrustedProxies(c.trusted)
			client, xff := tp.clientIP(a(c.peer), c.xff)
			if client != a(c.wantClient) {
				t.Errorf("client = %s, want %s", client, c.wantClient)
			}
			if xff != c.wantXFF {
				t.Errorf("X-Forwarded-For = %q, want %q", xff, c.wantXFF)
			}
		})
	}
}

func TestTrustedProxiesIgnoresInvalidEntries(t *testing.T) {
	tp := newTrustedProxies([]string{"nonsense", "192.0.2.0/24"})
	if len(tp) != 1 || !tp.contains(netip.MustParseAddr("192.0.2.7")) || tp.contains(netip.MustParseAddr("127.0.0.1")) {
		t.Fatalf("trusted proxies = %v", tp)
	}
}

func TestRequestID(t *testing.T) {
	if got := requestID("abc-123_X.y:z"); got != "abc-123_X.y:z" {
		t.Errorf("sane id replaced: %q", got)
	}
	long := make([]byte, 129)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "a b", "x\r\nSet-Cookie: y", "<script>", "a/b", string(long)} {
		got := requestID(bad)
		if got == bad || got == "" {
			t.Errorf("requestID(%q) = %q, want a fresh id", bad, got)
		}
		if requestID(got) != got {
			t.Errorf("generated id %q is not itself sane", got)
		}
	}
	if a, b := requestID(""), requestID(""); a == b {
		t.Errorf("two generated ids are equal: %q", a)
	}
}

// Generated ids share slabs: across several of them, each id stays as it
// was handed out, unique and well formed.
func TestRequestIDSlabs(t *testing.T) {
	var ids, copies []string
	seen, suffixes := map[string]bool{}, map[string]bool{}
	for range 1000 {
		id := requestID("")
		ids = append(ids, id)
		copies = append(copies, strings.Clone(id))
		if seen[id] {
			t.Fatalf("id %q generated twice", id)
		}
		seen[id] = true
		if len(id) < 27 || len(id) > maxIDLen || id[:16] != idPrefix || id[16] != '-' || id[len(id)-9] != '-' {
			t.Fatalf("malformed id %q", id)
		}
		suffixes[id[len(id)-8:]] = true
	}
	// The random part makes the next id unguessable: a client cannot send
	// the id the next request is about to get.
	if len(suffixes) < 990 {
		t.Errorf("%d distinct random parts in 1000 ids", len(suffixes))
	}
	for i := range ids {
		if ids[i] != copies[i] {
			t.Fatalf("id %d changed from %q to %q after later ids were made", i, copies[i], ids[i])
		}
	}
}
