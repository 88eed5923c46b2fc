package wafrx

import (
	"regexp/syntax"
	"slices"
	"unicode"
	"unicode/utf8"
)

// maxLiterals bounds every literal set the analysis builds. A union that
// grows past it is shrunk by cutting its literals to a shorter prefix
// (still required, only less selective); a product that grows past it is
// not built. Beyond that the analysis gives up on the node: it never guesses.
const maxLiterals = 128

// maxProduct bounds the sets built by multiplying out a concatenation.
const maxProduct = 64

// maxClassRunes is the largest character class expanded into single-byte
// literals, so [\-/] or [xX] take part in literal sequences.
const maxClassRunes = 16

// Prefilter tells whether an input may match a pattern. It is sound: when
// MayMatch is false the pattern's regexp cannot match the input. It is
// conservative: true says nothing.
type Prefilter struct {
	// lits are literals (ASCII lowercased) bucketed by their first byte
	// (both cases index the same bucket); an input may match only if it
	// contains one of them, compared ASCII case-insensitively. nil: no
	// literal requirement is known.
	byFirst [256][]string
	lits    []string
	// bytes, when set, is a second necessary condition (see bytes.go).
	bytes *byteFilter
}

// Literals returns the literal set the pre-filter requires (lowercase;
// compared ASCII case-insensitively), for tests and diagnostics.
func (p *Prefilter) Literals() []string { return slices.Clone(p.lits) }

// MayMatch reports whether the input passes both conditions: it contains
// one of the required literals (ignoring ASCII case) and hits the required
// byte classes. False means the regexp cannot match. It does not allocate.
func (p *Prefilter) MayMatch(s string) bool {
	if p.lits == nil {
		return p.bytes.mayMatch(s)
	}
	if !p.literalsIn(s) {
		return false
	}
	return p.bytes == nil || p.bytes.mayMatch(s)
}

func (p *Prefilter) literalsIn(s string) bool {
	for i := 0; i < len(s); i++ {
		for _, lit := range p.byFirst[s[i]] {
			if hasPrefixASCIIFold(s[i:], lit) {
				return true
			}
		}
	}
	return false
}

// hasPrefixASCIIFold reports whether s starts with lit (lowercase ASCII)
// ignoring ASCII case. Non-ASCII bytes only ever equal themselves.
func hasPrefixASCIIFold(s, lit string) bool {
	if len(s) < len(lit) {
		return false
	}
	for i := 1; i < len(lit); i++ { // byte 0 already matched via the bucket
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lit[i] {
			return false
		}
	}
	return true
}

// NewPrefilter analyses a pattern (in Go regexp syntax, exactly as it will
// be compiled, flags included) and returns its pre-filter, or nil when
// nothing is provably required. Two necessary conditions are derived: the
// literals below, and the byte classes of bytes.go. Why the literals are sound: every node gets either the
// finite set of strings it can match, or a set of literals one of which
// every match contains; both are computed bottom-up by rules that keep that
// property (concatenation, alternation, repetition ≥ 1) and give up
// everywhere else. ASCII letters are lowercased and compared
// case-insensitively, which can only make the filter pass more often; other
// runes are compared as their UTF-8 bytes, with every case variant listed
// under (?i) (s ↔ U+017F LONG S, k ↔ U+212A KELVIN SIGN).
func NewPrefilter(pattern string) *Prefilter {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	return prefilterOf(re.Simplify())
}

// prefilterOf is NewPrefilter for a parsed, simplified pattern.
func prefilterOf(re *syntax.Regexp) *Prefilter {
	req := analyze(re).required()
	bf := newByteFilter(re)
	if req == nil && bf == nil {
		return nil
	}
	p := &Prefilter{lits: req, bytes: bf}
	p.index()
	return p
}

func (p *Prefilter) index() {
	for _, lit := range p.lits {
		c := lit[0]
		p.byFirst[c] = append(p.byFirst[c], lit)
		if 'a' <= c && c <= 'z' {
			p.byFirst[c-'a'+'A'] = append(p.byFirst[c-'a'+'A'], lit)
		}
	}
}

// literalPrefilter requires one of lits (lowercase), compared ASCII
// case-insensitively; nil when some literal is empty (it matches
// anything) or there are none.
func literalPrefilter(lits []string) *Prefilter {
	if len(lits) == 0 || slices.Contains(lits, "") {
		return nil
	}
	p := &Prefilter{lits: slices.Clone(lits)}
	for i, l := range p.lits {
		p.lits[i] = lowerASCIIString(l)
	}
	p.index()
	return p
}

