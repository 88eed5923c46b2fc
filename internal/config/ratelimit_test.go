package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRateLimitsMistakes(t *testing.T) {
	cases := []struct {
		name string
		sec  string // appended to valid, which has 8 lines
		line int
		msg  string
	}{
		{"zero per-IP rate", `
security:
  rate_limits:
    per_ip: {requests_per_second: 0, burst: 5}
`, 11, "per_ip: requests_per_second must be more than 0"},
		{"negative burst", `
security:
  rate_limits:
    per_ip:
      requests_per_second: 5
      burst: -1
`, 13, "burst must be 1 or more"},
		{"negative global", `
security:
  rate_limits:
    global:
      requests_per_second: -3
`, 12, "global: requests_per_second must be more than 0"},
		{"unparsable window", `
security:
  rate_limits:
    endpoints:
      - path: /api/login
        limit: 5
        window: 1 minute
`, 14, `invalid duration "1 minute"`},
		{"zero endpoint limit", `
security:
  rate_limits:
    endpoints:
      - path: /api/login
        limit: 0
        window: 1m
`, 13, "limit must be 1 or more"},
		{"missing window", `
security:
  rate_limits:
    endpoints:
      - {path: /api/login, limit: 5}
`, 12, "window is required"},
		{"unknown endpoint key", `
security:
  rate_limits:
    endpoints:
      - path: /api/login
        limit: 5
        window: 1m
        key: cookie
`, 15, `unknown key "cookie"`},
		{"unknown field", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5, bursts: 5}
`, 11, `unknown key "bursts"`},
		{"alg none", `
security:
  rate_limits:
    per_user:
      key: {jwt_claim: sub}
      jwt:
        algorithms: [none]
        secret_file: /nonexistent
      tiers: {free: {requests_per_second: 1}}
`, 14, `algorithm "none" is not accepted`},
		{"unknown alg", `
security:
  rate_limits:
    per_user:
      key: {jwt_claim: sub}
      jwt:
        algorithms: [HS512]
        secret_file: /nonexistent
      tiers: {free: {requests_per_second: 1}}
`, 14, `algorithm "HS512" is not accepted`},
		{"claim without keys", `
security:
  rate_limits:
    per_user:
      key:
        jwt_claim: sub
      tiers: {free: {requests_per_second: 1}}
`, 13, "an unverified token is not an identity"},
		{"user in an undefined tier", `
security:
  rate_limits:
    per_user:
      key: {header: X-API-Key}
      tiers: {free: {requests_per_second: 1}}
      users:
        k1: gold
`, 15, `tier "gold" of user "k1" is not defined`},
		{"redis mode without redis", `
security:
  rate_limits:
    per_ip: {requests_per_second: 5}
    distributed:
      mode: redis_exact
`, 13, "mode redis_exact needs distributed.redis"},
		{"adaptive without per_ip", `
security:
  rate_limits:
    adaptive:
      enabled: true
      per_ip_under_attack: 5
`, 11, "adaptive needs per_ip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(valid+doc(c.sec)))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse = %v, want Problems", err)
			}
			if c.name == "unparsable window" && len(ps) == 2 { // and "window is required"
				ps = ps[:1]
			}
			if len(ps) != 1 || ps[0].Line != c.line || !strings.Contains(ps[0].Msg, c.msg) {
				t.Errorf("problems:\n%v\nwant exactly one: t.yaml:%d: ...%s...", err, c.line, c.msg)
			}
		})
	}
}

func TestRateLimitsFullSection(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(filepath.Join(dir, "t.yaml"), []byte(valid+doc(`
security:
  rate_limits:
    global: {requests_per_second: 5000}
    per_ip: {requests_per_second: 100, burst: 200}
    endpoints: [{path: /api/login, limit: 5, window: 1m, key: ip, methods: [POST]}, {path: "/api/*", limit: 100, window: 10s, key: user}]
    per_user:
      key: {jwt_claim: sub}
      jwt: {algorithms: [HS256], secret_file: jwt.secret}
      tiers: {free: {requests_per_second: 10}, pro: {requests_per_second: 100, burst: 300}}
      users: {alice: pro}
      default_tier: free
    adaptive: {enabled: true, trigger_multiplier: 3, trigger_duration: 60s, per_ip_under_attack: 10}
    distributed: {mode: local, instances: 4}
`)))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Security.RateLimits
	if got := r.PerIP.Rate(r.Instances()); got.RPS != 25 || got.Burst != 50 {
		t.Errorf("per_ip over 4 instances = %+v, want 25/s burst 50", got)
	}
	if got := r.PerUser.Tiers["free"].Rate(1); got.Burst != 10 {
		t.Errorf("default burst = %d, want requests_per_second (10)", got.Burst)
	}
	if s := r.Adaptive.Settings(); s.RecoveryDuration.D() != s.TriggerDuration.D() || s.MinRate != DefaultAdaptiveMinRate {
		t.Errorf("adaptive defaults %+v", s)
	}
}
