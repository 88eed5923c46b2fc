package wafrx

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Paranoia gates. Every CRS rule file starts its paranoia level N+1 rules
// with a pair of rules such as
//
//	SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 2" "id:942013,phase:1,pass,nolog,...,skipAfter:END-REQUEST-942-..."
//
// (one per phase), and the blocking evaluation adds each level's score
// behind "@ge N" rules. When the configuration sets the paranoia levels
// once, to constants, every such rule's outcome is the same on every
// request: the gate at the configured level matches and jumps, the others
// never match. Coraza still evaluates all of them on every request, and a
// matching rule is one of its costliest steps (match records, macro
// expansion, a debug logger): at PL1, 68 gate evaluations and 34 matches
// per request, for nothing that can change.
//
// ResolveParanoiaGates therefore gives Coraza the CRS files with those
// rules decided beforehand: a gate that cannot match is left out; a gate
// that always matches and only jumps is left out together with the rules
// of its phase it jumps over. Every other rule, the SecMarkers and the
// line numbers stay as they were. The same goes for CRS's defaults
// (`SecRule &TX:name "@eq 0" "...setvar:tx.name=..."`) for what the
// configuration sets, which never match, and for gates on other values
// the configuration fixes (with CRSDefaults set ahead, the sampling gate:
// tx.sampling_percentage is 100).
//
// A rule is only decided when nothing can change its outcome: the values
// it reads are set by phase 1 SecActions before CRS to plain values, that
// no removal can take out, and nothing else in the configuration, and no
// CRS rule that may run, writes them; no rule removal or update, in the
// configuration or at run time (the removed parameter: Rampart's
// exclusions), names the gate,
// unless it also removes everything the gate jumps over (a category
// exclusion, CRS's own ctl:ruleRemoveByTag=OWASP_CRS); and no update
// directive names a rule left out (it would no longer compile). What
// changes for the operator is only that these rules (nolog, no effect but
// the jump or a default already set) are absent from Coraza's list of
// matched rules.

// GateReport says what ResolveParanoiaGates decided.
type GateReport struct {
	Disabled string // why no rule was decided; "" when some were
	Decided  int    // rules decided: gates, and defaults the configuration set
	Dropped  int    // rules left out, gates included
	// DroppedMatching are the ids of left-out rules that would have
	// matched (the gates that jump), in file order.
	DroppedMatching []int
	// Markers is the number of SecMarkers left out because no rule that
	// remains jumps to them; MarkersKept says why none was, if so.
	Markers     int
	MarkersKept string
	// Unread are the TX variables CRS no longer writes because no rule
	// that runs, and not the caller, reads them; UnreadRules the ids of
	// the rules left out because writing them was all they did.
	Unread      []string
	UnreadRules []int
	// UnreadSettings are the TX variables the configuration sets that no
	// rule left reads, and that no rule was decided on: the configuration
	// may stop setting them (CRS's rules that would set them then only
	// write what nobody reads, and go too).
	UnreadSettings []string
}

// Phases is a set of rule phases: bit n stands for phase n.
type Phases uint8

const (
	// RequestPhases are the phases of a transaction that inspects the
	// request only and never runs the logging phase: Rampart's, when
	// response inspection is off.
	RequestPhases Phases = 1<<1 | 1<<2
	// ResponsePhases are the phases that inspect the response.
	ResponsePhases Phases = 1<<3 | 1<<4
	// AllPhases are the five phases of ModSecurity and Coraza.
	AllPhases Phases = 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5
)

// Has reports whether phase n is in the set.
func (p Phases) Has(n int) bool { return n >= 0 && n < 8 && p&(1<<n) != 0 }

// IDRange is an inclusive range of rule ids; a single id is {id, id}.
type IDRange [2]int

// A directive is one logical line of a rule file and the physical lines
// (0-based, inclusive) it spans.
type directive struct {
	text        string
	first, last int
}

