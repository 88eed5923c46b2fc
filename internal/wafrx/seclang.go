package wafrx

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// secRule is what rule skipping needs to know about one SecRule: a chain
// head, with its members (which run only when the head and the members
// before them matched).
type secRule struct {
	members []secRule
	// pure: no action of its has an effect when the rule matches but
	// its chain does not (no setvar, capture, ctl, flow control...).
	pure    bool
	id      int
	phase   int
	file    string // where it was read: a path in fsys, or "inline directives"
	targets []secTarget
	// count: some target is &VAR, which always yields a value.
	count      bool
	op         string // operator name without @ ("rx" when omitted)
	negated    bool
	arg        string
	transforms []string // the transformations after the last t:none
	multiMatch bool
	skips      bool // has skip:N
	skip       int  // N; 0 when not a plain number
	paranoia   int  // from tag:'paranoia-level/N'; 0 without
	tags       []string
	skipAfter  string
	setvars    []string // the values of its setvar actions
	// flowOnly: every action is flow control or metadata, so a match
	// does nothing but (with skipAfter) jump; setOnly: the same, but for
	// setvars.
	flowOnly, setOnly bool
}

// flowActions are the actions a rule may have and still do nothing but
// jump when it matches.
var flowActions = map[string]bool{"id": true, "phase": true, "pass": true, "nolog": true, "noauditlog": true,
	"tag": true, "ver": true, "skipafter": true, "t": true, "rev": true, "maturity": true, "accuracy": true}

// pureActions are the actions that do nothing when a rule matches and its
// chain does not: metadata, and disruptive and logging actions, which
// Coraza runs only for a whole chain.
var pureActions = map[string]bool{"id": true, "phase": true, "t": true, "pass": true, "block": true, "deny": true,
	"drop": true, "log": true, "nolog": true, "auditlog": true, "noauditlog": true, "msg": true, "logdata": true,
	"tag": true, "ver": true, "rev": true, "severity": true, "maturity": true, "accuracy": true, "chain": true,
	"status": true, "multimatch": true}

// secTarget is one variable of a rule. Negated targets (!VAR:key) are
// dropped: they only ever remove values, so ignoring them gives a superset
// of what the rule inspects.
type secTarget struct {
	name string // upper case, e.g. REQUEST_HEADERS
	key  string // "" for the whole collection, "/re/" for a regex key
}

// seclang is a rule file set read the way rule skipping needs it.
type seclang struct {
	rules []secRule
	// unsafe holds rules whose targets or actions are changed by an
	// update directive, so their text is not what runs.
	unsafe map[int]bool
	// disabled, when not empty, says why nothing may be skipped at all.
	disabled string
	// skipping holds the phases where a rule with skip:N was read and no
	// SecMarker since: skip:N counts the rules it passes over, and a
	// removed rule is not counted, so removing one of the rules after it
	// would make it skip another. Those rules are marked unsafe up to the
	// next marker (not just N: exclusions may remove some of them).
	skipping map[int]bool
	// paranoia is the highest paranoia level the configuration outside
	// CRS sets (setvar tx.blocking_/detection_paranoia_level); 0 when
	// none is set or one is not a plain number. CRS skips the rules above
	// it, so planning them is wasted work.
	paranoia    int
	paranoiaSet bool
	// lastMatchRead: some rule reads the previous rule's MATCHED_VAR
	// (readsLastMatch): then a chain whose head matches must run.
	lastMatchRead bool
}

// readSecLang reads directives, following Include into fsys.
func readSecLang(fsys fs.FS, directives string) *seclang {
	s := &seclang{unsafe: map[int]bool{}, skipping: map[int]bool{}}
	s.read(fsys, directives, "inline directives", 0)
	return s
}

func (s *seclang) disable(format string, args ...any) {
	if s.disabled == "" {
		s.disabled = fmt.Sprintf(format, args...)
	}
}