// lowerASCIIString lowercases ASCII letters only (Coraza's lowercase on
// ASCII input, and how literals are stored); s itself when it has none.
func lowerASCIIString(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// info is what the analysis knows about one node.
type info struct {
	// exact, when exactOK, is every string the node can match (lowercase).
	exact   []string
	exactOK bool
	// req, when non-nil, is a set of non-empty literals every match
	// contains at least one of.
	req []string
}

// required is the best requirement the node offers: its own, or its exact
// set when that cannot be empty.
func (in info) required() []string {
	var fromExact []string
	if in.exactOK && len(in.exact) > 0 && !slices.Contains(in.exact, "") {
		fromExact = in.exact
	}
	return better(in.req, fromExact)
}

// better prefers the set whose shortest literal is longest (more
// selective), then the smaller set.
func better(a, b []string) []string {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	ma, mb := minLen(a), minLen(b)
	if ma != mb {
		if ma > mb {
			return a
		}
		return b
	}
	if len(b) < len(a) {
		return b
	}
	return a
}

func minLen(set []string) int {
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}

var emptyOnly = info{exact: []string{""}, exactOK: true}

func analyze(re *syntax.Regexp) info {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return emptyOnly
	case syntax.OpLiteral:
		return literal(re.Rune, re.Flags&syntax.FoldCase != 0)
	case syntax.OpCharClass:
		return charClass(re.Rune)
	case syntax.OpCapture:
		return analyze(re.Sub[0])
	case syntax.OpQuest:
		sub := analyze(re.Sub[0])
		if sub.exactOK {
			if u := union([]string{""}, sub.exact, true); u != nil {
				return info{exact: u, exactOK: true}
			}
		}
		return info{}
	case syntax.OpPlus:
		return info{req: analyze(re.Sub[0]).required()}
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return info{req: analyze(re.Sub[0]).required()}
		}
		return info{}
	case syntax.OpConcat:
		return concat(re.Sub)
	case syntax.OpAlternate:
		return alternate(re.Sub)
	}
	// OpAnyChar, OpAnyCharNotNL, OpStar, OpNoMatch and anything unknown:
	// no claim.
	return info{}
}

// runeSet is the set of encodings a literal rune can match: the rune
// itself, plus every case variant under (?i) (so (?i)k also yields U+212A
// KELVIN SIGN). ASCII letters are lowercased, since literals are compared
// ASCII case-insensitively. U+FFFD gives no claim: the regexp matches it
// against any invalid UTF-8 byte, which no byte comparison would see.
func runeSet(r rune, fold bool) info {
	if r == utf8.RuneError || r < 0 || r > unicode.MaxRune {
		return info{}
	}
	set := []string{lowerRune(r)}
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f == utf8.RuneError {
				return info{}
			}
			if s := lowerRune(f); !slices.Contains(set, s) {
				set = append(set, s)
			}
		}
	}
	return info{exact: set, exactOK: true}
}

func lowerRune(r rune) string {
	if r < 0x80 {
		return string(rune(lowerASCII(byte(r))))
	}
	return string(r)
}

func literal(runes []rune, fold bool) info {
	parts := make([]info, len(runes))
	for i, r := range runes {
		parts[i] = runeSet(r, fold)
	}
	return concatInfo(parts)
}

func charClass(ranges []rune) info {
	var set []string
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if hi-lo+1 > maxClassRunes || (lo <= utf8.RuneError && utf8.RuneError <= hi) {
			return info{}
		}
		for r := lo; r <= hi; r++ {
			s := lowerRune(r)
			if !slices.Contains(set, s) {
				set = append(set, s)
			}
			if len(set) > maxClassRunes {
				return info{}
			}
		}
	}
	if len(set) == 0 {
		return info{}
	}
	return info{exact: set, exactOK: true}
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// concat multiplies out runs of exactly known parts and keeps the most
// selective requirement among the runs and the other parts.
func concat(subs []*syntax.Regexp) info {
	parts := make([]info, len(subs))
	for i, sub := range subs {
		parts[i] = analyze(sub)
	}
	return concatInfo(parts)
}

func concatInfo(parts []info) info {
	cur := []string{""}
	exactOK := true
	var req []string
	flush := func() {
		req = better(req, info{exact: cur, exactOK: true}.required())
		cur = []string{""}
	}
	for _, in := range parts {
		if !in.exactOK {
			exactOK = false
			flush()
			req = better(req, in.required())
			continue
		}
		if next := cross(cur, in.exact); next != nil {
			cur = next
			continue
		}
		// The product grew too large: close this run, start from the part.
		exactOK = false
		flush()
		cur = in.exact
	}
	out := info{}
	if exactOK {
		out.exact, out.exactOK = cur, true
	}
	flush()
	out.req = req
	return out
}

func alternate(subs []*syntax.Regexp) info {
	var exact, req []string
	exactOK, reqOK := true, true
	for _, sub := range subs {
		in := analyze(sub)
		if exactOK {
			if in.exactOK {
				if exact = union(exact, in.exact, true); exact == nil {
					exactOK = false
				}
			} else {
				exactOK = false
			}
		}
		if reqOK {
			r := in.required()
			if r == nil {
				reqOK = false
			} else if req = union(req, r, false); req == nil {
				reqOK = false
			}
		}
	}
	out := info{}
	if exactOK {
		out.exact, out.exactOK = exact, true
	}
	if reqOK {
		out.req = req
	}
	return out
}

// union returns a ∪ b. When that exceeds maxLiterals, literals are cut to
// ever shorter prefixes (a string containing a literal contains its prefix)
// until the deduplicated set fits; nil when even that fails. Cutting is only
// done on requirement sets: an exact set must stay exact, so callers pass
// exact=true to forbid it.
func union(a, b []string, exact bool) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if out == nil {
		out = []string{}
	}
	if len(out) <= maxLiterals {
		return out
	}
	if exact {
		return nil
	}
	for n := 8; n >= 1; n-- {
		var cut []string
		for _, s := range out {
			if len(s) > n {
				s = s[:n]
			}
			if !slices.Contains(cut, s) {
				cut = append(cut, s)
			}
		}
		if len(cut) <= maxLiterals {
			return cut
		}
	}
	return nil
}

// cross returns every x+y, or nil when it would exceed maxLiterals.
func cross(a, b []string) []string {
	if len(a)*len(b) > maxProduct {
		return nil
	}
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			s := x + y
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}