// directives splits text into logical lines as Coraza reads them:
// continuation lines joined, comments and blank lines dropped.
func directives(text string) []directive {
	var out []directive
	var cur strings.Builder
	start := -1
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		line = strings.TrimRight(line, "\r")
		if start < 0 {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			start = i
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			continue
		}
		cur.WriteString(line)
		out = append(out, directive{strings.TrimSpace(cur.String()), start, i})
		cur.Reset()
		start = -1
	}
	if start >= 0 {
		out = append(out, directive{strings.TrimSpace(cur.String()), start, len(lines) - 1})
	}
	return out
}

// ruleInfo is a rule of a CRS file as gate resolution sees it: a chain
// counts as its head, its lines extended over the members.
type ruleInfo struct {
	secRule
	marker      string // a SecMarker's name; then secRule is empty
	first, last int
	gate        *gateCond // nil unless the rule is a gate
	// unsetCheck is the TX variable of a rule `&TX:name "@eq 0"`: CRS's
	// way of setting a default the configuration did not set.
	unsetCheck string
	// actions are a SecAction's actions, unquoted; reads what the rule
	// and its chain's members read of TX (txReadsOf); chained: it has
	// members.
	actions string
	reads   []string
	chained bool
}

// gateCond is a gate's condition: a TX variable compared to n.
type gateCond struct {
	name string // lower case, e.g. detection_paranoia_level
	op   string
	n    int
}

// plainName is a TX variable named without a regexp or a macro.
var plainName = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// parseRuleInfo reads a SecRule or SecAction and reports whether it
// starts or continues a chain.
func parseRuleInfo(kind, rest string, d directive) (ruleInfo, bool, error) {
	r := ruleInfo{first: d.first, last: d.last, reads: txReadsOf(d.text)}
	chain := false
	if kind == "secaction" {
		r.secRule = parseSecAction(rest)
		r.actions = unquote(strings.TrimSpace(rest))
	} else {
		var err error
		if r.secRule, chain, err = parseSecRule(rest); err != nil {
			return r, false, err
		}
	}
	if r.phase == 0 {
		r.phase = 2 // Coraza's default
	}
	// A gate compares one TX variable, untransformed, to a number; a
	// default checks that one is not set.
	if len(r.targets) == 1 && r.targets[0].name == "TX" && plainName.MatchString(r.targets[0].key) && !r.negated && !chain && len(r.transforms) == 0 {
		name := strings.ToLower(r.targets[0].key)
		n, err := strconv.Atoi(r.arg)
		switch {
		case err != nil:
		case r.count && r.op == "eq" && n == 0:
			r.unsetCheck = name
		case !r.count && slices.Contains([]string{"lt", "le", "gt", "ge", "eq"}, r.op):
			r.gate = &gateCond{name: name, op: r.op, n: n}
		}
	}
	return r, chain, nil
}

func (g *gateCond) holds(level int) bool {
	switch g.op {
	case "lt":
		return level < g.n
	case "le":
		return level <= g.n
	case "gt":
		return level > g.n
	case "ge":
		return level >= g.n
	}
	return level == g.n
}

// removals are the rule removals and updates found in the directives, and
// the ids Rampart removes at run time.
type removals struct {
	ids     []IDRange // removed by id, or targets removed by id (run time or config)
	tags    []string  // removed by tag (exact, as Coraza compares)
	updated []IDRange // updated at config time: must still exist
	byMsg   bool      // something removes or updates by message or tag pattern
}

var (
	ctlRemove = regexp.MustCompile(`(?i)ctl:ruleRemove(ById|ByTag|ByMsg|TargetById|TargetByTag|TargetByMsg)=([^,"';]*)`)
	idOrRange = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)
)