func (s *seclang) read(fsys fs.FS, text, file string, depth int) {
	if depth > 8 {
		s.disable("includes nested too deeply in %s", file)
		return
	}
	inChain := false
	for _, d := range logicalLines(text) {
		name, rest, _ := strings.Cut(d, " ")
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(file, "@owasp_crs/") {
			s.noteParanoia(d)
		}
		switch strings.ToLower(name) {
		case "include":
			s.include(fsys, strings.Trim(rest, `"`), depth)
		case "secrule":
			r, chain, err := parseSecRule(rest)
			if err != nil {
				s.disable("%s: %v", file, err)
				return
			}
			if !inChain {
				r.file = file
				if s.skipping[r.phase] {
					s.unsafe[r.id] = true
				}
				if r.skips {
					s.skipping[r.phase] = true
				}
				s.lastMatchRead = s.lastMatchRead || readsLastMatch(r)
				s.rules = append(s.rules, r)
			} else if len(s.rules) > 0 {
				head := &s.rules[len(s.rules)-1]
				r.id, r.phase, r.file = head.id, head.phase, file
				head.members = append(head.members, r)
			}
			inChain = chain
		case "secmarker":
			clear(s.skipping)
		case "secaction":
			if len(actionValues(unquote(rest), "skip")) > 0 {
				s.disable("%s: a SecAction with skip", file)
			}
		case "secdefaultaction":
			for _, t := range actionValues(unquote(rest), "t") {
				if !strings.EqualFold(t, "none") {
					s.disable("%s: SecDefaultAction adds transformations", file)
				}
			}
		case "secruleupdatetargetbyid":
			s.updateTarget(rest)
		case "secruleupdateactionbyid":
			id, _, _ := strings.Cut(rest, " ")
			s.markUnsafe(id)
		case "secruleupdatetargetbytag", "secruleupdatetargetbymsg":
			_, targets, _ := strings.Cut(rest, " ")
			if addsTargets(targets) {
				s.disable("%s: %s adds targets", file, name)
			}
		}
	}
}

var paranoiaSetvar = regexp.MustCompile(`(?i)setvar:'?tx\.(?:blocking_|detection_)?paranoia_level=([^,'"]*)`)

func (s *seclang) noteParanoia(directive string) {
	for _, m := range paranoiaSetvar.FindAllStringSubmatch(directive, -1) {
		n, err := strconv.Atoi(strings.TrimSpace(m[1]))
		if err != nil || s.paranoiaSet && s.paranoia == 0 {
			s.paranoia, s.paranoiaSet = 0, true // unknown: plan every level
			continue
		}
		s.paranoia, s.paranoiaSet = max(s.paranoia, n), true
	}
}

func (s *seclang) include(fsys fs.FS, pattern string, depth int) {
	if !strings.HasPrefix(pattern, "@") {
		s.disable("include of %s outside the embedded rule set", pattern)
		return
	}
	files, err := fs.Glob(fsys, pattern)
	if err != nil || len(files) == 0 {
		s.disable("include %s: no file", pattern)
		return
	}
	slices.Sort(files)
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			s.disable("include %s: %v", f, err)
			return
		}
		s.read(fsys, string(b), f, depth+1)
	}
}

// updateTarget handles SecRuleUpdateTargetById ID TARGETS [REPLACED]:
// removing targets keeps the rule's text a superset, adding does not.
func (s *seclang) updateTarget(rest string) {
	ids, targets, _ := strings.Cut(rest, " ")
	if !addsTargets(targets) {
		return
	}
	for _, id := range strings.Split(unquote(ids), ",") {
		s.markUnsafe(id)
	}
}

func (s *seclang) markUnsafe(id string) {
	id = unquote(strings.TrimSpace(id))
	lo, hi, isRange := strings.Cut(id, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	switch {
	case err1 != nil:
		s.disable("update of rule %q", id)
	case !isRange:
		s.unsafe[a] = true
	case err2 != nil || b < a || b-a > 100000:
		s.disable("update of rules %q", id)
	default:
		for i := a; i <= b; i++ {
			s.unsafe[i] = true
		}
	}
}

func addsTargets(targets string) bool {
	targets = strings.TrimSpace(unquote(strings.TrimSpace(targets)))
	if i := strings.IndexByte(targets, ' '); i >= 0 { // a replaced target follows
		return true
	}
	for _, t := range splitTargets(targets) {
		if !strings.HasPrefix(t, "!") {
			return true
		}
	}
	return false
}

// logicalLines is the text of each of directives(text).
func logicalLines(text string) []string {
	ds := directives(text)
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.text
	}
	return out
}

// parseSecRule reads `VARIABLES "OPERATOR" "ACTIONS"` and reports whether
// the rule starts or continues a chain.
func parseSecRule(s string) (secRule, bool, error) {
	var r secRule
	vars, rest, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return r, false, fmt.Errorf("rule without operator: %q", s)
	}
	if strings.HasPrefix(vars, `"`) {
		q, after, err := cutQuoted(strings.TrimSpace(s))
		if err != nil {
			return r, false, err
		}
		vars, rest = q, after
	}
	rest = strings.TrimLeft(rest, " ")
	op, rest, err := cutQuoted(rest)
	if err != nil {
		return r, false, fmt.Errorf("operator of %q: %v", s, err)
	}
	op = strings.ReplaceAll(op, `\"`, `"`)
	actions := unquote(strings.TrimSpace(rest))

	for _, t := range splitTargets(vars) {
		if strings.HasPrefix(t, "!") {
			continue
		}
		if strings.HasPrefix(t, "&") {
			r.count = true
			t = t[1:]
		}
		name, key, _ := strings.Cut(t, ":")
		r.targets = append(r.targets, secTarget{name: strings.ToUpper(name), key: key})
	}

	// The operator, with Coraza's defaults: no "@" means @rx.
	switch {
	case strings.HasPrefix(op, "!@"):
		r.negated, op = true, op[2:]
	case strings.HasPrefix(op, "!"):
		r.negated, op = true, "rx "+op[1:]
	case strings.HasPrefix(op, "@"):
		op = op[1:]
	default:
		op = "rx " + op
	}
	name, arg, _ := strings.Cut(op, " ")
	r.op, r.arg = strings.TrimSpace(name), strings.TrimSpace(arg)

	return r, r.readActions(actions), nil
}

