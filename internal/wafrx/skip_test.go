package wafrx

import (
	"fmt"
	"slices"
	"testing"
	"testing/fstest"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
)

func TestParseSecRule(t *testing.T) {
	r, chain, err := parseSecRule(`REQUEST_COOKIES|!REQUEST_COOKIES:/^(?:a|b)$/|&ARGS|XML:/*|REQUEST_HEADERS:User-Agent "!@rx ^a\"b|c$" "id:942100,phase:request,t:none,t:urlDecodeUni,t:lowercase,multiMatch,msg:'x, y: z',chain"`)
	if err != nil {
		t.Fatal(err)
	}
	want := []secTarget{{"REQUEST_COOKIES", ""}, {"ARGS", ""}, {"XML", "/*"}, {"REQUEST_HEADERS", "User-Agent"}}
	if !slices.Equal(r.targets, want) {
		t.Errorf("targets %v, want %v", r.targets, want)
	}
	if !r.count || !r.negated || r.op != "rx" || r.arg != `^a"b|c$` {
		t.Errorf("count=%v negated=%v op=%q arg=%q", r.count, r.negated, r.op, r.arg)
	}
	if r.id != 942100 || r.phase != 2 || !r.multiMatch || !chain || !slices.Equal(r.transforms, []string{"urlDecodeUni", "lowercase"}) {
		t.Errorf("id=%d phase=%d multi=%v chain=%v transforms=%v", r.id, r.phase, r.multiMatch, chain, r.transforms)
	}
	r, _, _ = parseSecRule(`ARGS "foo bar" "id:1,phase:1,t:lowercase,t:none,t:trim"`)
	if r.op != "rx" || r.arg != "foo bar" || !slices.Equal(r.transforms, []string{"trim"}) {
		t.Errorf("default operator: op=%q arg=%q transforms=%v", r.op, r.arg, r.transforms)
	}
}

// crsFS is the embedded rule set plus one file of test rules read as if
// it were part of CRS.
func crsFS(rules string) fstest.MapFS {
	m := fstest.MapFS{"@owasp_crs/REQUEST-000-TEST.conf": {Data: []byte(rules)}}
	return m
}

func TestSkipRulesRefusesWhatChangesRules(t *testing.T) {
	for name, directives := range map[string]string{
		"default transformations": "SecDefaultAction \"phase:2,log,pass,t:lowercase\"\nInclude @owasp_crs/*.conf\n",
		"target added by tag":     "Include @owasp_crs/*.conf\nSecRuleUpdateTargetByTag \"attack-sqli\" \"ARGS_POST\"\n",
		"skip in a SecAction":     "SecAction \"id:5,phase:1,pass,nolog,skip:2\"\nInclude @owasp_crs/*.conf\n",
		"include outside the set": "Include /etc/rules/*.conf\n",
	} {
		if _, rep := SkipRules(coreruleset.FS, directives); rep.Disabled == "" {
			t.Errorf("%s: rule skipping not disabled", name)
		}
	}
	prefix, rep := SkipRules(coreruleset.FS, "Include @owasp_crs/*.conf\n")
	if rep.Disabled != "" || rep.Candidates < 200 || prefix == "" {
		t.Fatalf("plain CRS: %+v", rep)
	}
	// Custom rules (not from the embedded set) are never skipped.
	_, custom := SkipRules(coreruleset.FS, "SecRule ARGS \"@rx evil\" \"id:10,phase:2,pass,log\"\nInclude @owasp_crs/*.conf\n")
	if custom.Candidates != rep.Candidates {
		t.Errorf("custom rule planned: %d candidates, CRS alone %d", custom.Candidates, rep.Candidates)
	}
}

func TestUnsafeRules(t *testing.T) {
	const rules = `
SecRule ARGS "@rx a" "id:1,phase:2,pass,log"
SecRule REQBODY_PROCESSOR "@streq JSON" "id:2,phase:2,pass,nolog,skip:1"
SecRule ARGS "@rx b" "id:3,phase:2,pass,log"
SecRule ARGS "@rx c" "id:4,phase:2,pass,log"
SecRule ARGS "@rx d" "id:5,phase:1,pass,log"
SecMarker "END"
SecRule ARGS "@rx e" "id:6,phase:2,pass,log"
SecRuleUpdateTargetById 1 "!ARGS:x"
SecRuleUpdateTargetById 6 "ARGS_NAMES"
`
	if sl := readSecLang(crsFS(rules+"SecRuleUpdateActionById 1-0 \"t:lowercase\"\n"), "Include @owasp_crs/*.conf\n"); sl.disabled == "" {
		t.Error("a malformed id range must disable skipping")
	}
	sl := readSecLang(crsFS(rules), "Include @owasp_crs/*.conf\n")
	if sl.disabled != "" {
		t.Fatal(sl.disabled)
	}
	for id, want := range map[int]bool{1: false, 2: false, 3: true, 4: true, 5: false, 6: true} {
		if sl.unsafe[id] != want {
			t.Errorf("rule %d: unsafe=%v, want %v", id, sl.unsafe[id], want)
		}
	}
}

