package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWAFMistakes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("# ok\nSecRule ARGS \"@rx a\" \"id:1,phase:2,pass\"\nSecRule ARGS \"@rx (\" \"id:2,phase:2,deny\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		sec  string // appended to valid, which has 8 lines
		line int
		msg  string
	}{
		{"mode", "security:\n  waf:\n    mode: block\n", 11, `mode "block": use DETECT or BLOCK`},
		{"paranoia", "security:\n  waf:\n    paranoia_level: 5\n", 11, "paranoia_level 5 must be between 1 and 4"},
		{"threshold", "security:\n  waf:\n    anomaly_threshold: -1\n", 11, "anomaly_threshold must be 1 or more"},
		{"rule set", "security:\n  waf:\n    rule_sets: [owasp_crs_v3]\n", 11, `unknown rule set "owasp_crs_v3"`},
		{"missing rules file", "security:\n  waf:\n    custom_rules_files:\n      - nope.conf\n", 12, "does not exist"},
		{"broken rules file", "security:\n  waf:\n    custom_rules_files:\n      - " + bad + "\n", 12, bad + ":3: "},
		{"exclusion path", "security:\n  waf:\n    exclusions:\n      - {path: api, rules: [xss]}\n", 12, "must start with /"},
		{"exclusion star", "security:\n  waf:\n    exclusions:\n      - path: /a/*/b\n        rules: [xss]\n", 12, "* is only allowed at the end"},
		{"exclusion category", "security:\n  waf:\n    exclusions:\n      - path: /a\n        rules:\n          - sqli\n", 14, `"sqli" is neither a rule id nor a category`},
		{"exclusion empty", "security:\n  waf:\n    exclusions:\n      - {path: /a}\n", 12, "has no rules"},
		{"body limit", "security:\n  waf:\n    max_body_inspect_bytes: -5\n", 11, "max_body_inspect_bytes must be between"},
		{"body limit action", "security:\n  waf:\n    body_limit_action: drop\n", 11, `body_limit_action "drop"`},
		{"method", "security:\n  waf:\n    allowed_methods: [GET, \"POST'\"]\n", 11, "must be upper-case letters"},
		{"content type", "security:\n  waf:\n    allowed_content_types: [\"application/json; charset=utf-8\"]\n", 11, "is not a media type"},
		{"unknown key", "security:\n  waf:\n    paranoia: 2\n", 11, `unknown key "paranoia"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(valid+doc(c.sec)))
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

func TestWAFRouteMistakes(t *testing.T) {
	doc := `listeners:
  - {name: public, listen: ":8080"}
routes:
  - name: all
    match: {path_prefix: /}
    pool: web
    waf:
      mode: LOG
      exclusions: [{path: /x, rules: [nope]}]
      anomaly_threshold: -3
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
`
	_, err := Parse("t.yaml", []byte(doc))
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 3 || ps[0].Line != 8 || ps[1].Line != 9 || ps[2].Line != 10 || !strings.Contains(ps[2].Msg, "anomaly_threshold") {
		t.Fatalf("problems: %v", err)
	}
}

func TestWAFRouteOverrides(t *testing.T) {
	doc := `listeners:
  - {name: public, listen: ":8080"}
routes:
  - name: api
    match: {path_prefix: /api}
    pool: web
    waf: {anomaly_threshold: 20, response_inspection: true}
  - name: all
    match: {path_prefix: /}
    pool: web
pools:
  - name: web
    backends:
      - {id: w1, address: 127.0.0.1:9001}
security:
  waf: {anomaly_threshold: 7}
`
	cfg, err := Parse("t.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wc, _ := cfg.WAFConfig()
	rc := wc.Routes["api"]
	if wc.AnomalyThreshold != 7 || rc.AnomalyThreshold != 20 || rc.ResponseInspection == nil || !*rc.ResponseInspection || wc.ResponseInspection {
		t.Errorf("route overrides not carried: %+v, api %+v", wc, rc)
	}
}

func TestWAFConfigDefaults(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if _, on := cfg.WAFConfig(); on {
		t.Error("WAF on without a security.waf section")
	}
	cfg, err = Parse("t.yaml", []byte(valid+doc("security:\n  waf: {exclusions: [{path: \"/webhooks/*\", rules: [sql_injection, \"942100\"]}]}\n")))
	if err != nil {
		t.Fatal(err)
	}
	wc, on := cfg.WAFConfig()
	if !on || !wc.Enabled || wc.Mode != "" || wc.ResponseInspection || len(wc.RuleSets) != 1 || wc.RuleSets[0] != "owasp_crs_v4" || len(wc.AllowedMethods) != 7 || wc.PassLargeBody || wc.NoRuleSkipping {
		t.Errorf("defaults: on=%v %+v", on, wc)
	}
	cfg, err = Parse("t.yaml", []byte(valid+doc("security:\n  waf: {response_inspection: true, body_limit_action: pass, rule_skipping: false}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if wc, _ := cfg.WAFConfig(); !wc.ResponseInspection || !wc.PassLargeBody || !wc.NoRuleSkipping {
		t.Errorf("response_inspection/body_limit_action/rule_skipping not carried: %+v", wc)
	}
	cfg, err = Parse("t.yaml", []byte(valid+doc("security:\n  waf: {enabled: false, rule_sets: []}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if wc, on := cfg.WAFConfig(); on || len(wc.RuleSets) != 0 {
		t.Errorf("disabled: on=%v %+v", on, wc)
	}
}
