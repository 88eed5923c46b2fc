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