func parseIDs(list string) ([]IDRange, bool) {
	var out []IDRange
	for _, f := range strings.Fields(strings.ReplaceAll(unquote(strings.TrimSpace(list)), ",", " ")) {
		m := idOrRange.FindStringSubmatch(strings.Trim(f, `"'`))
		if m == nil {
			return nil, false
		}
		lo, _ := strconv.Atoi(m[1])
		hi := lo
		if m[2] != "" {
			hi, _ = strconv.Atoi(m[2])
		}
		out = append(out, IDRange{lo, hi})
	}
	return out, true
}

// note records what directive d removes or updates; false when it does so
// in a way this code does not follow.
func (rm *removals) note(d string) bool {
	name, rest, _ := strings.Cut(d, " ")
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(name) {
	case "secruleremovebyid":
		ids, ok := parseIDs(rest)
		rm.ids = append(rm.ids, ids...)
		return ok
	case "secruleremovebytag":
		rm.tags = append(rm.tags, unquote(rest))
	case "secruleremovebymsg", "secruleupdatetargetbytag", "secruleupdatetargetbymsg", "secruleupdateactionbytag", "secruleupdateactionbymsg":
		rm.byMsg = true
	case "secruleupdatetargetbyid", "secruleupdateactionbyid":
		first, _, _ := strings.Cut(rest, " ")
		ids, ok := parseIDs(first)
		rm.updated = append(rm.updated, ids...)
		rm.ids = append(rm.ids, ids...) // and the rule may no longer match as before
		if !ok {
			return false
		}
	}
	for _, m := range ctlRemove.FindAllStringSubmatch(d, -1) {
		v := m[2]
		switch strings.ToLower(m[1]) {
		case "byid":
			ids, ok := parseIDs(v)
			if !ok {
				return false
			}
			rm.ids = append(rm.ids, ids...)
		case "targetbyid":
			ids, ok := parseIDs(strings.SplitN(v, ";", 2)[0])
			if !ok {
				return false
			}
			rm.ids = append(rm.ids, ids...)
		case "bytag", "targetbytag":
			rm.tags = append(rm.tags, strings.SplitN(v, ";", 2)[0])
		default:
			rm.byMsg = true
		}
	}
	return true
}

func inRanges(rs []IDRange, id int) bool {
	for _, r := range rs {
		if r[0] <= id && id <= r[1] {
			return true
		}
	}
	return false
}

