package wafrx

import (
	"bytes"
	"io/fs"
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
// line numbers stay as they were.
//
// A gate is only decided when nothing can change its outcome: the levels
// are set by phase 1 SecActions to plain numbers and nothing else in the
// configuration mentions them; no rule removal or update, in the
// configuration or at run time (the removed parameter: Rampart's
// exclusions), names the gate, unless it also removes everything the gate
// jumps over (a category exclusion, CRS's own ctl:ruleRemoveByTag=OWASP_CRS);
// and no update directive names a rule left out (it would no longer
// compile). What changes for the operator is only that these flow-control
// rules (nolog, no effect but the jump) are absent from Coraza's list of
// matched rules.

// GateReport says what ResolveParanoiaGates decided.
type GateReport struct {
	Disabled string // why no gate was decided; "" when some were
	Gates    int    // gate rules decided
	Dropped  int    // rules left out, gates included
	// DroppedMatching are the ids of left-out rules that would have
	// matched (the gates that jump), in file order.
	DroppedMatching []int
}

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

// ruleInfo is what gate resolution needs of one rule (a chain counts as
// its head, its lines extended over the members).
type ruleInfo struct {
	id, phase   int
	tags        []string
	first, last int
	gate        *gateCond // nil unless the rule is a paranoia gate
	skipAfter   string
	skips       bool // has skip:N
	flowOnly    bool // no action but flow control and metadata
}

type gateCond struct {
	blocking bool // TX:BLOCKING_PARANOIA_LEVEL, else DETECTION
	op       string
	n        int
}

var gateTarget = regexp.MustCompile(`(?i)^TX:(BLOCKING|DETECTION)_PARANOIA_LEVEL$`)

// flowActions are the actions a rule may have and still do nothing but
// jump when it matches.
var flowActions = map[string]bool{"id": true, "phase": true, "pass": true, "nolog": true, "noauditlog": true,
	"tag": true, "ver": true, "skipafter": true, "t": true, "rev": true, "maturity": true, "accuracy": true}

func parseRuleInfo(kind, rest string, d directive) (ruleInfo, bool) {
	r := ruleInfo{first: d.first, last: d.last, phase: 2, flowOnly: true}
	var actions string
	chain := false
	if kind == "secaction" {
		actions = unquote(strings.TrimSpace(rest))
	} else {
		vars, after, _ := strings.Cut(strings.TrimSpace(rest), " ")
		op, tail, err := cutQuoted(strings.TrimLeft(after, " "))
		if err != nil {
			return r, false
		}
		actions = unquote(strings.TrimSpace(tail))
		if m := gateTarget.FindStringSubmatch(vars); m != nil && strings.HasPrefix(op, "@") {
			name, arg, _ := strings.Cut(op[1:], " ")
			if n, err := strconv.Atoi(strings.TrimSpace(arg)); err == nil {
				switch name {
				case "lt", "le", "gt", "ge", "eq":
					r.gate = &gateCond{blocking: strings.EqualFold(m[1], "BLOCKING"), op: name, n: n}
				}
			}
		}
	}
	transformed := false
	for _, a := range splitActions(actions) {
		k, v, _ := strings.Cut(a, ":")
		k, v = strings.ToLower(strings.TrimSpace(k)), unquoteSingle(strings.TrimSpace(v))
		switch k {
		case "id":
			r.id, _ = strconv.Atoi(v)
		case "phase":
			r.phase = phaseNumber(v)
		case "tag":
			r.tags = append(r.tags, v)
		case "skipafter":
			r.skipAfter = v
		case "skip":
			r.skips = true
		case "chain":
			chain = true
		case "t":
			transformed = !strings.EqualFold(v, "none")
		}
		if !flowActions[k] {
			r.flowOnly = false
		}
	}
	if transformed || chain {
		r.gate = nil // not one of CRS's gates: left to Coraza
	}
	return r, chain
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
// decide any. directives is what Coraza is given besides the CRS files
// (Rampart's settings and custom rules, with the Include of CRS); removed
// are the rule ids Rampart removes at run time (exclusions).
func ResolveParanoiaGates(fsys fs.FS, text string, removed []IDRange) (fs.FS, GateReport) {
	rm := removals{ids: slices.Clone(removed)}
	levels := map[bool]int{} // blocking → level
	var setters []int
	var files []string // the CRS rule files, in the order Coraza includes them
	jumped := false    // a rule that can pass over the ones after it was read
	// scan reads the configuration around CRS (Includes of the embedded
	// setup files followed); it returns why nothing can be decided, or "".
	var scan func(text string, depth int) string
	scan = func(text string, depth int) string {
		if depth > 8 {
			return "includes nested too deeply"
		}
		for _, d := range directives(text) {
			name, rest, _ := strings.Cut(d.text, " ")
			kind := strings.ToLower(name)
			if kind == "include" {
				pat := strings.Trim(strings.TrimSpace(rest), `"`)
				if !strings.HasPrefix(pat, "@") {
					return "an include outside the embedded rule set: " + pat
				}
				m, err := fs.Glob(fsys, pat)
				if err != nil || len(m) == 0 {
					return "include " + pat + ": no file"
				}
				slices.Sort(m)
				if strings.HasPrefix(pat, "@owasp_crs/") {
					files = append(files, m...)
					continue
				}
				for _, f := range m {
					b, err := fs.ReadFile(fsys, f)
					if err != nil {
						return err.Error()
					}
					if why := scan(string(b), depth+1); why != "" {
						return why
					}
				}
				continue
			}
			if !rm.note(d.text) {
				return "a rule removal or update it cannot follow: " + short(d.text)
			}
			if kind != "secrule" && kind != "secaction" {
				continue
			}
			r, _ := parseRuleInfo(kind, rest, d)
			if !strings.Contains(strings.ToLower(d.text), "paranoia_level") {
				jumped = jumped || r.skipAfter != "" || r.skips
				continue
			}
			// The levels must be set before CRS runs, by rules nothing
			// can pass over.
			if kind != "secaction" || r.phase != 1 || jumped || len(files) > 0 {
				return "the paranoia level is not only set by phase 1 SecActions before CRS: " + short(d.text)
			}
			for _, a := range splitActions(unquote(strings.TrimSpace(rest))) {
				if !strings.Contains(strings.ToLower(a), "paranoia_level") {
					continue
				}
				m := levelSetvar.FindStringSubmatch(strings.TrimSpace(a))
				if m == nil {
					return "the paranoia level is not set to a plain number: " + short(a)
				}
				n, _ := strconv.Atoi(m[2])
				levels[strings.EqualFold(m[1], "blocking")] = n
			}
			setters = append(setters, r.id)
		}
		return ""
	}
	if why := scan(text, 0); why != "" {
		return fsys, GateReport{Disabled: why}
	}
	blocking, okB := levels[true]
	detection, okD := levels[false]
	if !okB || !okD {
		return fsys, GateReport{Disabled: "the configuration does not set both paranoia levels"}
	}
	for _, id := range setters {
		if inRanges(rm.ids, id) {
			return fsys, GateReport{Disabled: "a rule that sets the paranoia level may be removed"}
		}
	}

	type crsUpdate struct {
		ids         []IDRange
		first, last int
	}
	type crsFile struct {
		name    string
		text    []byte
		rules   []ruleInfo
		updates []crsUpdate
	}
	var crs []crsFile
	for _, name := range files {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fsys, GateReport{Disabled: err.Error()}
		}
		f := crsFile{name: name, text: b}
		inChain := false
		for _, d := range directives(string(b)) {
			// CRS's own updates name rules that may be left out: they
			// are left out with them (below), so they do not count.
			n := len(rm.updated)
			if !rm.note(d.text) {
				return fsys, GateReport{Disabled: name + ": a rule removal it cannot follow"}
			}
			if len(rm.updated) > n {
				f.updates = append(f.updates, crsUpdate{ids: slices.Clone(rm.updated[n:]), first: d.first, last: d.last})
				rm.updated = rm.updated[:n]
			}
			kindName, rest, _ := strings.Cut(d.text, " ")
			kind := strings.ToLower(kindName)
			switch kind {
			case "secrule", "secaction":
				r, chain := parseRuleInfo(kind, rest, d)
				if inChain { // a member: part of its chain's head
					f.rules[len(f.rules)-1].last = d.last
				} else {
					f.rules = append(f.rules, r)
				}
				inChain = chain
			case "secmarker":
				f.rules = append(f.rules, ruleInfo{id: -1, skipAfter: strings.Trim(strings.TrimSpace(rest), `"'`), first: d.first, last: d.last})
			}
		}
		crs = append(crs, f)
	}
	if rm.byMsg {
		return fsys, GateReport{Disabled: "rules are removed or updated by message or tag pattern"}
	}

	removedByTag := func(r ruleInfo) []string {
		var out []string
		for _, t := range rm.tags {
			if slices.Contains(r.tags, t) {
				out = append(out, t)
			}
		}
		return out
	}
	// covered reports whether every removal that names the gate also
	// removes every rule it jumps over.
	covered := func(g ruleInfo, region []ruleInfo) bool {
		for _, rg := range rm.ids {
			if rg[0] > g.id || g.id > rg[1] {
				continue
			}
			for _, r := range region {
				if r.id < rg[0] || r.id > rg[1] {
					return false
				}
			}
		}
		for _, t := range removedByTag(g) {
			for _, r := range region {
				if !slices.Contains(r.tags, t) {
					return false
				}
			}
		}
		return true
	}

	out := overlayFS{base: fsys, files: map[string]overlayFile{}}
	var rep GateReport
	drop := make([]map[int]bool, len(crs)) // per file: indexes in rules
	dropped := map[int]bool{}              // rule ids
	for fi, f := range crs {
		drop[fi] = map[int]bool{}
		for i, g := range f.rules {
			if g.gate == nil || g.id <= 0 || drop[fi][i] {
				continue
			}
			level := detection
			if g.gate.blocking {
				level = blocking
			}
			var region []ruleInfo
			var regionIdx []int
			matches := g.gate.holds(level)
			if matches {
				if !g.flowOnly {
					continue // it does something: it runs
				}
				if g.skipAfter != "" {
					found := false
					for j := i + 1; j < len(f.rules); j++ {
						r := f.rules[j]
						if r.id == -1 && r.skipAfter == g.skipAfter {
							found = true
							break
						}
						if r.id != -1 && r.phase == g.phase {
							region, regionIdx = append(region, r), append(regionIdx, j)
						}
					}
					if !found {
						continue // the marker is elsewhere: leave it to Coraza
					}
				}
			}
			if !covered(g, region) || slices.ContainsFunc(region, func(r ruleInfo) bool { return inRanges(rm.updated, r.id) }) || inRanges(rm.updated, g.id) {
				continue
			}
			drop[fi][i] = true
			dropped[g.id] = true
			for _, j := range regionIdx {
				drop[fi][j] = true
				dropped[f.rules[j].id] = true
			}
			rep.Gates++
			if matches {
				rep.DroppedMatching = append(rep.DroppedMatching, g.id)
			}
		}
	}
	for fi, f := range crs {
		var blank [][2]int
		for i := range drop[fi] {
			blank = append(blank, [2]int{f.rules[i].first, f.rules[i].last})
		}
		for _, u := range f.updates {
			all := true
			for _, rg := range u.ids {
				for id := rg[0]; id <= rg[1] && all; id++ {
					all = dropped[id]
				}
			}
			if all {
				blank = append(blank, [2]int{u.first, u.last})
			}
		}
		if len(blank) == 0 {
			continue
		}
		lines := bytes.Split(f.text, []byte("\n"))
		for _, b := range blank {
			for l := b[0]; l <= b[1]; l++ {
				lines[l] = nil
			}
		}
		rep.Dropped += len(drop[fi])
		out.files[f.name] = overlayFile{data: bytes.Join(lines, []byte("\n"))}
	}
	if rep.Gates == 0 {
		return fsys, GateReport{Disabled: "no gate can be decided"}
	}
	return out, rep
}

var levelSetvar = regexp.MustCompile(`(?i)^setvar:'?tx\.(blocking|detection)_paranoia_level=(\d+)'?$`)

func short(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// overlayFS is base with some files' contents replaced.
type overlayFS struct {
	base  fs.FS
	files map[string]overlayFile
}

type overlayFile struct{ data []byte }

func (o overlayFS) Open(name string) (fs.File, error) {
	f, ok := o.files[name]
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
	return &memFile{Reader: bytes.NewReader(f.data), info: memInfo{FileInfo: info, size: int64(len(f.data))}}, nil
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
