package wafrx

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corazawaf/coraza/v3/collection"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"github.com/corazawaf/coraza/v3/types/variables"
)

// Rule skipping is the request-level pre-filter. The @rx pre-filter makes
// a rule that cannot match cheap to evaluate, but most of a benign
// request's cost is Coraza's machinery around the operator: for every
// rule, collecting its variables, transforming them, building match data.
// At the start of each request phase, a rule of that phase is removed from
// the transaction (the mechanism of ctl:ruleRemoveById) when it provably
// cannot match:
//   - it is a CRS rule (from the embedded rule set, which the equality
//     suite covers), not counted (&VAR), not changed by an update
//     directive nor placed where a skip:N would count it (seclang.go);
//   - every target is request data fixed before the phase starts, read
//     from the transaction as Coraza's GetField reads it (negated targets
//     ignored: a superset);
//   - every value, through a model of the rule's transformations that is
//     exact on printable ASCII (transforms.go), fails the operator: first
//     the necessary conditions (the literals of the @rx pre-filter or of
//     @pm, found by one automaton pass per input; the byte classes), then
//     the operator itself (skipconditions.go), negated or not.
// A rule that does not match has no effect (actions run only on a match),
// so removing it changes nothing but the time spent. The CRS regression
// suite checks it rule by rule (TestDetectionUnchanged).

// skipActionName is the SecLang action that runs the decision; SkipRules
// writes one SecAction per request phase using it.
const skipActionName = "rampart_skip_rules"

// Rule ids of the two SecActions; documented as reserved.
const (
	SkipRuleIDPhase1 = 9990001
	SkipRuleIDPhase2 = 9990002
)

// skippable are the variables whose content is fixed when a request phase
// starts: no rule action changes them.
var skippable = map[string]variables.RuleVariable{}

func init() {
	for _, n := range []string{
		"ARGS", "ARGS_NAMES", "ARGS_GET", "ARGS_GET_NAMES", "ARGS_POST", "ARGS_POST_NAMES",
		"REQUEST_COOKIES", "REQUEST_COOKIES_NAMES", "REQUEST_HEADERS", "REQUEST_HEADERS_NAMES",
		"REQUEST_FILENAME", "REQUEST_BASENAME", "REQUEST_URI", "REQUEST_URI_RAW", "REQUEST_LINE",
		"REQUEST_METHOD", "REQUEST_PROTOCOL", "QUERY_STRING", "REQUEST_BODY", "XML",
		"FILES", "FILES_NAMES", "MULTIPART_PART_HEADERS",
	} {
		v, err := variables.Parse(n)
		if err != nil {
			panic(n + ": " + err.Error())
		}
		skippable[n] = v
	}
}

// SkipReport says what SkipRules planned.
type SkipReport struct {
	Candidates int    // CRS rules planned: decided per request when reached
	Disabled   string // why none may be, when not empty
	// Gates is what ResolveParanoiaGates decided for the same rule set.
	Gates GateReport
	// RuleSet names the rule set for the caller's logs (its settings);
	// SkipRules leaves it empty.
	RuleSet string
}

// SkipRules reads the directives a WAF is about to be built from (Include
// resolved in fsys) and returns the directives to put in front of them
// so that rules that cannot match are skipped per request, or "" when
// nothing can be skipped. The WAF must be built after Register.
func SkipRules(fsys fs.FS, directives string) (string, SkipReport) {
	sl := readSecLang(fsys, directives)
	if sl.disabled != "" {
		return "", SkipReport{Disabled: sl.disabled}
	}
	p := newSkipPlan()
	for _, r := range sl.rules {
		if sl.unsafe[r.id] || !strings.HasPrefix(r.file, "@owasp_crs/") || (r.phase != 1 && r.phase != 2) {
			continue
		}
		if sl.paranoia > 0 && r.paranoia > sl.paranoia {
			continue // never reached: CRS skips past it (and runs it if reached)
		}
		p.add(fsys, r, sl.lastMatchRead)
	}
	n := len(p.rules[0]) + len(p.rules[1])
	if n == 0 {
		return "", SkipReport{Disabled: "no rule can be skipped"}
	}
	p.build()
	k := planKey.Add(1)
	pendingPlans.Store(k, p)
	text := fmt.Sprintf("SecAction \"id:%d,phase:1,pass,nolog,noauditlog,%s:%d/1\"\n", SkipRuleIDPhase1, skipActionName, k) +
		fmt.Sprintf("SecAction \"id:%d,phase:2,pass,nolog,noauditlog,%s:%d/2\"\n", SkipRuleIDPhase2, skipActionName, k)
	return text, SkipReport{Candidates: n}
}

// skipHook, when set (by tests only), sees every decision.
var skipHook func(id int, skipped bool)

