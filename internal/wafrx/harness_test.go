package wafrx

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
)

// stockDirectives is the setup an operator gets by following the
// coraza-coreruleset README: recommended Coraza config, the example CRS
// setup, all CRS rules, the engine switched to blocking, request bodies on.
// PL1 and an inbound threshold of 5 are the CRS defaults; they are set
// explicitly so a change of default upstream cannot silently change the
// benchmark.
const stockDirectives = `
Include @coraza.conf-recommended
Include @crs-setup.conf.example
SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=1,setvar:tx.detection_paranoia_level=1"
SecAction "id:900110,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold=5,setvar:tx.outbound_anomaly_score_threshold=4"
Include @owasp_crs/*.conf
SecRuleEngine On
SecRequestBodyAccess On
`

// regressDirectives is the setup the CRS regression tests are written
// for: every paranoia level, the limits the test files assume, detection
// only so that every rule of a request runs and gets logged.
const regressDirectives = `
Include @coraza.conf-recommended
Include @crs-setup.conf.example
SecAction "id:900005,phase:1,pass,t:none,nolog,ctl:ruleEngine=DetectionOnly,setvar:tx.blocking_paranoia_level=4,setvar:tx.detection_paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"
Include @owasp_crs/*.conf
SecRequestBodyAccess On
`

// builds holds every WAF the tests compare. Stock builds are compiled
// before Register replaces the rx operator (registration is process-wide and
// compiled rules keep the operator they were built with), plugin builds
// after it.
type builds struct {
	stock, plugin               coraza.WAF
	stockRegress, pluginRegress coraza.WAF
	stockCapture, pluginCapture coraza.WAF
	// skip and skipRegress add rule skipping (SkipRules) and decided
	// paranoia gates (ResolveParanoiaGates) to the plugin builds;
	// gatesLeftOut are the gates each leaves out that would have matched.
	skip, skipRegress                coraza.WAF
	skipGatesLeftOut, regressLeftOut map[int]bool
}

// captureDirectives exercise @rx captures: ten groups (only TX.0..TX.8
// are set), optional groups that do not take part, a pre-filtered
// case-insensitive pattern, and a capturing rule the pre-filter rejects,
// which must leave the earlier captures in place.
const captureDirectives = `
SecRuleEngine On
SecRule ARGS:x "@rx ^(a+)(b)?(c|d)(e)?(f)(g)(h)(i)(j)(k)" "id:10,phase:1,capture,pass,log,msg:'%{TX.0}|%{TX.1}|%{TX.2}|%{TX.3}|%{TX.4}|%{TX.5}|%{TX.6}|%{TX.7}|%{TX.8}|%{TX.9}'"
SecRule ARGS:y "@rx (?i)(sel)(ect)\s+(\w+)" "id:11,phase:1,capture,pass,log,msg:'%{TX.0}|%{TX.1}|%{TX.2}|%{TX.3}'"
SecRule ARGS:z "@rx (union)" "id:12,phase:1,capture,pass,log,msg:'%{TX.0}|%{TX.1}'"
SecRule ARGS:w "@rx (drop)\s+(table)" "id:13,phase:1,capture,pass,log,msg:'%{TX.0}'"
SecRule REQUEST_URI "@unconditionalMatch" "id:14,phase:1,pass,log,msg:'after: %{TX.0}|%{TX.1}|%{TX.2}'"
`

var (
	// crsPatterns is every @rx pattern of CRS (all paranoia levels), as
	// the plugin compiled it.
	crsPatterns []string
	patternsMu  sync.Mutex

	buildsOnce sync.Once
	allBuilds  builds
	buildsErr  error
)

func newWAF(directives string) (coraza.WAF, error) {
	return coraza.NewWAF(coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithDirectives(directives))
}

