package waf

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// shared engines: building CRS costs ~0.1 s, so tests reuse them by config.
func newWAF(t testing.TB, c Config) *WAF {
	t.Helper()
	if c.RuleSets == nil {
		c.RuleSets = []string{RuleSetCRS}
	}
	c.Enabled = true
	w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func get(target string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
	r.Header.Set("Accept", "text/html,application/json")
	r.Header.Set("Accept-Language", "en")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

func post(target, ct, body string) *http.Request {
	r := get(target)
	r.Method = http.MethodPost
	r.Body = io.NopCloser(strings.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Type", ct)
	return r
}

func TestBlockAndPass(t *testing.T) {
	w := newWAF(t, Config{Mode: ModeBlock})
	res := w.Evaluate(get("/search?q=1%27%20OR%20%271%27=%271"))
	if res.Action != ActionBlock || res.Status != 403 || !res.Attack || res.Score < 5 || !slices.Contains(res.RuleIDs, 949110) {
		t.Fatalf("sqli: %+v", res)
	}
	res = w.Evaluate(get("/search?q=blue+shoes&page=2"))
	if res.Action != ActionPass || res.Attack || res.Score != 0 || len(res.RuleIDs) != 0 {
		t.Fatalf("benign: %+v", res)
	}
	t.Log(res.Matched())
}

func TestCustomRulesErrorNamesLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "custom.conf")
	os.WriteFile(p, []byte("# my rules\nSecRule ARGS \"@rx a\" \"id:10001,phase:2,deny\"\n\nSecRule ARGS \\\n  \"@rx (\" \\\n  \"id:10002,phase:2,deny\"\n"), 0o644)
	err := CheckRulesFile(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":4: ") || !strings.Contains(err.Error(), "missing closing )") {
		t.Fatalf("CheckRulesFile: %v", err)
	}
	_, err = New(Config{Enabled: true, RuleSets: []string{RuleSetCRS}, CustomRulesFiles: []string{p}})
	if err == nil || !strings.HasPrefix(err.Error(), p+":4: ") {
		t.Fatalf("New: %v", err)
	}
}

// Method allowlist per route (CRS 911100 with tx.allowed_methods), the
// scanner User-Agent list (913100), and Content-Type validation (920420).
func TestProtocolEnforcement(t *testing.T) {
	w := newWAF(t, Config{AllowedMethods: []string{"GET", "POST"}, Routes: map[string]RouteConfig{
		"api": {AllowedMethods: []string{"GET", "POST", "DELETE"}},
	}})
	del := get("/items/7")
	del.Method = http.MethodDelete
	if res := w.Evaluate(del); res.Action != ActionBlock || !slices.Contains(res.RuleIDs, 911100) {
		t.Errorf("DELETE on the default policy: %+v", res)
	}
	if res := w.Policy("api").Evaluate(del); res.Action != ActionPass {
		t.Errorf("DELETE on a route that allows it: %+v", res)
	}
	if res := w.Evaluate(get("/", "User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")); res.Action != ActionBlock || !slices.Contains(res.RuleIDs, 913100) {
		t.Errorf("scanner UA: %+v", res)
	}
	if res := w.Evaluate(post("/x", "application/x-evil", "a=b")); res.Action != ActionBlock || !slices.Contains(res.RuleIDs, 920420) {
		t.Errorf("content type outside the allowlist: %+v", res)
	}
	w2 := newWAF(t, Config{AllowedContentTypes: []string{"application/json", "application/x-evil"}})
	if res := w2.Evaluate(post("/x", "application/x-evil", "a=b")); res.Action != ActionPass {
		t.Errorf("allowed content type: %+v", res)
	}
}

// DETECT scores like BLOCK but lets the request through; a disabled
// route is not inspected; exclusions by category apply on their path only.
func TestModesAndExclusions(t *testing.T) {
	off := false
	w := newWAF(t, Config{Mode: ModeDetect, Exclusions: []Exclusion{{Path: "/hooks/*", Rules: []string{"xss"}}},
		Routes: map[string]RouteConfig{"strict": {Mode: ModeBlock}, "off": {Enabled: &off}}})
	xss := "?q=%3Cscript%3Ealert(1)%3C/script%3E"
	res := w.Evaluate(get("/a" + xss))
	if res.Action != ActionDetect || !res.Attack || res.Status != 403 || res.Score < 5 {
		t.Errorf("DETECT: %+v", res)
	}
	if res := w.Policy("strict").Evaluate(get("/a" + xss)); res.Action != ActionBlock {
		t.Errorf("route BLOCK: %+v", res)
	}
	if res := w.Policy("off").Evaluate(get("/a" + xss)); res.Action != ActionNone || w.Policy("off").Enabled() {
		t.Errorf("route off: %+v", res)
	}
	if res := w.Policy("strict").Evaluate(get("/hooks/gh" + xss)); res.Action != ActionPass || len(res.RuleIDs) != 0 {
		t.Errorf("excluded category: %+v", res)
	}
	if res := w.Policy("strict").Evaluate(get("/hooks/gh?q=1%27%20OR%20%271%27=%271")); res.Action != ActionBlock {
		t.Errorf("other category on the excluded path: %+v", res)
	}
}

// Bodies over max_body_inspect_bytes: 413 in BLOCK, DETECT in DETECT
// mode, inspected start and passed with body_limit_action pass; in every
// case the body the backend would read is unchanged.
func TestBodyOverLimit(t *testing.T) {
	body := "a=" + strings.Repeat("x", 300) + "&b=%3Cscript%3Ealert(1)%3C/script%3E"
	for _, c := range []struct {
		cfg    Config
		action Action
		status int
	}{
		{Config{MaxBodyInspectBytes: 100}, ActionBlock, 413},
		{Config{MaxBodyInspectBytes: 100, Mode: ModeDetect}, ActionDetect, 413},
		{Config{MaxBodyInspectBytes: 100, PassLargeBody: true}, ActionPass, 0}, // the XSS is past the limit
		{Config{MaxBodyInspectBytes: 1000}, ActionBlock, 403},
	} {
		w := newWAF(t, c.cfg)
		r := post("/f", "application/x-www-form-urlencoded", body)
		res := w.Evaluate(r)
		if res.Action != c.action || res.Status != c.status {
			t.Errorf("%+v: %+v", c.cfg, res)
		}
		if got, _ := io.ReadAll(r.Body); string(got) != body {
			t.Errorf("%+v: body after inspection %q", c.cfg, got)
		}
	}
}

// A custom rule whose id is already a CRS rule's is found by the check
// that validate runs, with its line.
func TestCustomRuleCollidesWithCRS(t *testing.T) {
	p := filepath.Join(t.TempDir(), "custom.conf")
	os.WriteFile(p, []byte("SecRule ARGS \"@rx ok\" \"id:1000001,phase:2,pass\"\nSecRule ARGS \"@rx x\" \"id:942100,phase:2,pass\"\n"), 0o644)
	if err := CheckRulesFile(p); err == nil || !strings.HasPrefix(err.Error(), p+":2: ") || !strings.Contains(err.Error(), "duplicated rule id") {
		t.Fatalf("CheckRulesFile: %v", err)
	}
}

// Rule skipping is on for the embedded CRS, off (with the reason) when a
// custom file skips rules by count (which removing rules would shift) or
// takes one of its reserved ids; detection is the same either way.
func TestRuleSkippingReport(t *testing.T) {
	w := newWAF(t, Config{ParanoiaLevel: 1})
	rep := w.RuleSkipping()
	if len(rep) != 1 || rep[0].Disabled != "" || rep[0].Candidates < 120 { // the PL1 rules of phases 1-2
		t.Fatalf("CRS alone: %+v", rep)
	}
	// The paranoia gates are decided: at PL1 each request file's "@lt 2"
	// pair jumps, 17 files (911-949) in phases 1 and 2.
	if g := rep[0].Gates; g.Disabled != "" || !slices.Contains(g.DroppedMatching, 942014) || len(g.DroppedMatching) < 34 {
		t.Errorf("paranoia gates at PL1: %+v", g)
	}
	// Settings no rule Rampart runs reads are not set: the outbound
	// threshold without response inspection (and CRS's rule that would
	// set its default goes too), but with it, it is.
	if g := rep[0].Gates; !slices.Contains(g.UnreadSettings, "outbound_anomaly_score_threshold") || !slices.Contains(g.UnreadRules, 901110) {
		t.Errorf("unread settings without response inspection: %v (rules %v)", g.UnreadSettings, g.UnreadRules)
	}
	if g := newWAF(t, Config{ParanoiaLevel: 1, ResponseInspection: true}).RuleSkipping()[0].Gates; slices.Contains(g.UnreadSettings, "outbound_anomaly_score_threshold") {
		t.Errorf("outbound threshold unset with response inspection: %v", g.UnreadSettings)
	}
	// An exclusion of a gate by id, on any route, leaves it to Coraza.
	xw := newWAF(t, Config{ParanoiaLevel: 1, Routes: map[string]RouteConfig{"r": {Exclusions: []Exclusion{{Path: "/x", Rules: []string{"942014"}}}}}})
	if g := xw.RuleSkipping()[0].Gates; g.Disabled != "" || slices.Contains(g.DroppedMatching, 942014) || !slices.Contains(g.DroppedMatching, 942013) {
		t.Errorf("gate 942014 excluded on a route: %+v", g)
	}
	dir := t.TempDir()
	for name, rules := range map[string]string{
		"skip in a SecAction": "SecAction \"id:10,phase:1,pass,nolog,skip:1\"\nSecRule ARGS \"@rx zzz\" \"id:11,phase:1,pass,log\"\n",
		"reserved id":         "SecRule ARGS \"@rx zzz\" \"id:9990001,phase:2,pass,log\"\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".conf")
		os.WriteFile(p, []byte(rules), 0o644)
		w := newWAF(t, Config{ParanoiaLevel: 1, CustomRulesFiles: []string{p}})
		rep := w.RuleSkipping()
		if len(rep) != 1 || rep[0].Disabled == "" || rep[0].Gates.Decided != 0 {
			t.Errorf("%s: %+v", name, rep) // skipping off: CRS as written, no gate decided
		}
		if res := w.Evaluate(get("/?q=%3Cscript%3Ealert(1)%3C/script%3E")); res.Action != ActionBlock {
			t.Errorf("%s: XSS not blocked: %+v", name, res)
		}
		t.Logf("%s: %s", name, rep[0].Disabled)
	}
	if rep := newWAF(t, Config{ParanoiaLevel: 1, NoRuleSkipping: true}).RuleSkipping(); len(rep) != 1 || !strings.Contains(rep[0].Disabled, "rule_skipping: false") {
		t.Errorf("rule_skipping: false: %+v", rep)
	}
}

// The charset check (920480) sees the Content-Type's parameter names in
// lower case: "Charset=IBM037" is a charset too for the servlet container
// that decodes the form in it (an EBCDIC <script> scored 0).
func TestCharsetParameterCase(t *testing.T) {
	w := newWAF(t, Config{Mode: ModeBlock})
	const ebcdic = "%98=L%A2%83%99%89%97%A3n%81%93%85%99%A3M%F1%5DLa%A2%83%99%89%97%A3n"
	for _, ct := range []string{
		"application/x-www-form-urlencoded; charset=ibm037",
		"application/x-www-form-urlencoded; Charset=IBM037",
		"Application/X-WWW-Form-Urlencoded; CHARSET=\"ibm037\"",
	} {
		if res := w.Evaluate(post("/f", ct, ebcdic)); res.Action != ActionBlock || !slices.Contains(res.RuleIDs, 920480) {
			t.Errorf("%q: %+v, want a block by 920480", ct, res)
		}
	}
	// A multipart boundary keeps its case: the body still parses.
	body := "--AbC\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nblue shoes\r\n--AbC--\r\n"
	if res := w.Evaluate(post("/f", "multipart/form-data; Boundary=AbC", body)); res.Action != ActionPass {
		t.Errorf("multipart with a capitalised parameter name: %+v", res)
	}
}
