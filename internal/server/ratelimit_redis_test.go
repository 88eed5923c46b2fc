package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/redistest"
	"github.com/rampart-proxy/rampart/internal/testcerts"
)

// syncBuffer is a log destination tests can read while servers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startEnvLogged is startEnv with the server's log written to buf.
func startEnvLogged(t *testing.T, body string, buf *syncBuffer) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "rampart.yaml")
	e.write(body)
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, e.read())
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e.srv = srv
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}
	e.client = &http.Client{Transport: tr, Timeout: testTimeout}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return e
}

// distributedYAML is rate_limits.distributed for the Redis of r.
func distributedYAML(r *redistest.Server, mode, extra string) string {
	addr := r.Addr
	if r.Network == "unix" {
		addr = "unix://" + addr
	}
	return fmt.Sprintf("    distributed: {mode: %s, redis: {address: %q}%s}\n", mode, addr, extra)
}

// Two instances, one Redis (over its unix socket): the login endpoint is
// redis_exact, so the fleet admits exactly its 50 logins however the
// requests are spread; per_ip stays local.
func TestRedisExactFleetWide(t *testing.T) {
	rs := redistest.Start(t, true)
	b := newTestBackend(t, "a")
	limits := `    per_ip: {requests_per_second: 1000, burst: 1000}
    endpoints: [{path: /api/login, limit: 50, window: 1h, distributed: redis_exact}]
` + distributedYAML(rs, "local", "")
	e1, e2 := startEnv(t, rlConfig(b, limits)), startEnv(t, rlConfig(b, limits))
	codes := map[int]int{}
	for i := range 100 {
		e := e1
		if i%2 == 1 {
			e = e2
		}
		codes[e.reqFrom("POST", "/api/login", "198.51.100.1", nil).status]++
	}
	// The refusals are 429s until the offender API blocks the client
	// (403) on each instance.
	if codes[200] != 50 || codes[429] == 0 || codes[429]+codes[403] != 50 {
		t.Fatalf("fleet answered %v, want exactly 50 × 200 and 50 refusals", codes)
	}
	if got := b.hits.Load(); got != 50 {
		t.Errorf("backend saw %d logins, want 50", got)
	}
	// The count lives in Redis under the default prefix; another client
	// is unaffected.
	if n := rs.Do("EVAL \"return #redis.call('KEYS','rampart:rl:endpoint:*')\" 0"); n != ":1" {
		t.Errorf("redis keys under rampart:rl:endpoint: %s, want :1", n)
	}
	if r := e2.reqFrom("POST", "/api/login", "198.51.100.2", nil); r.status != 200 {
		t.Errorf("other client: %d", r.status)
	}
	if v, _ := metricValue(e1.scrape("/metrics"), "rampart_ratelimit_redis_up"); v != "1" {
		t.Errorf("rampart_ratelimit_redis_up = %q, want 1", v)
	}
}

// waitSyncs waits until the instance has completed two more redis_sync
// rounds: everything it counted before has been pushed and the fleet's
// counts read back.
func waitSyncs(t *testing.T, e *testEnv) {
	t.Helper()
	e.srv.limits.mu.Lock()
	store := e.srv.limits.redis
	e.srv.limits.mu.Unlock()
	from := store.Syncs()
	eventually(t, "two redis_sync rounds", func() bool { return store.Syncs() >= from+2 })
}

// redis_sync: requests are counted locally, the counts exchanged every
// sync_interval; two instances sending twice the per-IP limit in rounds
// admit the limit within 10%.
func TestRedisSyncFleetWithin10Percent(t *testing.T) {
	rs := redistest.Start(t, false)
	b := newTestBackend(t, "a")
	limits := "    per_ip: {requests_per_second: 0.001, burst: 200}\n" + distributedYAML(rs, "redis_sync", ", sync_interval: 20ms")
	e1, e2 := startEnv(t, rlConfig(b, limits)), startEnv(t, rlConfig(b, limits))
	allowed := 0
	for range 40 {
		for _, e := range []*testEnv{e1, e2} {
			for range 5 {
				if e.reqFrom("GET", "/", "198.51.100.1", nil).status == 200 {
					allowed++
				}
			}
		}
		waitSyncs(t, e1)
		waitSyncs(t, e2)
	}
	if allowed < 180 || allowed > 220 {
		t.Fatalf("fleet admitted %d of 400, want 200 ± 10%%", allowed)
	}
	// Per window and client, one key with a TTL.
	if n := rs.Do("EVAL \"return #redis.call('KEYS','rampart:rl:per_ip:*')\" 0"); n != ":1" {
		t.Errorf("per_ip keys: %s, want :1", n)
	}
}