// ResolveParanoiaGates returns fsys with the CRS rule files' paranoia
// gates decided (see above), or fsys itself and the reason when it cannot
// decide any. text is what Coraza is given besides the CRS files
// (Rampart's settings and custom rules, with the Include of CRS); removed
// are the rule ids Rampart removes at run time (exclusions); runs are the
// phases the transactions run (rules of other phases never jump).
func ResolveParanoiaGates(fsys fs.FS, text string, removed []IDRange, runs Phases, reads ...string) (fs.FS, GateReport) {
	g := &gateResolver{fsys: fsys, runs: runs, reads: reads, rm: removals{ids: slices.Clone(removed)}, consts: map[string]string{},
		setters: map[string][]secRule{}, varies: map[string]bool{}, crsWrites: map[string][]ruleRef{}, crsUnsets: map[string]bool{},
		skipTargets: map[string]bool{}, decidedOn: map[string]bool{}}
	if why := g.scanConfig(text, 0); why != "" {
		return fsys, GateReport{Disabled: why}
	}
	crs, why := g.readCRS()
	if why != "" {
		return fsys, GateReport{Disabled: why}
	}
	if g.rm.byMsg {
		return fsys, GateReport{Disabled: "rules are removed or updated by message or tag pattern"}
	}

	var rep GateReport
	dropped := map[int]bool{} // rule ids
	decide := func(f *crsFile, rules ...int) {
		for _, j := range rules {
			f.drop[j] = true
			dropped[f.rules[j].id] = true
		}
		rep.Decided++
	}
	for _, f := range crs {
		f.drop = map[int]bool{}
	}
	// First the defaults the configuration already set: they never match,
	// so their own setvars never run.
	for _, f := range crs {
		for i, r := range f.rules {
			if r.unsetCheck != "" && g.constant(r.unsetCheck) && g.mayDecide(f, i, nil) {
				decide(f, i)
				if !r.setOnly && g.runs.Has(r.phase) { // say 901001, which refuses requests without it
					g.decidedOn[r.unsetCheck] = true
				}
			}
		}
	}
	// Then the gates on values nothing else can change.
	for _, f := range crs {
		for i, gate := range f.rules {
			if gate.gate == nil || gate.id <= 0 || f.drop[i] || !g.stable(gate.gate.name) {
				continue
			}
			value, err := strconv.Atoi(g.consts[gate.gate.name])
			if err != nil {
				continue
			}
			matches := gate.gate.holds(value)
			var region []int // what it jumps over: its phase's rules up to its marker
			if matches {
				if !gate.flowOnly {
					continue // it does something: it runs
				}
				var ok bool
				if region, ok = f.jumpedOver(i); !ok {
					continue // the marker is elsewhere: leave it to Coraza
				}
			}
			if !g.mayDecide(f, i, region) {
				continue
			}
			decide(f, append(region, i)...)
			if g.runs.Has(gate.phase) {
				g.decidedOn[gate.gate.name] = true
			}
			if matches {
				rep.DroppedMatching = append(rep.DroppedMatching, gate.id)
			}
		}
	}
	if rep.Decided == 0 {
		return fsys, GateReport{Disabled: "no rule can be decided: nothing it reads is fixed by the configuration"}
	}
	for _, f := range crs {
		rep.Dropped += len(f.drop)
	}
	rep.Unread, rep.UnreadRules, rep.UnreadSettings = g.leaveOutUnread(crs)
	rep.DroppedMatching = append(rep.DroppedMatching, rep.UnreadRules...)
	rep.Dropped += len(rep.UnreadRules)
	for _, id := range rep.UnreadRules {
		dropped[id] = true // CRS's own updates naming them go with them
	}
	rep.Markers, rep.MarkersKept = g.leaveOutMarkers(crs)
	out := overlayFS{base: fsys, files: map[string][]byte{}}
	for _, f := range crs {
		if data, changed := f.leaveOut(dropped); changed {
			out.files[f.name] = data
		}
	}
	return out, rep
}

// leaveOutMarkers marks for leaving out the SecMarkers no rule that stays
// jumps to in a phase the transactions run, and returns how many, or why
// none.
//
// A marker is a rule without an id that Coraza evaluates in every phase
// the rules before it do not jump over: it always "matches", which costs
// a match record each time (at PL1 with the gates decided, most of the
// 30 CRS markers, in both request phases, and the response files' in the
// request phases too). Once the gates that jumped to a marker are left
// out, or when the rules that jump to it belong to phases that never run,
// it has no effect but two: skip:N counts it, and its match sets
// MATCHED_VAR and MATCHED_VAR_NAME, which a later rule reads when its own
// targets or operator name them outside a chain (a chain member reads its
// head's match). When any rule does either, the markers stay.
func (g *gateResolver) leaveOutMarkers(crs []*crsFile) (int, string) {
	if g.matchSeen != "" {
		return 0, g.matchSeen
	}
	if _, why := g.skipReach(crs); why != "" {
		return 0, why
	}
	targets := maps.Clone(g.skipTargets) // the configuration's and chain members'
	afterSkip := false
	for _, f := range crs {
		for i, r := range f.rules {
			switch {
			case r.marker != "" && afterSkip:
				// Rule skipping (seclang.go) leaves the rules after a
				// skip:N in place up to the next marker: it stays.
				targets[r.marker], afterSkip = true, false
			case r.marker == "" && !f.drop[i] && g.runs.Has(r.phase):
				if r.skipAfter != "" {
					targets[r.skipAfter] = true
				}
				afterSkip = afterSkip || r.skips
			}
		}
	}
	n := 0
	for _, f := range crs {
		for i, r := range f.rules {
			if r.marker != "" && !targets[r.marker] {
				f.drop[i] = true
				n++
			}
		}
	}
	return n, ""
}

