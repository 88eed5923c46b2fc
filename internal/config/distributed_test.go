package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDistributedMistakes(t *testing.T) {
	cases := []struct {
		name string
		sec  string // appended to valid; its first line is line 9
		line int
		msg  string
	}{
		{"address without port", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5, distributed: redis_sync}
    distributed:
      redis:
        address: localhost
`, 14, `redis address "localhost" must be host:port`},
		{"relative unix socket", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5, distributed: redis_sync}
    distributed:
      redis: {address: "unix://redis.sock"}
`, 13, "must be an absolute path"},
		{"missing password file", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5, distributed: redis_sync}
    distributed:
      redis:
        address: 127.0.0.1:6379
        password_file: /nonexistent/redis.pw
`, 15, "redis password_file"},
		{"zero sync interval", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5}
    distributed:
      mode: redis_sync
      redis: {address: 127.0.0.1:6379}
      sync_interval: 0s
`, 15, "sync_interval must be longer than 0s"},
		{"negative sync interval", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5}
    distributed:
      mode: redis_sync
      redis: {address: 127.0.0.1:6379}
      sync_interval: -1s
`, 15, "must not be negative"},
		{"global inherits redis_exact", `
security:
  rate_limits:
    global: {requests_per_second: 5000}
    distributed:
      mode: redis_exact
      redis: {address: 127.0.0.1:6379}
`, 13, "global cannot use redis_exact"},
		{"global chooses redis_exact", `
security:
  rate_limits:
    global:
      requests_per_second: 5000
      distributed: redis_exact
    distributed:
      redis: {address: 127.0.0.1:6379}
`, 13, "global cannot use redis_exact"},
		{"per_ip in redis with adaptive", `
security:
  rate_limits:
    per_ip:
      requests_per_second: 5
      distributed: redis_exact
    adaptive: {enabled: true, per_ip_under_attack: 1}
    distributed:
      redis: {address: 127.0.0.1:6379}
`, 13, "per_ip cannot use redis_exact with adaptive mode"},
		{"unknown endpoint mode", `
security:
  rate_limits:
    endpoints:
      - {path: /api/login, limit: 5, window: 1m}
      - path: /pay
        limit: 5
        window: 1m
        distributed: redis
`, 16, `unknown distributed mode "redis"`},
		{"unknown failure mode", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5}
    distributed:
      on_redis_failure: retry
`, 13, `unknown on_redis_failure "retry"`},
		{"user tier in redis without redis", `
security:
  rate_limits:
    per_user:
      key: {header: X-API-Key}
      tiers:
        pro: {requests_per_second: 1, distributed: redis_exact}
`, 14, "per_user.tiers.pro: mode redis_exact needs distributed.redis"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(valid+doc(c.sec)))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse = %v, want Problems", err)
			}
			if c.name == "negative sync interval" && len(ps) == 2 { // and "must be longer than 0s"
				ps = ps[:1]
			}
			if len(ps) != 1 || ps[0].Line != c.line || !strings.Contains(ps[0].Msg, c.msg) {
				t.Errorf("problems:\n%v\nwant exactly one: t.yaml:%d: ...%s...", err, c.line, c.msg)
			}
		})
	}
}

func TestDistributedSection(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "redis.pw"), []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(filepath.Join(dir, "t.yaml"), []byte(valid+doc(`
security:
  rate_limits:
    global: {requests_per_second: 5000}
    per_ip: {requests_per_second: 100, burst: 200}
    endpoints: [{path: /api/login, limit: 5, window: 1m, distributed: redis_exact}]
    ietf_headers: true
    headers_on_success: true
    distributed:
      mode: redis_sync
      instances: 2
      redis: {address: /run/redis/redis.sock, username: rampart, password_file: redis.pw, db: 2, pool_size: 8}
`)))
	if err != nil {
		t.Fatal(err)
	}
	r := &cfg.Security.RateLimits
	if r.TierMode(r.Global.Distributed) != ModeRedisSync || r.TierMode(r.Endpoints[0].Distributed) != ModeRedisExact {
		t.Errorf("tier modes %q %q", r.TierMode(r.Global.Distributed), r.TierMode(r.Endpoints[0].Distributed))
	}
	d := r.Distributed.Settings()
	if d.SyncInterval.D() != DefaultSyncInterval || d.KeyPrefix != "rampart:rl:" || d.OnRedisFailure != FailOpen ||
		d.Redis.Timeout.D() != 250*time.Millisecond || d.Redis.DialTimeout.D() != time.Second {
		t.Errorf("defaults %+v %+v", d, *d.Redis)
	}
	if n, a := RedisNetwork(d.Redis.Address); n != "unix" || a != "/run/redis/redis.sock" {
		t.Errorf("RedisNetwork = %s %s", n, a)
	}
	if pw, err := cfg.RedisPassword(d.Redis); pw != "pw" || err != nil {
		t.Errorf("password %q %v", pw, err)
	}
	if !r.IETFHeaders || !r.HeadersOnSuccess {
		t.Error("header switches not read")
	}
}
