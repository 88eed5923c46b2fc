package wafrx

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
)

// quietBytes are the bytes CRS's shell-evasion patterns let an attacker
// put between the letters of a command (b"u's\y$@b…), or use to chain
// commands: quotes, backslash, brackets, braces, $, |, &, ; and the
// backtick. Every letter of such a pattern is followed by an optional run
// of them, so the required literals degrade to single letters and the
// regexp runs on almost any benign word — in Go's NFA, ~20 µs per value
// for the largest. An input with none of these bytes can only match with
// every evasion part empty; the pattern reduced accordingly keeps the
// command words as literals.
const quietBytes = "\"'()[]{}\\$|&;`"

var quietMask = func() byteMask {
	var m byteMask
	for i := 0; i < len(quietBytes); i++ {
		m.add(quietBytes[i])
	}
	return m
}()

// isQuiet reports whether an input with these bytes has none of
// quietBytes (none of them is a letter, so the ASCII folding of the
// mask does not matter).
func isQuiet(in *byteMask) bool { return !quietMask.hits(in) }

// quietResult is what quietOf derives from a pattern for quiet inputs:
// the pattern with every literal and class reduced to what a quiet input
// can contain, its pre-filter (never: no quiet input can match at all),
// and its regexp, which matches a quiet input exactly when the pattern
// does and runs 1.5–1.7× faster on the shell-evasion patterns.
type quietResult struct {
	pf    *Prefilter
	re    *regexp.Regexp // nil when never, or on failure
	never bool
}

func quietOf(pattern string) quietResult {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return quietResult{}
	}
	re = quietReduce(re.Simplify())
	if re == nil {
		return quietResult{never: true}
	}
	re = re.Simplify()
	q := quietResult{pf: prefilterOf(re)}
	q.re, _ = regexp.Compile(re.String())
	return q
}

// quietReduce rewrites re to match what it matches on quiet inputs (a
// superset is allowed, never less): literals holding a quiet byte cannot
// match, classes lose the quiet bytes, and the operators above them
// follow. nil means "matches no quiet input".
func quietReduce(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if r < 0x80 && strings.ContainsRune(quietBytes, r) {
				return nil
			}
		}
		return re
	case syntax.OpCharClass:
		var out []rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			out = appendWithout(out, re.Rune[i], re.Rune[i+1])
		}
		if len(out) == 0 {
			return nil
		}
		re.Rune = out
		return re
	case syntax.OpCapture, syntax.OpPlus:
		if re.Sub[0] = quietReduce(re.Sub[0]); re.Sub[0] == nil {
			return nil
		}
		return re
	case syntax.OpStar, syntax.OpQuest:
		if re.Sub[0] = quietReduce(re.Sub[0]); re.Sub[0] == nil {
			return &syntax.Regexp{Op: syntax.OpEmptyMatch}
		}
		return re
	case syntax.OpRepeat:
		if re.Sub[0] = quietReduce(re.Sub[0]); re.Sub[0] == nil {
			if re.Min == 0 {
				return &syntax.Regexp{Op: syntax.OpEmptyMatch}
			}
			return nil
		}
		return re
	case syntax.OpConcat:
		for i, sub := range re.Sub {
			if re.Sub[i] = quietReduce(sub); re.Sub[i] == nil {
				return nil
			}
		}
		return re
	case syntax.OpAlternate:
		kept := re.Sub[:0]
		for _, sub := range re.Sub {
			if r := quietReduce(sub); r != nil {
				kept = append(kept, r)
			}
		}
		switch len(kept) {
		case 0:
			return nil
		case 1:
			return kept[0]
		}
		re.Sub = kept
		return re
	}
	// Anchors, empty match, any character: unchanged (any character is
	// a superset of what a quiet input offers).
	return re
}

// appendWithout appends the range lo-hi minus the quiet bytes.
func appendWithout(out []rune, lo, hi rune) []rune {
	for r := lo; r <= hi && r < 0x80; r++ {
		if strings.ContainsRune(quietBytes, r) {
			if r > lo {
				out = append(out, lo, r-1)
			}
			lo = r + 1
		}
	}
	if lo <= hi {
		out = append(out, lo, hi)
	}
	return out
}

var quietResults sync.Map // pattern -> quietResult

// sharedQuiet memoises quietOf by pattern for the process.
func sharedQuiet(pattern string) quietResult {
	if q, ok := quietResults.Load(pattern); ok {
		return q.(quietResult)
	}
	q := quietOf(pattern)
	quietResults.Store(pattern, q)
	return q
}

// weak reports whether a pre-filter's literals are all one or two bytes
// (or it has none): the patterns a quiet pre-filter can improve.
func weak(p *Prefilter) bool {
	if p == nil {
		return true
	}
	for _, l := range p.lits {
		if len(l) > 2 {
			return false
		}
	}
	return true
}