// noteMatchUse records what in rule r, read outside or at the head of a
// chain (head) or as a chain member, needs a marker or sees other rules'
// matches: a skipAfter target, a skip:N that counts rules (one in CRS is
// followed up by skipReach; anywhere else it keeps every rule that
// matches), a read of the previous rule's MATCHED_VAR.
func (g *gateResolver) noteMatchUse(r secRule, head, inCRS bool) {
	if r.skipAfter != "" && !head {
		g.skipTargets[r.skipAfter] = true // Coraza ignores it; kept to be safe
	}
	switch {
	case g.matchSeen != "":
	case r.skips && (!inCRS || !head || r.skip <= 0):
		g.matchSeen = fmt.Sprintf("rule %d has skip:N, which counts markers", r.id)
	case head && readsLastMatch(r):
		g.matchSeen = fmt.Sprintf("rule %d reads the previous rule's MATCHED_VAR", r.id)
	}
}

// skipReach returns the rules a CRS skip:N may pass over, which must stay
// for it to count as before, and why markers must stay, if a marker is
// among them. The walk goes on from the skipping rule through the rules
// of its phase that stay; a rule some removal may take out without the
// skipping rule does not count (the skip then passes over the next one
// too).
func (g *gateResolver) skipReach(crs []*crsFile) (map[ruleRef]bool, string) {
	reach := map[ruleRef]bool{}
	why := ""
	for fi, f := range crs {
		for i, r := range f.rules {
			if !r.skips || f.drop[i] || !g.runs.Has(r.phase) {
				continue
			}
			left := r.skip
			for fj, j := fi, i+1; left > 0 && fj < len(crs); fj, j = fj+1, 0 {
				for ; left > 0 && j < len(crs[fj].rules); j++ {
					e := crs[fj].rules[j]
					switch {
					case e.marker != "":
						if why == "" {
							why = fmt.Sprintf("rule %d's skip:%d may count marker %s", r.id, r.skip, e.marker)
						}
						reach[ruleRef{crs[fj], j}] = true
					case crs[fj].drop[j] || e.phase != r.phase:
					case g.removableWithout(e.secRule, r.secRule):
						reach[ruleRef{crs[fj], j}] = true
					default:
						reach[ruleRef{crs[fj], j}] = true
						left--
					}
				}
			}
		}
	}
	return reach, why
}

// removableWithout reports whether a removal by id or tag may take out
// rule r and not rule other.
func (g *gateResolver) removableWithout(r, other secRule) bool {
	for _, rg := range g.rm.ids {
		if rg[0] <= r.id && r.id <= rg[1] && (other.id < rg[0] || other.id > rg[1]) {
			return true
		}
	}
	for _, t := range g.rm.tags {
		if slices.Contains(r.tags, t) && !slices.Contains(other.tags, t) {
			return true
		}
	}
	return false
}

// readsLastMatch reports whether a rule's targets or operator read the
// MATCHED_VAR* variables.
func readsLastMatch(r secRule) bool {
	for _, t := range r.targets {
		if strings.HasPrefix(t.name, "MATCHED_VAR") {
			return true
		}
	}
	return strings.Contains(strings.ToLower(r.arg), "%{matched_var")
}