// TestSkipDecisions runs the production setup: a benign GET has most CRS
// rules skipped, an attack keeps the rules that detect it, and both get
// the same verdict as without skipping.
func TestSkipDecisions(t *testing.T) {
	b := getBuilds(t)
	skipped := map[int]bool{}
	skipHook = func(id int, skip bool) { skipped[id] = skip }
	defer func() { skipHook = nil }()

	res := evaluate(b.skip, benignGET(), nil)
	n := 0
	for _, s := range skipped {
		if s {
			n++
		}
	}
	// At PL1 the plan holds the ~140 PL1 rules of phases 1-2 (rules above
	// the paranoia level are never reached, so not planned).
	if len(skipped) < 120 || n < len(skipped)*9/10 || res.interrupted || len(res.logged) != 0 {
		t.Errorf("benign GET: %d of %d rules skipped, logged %v", n, len(skipped), res.logged)
	}

	clear(skipped)
	attack := benignGET()
	attack.RequestURI = "/products/list?q=%3Cscript%3Ealert(1)%3C/script%3E"
	want := evaluate(b.stock, attack, nil).without(b.skipGatesLeftOut)
	got := evaluate(b.skip, attack, nil)
	if !got.interrupted || !slices.Contains(got.logged, 941110) || !slices.Equal(want.all, got.all) {
		t.Errorf("XSS: stock %v, skipping %v (interrupted=%v)", want.all, got.all, got.interrupted)
	}
	if skipped[941110] {
		t.Error("941110 skipped on a request it detects")
	}
}

func TestInputCacheIsBounded(t *testing.T) {
	b := getBuilds(t)
	evaluate(b.skip, benignGET(), nil) // the plan is built and verified
	p := newSkipPlan()
	p.add(coreruleset.FS, secRule{id: 1, phase: 1, file: "@owasp_crs/x.conf", targets: []secTarget{{"ARGS", ""}}, op: "rx", arg: "evil"}, false)
	p.build()
	for i := range inputShards * inputsPerShard * 2 {
		p.inputs.facts(p, fmt.Sprintf("value-%d", i))
	}
	total := 0
	for i := range p.inputs.shards {
		total += len(p.inputs.shards[i].m)
	}
	if total > inputShards*inputsPerShard {
		t.Errorf("%d cached inputs, bound %d", total, inputShards*inputsPerShard)
	}
	// A long input is examined once per request, never cached.
	long := string(make([]byte, maxCachedInput+1))
	sc := &skipScratch{p: p}
	if f := sc.facts(long); f != sc.facts(long) {
		t.Error("a long input was examined twice in one request")
	}
	for i := range p.inputs.shards {
		if _, ok := p.inputs.shards[i].m[long]; ok {
			t.Error("an input longer than maxCachedInput was cached")
		}
	}
	sc.reset(p, nil)
	if len(sc.long) != 0 {
		t.Error("a long input outlived its request")
	}
}

func TestDiscardSkipRules(t *testing.T) {
	prefix, rep := SkipRules(coreruleset.FS, "Include @owasp_crs/*.conf\n")
	if rep.Disabled != "" {
		t.Fatal(rep.Disabled)
	}
	count := func() (n int) {
		pendingPlans.Range(func(any, any) bool { n++; return true })
		return n
	}
	before := count()
	DiscardSkipRules(prefix)
	if after := count(); after != before-1 {
		t.Errorf("pending plans %d -> %d", before, after)
	}
}

func TestPlanFollowsParanoiaLevel(t *testing.T) {
	plan := func(d string) int {
		_, rep := SkipRules(coreruleset.FS, d+"Include @owasp_crs/*.conf\n")
		return rep.Candidates
	}
	all := plan("")
	pl1 := plan(`SecAction "id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=1"` + "\n")
	pl2 := plan(`SecAction "id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=1,setvar:tx.detection_paranoia_level=2"` + "\n")
	macro := plan(`SecAction "id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=%{tx.x}"` + "\n")
	if !(pl1 < pl2 && pl2 < all && macro == all) {
		t.Errorf("planned rules: PL1 %d, PL2 %d, all %d, macro %d", pl1, pl2, all, macro)
	}
	t.Logf("planned rules: PL1 %d, PL2 %d, all %d", pl1, pl2, all)
}

