package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHardeningDefaults(t *testing.T) {
	cfg, err := Parse("min.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Security.SlowlorisProtection
	want := SlowlorisProtection{HeaderTimeoutSeconds: 10, BodyTimeoutSeconds: 30, IdleTimeoutSeconds: 60, WriteTimeoutSeconds: 30,
		MinDataRateBytesPerSecond: 100, MaxConnectionsPerIP: 100, MaxNewConnectionsPerIPPerS: 20,
		SlowClientScoreThreshold: 5, SlowClientHalfLifeSeconds: 600, SlowClientMaxTrackedIPs: 100000}
	if s != want {
		t.Errorf("slowloris_protection defaults = %+v, want %+v", s, want)
	}
	r := cfg.Security.RequestLimits
	if r.MaxRequestLineBytes != 4096 || r.MaxHeaderBytes != 8192 || r.MaxHeaders != 100 || r.MaxBodyBytes != 10485760 {
		t.Errorf("request_limits defaults = %+v", r)
	}
	if !slices.Equal(r.AllowedMethods, DefaultAllowedMethods) || slices.Contains(r.AllowedMethods, "TRACE") {
		t.Errorf("allowed_methods default = %v", r.AllowedMethods)
	}
	h := cfg.Security.Headers
	if !*h.RemoveServer || h.Add["X-Frame-Options"] != "DENY" || h.Add["X-Content-Type-Options"] != "nosniff" {
		t.Errorf("headers defaults = %v %v", *h.RemoveServer, h.Add)
	}
	if h2 := cfg.Security.HTTP2; h2 != (HTTP2Limits{100, 4096, 16384, 1 << 20, 200}) || r.AllowEncodedSlashes {
		t.Errorf("http2 defaults = %+v, allow_encoded_slashes %v", h2, r.AllowEncodedSlashes)
	}
	f := cfg.Security.SynFloodProtection
	if !f.SYNFloodEnabled() || !f.SYNCookies() || f.MaxSynBacklog != 65536 || f.OnMismatch != "warn" || f.ApplySysctls {
		t.Errorf("syn_flood_protection defaults = %+v", f)
	}
	if cfg.BodyLimit(&cfg.Routes[0]) != 10485760 {
		t.Errorf("BodyLimit = %d", cfg.BodyLimit(&cfg.Routes[0]))
	}
}

func TestHardeningExplicitValues(t *testing.T) {
	src := strings.Replace(valid, "pool: web}", "pool: web, max_body_bytes: 1024, headers: {add: {Content-Security-Policy: \"default-src 'none'\"}}}", 1) + doc(`
security:
  syn_flood_protection: {enabled: true, syn_cookies: false, max_syn_backlog: 1024, on_mismatch: refuse}
  slowloris_protection:
    header_timeout_seconds: 5
    body_timeout_seconds: 0
    min_data_rate_bytes_per_second: 0
    max_connections_per_ip: 0
  request_limits: {max_request_line_bytes: 1024, max_body_bytes: 2048, allowed_methods: [GET, TRACE]}
  headers: {remove_server: false, add: {Referrer-Policy: no-referrer}}
`)
	cfg, err := Parse("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Security.SlowlorisProtection
	// An explicit 0 turns a check off; missing keys take defaults.
	if s.HeaderTimeoutSeconds != 5 || s.BodyTimeoutSeconds != 0 || s.MinDataRateBytesPerSecond != 0 || s.MaxConnectionsPerIP != 0 ||
		s.IdleTimeoutSeconds != 60 || s.MaxNewConnectionsPerIPPerS != 20 {
		t.Errorf("slowloris_protection = %+v", s)
	}
	if cfg.BodyLimit(&cfg.Routes[0]) != 1024 || cfg.BodyLimit(nil) != 2048 {
		t.Errorf("body limits: route %d, global %d", cfg.BodyLimit(&cfg.Routes[0]), cfg.BodyLimit(nil))
	}
	if got := cfg.Security.RequestLimits.AllowedMethods; !slices.Equal(got, []string{"GET", "TRACE"}) {
		t.Errorf("allowed_methods = %v", got)
	}
	h := cfg.Security.Headers
	if *h.RemoveServer || len(h.Add) != 1 || h.Add["Referrer-Policy"] != "no-referrer" {
		t.Errorf("headers = %v %v", *h.RemoveServer, h.Add)
	}
	if cfg.Security.SynFloodProtection.SYNCookies() || cfg.Security.SynFloodProtection.OnMismatch != "refuse" {
		t.Errorf("syn_flood_protection = %+v", cfg.Security.SynFloodProtection)
	}
}

// The slow-client keys: explicit values, and threshold 0 turns detection off.
func TestSlowClientConfig(t *testing.T) {
	cfg, err := Parse("s.yaml", []byte(valid+doc(`
security:
  slowloris_protection: {slow_client_score_threshold: 0, slow_client_half_life_seconds: 30, slow_client_max_tracked_ips: 10}
  http2: {max_resets_per_second: 50}
  syn_flood_protection: {apply_sysctls: true}
  dynamic_blocklist:
    auto_block:
      slow_clients: {count: 2, window: 1m, duration: 5m}
`)))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Security.SlowlorisProtection
	if s.SlowClientScoreThreshold != 0 || s.SlowClientHalfLifeSeconds != 30 || s.SlowClientMaxTrackedIPs != 10 {
		t.Errorf("slowloris_protection = %+v", s)
	}
	if cfg.Security.HTTP2.MaxResetsPerSecond != 50 || !cfg.Security.SynFloodProtection.ApplySysctls {
		t.Errorf("http2 %+v, syn %+v", cfg.Security.HTTP2, cfg.Security.SynFloodProtection)
	}
	r := cfg.Security.DynamicBlocklist.AutoBlock.SlowClientRule()
	if r.Count != 2 || r.Window != time.Minute || len(r.Ladder) != 1 || r.Ladder[0] != 5*time.Minute {
		t.Errorf("slow_clients rule = %+v", r)
	}
	var def AutoBlock
	if r := def.SlowClientRule(); r.Count != 3 || r.Window != 10*time.Minute || len(r.Ladder) != 2 {
		t.Errorf("slow_clients default = %+v", r)
	}
}

func TestHardeningValidation(t *testing.T) {
	cases := []struct {
		name, yaml string
		line       int
		msg        string
	}{
		{"header timeout off", "security:\n  slowloris_protection:\n    header_timeout_seconds: 0\n", 11, "header_timeout_seconds cannot be 0"},
		{"negative rate", "security:\n  slowloris_protection:\n    min_data_rate_bytes_per_second: -1\n", 11, "min_data_rate_bytes_per_second must be between 0"},
		{"tiny request line", "security:\n  request_limits:\n    max_request_line_bytes: 10\n", 11, "max_request_line_bytes 10 must be between 64"},
		{"connect", "security:\n  request_limits:\n    allowed_methods: [GET, CONNECT]\n", 11, "CONNECT cannot be allowed"},
		{"lower-case method", "security:\n  request_limits:\n    allowed_methods: [get]\n", 11, `method "get" is not an upper-case`},
		{"empty methods", "security:\n  request_limits:\n    allowed_methods: []\n", 11, "allowed_methods is empty"},
		{"framing header", "security:\n  headers:\n    add:\n      Content-Length: \"5\"\n", 12, `header "Content-Length" cannot be set here`},
		{"bad header name", "security:\n  headers:\n    add:\n      \"X Frame\": DENY\n", 12, `header name "X Frame" is not a valid token`},
		{"on_mismatch", "security:\n  syn_flood_protection:\n    on_mismatch: panic\n", 11, `on_mismatch "panic"`},
		{"unknown key", "security:\n  slowloris_protection:\n    header_timeout: 5\n", 11, "header_timeout"},
		{"h2 streams", "security:\n  http2:\n    max_concurrent_streams: 5000\n", 11, "max_concurrent_streams 5000 must be between 1 and 1000"},
		{"h2 frame", "security:\n  http2: {max_read_frame_size: 100}\n", 10, "max_read_frame_size 100 must be between 16384"},
		// Connection hardening, the rest (slow clients, resets, sysctls).
		{"slow threshold", "security:\n  slowloris_protection:\n    slow_client_score_threshold: -1\n", 11, "slow_client_score_threshold must be between 0 (off) and 1000"},
		{"slow half-life", "security:\n  slowloris_protection:\n    slow_client_half_life_seconds: 0\n", 11, "slow_client_half_life_seconds 0 must be between 1"},
		{"slow tracked", "security:\n  slowloris_protection:\n    slow_client_max_tracked_ips: 0\n", 11, "slow_client_max_tracked_ips 0 must be between 1"},
		{"h2 resets", "security:\n  http2:\n    max_resets_per_second: 1000000\n", 11, "max_resets_per_second 1000000 must be between 1 and 100000"},
		{"apply_sysctls", "security:\n  syn_flood_protection:\n    apply_sysctls: maybe\n", 11, "a string `maybe` where true/false is expected"},
		{"slow_clients rule", "security:\n  dynamic_blocklist:\n    auto_block:\n      slow_clients: {count: -2}\n", 12, "slow_clients: count must be 1 or more"},
		{"slow_clients both", "security:\n  dynamic_blocklist:\n    auto_block:\n      slow_clients:\n        duration: 1h\n        escalation: [1h]\n", 13, "slow_clients: use duration or escalation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte(valid+tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("error %T: %v", err, err)
			}
			for _, p := range ps {
				if strings.Contains(p.Msg, tc.msg) {
					if p.Line != tc.line {
						t.Errorf("problem %q at line %d, want %d", p.Msg, p.Line, tc.line)
					}
					return
				}
			}
			t.Fatalf("no problem mentions %q: %v", tc.msg, err)
		})
	}
	// A route's max_body_bytes is checked where it is written.
	src := strings.Replace(valid, "pool: web}", "pool: web, max_body_bytes: -5}", 1)
	if _, err := Parse("r.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "r.yaml:4: route \"all\": max_body_bytes") {
		t.Fatalf("negative route max_body_bytes: %v", err)
	}
}