// gateResolver holds what ResolveParanoiaGates learns from the
// configuration.
type gateResolver struct {
	fsys   fs.FS
	runs   Phases
	rm     removals
	files  []string // the CRS rule files, in the order Coraza includes them
	jumped bool     // a rule that can pass over the ones after it was read
	// consts are the TX variables the configuration sets to a plain
	// value in phase 1 SecActions before CRS that nothing jumps over, and
	// setters those SecActions; varies are those it writes any other way
	// ("*": a name made by a macro).
	consts  map[string]string
	setters map[string][]secRule
	varies  map[string]bool
	// crsWrites are, per TX variable, the CRS rules (chains count as
	// their head) whose setvars write it; crsPrefixes the beginnings of
	// names CRS makes with macros; crsUnsets what CRS unsets.
	crsWrites   map[string][]ruleRef
	crsPrefixes []string
	crsUnsets   map[string]bool
	// skipTargets are the markers the configuration's rules and CRS's
	// chain members name in skipAfter; matchSeen, when set, says why no
	// rule that matches (a marker, a rule that only writes) may be left
	// out.
	skipTargets map[string]bool
	matchSeen   string
	// decidedOn are the TX variables a decision relied on being set.
	decidedOn map[string]bool
	// otherReads are what the configuration's directives and CRS's
	// directives other than rules read of TX; reads what the caller does.
	otherReads []string
	reads      []string
}

// ruleRef is a rule of a crsFile.
type ruleRef struct {
	f *crsFile
	i int
}

// txWrite reads a setvar's value: the lower-case TX variable it names,
// whether that name is made by a macro, whether it unsets, and whether
// it sets a plain value (no macro, no += or -=) and which.
func txWrite(setvar string) (name string, dynamic, unset, plain bool, value string) {
	target, value, hasValue := strings.Cut(setvar, "=")
	unset = strings.HasPrefix(target, "!")
	coll, name, _ := strings.Cut(strings.TrimPrefix(target, "!"), ".")
	if !strings.EqualFold(coll, "tx") {
		return "", false, false, false, ""
	}
	name = strings.ToLower(name)
	if i := strings.Index(name, "%{"); i >= 0 {
		return name[:i], true, unset, false, ""
	}
	plain = hasValue && !unset && !strings.HasPrefix(value, "+") && !strings.HasPrefix(value, "-") && !strings.Contains(value, "%{")
	return name, false, unset, plain, value
}

// scanConfig reads the configuration around CRS, following Includes of
// the embedded setup files; it returns why no gate can be decided, or "".
func (g *gateResolver) scanConfig(text string, depth int) string {
	if depth > 8 {
		return "includes nested too deeply"
	}
	inChain := false
	for _, d := range directives(text) {
		name, rest, _ := strings.Cut(d.text, " ")
		kind := strings.ToLower(name)
		if kind == "include" {
			if why := g.include(strings.Trim(strings.TrimSpace(rest), `"`), depth); why != "" {
				return why
			}
			continue
		}
		if !g.rm.note(d.text) {
			return "a rule removal or update it cannot follow: " + short(d.text)
		}
		if kind != "secrule" && kind != "secaction" {
			g.otherReads = append(g.otherReads, txReadsOf(d.text)...)
			continue
		}
		r, chain, err := parseRuleInfo(kind, rest, d)
		if err != nil {
			return err.Error()
		}
		g.otherReads = append(g.otherReads, r.reads...) // every rule of the configuration may run
		g.noteMatchUse(r.secRule, !inChain, false)
		if r.skipAfter != "" && (g.runs.Has(r.phase) || inChain) {
			g.skipTargets[r.skipAfter] = true
		}
		inChain = chain
		constant := kind == "secaction" && r.phase == 1 && !g.jumped && len(g.files) == 0
		for _, sv := range r.setvars {
			name, dynamic, _, plain, value := txWrite(sv)
			switch {
			case dynamic:
				g.varies["*"] = true
			case name == "":
			case constant && plain && !g.varies[name]:
				g.consts[name] = value
				g.setters[name] = append(g.setters[name], r.secRule)
			default:
				g.varies[name] = true
			}
		}
		g.jumped = g.jumped || r.skipAfter != "" || r.skips
	}
	return ""
}