// TestChainMembersDecide: a chain is skipped when a member cannot match
// and nothing before it acts on a match; not when the head or an earlier
// member captures or sets something, nor when a rule reads the previous
// rule's MATCHED_VAR. The skipped chains' verdicts are checked against
// Coraza's on a request where they match.
func TestChainMembersDecide(t *testing.T) {
	const rules = `
SecRule REQUEST_METHOD "@rx ^GET$" "id:11,phase:1,block,t:none,msg:'body on GET',chain"
    SecRule REQUEST_HEADERS:Content-Length "!@rx ^0?$" "t:none,setvar:'tx.score=+5'"
SecRule REQUEST_METHOD "@rx ^GET$" "id:12,phase:1,pass,capture,t:none,chain"
    SecRule REQUEST_HEADERS:Content-Length "@rx ." "t:none"
SecRule REQUEST_METHOD "@rx ^GET$" "id:13,phase:1,block,t:none,msg:'x-b',chain"
    SecRule &REQUEST_HEADERS:X-A "@eq 0" "t:none,chain"
    SecRule REQUEST_HEADERS:X-B "@rx ." "t:none"
SecRule REQUEST_METHOD "@rx ^GET$" "id:14,phase:1,block,t:none,msg:'seen',chain"
    SecRule REQUEST_METHOD "@rx GET" "t:none,setvar:tx.seen=1,chain"
    SecRule REQUEST_HEADERS:X-B "@rx ." "t:none"
`
	Register()
	decisions := func(extra string, headers map[string]string) (map[int]bool, []int) {
		t.Helper()
		fsys := crsFS(rules + extra)
		const directives = "SecRuleEngine DetectionOnly\nInclude @owasp_crs/*.conf\n"
		prefix, rep := SkipRules(fsys, directives)
		if rep.Disabled != "" {
			t.Fatal(rep.Disabled)
		}
		waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(fsys).WithDirectives(prefix + directives))
		if err != nil {
			t.Fatal(err)
		}
		skipped := map[int]bool{}
		skipHook = func(id int, skip bool) { skipped[id] = skip }
		defer func() { skipHook = nil }()
		tx := waf.NewTransaction()
		defer tx.Close()
		tx.ProcessURI("/", "GET", "HTTP/1.1")
		for k, v := range headers {
			tx.AddRequestHeader(k, v)
		}
		tx.ProcessRequestHeaders()
		var matched []int
		for _, mr := range tx.MatchedRules() {
			if id := mr.Rule().ID(); id < 1000 {
				matched = append(matched, id)
			}
		}
		return skipped, matched
	}
	skipped, _ := decisions("", nil)
	for id, want := range map[int]bool{11: true, 12: false, 13: true, 14: false} {
		if skipped[id] != want {
			t.Errorf("rule %d skipped=%v, want %v", id, skipped[id], want)
		}
	}
	// Where the members match, nothing is skipped and the chains match.
	skipped, matched := decisions("", map[string]string{"Content-Length": "5", "X-B": "1"})
	if skipped[11] || skipped[13] || !slices.Contains(matched, 11) || !slices.Contains(matched, 13) || !slices.Contains(matched, 14) {
		t.Errorf("members match: skipped %v, matched %v", skipped, matched)
	}
	// A rule reading the previous rule's MATCHED_VAR would see the heads'
	// matches: chains whose head matches all run.
	skipped, _ = decisions(`SecRule MATCHED_VAR "@rx x" "id:20,phase:1,pass,nolog"`+"\n", nil)
	if skipped[11] || skipped[13] {
		t.Errorf("MATCHED_VAR read, yet skipped %v", skipped)
	}
}

// TestBytePatternCondition: a pattern that spells non-UTF-8 bytes is
// decided with Coraza's byte-oriented engine on the bare argument, as
// Coraza runs it.
func TestBytePatternCondition(t *testing.T) {
	c, ok := conditionOf(coreruleset.FS, secRule{op: "rx", arg: `\xbc[^\xbe>]*[\xbe>]|<[^\xbe]*\xbe`})
	if !ok || c.exact == nil || c.filter != nil || c.pattern != "" {
		t.Fatalf("byte pattern: ok=%v exact=%v filter=%v pattern=%q", ok, c.exact != nil, c.filter, c.pattern)
	}
	for in, want := range map[string]bool{"\xbcx\xbe": true, "\xbcx>": true, "<x\xbe": true, "<x>": false, "abc": false, "\u00bcx": false} {
		if got := c.exact(in); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
	if c, ok := conditionOf(coreruleset.FS, secRule{op: "rx", arg: `\xbc`, negated: true}); !ok || c.exact("\xbc") || !c.exact("a") {
		t.Error("negated byte pattern")
	}
}