// newSkipWAF builds directives with rule skipping in front, CRS's
// defaults set ahead of CRS and the gates decided, as Rampart does, and
// returns the ids of the rules left out that match on the stock build
// (nolog, flow control or setting a default).
func newSkipWAF(directives string) (coraza.WAF, map[int]bool, error) {
	// CRS's defaults set ahead of CRS, as Rampart does for what its
	// configuration leaves unset: CRS's rules setting them then match on
	// the stock build only.
	leftOut := map[int]bool{}
	defaults := CRSDefaults(coreruleset.FS, directives)
	for _, d := range defaults {
		leftOut[d.RuleID] = true
	}
	const crs = "Include @owasp_crs/*.conf"
	if !strings.Contains(directives, crs) {
		return nil, nil, fmt.Errorf("no CRS include in the directives")
	}
	directives = strings.Replace(directives, crs, DefaultsAction(defaults)+crs, 1)
	fsys, gates := ResolveParanoiaGates(coreruleset.FS, directives, nil, AllPhases)
	if gates.Disabled != "" {
		return nil, nil, fmt.Errorf("paranoia gates not decided: %s", gates.Disabled)
	}
	prefix, rep := SkipRules(fsys, directives)
	if rep.Disabled != "" {
		return nil, nil, fmt.Errorf("rule skipping disabled: %s", rep.Disabled)
	}
	for _, id := range gates.DroppedMatching {
		leftOut[id] = true
	}
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(fsys).WithDirectives(prefix + directives))
	return waf, leftOut, err
}

func getBuilds(tb testing.TB) *builds {
	tb.Helper()
	buildsOnce.Do(func() {
		b := &allBuilds
		if b.stock, buildsErr = newWAF(stockDirectives); buildsErr != nil {
			return
		}
		if b.stockRegress, buildsErr = newWAF(regressDirectives); buildsErr != nil {
			return
		}
		if b.stockCapture, buildsErr = newWAF(captureDirectives); buildsErr != nil {
			return
		}
		compileHook = func(p string) {
			patternsMu.Lock()
			defer patternsMu.Unlock()
			if !slices.Contains(crsPatterns, p) {
				crsPatterns = append(crsPatterns, p)
			}
		}
		Register()
		if b.plugin, buildsErr = newWAF(stockDirectives); buildsErr != nil {
			return
		}
		if b.pluginRegress, buildsErr = newWAF(regressDirectives); buildsErr != nil {
			return
		}
		if b.pluginCapture, buildsErr = newWAF(captureDirectives); buildsErr != nil {
			return
		}
		if b.skip, b.skipGatesLeftOut, buildsErr = newSkipWAF(stockDirectives); buildsErr != nil {
			return
		}
		b.skipRegress, b.regressLeftOut, buildsErr = newSkipWAF(regressDirectives)
	})
	if buildsErr != nil {
		tb.Fatalf("building WAF: %v", buildsErr)
	}
	return &allBuilds
}

// result is what one request did to a WAF: every rule that matched
// (including nolog bookkeeping rules, the strictest thing to compare), the
// subset that logs (what a detection is), and whether it was interrupted.
type result struct {
	all, logged []int
	interrupted bool
	// messages is "id msg" per matched rule, msg expanded (it carries the
	// anomaly scores). Log data is left out: Coraza walks its collections
	// in map order, so which of several matching values a rule reports
	// varies from run to run even on the stock build.
	messages []string
}

// evaluate runs the request phases (1, 2) and logging of one request.
func evaluate(waf coraza.WAF, r *http.Request, body []byte) result {
	tx := waf.NewTransaction()
	defer tx.Close()
	host, port := "127.0.0.1", 40000
	if r.RemoteAddr != "" {
		if i := strings.LastIndexByte(r.RemoteAddr, ':'); i > 0 {
			host = r.RemoteAddr[:i]
			port, _ = strconv.Atoi(r.RemoteAddr[i+1:])
		}
	}
	tx.ProcessConnection(host, port, "127.0.0.1", 80)
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	tx.ProcessURI(r.RequestURI, r.Method, proto)
	// Headers in a stable order, so two builds see the same sequence.
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		for _, v := range r.Header[k] {
			tx.AddRequestHeader(k, v)
		}
	}
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(r.Host)
	}
	it := tx.ProcessRequestHeaders()
	if it == nil {
		if len(body) > 0 && tx.IsRequestBodyAccessible() {
			it, _, _ = tx.WriteRequestBody(body)
		}
		if it == nil {
			it, _ = tx.ProcessRequestBody()
		}
	}
	tx.ProcessLogging()
	res := result{interrupted: it != nil}
	for _, m := range tx.MatchedRules() {
		if id := m.Rule().ID(); id == SkipRuleIDPhase1 || id == SkipRuleIDPhase2 || id == SkipRuleIDDefaults {
			continue // rule skipping's own SecActions
		}
		res.all = append(res.all, m.Rule().ID())
		res.messages = append(res.messages, fmt.Sprintf("%d %q", m.Rule().ID(), m.Message()))
		if l, ok := m.(interface{ Log() bool }); ok && l.Log() {
			res.logged = append(res.logged, m.Rule().ID())
		}
	}
	sort.Ints(res.all)
	sort.Ints(res.logged)
	sort.Strings(res.messages)
	return res
}