// include notes CRS rule files and reads the other embedded files.
func (g *gateResolver) include(pat string, depth int) string {
	if !strings.HasPrefix(pat, "@") {
		return "an include outside the embedded rule set: " + pat
	}
	m, err := fs.Glob(g.fsys, pat)
	if err != nil || len(m) == 0 {
		return "include " + pat + ": no file"
	}
	slices.Sort(m)
	if strings.HasPrefix(pat, "@owasp_crs/") {
		g.files = append(g.files, m...)
		return ""
	}
	for _, f := range m {
		b, err := fs.ReadFile(g.fsys, f)
		if err != nil {
			return err.Error()
		}
		if why := g.scanConfig(string(b), depth+1); why != "" {
			return why
		}
	}
	return ""
}

// A crsFile is one CRS rule file read for gate resolution.
type crsFile struct {
	name    string
	text    []byte
	rules   []ruleInfo
	updates []crsUpdate  // CRS's own SecRuleUpdate*ById directives
	drop    map[int]bool // indexes in rules left out
	// rewrite are SecActions written anew (index in rules → directive).
	rewrite map[int]string
}

type crsUpdate struct {
	ids         []IDRange
	first, last int
}

func (g *gateResolver) readCRS() ([]*crsFile, string) {
	var crs []*crsFile
	for _, name := range g.files {
		b, err := fs.ReadFile(g.fsys, name)
		if err != nil {
			return nil, err.Error()
		}
		f := &crsFile{name: name, text: b}
		inChain := false
		for _, d := range directives(string(b)) {
			// CRS's own updates may name rules that are left out: they
			// are left out with them (leaveOut), so they do not count.
			n := len(g.rm.updated)
			if !g.rm.note(d.text) {
				return nil, name + ": a rule removal it cannot follow"
			}
			if len(g.rm.updated) > n {
				f.updates = append(f.updates, crsUpdate{ids: slices.Clone(g.rm.updated[n:]), first: d.first, last: d.last})
				g.rm.updated = g.rm.updated[:n]
			}
			kindName, rest, _ := strings.Cut(d.text, " ")
			switch kind := strings.ToLower(kindName); kind {
			case "secrule", "secaction":
				r, chain, err := parseRuleInfo(kind, rest, d)
				if err != nil {
					return nil, name + ": " + err.Error()
				}
				g.noteMatchUse(r.secRule, !inChain, true)
				if inChain { // a member: part of its chain's head
					head := &f.rules[len(f.rules)-1]
					head.last = d.last
					head.chained = true
					head.reads = append(head.reads, r.reads...)
				} else {
					f.rules = append(f.rules, r)
				}
				inChain = chain
				for _, sv := range r.setvars {
					switch v, dynamic, unset, _, _ := txWrite(sv); {
					case dynamic:
						g.crsPrefixes = append(g.crsPrefixes, v)
					case unset:
						g.crsUnsets[v] = true
					case v != "":
						g.crsWrites[v] = append(g.crsWrites[v], ruleRef{f, len(f.rules) - 1})
					}
				}
			case "secmarker":
				f.rules = append(f.rules, ruleInfo{marker: strings.Trim(strings.TrimSpace(rest), `"'`), first: d.first, last: d.last})
			default:
				g.otherReads = append(g.otherReads, txReadsOf(d.text)...)
			}
		}
		crs = append(crs, f)
	}
	return crs, ""
}

// jumpedOver returns the indexes of the rules gate i's skipAfter passes
// over (those of its phase before its marker); false when the marker is
// not in the file.
func (f *crsFile) jumpedOver(i int) ([]int, bool) {
	gate := f.rules[i]
	if gate.skipAfter == "" {
		return nil, true
	}
	var region []int
	for j := i + 1; j < len(f.rules); j++ {
		r := f.rules[j]
		if r.marker == gate.skipAfter {
			return region, true
		}
		if r.marker == "" && r.phase == gate.phase {
			region = append(region, j)
		}
	}
	return nil, false
}