// DiscardSkipRules forgets the plan behind a prefix SkipRules returned,
// for when the rule set it was made for did not compile.
func DiscardSkipRules(prefix string) {
	_, rest, ok := strings.Cut(prefix, skipActionName+":")
	var k uint64
	if _, err := fmt.Sscanf(rest, "%d/", &k); ok && err == nil {
		pendingPlans.Delete(k)
	}
}

var (
	planKey      atomic.Uint64
	pendingPlans sync.Map // key -> *skipPlan, read by the actions' Init
)

// skipPlan is the per-WAF result of SkipRules. A rule's inputs are the
// values of its targets through its transformations; CRS gives dozens of
// rules the same targets and transformations, so inputs are computed per
// distinct (target, transformations) pair, and every distinct input
// string is scanned once, by one automaton holding every rule's literals.
type skipPlan struct {
	rules [2][]*skipRule // by phase 1, 2
	n     int            // rules in both phases; index space of skipRule.idx

	targets   []skipTarget
	targetIdx map[skipTarget]int
	chains    []skipChain
	chainIdx  map[string]int
	pairs     [][2]int // (target, chain)
	pairIdx   map[[2]int]int

	lits    []string
	litIdx  map[string]int
	litRule [][]int32 // literal -> rules (idx) requiring one of their literals
	scanner *litScanner
	inputs  *inputCache

	// verifyOnce drops @rx candidates whose pattern Coraza did not
	// compile: the rule text was then read differently from Coraza.
	verifyOnce sync.Once
}

type skipTarget struct {
	v   variables.RuleVariable
	key string // "" for the whole collection
}

type skipChain struct {
	chain transformChain
	multi bool
}

type skipRule struct {
	id    int
	idx   int32
	pairs []int // the rule's inputs
	lits  bool  // requires one of its literals (the automaton's)
	bytes *byteFilter
	// exact, when set, is the operator itself, run on an input that
	// passed the pre-filter: the transformation models are exact, so a
	// rule whose operator matches no input is skipped too (and its
	// Coraza evaluation saved).
	exact   func(string) bool
	pattern string // the @rx argument, to verify; "" for other operators
	negated bool
	// quiet, when hasQuiet: the pre-filter and regexp for inputs
	// without quietBytes.
	quiet    quietResult
	hasQuiet bool
	dropped  bool
	// undecided: nothing tells whether the rule itself can match; a
	// chain may still be decided by one of its members.
	undecided bool
	members   []*skipRule
}

func newSkipPlan() *skipPlan {
	return &skipPlan{targetIdx: map[skipTarget]int{}, chainIdx: map[string]int{}, pairIdx: map[[2]int]int{}, litIdx: map[string]int{}}
}

// add plans r when it is a rule that can be skipped: when it provably
// cannot match, or, for a chain, when one of its members provably cannot
// and nothing the head or the members before it do on a match has an
// effect (pure) that a later rule could see (lastMatchRead: the head's
// match would set MATCHED_VAR).
func (p *skipPlan) add(fsys fs.FS, r secRule, lastMatchRead bool) {
	if r.id == 0 {
		return
	}
	sr := p.decider(fsys, r)
	if r.pure && !lastMatchRead {
		for _, m := range r.members {
			if d := p.decider(fsys, m); !d.undecided {
				sr.members = append(sr.members, d)
			}
			if !m.pure {
				break // the members after it run after its actions did
			}
		}
	}
	if sr.undecided && len(sr.members) == 0 {
		return
	}
	p.rules[r.phase-1] = append(p.rules[r.phase-1], sr)
}

// decider returns what decides whether r (a rule or a chain member) can
// match on a request; undecided when nothing can tell.
func (p *skipPlan) decider(fsys fs.FS, r secRule) *skipRule {
	undecided := &skipRule{id: r.id, undecided: true}
	if r.count || len(r.targets) == 0 {
		return undecided
	}
	chain, ok := newTransformChain(r.transforms)
	if !ok {
		return undecided
	}
	var targets []skipTarget
	for _, t := range r.targets {
		v, ok := skippable[t.name]
		if !ok {
			return undecided
		}
		st := skipTarget{v: v, key: t.key}
		if strings.HasPrefix(st.key, "/") || strings.ContainsAny(st.key, `'"`) || v == variables.XML {
			st.key = "" // regex and quoted keys: the whole collection
		}
		targets = append(targets, st)
	}

	cond, ok := conditionOf(fsys, r)
	if !ok {
		return undecided
	}
	sr := &skipRule{id: r.id, idx: int32(p.n), exact: cond.exact, pattern: cond.pattern, negated: cond.negated, quiet: cond.quiet, hasQuiet: cond.hasQuiet}
	p.n++
	var lits []string
	if f := cond.filter; f != nil {
		lits, sr.lits, sr.bytes = f.lits, f.lits != nil, f.bytes
	}
	for _, lit := range lits {
		li := intern(p.litIdx, &p.lits, lit)
		if li == len(p.litRule) {
			p.litRule = append(p.litRule, nil)
		}
		p.litRule[li] = append(p.litRule[li], sr.idx)
	}
	ck := fmt.Sprintf("%q %v", r.transforms, r.multiMatch)
	ci, ok := p.chainIdx[ck]
	if !ok {
		ci = len(p.chains)
		p.chainIdx[ck] = ci
		p.chains = append(p.chains, skipChain{chain: chain, multi: r.multiMatch})
	}
	for _, t := range targets {
		pi := intern(p.pairIdx, &p.pairs, [2]int{intern(p.targetIdx, &p.targets, t), ci})
		if !slices.Contains(sr.pairs, pi) {
			sr.pairs = append(sr.pairs, pi)
		}
	}
	return sr
}

