package wafrx

import (
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Settings nothing reads. CRS's initialisation (901200) zeroes 21 scores
// on every request, and most of them are read only by rules that never
// run for Rampart: the paranoia levels above the configured one (left
// out), the response phases without response inspection, the logging
// phase's reporting. Each setvar costs Coraza three or four allocations.
// leaveOutUnread takes out of CRS's SecActions the setvars of TX
// variables that nothing left can read: no rule of a phase that runs (its
// targets, counted or by regular expression, and macros anywhere in it),
// no other directive of the configuration or of CRS, and not the caller.
// Setting a variable nobody reads has no effect, and an increment of an
// unset one counts from 0, as from the zero CRS set.

// txReadsOf returns what a directive reads of TX: lower-case names,
// "/re/" for a key given as a regular expression, "*" for the whole
// collection or a name it cannot tell. It reads the directive's text
// rather than its parse, so that anything that looks like a read counts.
func txReadsOf(text string) []string {
	var out []string
	for _, m := range txMacro.FindAllStringSubmatch(text, -1) {
		if name := strings.ToLower(m[1]); plainName.MatchString(name) {
			out = append(out, name)
		} else {
			out = append(out, "*")
		}
	}
	for _, m := range txTarget.FindAllStringSubmatchIndex(text, -1) {
		key := ""
		if m[4] >= 0 {
			key = text[m[4]:m[5]]
		}
		if end := m[1]; end < len(text) && !strings.ContainsRune("|\"' \t,;", rune(text[end])) {
			if c := text[end]; key == "" && (c == '.' || c == '_' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c))) {
				continue // tx.name (a setvar's, a macro's) or a longer word
			}
			out = append(out, "*") // a key this does not read
			continue
		}
		switch {
		case key == "":
			out = append(out, "*")
		case strings.HasPrefix(key, "/"):
			out = append(out, key)
		default:
			out = append(out, strings.ToLower(key))
		}
	}
	return out
}

var (
	txMacro = regexp.MustCompile(`(?i)%\{tx\.([^}]*)\}`)
	// TX, TX:name or TX:/re/ where a target list can have it (the
	// start, after a separator, a quote, ! or &); what follows is checked
	// by txReadsOf: "tx." starts a setvar's name, any other odd key reads
	// as the whole collection.
	txTarget = regexp.MustCompile(`(?i)(^|[\s|"'!&,;=])TX(?::(/(?:\\.|[^/\\])*/|[A-Za-z0-9_]+))?`)
)

// leaveOutUnread rewrites the CRS SecActions that write TX variables no
// one reads without those setvars, leaves out the rules that only write
// such variables, and returns the variables, the ids of those rules, and
// the settings of the configuration nothing reads (UnreadSettings).
func (g *gateResolver) leaveOutUnread(crs []*crsFile) ([]string, []int, []string) {
	names := map[string]bool{}
	var patterns []*regexp.Regexp
	note := func(reads []string) bool {
		for _, r := range reads {
			switch {
			case r == "*":
				return false
			case strings.HasPrefix(r, "/"):
				re, err := regexp.Compile("(?i)" + strings.Trim(r, "/"))
				if err != nil {
					return false
				}
				patterns = append(patterns, re)
			default:
				names[r] = true
			}
		}
		return true
	}
	if !note(g.otherReads) || !note(g.reads) {
		return nil, nil, nil
	}
	for _, f := range crs {
		for i, r := range f.rules {
			if r.marker == "" && !f.drop[i] && g.runs.Has(r.phase) && !note(ownReadsLeftOut(r)) {
				return nil, nil, nil
			}
		}
	}
	// unreadWrite reports whether a setvar writes (sets, changes or
	// unsets) a variable nobody reads.
	unreadWrite := func(setvar string) (string, bool) {
		name, dynamic, _, _, _ := txWrite(setvar)
		if dynamic || name == "" || names[name] || slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool { return re.MatchString(name) }) {
			return "", false
		}
		return name, true
	}
	// A rule that goes must not be one a skip:N counts, nor one whose
	// match a later rule may read (MATCHED_VAR), nor one an update names.
	reach, _ := g.skipReach(crs)
	mayDrop := func(f *crsFile, i int) bool {
		r := f.rules[i]
		return g.matchSeen == "" && !reach[ruleRef{f, i}] && !inRanges(g.rm.updated, r.id) && r.skipAfter == "" && !r.chained
	}
	var vars []string
	var dropped []int
	for _, f := range crs {
		for i, r := range f.rules {
			if r.marker != "" || f.drop[i] || !g.runs.Has(r.phase) {
				continue
			}
			if r.actions == "" { // a SecRule: it goes if writing is all it does
				if !r.setOnly || len(r.setvars) == 0 || !mayDrop(f, i) {
					continue
				}
				var ws []string
				for _, sv := range r.setvars {
					if name, ok := unreadWrite(sv); ok {
						ws = append(ws, name)
					}
				}
				if len(ws) == len(r.setvars) {
					f.drop[i] = true
					vars, dropped = append(vars, ws...), append(dropped, r.id)
				}
				continue
			}
			if strings.ContainsAny(r.actions, `"\`) {
				continue
			}
			pieces := splitActions(r.actions)
			kept := pieces[:0:0]
			effect := false // does what is kept do anything?
			for _, a := range pieces {
				k, v, _ := strings.Cut(a, ":")
				k = strings.ToLower(strings.TrimSpace(k))
				if k == "setvar" {
					if name, ok := unreadWrite(unquoteSingle(strings.TrimSpace(v))); ok {
						vars = append(vars, name)
						continue
					}
				}
				effect = effect || !flowActions[k]
				kept = append(kept, a)
			}
			switch {
			case len(kept) == len(pieces):
			case !effect && mayDrop(f, i):
				f.drop[i] = true
				dropped = append(dropped, r.id)
			default:
				if f.rewrite == nil {
					f.rewrite = map[int]string{}
				}
				f.rewrite[i] = `SecAction "` + strings.Join(kept, ",") + `"`
			}
		}
	}
	var settings []string
	for name := range g.consts {
		if _, ok := unreadWrite("tx." + name + "=0"); ok && !g.decidedOn[name] {
			settings = append(settings, name)
		}
	}
	slices.Sort(vars)
	slices.Sort(settings)
	return slices.Compact(vars), dropped, settings
}

// ownReadsLeftOut returns what r reads, less the variable it writes when
// writing that one variable is all it does (CRS's `&TX:name "@eq 0"`
// defaults): reading it then only decides whether to write it. A rule
// that writes anything else keeps its reads: they decide that too.
func ownReadsLeftOut(r ruleInfo) []string {
	if !r.setOnly || r.chained || r.actions != "" || len(r.setvars) == 0 {
		return r.reads
	}
	own, dynamic, _, _, _ := txWrite(r.setvars[0])
	for _, sv := range r.setvars[1:] {
		if name, _, _, _, _ := txWrite(sv); name != own {
			return r.reads
		}
	}
	if dynamic || own == "" {
		return r.reads
	}
	return slices.DeleteFunc(slices.Clone(r.reads), func(rd string) bool { return rd == own })
}