// mayDecide reports whether nothing can change what gate i does: every
// removal that names it also removes everything it jumps over, and no
// update directive of the configuration names it or one of those.
func (g *gateResolver) mayDecide(f *crsFile, i int, region []int) bool {
	gate := f.rules[i]
	if inRanges(g.rm.updated, gate.id) {
		return false
	}
	for _, j := range region {
		if inRanges(g.rm.updated, f.rules[j].id) {
			return false
		}
	}
	for _, rg := range g.rm.ids {
		if rg[0] > gate.id || gate.id > rg[1] {
			continue
		}
		for _, j := range region {
			if id := f.rules[j].id; id < rg[0] || id > rg[1] {
				return false
			}
		}
	}
	for _, t := range g.rm.tags {
		if !slices.Contains(gate.tags, t) {
			continue
		}
		for _, j := range region {
			if !slices.Contains(f.rules[j].tags, t) {
				return false
			}
		}
	}
	return true
}

// constant reports whether the configuration set TX variable name to a
// plain value that neither it nor CRS can unset, by SecActions no
// removal can take out.
func (g *gateResolver) constant(name string) bool {
	if _, ok := g.consts[name]; !ok || g.varies[name] || g.varies["*"] || g.crsUnsets[name] {
		return false
	}
	for _, p := range g.crsPrefixes {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	for _, r := range g.setters[name] {
		if inRanges(g.rm.ids, r.id) || slices.ContainsFunc(g.rm.tags, func(t string) bool { return slices.Contains(r.tags, t) }) {
			return false
		}
	}
	return true
}

// stable reports whether TX variable name keeps the configuration's value
// for the whole request: constant, and every CRS rule that writes it is a
// default left out because the configuration set it.
func (g *gateResolver) stable(name string) bool {
	if !g.constant(name) {
		return false
	}
	for _, w := range g.crsWrites[name] {
		if !w.f.drop[w.i] || w.f.rules[w.i].unsetCheck == "" {
			return false
		}
	}
	return true
}

// leaveOut returns the file without the rules in f.drop and without the
// updates that only name rules left out (dropped, by id), lines blanked
// so that line numbers stay; false when nothing changes.
func (f *crsFile) leaveOut(dropped map[int]bool) ([]byte, bool) {
	var blank [][2]int
	for i := range f.drop {
		blank = append(blank, [2]int{f.rules[i].first, f.rules[i].last})
	}
	for i := range f.rewrite {
		if !f.drop[i] && f.rules[i].last > f.rules[i].first {
			blank = append(blank, [2]int{f.rules[i].first + 1, f.rules[i].last})
		}
	}
	for _, u := range f.updates {
		all := true
		for _, rg := range u.ids {
			// A range does not fail to compile when its rules are gone;
			// a single id does.
			all = all && rg[0] == rg[1] && dropped[rg[0]]
		}
		if all {
			blank = append(blank, [2]int{u.first, u.last})
		}
	}
	if len(blank) == 0 && len(f.rewrite) == 0 {
		return nil, false
	}
	lines := bytes.Split(f.text, []byte("\n"))
	for _, b := range blank {
		for l := b[0]; l <= b[1]; l++ {
			lines[l] = nil
		}
	}
	for i, d := range f.rewrite {
		if !f.drop[i] {
			lines[f.rules[i].first] = []byte(d)
		}
	}
	return bytes.Join(lines, []byte("\n")), true
}

func short(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// overlayFS is base with some files' contents replaced.
type overlayFS struct {
	base  fs.FS
	files map[string][]byte
}

func (o overlayFS) Open(name string) (fs.File, error) {
	data, ok := o.files[name]
	if !ok {
		return o.base.Open(name)
	}
	base, err := o.base.Open(name)
	if err != nil {
		return nil, err
	}
	info, err := base.Stat()
	base.Close()
	if err != nil {
		return nil, err
	}
	return &memFile{Reader: bytes.NewReader(data), info: memInfo{FileInfo: info, size: int64(len(data))}}, nil
}

type memFile struct {
	*bytes.Reader
	info memInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

type memInfo struct {
	fs.FileInfo
	size int64
}

func (i memInfo) Size() int64 { return i.size }
