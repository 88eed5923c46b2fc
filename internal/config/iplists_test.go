package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIPListsDefaults(t *testing.T) {
	cfg, err := Parse("min.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	d := &cfg.Security.DynamicBlocklist
	if d.TTL() != 720*time.Hour {
		t.Errorf("TTL default = %s", d.TTL())
	}
	rl := d.AutoBlock.RateLimitRule()
	if rl.Count != 3 || rl.Window != time.Hour || !slices.Equal(rl.Ladder, []time.Duration{time.Hour, 4 * time.Hour, 24 * time.Hour, 168 * time.Hour}) {
		t.Errorf("rate_limit_violations default = %+v", rl)
	}
	waf := d.AutoBlock.WAFRule()
	if waf.Count != 10 || waf.Window != 5*time.Minute || !slices.Equal(waf.Ladder, []time.Duration{24 * time.Hour}) {
		t.Errorf("waf_attacks default = %+v", waf)
	}
	if d.AutoBlock.TrackedIPs() != DefaultMaxTrackedIPs {
		t.Errorf("max_tracked_ips default = %d", d.AutoBlock.TrackedIPs())
	}
	if got := cfg.DynamicStorePath(); got != filepath.Join("data", "blocklist.db") {
		t.Errorf("DynamicStorePath default = %s", got)
	}
}

func TestIPListsFullSection(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "block.txt"), []byte("192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rampart.yaml")
	src := valid + doc(`
security:
  ip_lists:
    allowlist: [10.0.0.0/8, "2001:db8::/32"]
    blocklist: [203.0.113.0/24, 192.0.2.7, 0.0.0.0/0]
    blocklist_files: [block.txt]
    allow_broad: true
    feeds:
      - {name: spamhaus-drop, url: "https://www.spamhaus.org/drop/drop.txt", format: spamhaus_drop, refresh: 1h}
      - {name: local, file: feeds/local.txt, format: plain}
      - {name: test, url: "http://127.0.0.1:8000/x", format: spamhaus_edrop, allow_broad: true}
  dynamic_blocklist:
    store: state/blocklist.db
    manual_default_ttl: 48h
    auto_block:
      rate_limit_violations: {count: 5, window: 10m, escalation: [1m, 2m]}
      waf_attacks: {enabled: false}
      max_tracked_ips: 500
`)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	l := &cfg.Security.IPLists
	if len(l.Allowlist) != 2 || len(l.Blocklist) != 3 || !l.AllowBroad || len(l.Feeds) != 3 {
		t.Errorf("ip_lists = %+v", l)
	}
	if f := l.Feeds[0]; f.Name != "spamhaus-drop" || f.Source() != "https://www.spamhaus.org/drop/drop.txt" || f.RefreshInterval() != time.Hour {
		t.Errorf("feed 0 = %+v", f)
	}
	if f := l.Feeds[1]; f.Source() != "feeds/local.txt" || f.RefreshInterval() != DefaultFeedRefresh {
		t.Errorf("feed 1 = %+v", f)
	}
	d := &cfg.Security.DynamicBlocklist
	if d.TTL() != 48*time.Hour || cfg.DynamicStorePath() != filepath.Join(dir, "state", "blocklist.db") {
		t.Errorf("dynamic_blocklist: ttl %s, store %s", d.TTL(), cfg.DynamicStorePath())
	}
	if r := d.AutoBlock.RateLimitRule(); r.Count != 5 || r.Window != 10*time.Minute || !slices.Equal(r.Ladder, []time.Duration{time.Minute, 2 * time.Minute}) {
		t.Errorf("rate_limit_violations = %+v", r)
	}
	if r := d.AutoBlock.WAFRule(); r.Count != 0 {
		t.Errorf("disabled waf_attacks = %+v, want Count 0", r)
	}
	if d.AutoBlock.TrackedIPs() != 500 {
		t.Errorf("max_tracked_ips = %d", d.AutoBlock.TrackedIPs())
	}
}

