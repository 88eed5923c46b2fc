package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/rampart-proxy/rampart/internal/waf"
)

// WAF is security.waf, pipeline stage 5 (DESIGN §3): the embedded OWASP
// CRS v4 run by Coraza. Without the section the WAF is off; with it,
// enabled defaults to true and mode to BLOCK.
type WAF struct {
	Enabled          *bool    `yaml:"enabled"`
	Mode             string   `yaml:"mode"`              // DETECT | BLOCK
	ParanoiaLevel    int      `yaml:"paranoia_level"`    // 1-4, default 1
	AnomalyThreshold int      `yaml:"anomaly_threshold"` // default 5
	RuleSets         []string `yaml:"rule_sets"`         // default [owasp_crs_v4]
	// CustomRulesFiles are SecLang files (relative to the config file),
	// evaluated before CRS.
	CustomRulesFiles []string       `yaml:"custom_rules_files"`
	Exclusions       []WAFExclusion `yaml:"exclusions"`
	// MaxBodyInspectBytes is how much of a JSON, urlencoded, multipart or
	// XML body is inspected (default 131072). BodyLimitAction says what
	// happens to a longer one: refuse (413, the default) or pass (its
	// start inspected, the rest not).
	MaxBodyInspectBytes int64  `yaml:"max_body_inspect_bytes"`
	BodyLimitAction     string `yaml:"body_limit_action"`
	// AllowedMethods (CRS tx.allowed_methods) defaults to GET HEAD POST
	// OPTIONS PUT PATCH DELETE; AllowedContentTypes (CRS
	// tx.allowed_request_content_type) to CRS's list.
	AllowedMethods      []string `yaml:"allowed_methods"`
	AllowedContentTypes []string `yaml:"allowed_content_types"`
	// ResponseInspection runs CRS's outbound rules on answers (text,
	// HTML, XML and JSON bodies are held back up to max_body_inspect_bytes
	// to be inspected), with anomaly_threshold as the outbound threshold.
	ResponseInspection bool `yaml:"response_inspection"`
	// RuleSkipping (default true) removes, per request, the CRS rules
	// that provably cannot match before Coraza evaluates them
	// (internal/wafrx); false is the escape hatch that runs every rule.
	RuleSkipping *bool `yaml:"rule_skipping"`
}

// WAFExclusion turns rules off on a path (exact, or a prefix ending in
// "*"): rule ids or category names (sql_injection, xss, rce, lfi, rfi,
// php, java, session_fixation, protocol, scanner, method, multipart,
// generic, body_parsing, body_size_limit).
type WAFExclusion struct {
	Path  string   `yaml:"path"`
	Rules []string `yaml:"rules"`
}

// RouteWAF overrides security.waf for one route (routes[].waf); unset keys
// inherit, exclusions are added to the global ones.
type RouteWAF struct {
	Enabled            *bool          `yaml:"enabled"`
	Mode               string         `yaml:"mode"`
	ParanoiaLevel      int            `yaml:"paranoia_level"`
	AnomalyThreshold   int            `yaml:"anomaly_threshold"`
	ResponseInspection *bool          `yaml:"response_inspection"`
	AllowedMethods     []string       `yaml:"allowed_methods"`
	Exclusions         []WAFExclusion `yaml:"exclusions"`
}

// DefaultWAFMethods is security.waf.allowed_methods when not set: CRS's
// own default (GET HEAD POST OPTIONS) would refuse every REST API.
var DefaultWAFMethods = []string{"GET", "HEAD", "POST", "OPTIONS", "PUT", "PATCH", "DELETE"}

// WAFConfig returns the WAF's settings, with the route overrides, and
// whether any route inspects anything.
func (c *Config) WAFConfig() (waf.Config, bool) {
	w := c.Security.WAF
	if w == nil {
		w = &WAF{Enabled: new(bool)}
	}
	out := waf.Config{
		Enabled:             w.Enabled == nil || *w.Enabled,
		Mode:                waf.Mode(w.Mode),
		ParanoiaLevel:       w.ParanoiaLevel,
		AnomalyThreshold:    w.AnomalyThreshold,
		RuleSets:            w.RuleSets,
		AllowedMethods:      w.AllowedMethods,
		AllowedContentTypes: w.AllowedContentTypes,
		MaxBodyInspectBytes: w.MaxBodyInspectBytes,
		PassLargeBody:       w.BodyLimitAction == "pass",
		ResponseInspection:  w.ResponseInspection,
		NoRuleSkipping:      w.RuleSkipping != nil && !*w.RuleSkipping,
		Routes:              map[string]waf.RouteConfig{},
	}
	if _, set := c.lines["security.waf.rule_sets"]; !set && w.RuleSets == nil {
		out.RuleSets = []string{waf.RuleSetCRS}
	}
	if len(out.AllowedMethods) == 0 {
		out.AllowedMethods = DefaultWAFMethods
	}
	for _, f := range w.CustomRulesFiles {
		out.CustomRulesFiles = append(out.CustomRulesFiles, c.Resolve(f))
	}
	out.Exclusions = wafExclusions(w.Exclusions)
	on := out.Enabled
	for _, r := range c.Routes {
		if r.WAF == nil {
			continue
		}
		rc := waf.RouteConfig{Enabled: r.WAF.Enabled, Mode: waf.Mode(r.WAF.Mode), ParanoiaLevel: r.WAF.ParanoiaLevel,
			AnomalyThreshold: r.WAF.AnomalyThreshold, ResponseInspection: r.WAF.ResponseInspection,
			AllowedMethods: r.WAF.AllowedMethods, Exclusions: wafExclusions(r.WAF.Exclusions)}
		out.Routes[r.Name] = rc
		if rc.Enabled != nil {
			on = on || *rc.Enabled
		}
	}
	return out, on
}