// without is r less the matches of the rules in ids: paranoia gates a
// rule-skipping build leaves out (nolog, no effect but the jump, so they
// match on the stock build only).
func (r result) without(ids map[int]bool) result {
	if len(ids) == 0 {
		return r
	}
	out := result{interrupted: r.interrupted, logged: r.logged}
	for _, id := range r.all {
		if !ids[id] {
			out.all = append(out.all, id)
		}
	}
	for _, m := range r.messages {
		id, _, _ := strings.Cut(m, " ")
		if n, _ := strconv.Atoi(id); !ids[n] {
			out.messages = append(out.messages, m)
		}
	}
	return out
}

// benignGET is what a browser sends for a page with a small query.
func benignGET() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://shop.example.test/products/list?category=shoes&page=2&sort=price_asc", nil)
	r.RequestURI = "/products/list?category=shoes&page=2&sort=price_asc"
	r.Host = "shop.example.test"
	r.RemoteAddr = "127.0.0.1:40000"
	h := r.Header
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	h.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	h.Set("Accept-Language", "en-US,en;q=0.5")
	h.Set("Accept-Encoding", "gzip, deflate, br")
	h.Set("Referer", "https://shop.example.test/products?category=shoes")
	h.Set("Cookie", "session=3f2a9c1e7b4d8a6f; theme=dark; consent=yes")
	h.Set("Connection", "keep-alive")
	h.Set("Upgrade-Insecure-Requests", "1")
	return r
}

var benignJSONBody = []byte(`{"user":{"name":"Jane O'Hara","email":"jane@example.test"},"items":[{"sku":"SH-2291","qty":2,"note":"gift wrap, please \"blue\" &amp; ribbon"}],"coupon":"WINTER10"}`)

func benignPOSTJSON() *http.Request {
	r, _ := http.NewRequest(http.MethodPost, "http://api.example.test/v1/orders", bytes.NewReader(benignJSONBody))
	r.RequestURI = "/v1/orders"
	r.Host = "api.example.test"
	r.RemoteAddr = "127.0.0.1:40000"
	h := r.Header
	h.Set("User-Agent", "shop-client/2.3 (+https://example.test)")
	h.Set("Accept", "application/json")
	h.Set("Accept-Language", "en-US")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(benignJSONBody)))
	h.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl")
	return r
}

func benchEval(b *testing.B, waf coraza.WAF, req func() *http.Request, body []byte) {
	r := req()
	if res := evaluate(waf, r, body); res.interrupted || len(res.logged) != 0 {
		b.Fatalf("benign request detected by rules %v (interrupted=%v)", res.logged, res.interrupted)
	}
	// Besides the mean (ns/op), report medians: of wall time and of the
	// CPU time of the evaluating thread (the OS thread is locked), which
	// stays meaningful when the machine is shared.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	walls := make([]time.Duration, 0, b.N)
	cpus := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0, w0 := threadCPU(), time.Now()
		evaluate(waf, r, body)
		walls = append(walls, time.Since(w0))
		cpus = append(cpus, threadCPU()-c0)
	}
	b.StopTimer()
	b.ReportMetric(float64(median(walls).Nanoseconds()), "median-wall-ns/op")
	b.ReportMetric(float64(median(cpus).Nanoseconds()), "median-cpu-ns/op")
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func BenchmarkStockBenignGET(b *testing.B) {
	benchEval(b, getBuilds(b).stock, benignGET, nil)
}

func BenchmarkPluginBenignGET(b *testing.B) {
	benchEval(b, getBuilds(b).plugin, benignGET, nil)
}

func BenchmarkSkipBenignGET(b *testing.B) {
	benchEval(b, getBuilds(b).skip, benignGET, nil)
}

func BenchmarkSkipBenignPOSTJSON(b *testing.B) {
	benchEval(b, getBuilds(b).skip, benignPOSTJSON, benignJSONBody)
}

func BenchmarkStockBenignPOSTJSON(b *testing.B) {
	benchEval(b, getBuilds(b).stock, benignPOSTJSON, benignJSONBody)
}

func BenchmarkPluginBenignPOSTJSON(b *testing.B) {
	benchEval(b, getBuilds(b).plugin, benignPOSTJSON, benignJSONBody)
}
