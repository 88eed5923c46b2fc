package wafrx

import (
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/corazawaf/libinjection-go"
	"rsc.io/binaryregexp"
)

// skipCondition is what rule skipping checks on each input of a rule: a
// necessary condition for a match (filter, nil when there is none) and
// the operator itself (exact). For @rx the operator is Coraza's compiled
// regexp, found by pattern once the WAF is built (skipPlan.verify).
type skipCondition struct {
	filter  *Prefilter
	exact   func(string) bool
	pattern string // @rx argument
	negated bool
	// quiet, for @rx patterns whose pre-filter is weak or that are
	// large, is the pre-filter and regexp for inputs without quietBytes
	// (quiet.go).
	quiet quietResult
	// hasQuiet: quiet applies.
	hasQuiet bool
}

// conditionOf returns the condition for r's operator, or false when rule
// skipping does not know the operator.
func conditionOf(fsys fs.FS, r secRule) (skipCondition, bool) {
	c := skipCondition{negated: r.negated}
	arg := r.arg
	switch r.op {
	case "rx":
		pattern := rxFlags + arg
		if matchesArbitraryBytes(pattern) {
			// Coraza's byte-oriented engine on the bare argument, as
			// Coraza compiles it: exact, and run on every input (no
			// pre-filter for byte patterns).
			re, err := binaryregexp.Compile(arg)
			if err != nil {
				return c, false
			}
			c.exact = re.MatchString
			break
		}
		c.pattern = arg
		if !c.negated {
			c.filter = sharedPrefilter(pattern)
			if weak(c.filter) || len(arg) > 2000 {
				c.quiet, c.hasQuiet = sharedQuiet(pattern), true
			}
		}
		return c, true
	case "pm", "pmFromFile", "pmf":
		if c.negated {
			return c, false
		}
		if r.op == "pm" {
			c.filter = literalPrefilter(strings.Split(strings.ToLower(arg), " "))
		} else {
			c.filter = literalPrefilter(phrasesFromFile(fsys, path.Join(ruleDir(r.file), arg)))
		}
		// The phrases are the operator: finding none is the answer.
		return c, c.filter != nil
	case "containsWord":
		if c.negated || strings.Contains(arg, "%{") {
			return c, false
		}
		c.filter = literalPrefilter([]string{arg})
		return c, c.filter != nil
	case "contains", "streq", "beginsWith", "endsWith":
		if strings.Contains(arg, "%{") {
			return c, false // macro: the argument is only known per request
		}
		switch r.op {
		case "contains":
			c.exact = func(s string) bool { return strings.Contains(s, arg) }
		case "streq":
			c.exact = func(s string) bool { return s == arg }
		case "beginsWith":
			c.exact = func(s string) bool { return strings.HasPrefix(s, arg) }
		case "endsWith":
			c.exact = func(s string) bool { return strings.HasSuffix(s, arg) }
		}
		if !c.negated {
			c.filter = literalPrefilter([]string{arg})
		}
	case "validateByteRange":
		valid, ok := byteRanges(arg)
		if !ok {
			return c, false
		}
		c.exact = func(s string) bool {
			for i := 0; i < len(s); i++ {
				if !valid[s[i]] {
					return true
				}
			}
			return false
		}
	case "detectSQLi":
		c.exact = func(s string) bool { m, _ := libinjection.IsSQLi(s); return m }
	case "detectXSS":
		c.exact = libinjection.IsXSS
	default:
		return c, false
	}
	if c.negated {
		op := c.exact
		c.exact = func(s string) bool { return !op(s) }
	}
	return c, true
}

// byteRanges parses @validateByteRange's "10, 13, 32-126"; false for an
// empty or malformed list (empty means match everything in Coraza).
func byteRanges(arg string) (*[256]bool, bool) {
	var valid [256]bool
	if strings.TrimSpace(arg) == "" {
		return nil, false
	}
	for _, part := range strings.Split(arg, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 255 {
			return nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 255 {
				return nil, false
			}
		}
		for i := a; i <= b; i++ {
			valid[i] = true
		}
	}
	return &valid, true
}