func wafExclusions(in []WAFExclusion) []waf.Exclusion {
	out := make([]waf.Exclusion, len(in))
	for i, e := range in {
		out[i] = waf.Exclusion{Path: e.Path, Rules: e.Rules}
	}
	return out
}

// MaxWAFBodyInspectBytes bounds max_body_inspect_bytes: the inspected part
// of a body is held in memory.
const MaxWAFBodyInspectBytes = 64 << 20

func (v *validator) waf() {
	const base = "security.waf"
	w := v.cfg.Security.WAF
	if w != nil {
		v.wafMode(base, w.Mode, w.ParanoiaLevel)
		v.wafThreshold(base, w.AnomalyThreshold)
		for i, rs := range w.RuleSets {
			if rs != waf.RuleSetCRS {
				v.add(fmt.Sprintf("%s.rule_sets[%d]", base, i), "waf: unknown rule set %q (the built-in one is %s)", rs, waf.RuleSetCRS)
			}
		}
		for i, f := range w.CustomRulesFiles {
			p := fmt.Sprintf("%s.custom_rules_files[%d]", base, i)
			path := v.cfg.Resolve(f)
			if _, err := os.Stat(path); err != nil {
				v.add(p, "waf: custom rules file %q does not exist", path)
			} else if err := waf.CheckRulesFile(path); err != nil {
				v.add(p, "waf: custom rules do not compile: %v", err)
			}
		}
		v.wafExclusions(base+".exclusions", w.Exclusions)
		if w.MaxBodyInspectBytes < 0 || w.MaxBodyInspectBytes > MaxWAFBodyInspectBytes {
			v.add(base+".max_body_inspect_bytes", "waf: max_body_inspect_bytes must be between 1 and %d (default %d)", MaxWAFBodyInspectBytes, waf.DefaultMaxBodyInspectBytes)
		}
		switch w.BodyLimitAction {
		case "", "refuse", "pass":
		default:
			v.add(base+".body_limit_action", "waf: body_limit_action %q: use refuse (413, the default) or pass (inspect the start only)", w.BodyLimitAction)
		}
		v.wafMethods(base+".allowed_methods", w.AllowedMethods)
		for i, ct := range w.AllowedContentTypes {
			if err := waf.CheckContentType(ct); err != nil {
				v.add(fmt.Sprintf("%s.allowed_content_types[%d]", base, i), "waf: %v", err)
			}
		}
	}
	for i, r := range v.cfg.Routes {
		if r.WAF == nil {
			continue
		}
		p := fmt.Sprintf("routes[%d].waf", i)
		v.wafMode(p, r.WAF.Mode, r.WAF.ParanoiaLevel)
		v.wafThreshold(p, r.WAF.AnomalyThreshold)
		v.wafExclusions(p+".exclusions", r.WAF.Exclusions)
		v.wafMethods(p+".allowed_methods", r.WAF.AllowedMethods)
	}
}

func (v *validator) wafMode(base, mode string, pl int) {
	if mode != "" && mode != string(waf.ModeDetect) && mode != string(waf.ModeBlock) {
		v.add(base+".mode", "waf: mode %q: use DETECT or BLOCK", mode)
	}
	if pl < 0 || pl > 4 {
		v.add(base+".paranoia_level", "waf: paranoia_level %d must be between 1 and 4", pl)
	}
}

func (v *validator) wafThreshold(base string, th int) {
	if th < 0 {
		v.add(base+".anomaly_threshold", "waf: anomaly_threshold must be 1 or more (CRS default 5)")
	}
}

func (v *validator) wafExclusions(base string, xs []WAFExclusion) {
	for i, x := range xs {
		p := fmt.Sprintf("%s[%d]", base, i)
		if !strings.HasPrefix(x.Path, "/") {
			v.add(p+".path", "waf: exclusion path %q must start with / (a trailing * matches a prefix)", x.Path)
		} else if strings.Contains(strings.TrimSuffix(x.Path, "*"), "*") {
			v.add(p+".path", "waf: exclusion path %q: * is only allowed at the end", x.Path)
		}
		if len(x.Rules) == 0 {
			v.add(p, "waf: exclusion for %s has no rules", x.Path)
		}
		for j, r := range x.Rules {
			if err := waf.CheckRule(r); err != nil {
				v.add(fmt.Sprintf("%s.rules[%d]", p, j), "waf: exclusion for %s: %v", x.Path, err)
			}
		}
	}
}

func (v *validator) wafMethods(base string, ms []string) {
	for i, m := range ms {
		if err := waf.CheckMethod(m); err != nil {
			v.add(fmt.Sprintf("%s[%d]", base, i), "waf: %v", err)
		} else if slices.Contains(ms[:i], m) {
			v.add(fmt.Sprintf("%s[%d]", base, i), "waf: method %s is listed twice", m)
		}
	}
}