// parseSecAction reads the actions of a SecAction: a rule that always
// matches.
func parseSecAction(s string) secRule {
	r := secRule{op: "unconditionalMatch"}
	r.readActions(unquote(strings.TrimSpace(s)))
	return r
}

// readActions fills in what r's actions say and reports whether the rule
// starts or continues a chain.
func (r *secRule) readActions(actions string) (chain bool) {
	r.flowOnly, r.setOnly, r.pure = true, true, true
	eachAction(actions, func(k, v string) {
		r.pure = r.pure && pureActions[k]
		switch k {
		case "id":
			r.id, _ = strconv.Atoi(v)
		case "phase":
			r.phase = phaseNumber(v)
		case "t":
			if strings.EqualFold(v, "none") {
				r.transforms = r.transforms[:0]
			} else {
				r.transforms = append(r.transforms, v)
			}
		case "multimatch":
			r.multiMatch = true
		case "chain":
			chain = true
		case "skip":
			r.skips = true
			r.skip, _ = strconv.Atoi(v)
		case "skipafter":
			r.skipAfter = v
		case "setvar":
			r.setvars = append(r.setvars, v)
		case "tag":
			r.tags = append(r.tags, v)
			if l, ok := strings.CutPrefix(v, "paranoia-level/"); ok {
				r.paranoia, _ = strconv.Atoi(l)
			}
		}
		if !flowActions[k] {
			r.flowOnly = false
			r.setOnly = r.setOnly && k == "setvar"
		}
	})
	return chain
}

func phaseNumber(v string) int {
	switch strings.ToLower(v) {
	case "request":
		return 2
	case "response":
		return 4
	case "logging":
		return 5
	}
	n, _ := strconv.Atoi(v)
	return n
}

// cutQuoted returns the content of the double-quoted string s starts with
// (escapes kept) and what follows it; a string that does not start with a
// quote is cut at the first space.
func cutQuoted(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		a, b, _ := strings.Cut(s, " ")
		return a, b, nil
	}
	escapes := 0
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			escapes++
			continue
		case s[i] == '"' && escapes%2 == 0:
			return s[1:i], s[i+1:], nil
		}
		escapes = 0
	}
	return "", "", fmt.Errorf("unclosed quote")
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func unquoteSingle(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	return s
}

// splitActions splits at commas outside single quotes; a backslash
// escapes the next character.
func splitActions(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// eachAction calls f with each action's lower-case name and its value,
// single quotes removed.
func eachAction(actions string, f func(name, value string)) {
	for _, a := range splitActions(actions) {
		k, v, _ := strings.Cut(a, ":")
		f(strings.ToLower(strings.TrimSpace(k)), unquoteSingle(strings.TrimSpace(v)))
	}
}

// actionValues returns the values of every action named name.
func actionValues(actions, name string) []string {
	var out []string
	for _, a := range splitActions(actions) {
		k, v, _ := strings.Cut(a, ":")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, unquoteSingle(strings.TrimSpace(v)))
		}
	}
	return out
}

// splitTargets splits VAR|VAR:key|VAR:/regex/ at the bars outside regex
// keys and quotes.
func splitTargets(s string) []string {
	var out []string
	start := 0
	inRegex, inQuote := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (inRegex || inQuote):
			i++
		case c == '\'' && !inRegex:
			inQuote = !inQuote
		case c == '/' && !inQuote:
			if inRegex {
				inRegex = false
			} else if i > 0 && s[i-1] == ':' {
				// XML:/* and JSON paths are keys, not regexes.
				name := strings.ToUpper(strings.TrimLeft(strings.TrimSpace(s[start:i-1]), "!&"))
				inRegex = name != "XML" && name != "JSON"
			}
		case c == '|' && !inRegex && !inQuote:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if t := strings.TrimSpace(s[start:]); t != "" {
		out = append(out, t)
	}
	return out
}

// ruleDir is the directory data files of a rule read from file are
// looked up in (@pmFromFile).
func ruleDir(file string) string { return path.Dir(file) }