// Redis killed mid-test: with fail_open the tier falls back to its local
// limit (limit/N, N = instances), the metric and one log line say so; when
// redis-server is back on the same address the store recovers (one more
// log line) and the tier is shared again.
func TestRedisFailOpenAndRecovery(t *testing.T) {
	rs := redistest.Start(t, false)
	b := newTestBackend(t, "a")
	var logs syncBuffer
	e := startEnvLogged(t, rlConfig(b, "    per_ip: {requests_per_second: 0.001, burst: 6}\n"+
		distributedYAML(rs, "redis_exact", ", instances: 3, on_redis_failure: fail_open")), &logs)
	for i := range 6 {
		if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 429 {
		t.Fatalf("7th: %d, want the fleet's 429", r.status)
	}
	rs.Stop()
	// The local fallback is burst 6/3 = 2, fresh: two more, then 429.
	for i := range 2 {
		if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 200 {
			t.Fatalf("fail_open request %d: %d, want the local limit's 200", i, r.status)
		}
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 429 || r.header.Get("X-RateLimit-Limit") != "2" {
		t.Fatalf("3rd while Redis is down: %d limit %q, want the local 429 (limit 2)", r.status, r.header.Get("X-RateLimit-Limit"))
	}
	m := e.scrape("/metrics")
	if v, _ := metricValue(m, "rampart_ratelimit_redis_up"); v != "0" {
		t.Errorf("rampart_ratelimit_redis_up = %q, want 0", v)
	}
	if v, _ := metricValue(m, "rampart_ratelimit_redis_errors_total"); v == "" || v == "0" {
		t.Errorf("rampart_ratelimit_redis_errors_total = %q, want > 0", v)
	}
	if n := strings.Count(logs.String(), "redis unreachable"); n != 1 {
		t.Errorf("%d 'redis unreachable' log lines, want 1:\n%s", n, logs.String())
	}
	rs.Start()
	eventually(t, "redis up again", func() bool {
		v, _ := metricValue(e.scrape("/metrics"), "rampart_ratelimit_redis_up")
		return v == "1"
	})
	// The restarted Redis kept nothing: the fleet's burst of 6 again.
	for i := range 6 {
		if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 200 {
			t.Fatalf("after recovery %d: %d", i, r.status)
		}
	}
	if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 429 || r.header.Get("X-RateLimit-Limit") != "6" {
		t.Fatalf("after recovery: %d limit %q, want the fleet's 429 (limit 6)", r.status, r.header.Get("X-RateLimit-Limit"))
	}
	if n := strings.Count(logs.String(), "redis reachable"); n != 2 { // at start and after recovery
		t.Errorf("%d 'redis reachable' log lines, want 2:\n%s", n, logs.String())
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "redis") && strings.Contains(l, "secret") {
			t.Errorf("log line names the password: %s", l)
		}
	}
	if st := e.srv.Status(); st.RateLimits == nil || st.RateLimits.Redis == nil || !st.RateLimits.Redis.Up {
		t.Errorf("status %+v", st.RateLimits)
	}
}

// fail_closed: while Redis is unreachable the tier refuses with 503 (not
// the client's offence), counted as redis_unavailable.
func TestRedisFailClosed(t *testing.T) {
	rs := redistest.Start(t, false)
	b := newTestBackend(t, "a")
	pw := filepath.Join(t.TempDir(), "redis.pw")
	if err := os.WriteFile(pw, []byte("secret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs.Do("CONFIG SET requirepass secret-pw")
	e := startEnv(t, rlConfig(b, "    endpoints: [{path: /pay, limit: 100, window: 1m}]\n"+
		fmt.Sprintf("    distributed: {mode: redis_exact, on_redis_failure: fail_closed, redis: {address: %q, password_file: %q}}\n", rs.Addr, pw)))
	if r := e.reqFrom("POST", "/pay", "198.51.100.1", nil); r.status != 200 {
		t.Fatalf("with Redis (and its password): %d", r.status)
	}
	rs.Stop()
	for i := range 3 {
		r := e.reqFrom("POST", "/pay", "198.51.100.1", nil)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
			t.Fatalf("request %d without Redis: %d Retry-After %q, want 503", i, r.status, r.header.Get("Retry-After"))
		}
	}
	// Paths without a Redis tier are served.
	if r := e.reqFrom("GET", "/other", "198.51.100.1", nil); r.status != 200 {
		t.Errorf("other path: %d", r.status)
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="redis_unavailable",stage="rate_limit"}`); v != "3" {
		t.Errorf("blocked metric = %q, want 3", v)
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 5)
	if l := lines[1]; l["rate_limited"] != true || l["rate_limit_tier"] != "endpoint" || l["status_code"] != 503.0 {
		t.Errorf("log line of a fail_closed 503: %v", l)
	}
}

// redis_sync on the global tier (503s, fresh clients) and on an endpoint
// (one client): the fleet admits each limit within 10% although every
// instance alone would admit it all.
func TestRedisSyncGlobalAndEndpoint(t *testing.T) {
	rs := redistest.Start(t, false)
	b := newTestBackend(t, "a")
	for _, c := range []struct {
		name, limits, path string
		fresh              bool // a fresh client for every request
		limit, refusal     int
	}{
		{"global", "    global: {requests_per_second: 0.001, burst: 100}\n", "/", true, 100, 503},
		{"endpoint", "    endpoints: [{path: /api/x, limit: 100, window: 1h}]\n", "/api/x", false, 100, 429},
	} {
		t.Run(c.name, func(t *testing.T) {
			limits := c.limits + distributedYAML(rs, "redis_sync", ", sync_interval: 20ms, key_prefix: "+c.name+":")
			e1, e2 := startEnv(t, rlConfig(b, limits)), startEnv(t, rlConfig(b, limits))
			codes := map[int]int{}
			n := 0
			for range 20 {
				for _, e := range []*testEnv{e1, e2} {
					for range 5 {
						n++
						client := "198.51.100.1"
						if c.fresh {
							client = fmt.Sprintf("10.1.%d.%d", n/250, n%250)
						}
						codes[e.reqFrom("GET", c.path, client, nil).status]++
					}
				}
				waitSyncs(t, e1)
				waitSyncs(t, e2)
			}
			if codes[200] < c.limit*9/10 || codes[200] > c.limit*11/10 || codes[c.refusal] == 0 {
				t.Errorf("fleet answered %v to 200 requests, want %d ± 10%% × 200 and %ds", codes, c.limit, c.refusal)
			}
			// A reload that keeps the Redis settings keeps the store.
			e1.srv.limits.mu.Lock()
			store := e1.srv.limits.redis
			e1.srv.limits.mu.Unlock()
			if err := e1.reload(rlConfig(b, limits)); err != nil {
				t.Fatal(err)
			}
			e1.srv.limits.mu.Lock()
			same := e1.srv.limits.redis == store
			e1.srv.limits.mu.Unlock()
			if !same {
				t.Error("reload with the same redis settings replaced the store")
			}
		})
	}
}

// distributed.redis.tls: the connection is verified against ca_file; a
// Redis whose certificate another CA signed is unreachable (here
// fail_closed: 503).
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "redis-ca")
	cert, key := ca.Server(t)
	certFile, keyFile := testcerts.Write(t, dir, "redis.crt", cert), testcerts.Write(t, dir, "redis.key", key)
	caFile := testcerts.Write(t, dir, "ca.pem", ca.PEM)
	otherCA := testcerts.Write(t, dir, "other.pem", testcerts.NewCA(t, "other").PEM)
	rs := redistest.StartTLS(t, certFile, keyFile, caFile)
	b := newTestBackend(t, "a")
	for _, c := range []struct {
		name, ca string
		want     int
	}{{"trusted", caFile, 200}, {"other CA", otherCA, 503}} {
		t.Run(c.name, func(t *testing.T) {
			e := startEnv(t, rlConfig(b, "    endpoints: [{path: /pay, limit: 1, window: 1h}]\n"+
				fmt.Sprintf("    distributed: {mode: redis_exact, on_redis_failure: fail_closed, key_prefix: %q, redis: {address: %q, tls: {ca_file: %q}}}\n", c.name, rs.Addr, c.ca)))
			if r := e.reqFrom("POST", "/pay", "198.51.100.1", nil); r.status != c.want {
				t.Fatalf("first: %d, want %d", r.status, c.want)
			}
			if c.want == 200 {
				if r := e.reqFrom("POST", "/pay", "198.51.100.1", nil); r.status != 429 {
					t.Fatalf("second: %d, want the fleet's 429", r.status)
				}
			}
		})
	}
}

// A per_user tier in redis_exact: one user's requests through two
// instances share the tier's burst (keys are SHA-256 of the identity, alike
// on every instance).
func TestRedisExactUserTier(t *testing.T) {
	rs := redistest.Start(t, false)
	b := newTestBackend(t, "a")
	limits := `    per_user:
      key: {header: X-API-Key}
      tiers: {pro: {requests_per_second: 0.001, burst: 10, distributed: redis_exact}}
      users: {k1: pro}
` + distributedYAML(rs, "local", "")
	e1, e2 := startEnv(t, rlConfig(b, limits)), startEnv(t, rlConfig(b, limits))
	ok := 0
	for i := range 16 {
		e := e1
		if i%2 == 1 {
			e = e2
		}
		if e.reqFrom("GET", "/", fmt.Sprintf("198.51.100.%d", i+1), http.Header{"X-Api-Key": {"k1"}}).status == 200 {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("fleet admitted %d of k1's requests, want exactly 10", ok)
	}
	if n := rs.Do("EVAL \"return #redis.call('KEYS','rampart:rl:user:pro:*')\" 0"); n != ":1" {
		t.Errorf("user keys: %s, want :1", n)
	}
}