// intern returns k's index in *list, appending k when it is new.
func intern[K comparable](idx map[K]int, list *[]K, k K) int {
	i, ok := idx[k]
	if !ok {
		i = len(*list)
		idx[k] = i
		*list = append(*list, k)
	}
	return i
}

// build compiles the literal automaton.
func (p *skipPlan) build() {
	p.scanner = newLitScanner(p.lits, p.litRule)
	p.inputs = newInputCache()
}

// phrasesFromFile reads a @pmFromFile data file as Coraza does (trimmed
// lines, no blanks or comments, lowercased); nil when unreadable.
func phrasesFromFile(fsys fs.FS, name string) []string {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		out = append(out, strings.ToLower(l))
	}
	if sc.Err() != nil {
		return nil
	}
	return out
}

// skipAction runs the plan of one phase.
type skipAction struct {
	plan  *skipPlan
	phase int
}

func newSkipAction() plugintypes.Action { return &skipAction{} }

func (a *skipAction) Init(_ plugintypes.RuleMetadata, data string) error {
	var k uint64
	if _, err := fmt.Sscanf(data, "%d/%d", &k, &a.phase); err != nil || a.phase < 1 || a.phase > 2 {
		return fmt.Errorf("%s: bad argument %q", skipActionName, data)
	}
	p, ok := pendingPlans.Load(k)
	if !ok {
		return fmt.Errorf("%s: no plan %d", skipActionName, k)
	}
	if a.phase == 2 { // the second and last user of the plan
		pendingPlans.Delete(k)
	}
	a.plan = p.(*skipPlan)
	return nil
}

func (a *skipAction) Type() plugintypes.ActionType { return plugintypes.ActionTypeNondisruptive }

// ruleRemover is the part of Coraza's transaction that ctl:ruleRemoveById
// uses.
type ruleRemover interface{ RemoveRuleByID(id int) }

func (a *skipAction) Evaluate(_ plugintypes.RuleMetadata, tx plugintypes.TransactionState) {
	rm, ok := tx.(ruleRemover)
	if !ok {
		return
	}
	p := a.plan
	p.verifyOnce.Do(p.verify)
	sc := scratchPool.Get().(*skipScratch)
	sc.reset(p, tx)
	for _, r := range p.rules[a.phase-1] {
		skip := sc.decides(r)
		if skip {
			rm.RemoveRuleByID(r.id)
		}
		if skipHook != nil {
			skipHook(r.id, skip)
		}
	}
	sc.reset(p, nil) // drop references to this request's values
	scratchPool.Put(sc)
}

// verify also gives @rx candidates the regexp Coraza runs for them.
func (p *skipPlan) verify() {
	for _, rs := range p.rules {
		for _, r := range slices.Concat(rs, membersOf(rs)) {
			if r.pattern == "" {
				continue
			}
			re, ok := compiledPatterns.Load(r.pattern)
			if !ok {
				r.dropped = true
				continue
			}
			match := re.(*regexp.Regexp).MatchString
			r.exact = match
			if r.negated {
				r.exact = func(s string) bool { return !match(s) }
			}
		}
	}
}

func membersOf(rs []*skipRule) []*skipRule {
	var out []*skipRule
	for _, r := range rs {
		out = append(out, r.members...)
	}
	return out
}

// skipScratch is one phase's work: target values, and the inputs of each
// pair with what is known about them.
type skipScratch struct {
	p  *skipPlan
	tx plugintypes.TransactionState

	targetDone []bool
	targetVals [][]string

	pairDone   []bool
	pairOK     []bool
	pairInputs [][]*inputFacts
	// pairRules is the union over a pair's inputs of their literal
	// rules: a rule none of whose literals occurs in any input of the
	// pair is ruled out for the whole pair at once.
	words     int
	pairRules []uint64 // pair i at [i*words:(i+1)*words]
	// long holds this request's inputs too long for the shared cache, so
	// that a large body targeted by several rules is examined once.
	long map[string]*inputFacts
}