func TestIPListsMistakes(t *testing.T) {
	cases := []struct {
		name string
		sec  string // appended to valid, which has 8 lines
		line int
		msg  string
	}{
		{"malformed allowlist entry", `
security:
  ip_lists:
    allowlist:
      - 10.0.0.0/8
      - 10.0.0.300
`, 13, `allowlist entry: "10.0.0.300" is not an IP address or CIDR`},
		{"host bits in a CIDR", `
security:
  ip_lists:
    blocklist: [10.1.2.3/8]
`, 11, `did you mean 10.0.0.0/8?`},
		{"broad blocklist entry", `
security:
  ip_lists:
    blocklist:
      - 203.0.113.0/24
      - ::/0
`, 13, `::/0 blocks every address; a blocklist entry broader than /8 (IPv4) or /16 (IPv6) needs allow_broad: true`},
		{"broad but not /0", `
security:
  ip_lists:
    blocklist:
      - 64.0.0.0/2
`, 12, `64.0.0.0/2 blocks a very large range`},
		{"missing list file", `
security:
  ip_lists:
    blocklist_files:
      - does-not-exist.txt
`, 12, `blocklist_files: "does-not-exist.txt" cannot be read: no such file or directory`},
		{"unknown key", `
security:
  ip_lists:
    alowlist: [10.0.0.0/8]
`, 11, `unknown key "alowlist"`},
		{"unknown key in geoip", `
security:
  ip_lists:
    geoip: {country_dbs: geo/country.mmdb}
`, 11, `unknown key "country_dbs"`},
		{"feed without format", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: https://www.spamhaus.org/drop/drop.txt
`, 12, `feed "drop" needs a format (one of spamhaus_drop, spamhaus_edrop, plain)`},
		{"feed with unknown format", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: https://www.spamhaus.org/drop/drop.txt
        format: json
`, 14, `feed "drop": unknown format "json"`},
		{"feed without source", `
security:
  ip_lists:
    feeds:
      - {name: drop, format: plain}
`, 12, `feed "drop" needs a file or a url`},
		{"feed with both sources", `
security:
  ip_lists:
    feeds:
      - name: drop
        file: drop.txt
        url: https://www.spamhaus.org/drop/drop.txt
        format: plain
`, 14, `feed "drop" has both file and url; use one`},
		{"feed over plain http", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: http://feeds.example.com/drop.txt
        format: plain
`, 13, `plain http lets anyone on the path rewrite the list; use https`},
		{"feed url not a url", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: www.spamhaus.org/drop.txt
        format: plain
`, 13, `not an absolute http(s) URL`},
		{"feed url with credentials", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: https://user:secret@feeds.example.com/drop.txt
        format: plain
`, 13, `credentials in the URL`},
		{"feed url with another scheme", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: ftp://feeds.example.com/drop.txt
        format: plain
`, 13, `scheme "ftp" is not http or https`},
		{"feed refreshed too often", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: https://www.spamhaus.org/drop/drop.txt
        format: spamhaus_drop
        refresh: 10s
`, 15, `refresh 10s is too frequent; use 1m0s or more`},
		{"feed interval without unit", `
security:
  ip_lists:
    feeds:
      - name: drop
        url: https://www.spamhaus.org/drop/drop.txt
        format: spamhaus_drop
        refresh: 3600
`, 15, `invalid duration "3600"`},
		{"duplicate feed name", `
security:
  ip_lists:
    feeds:
      - {name: drop, file: a.txt, format: plain}
      - {name: drop, file: b.txt, format: plain}
`, 13, `duplicate feed name "drop"`},
		{"feed name with a slash", `
security:
  ip_lists:
    feeds:
      - {name: a/b, file: a.txt, format: plain}
`, 12, `feed name "a/b" must not contain spaces, slashes or colons`},
		{"feed without name", `
security:
  ip_lists:
    feeds:
      - {file: a.txt, format: plain}
`, 12, `feed has no name`},
		{"ttl without unit", `
security:
  dynamic_blocklist:
    manual_default_ttl: 720
`, 11, `invalid duration "720"`},
		{"ttl too short", `
security:
  dynamic_blocklist:
    manual_default_ttl: 5s
`, 11, `manual_default_ttl 5s is shorter than a minute`},
		{"negative count", `
security:
  dynamic_blocklist:
    auto_block:
      waf_attacks:
        count: -1
`, 13, `waf_attacks: count must be 1 or more`},
		{"duration and escalation", `
security:
  dynamic_blocklist:
    auto_block:
      rate_limit_violations:
        duration: 1h
        escalation: [1h, 2h]
`, 13, `rate_limit_violations: use duration or escalation, not both`},
		{"zero escalation step", `
security:
  dynamic_blocklist:
    auto_block:
      rate_limit_violations:
        escalation:
          - 1h
          - 0s
`, 15, `escalation steps must be longer than 0s`},
		{"unknown key in a rule", `
security:
  dynamic_blocklist:
    auto_block:
      waf_attacks: {count: 10, windw: 5m}
`, 12, `unknown key "windw"`},
		{"negative max_tracked_ips", `
security:
  dynamic_blocklist:
    auto_block:
      max_tracked_ips: -5
`, 12, `max_tracked_ips must be 1 or more`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(valid+doc(c.sec)))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse = %v, want Problems", err)
			}
			if len(ps) != 1 || ps[0].Line != c.line || !strings.Contains(ps[0].Msg, c.msg) {
				t.Errorf("problems:\n%v\nwant exactly one: t.yaml:%d: ...%s...", err, c.line, c.msg)
			}
		})
	}
}

func TestIPListsAcceptedForms(t *testing.T) {
	for _, sec := range []string{
		"security:\n  ip_lists:\n    blocklist: [0.0.0.0/0]\n    allow_broad: true\n",
		"security:\n  ip_lists:\n    allowlist: [0.0.0.0/0, \"::/0\"]\n", // allowlists are not restricted
		"security:\n  ip_lists:\n    blocklist: [\"::ffff:192.0.2.1\", \"2001::/16\"]\n",
		"security:\n  ip_lists:\n    feeds: [{name: t, url: \"http://localhost:8080/f\", format: plain}]\n",
		"security:\n  ip_lists:\n    feeds: [{name: t, url: \"http://[::1]:8080/f\", format: plain, refresh: 1m}]\n",
		"security:\n  dynamic_blocklist:\n    auto_block:\n      rate_limit_violations: {enabled: false}\n",
		"security: {}\n",
	} {
		if _, err := Parse("t.yaml", []byte(valid+sec)); err != nil {
			t.Errorf("Parse refused\n%s:\n%v", sec, err)
		}
	}
}

func TestParseListEntryMapsIPv4InIPv6(t *testing.T) {
	for in, want := range map[string]string{
		"::ffff:192.0.2.1":        "192.0.2.1/32",
		"::ffff:192.0.2.0/120":    "192.0.2.0/24",
		"::ffff:0.0.0.0/96":       "0.0.0.0/0",
		"::fffe:0:0/95":           "::fffe:0:0/95", // wider than the mapped range: stays IPv6
		"2001:db8::1":             "2001:db8::1/128",
		"2001:db8:0:0:0:0:0:0/32": "2001:db8::/32",
	} {
		p, err := ParseListEntry(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseListEntry(%q) = %s, %v; want %s", in, p, err, want)
		}
	}
}