var scratchPool = sync.Pool{New: func() any { return &skipScratch{} }}

func (sc *skipScratch) reset(p *skipPlan, tx plugintypes.TransactionState) {
	sc.p, sc.tx = p, tx
	sc.words = (p.n + 63) / 64
	sc.targetDone = resize(sc.targetDone, len(p.targets))
	sc.targetVals = resize(sc.targetVals, len(p.targets))
	sc.pairDone = resize(sc.pairDone, len(p.pairs))
	sc.pairOK = resize(sc.pairOK, len(p.pairs))
	sc.pairInputs = resize(sc.pairInputs, len(p.pairs))
	sc.pairRules = resize(sc.pairRules, len(p.pairs)*sc.words)
	clear(sc.targetDone)
	clear(sc.pairDone)
	for i := range sc.targetVals {
		sc.targetVals[i] = sc.targetVals[i][:0]
	}
	for i := range sc.pairInputs {
		clear(sc.pairInputs[i]) // let the facts go
		sc.pairInputs[i] = sc.pairInputs[i][:0]
	}
	clear(sc.long)
}

// facts returns what is known about input s: from the shared cache, or
// for a long input from this request's own memo.
func (sc *skipScratch) facts(s string) *inputFacts {
	if len(s) <= maxCachedInput {
		return sc.p.inputs.facts(sc.p, s)
	}
	if f, ok := sc.long[s]; ok {
		return f
	}
	if sc.long == nil {
		sc.long = map[string]*inputFacts{}
	}
	f := newInputFacts(sc.p, s)
	sc.long[s] = f
	return f
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// decides reports whether rule r, or one of its chain's members, provably
// cannot match now.
func (sc *skipScratch) decides(r *skipRule) bool {
	if !r.undecided && !r.dropped && sc.cannotMatch(r) {
		return true
	}
	for _, m := range r.members {
		if !m.dropped && sc.cannotMatch(m) {
			return true
		}
	}
	return false
}

// cannotMatch reports whether rule r provably cannot match now.
func (sc *skipScratch) cannotMatch(r *skipRule) bool {
	w, bit := int(r.idx>>6), uint64(1)<<(r.idx&63)
	for _, pi := range r.pairs {
		if !sc.pairDone[pi] {
			sc.pairDone[pi] = true
			sc.pairOK[pi] = sc.input(pi)
		}
		if !sc.pairOK[pi] {
			return false
		}
		if r.lits && sc.pairRules[pi*sc.words+w]&bit == 0 {
			continue
		}
		for _, f := range sc.pairInputs[pi] {
			if r.lits && f.lits[w]&bit == 0 {
				continue
			}
			if f.mayMatch(r) {
				return false
			}
		}
	}
	return true
}

// input computes a pair's inputs; false when the transformation model
// does not follow some value.
func (sc *skipScratch) input(pi int) bool {
	ti, ci := sc.p.pairs[pi][0], sc.p.pairs[pi][1]
	if !sc.targetDone[ti] {
		sc.targetDone[ti] = true
		sc.targetVals[ti] = sc.values(sc.p.targets[ti], sc.targetVals[ti])
	}
	rules := sc.pairRules[pi*sc.words : (pi+1)*sc.words]
	clear(rules)
	for _, v := range sc.targetVals[ti] {
		raw := sc.facts(v)
		co := raw.chain(sc.p, ci)
		if !co.followed {
			return false
		}
		for _, s := range co.outs {
			f := raw
			if s != raw.s {
				f = sc.facts(s)
			}
			sc.pairInputs[pi] = append(sc.pairInputs[pi], f)
			for k, x := range f.lits {
				rules[k] |= x
			}
		}
	}
	return true
}

// values reads a target as Coraza's GetField does, without exceptions.
func (sc *skipScratch) values(t skipTarget, out []string) []string {
	col := sc.tx.Collection(t.v)
	if col == nil {
		return out
	}
	// Get where it returns what FindAll/FindString would, without the
	// MatchData they build (not for the *_NAMES collections, whose Get
	// returns values, not names).
	if s, ok := col.(collection.Single); ok {
		return append(out, s.Get())
	}
	if m, ok := col.(collection.Map); ok && t.key != "" {
		return append(out, m.Get(t.key)...)
	}
	if k, ok := col.(collection.Keyed); ok && t.key != "" {
		for _, md := range k.FindString(t.key) {
			out = append(out, md.Value())
		}
		return out
	}
	for _, md := range col.FindAll() {
		out = append(out, md.Value())
	}
	return out
}
