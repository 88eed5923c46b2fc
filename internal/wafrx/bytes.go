package wafrx

import (
	"math/bits"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// The byte-class stage catches what literals cannot: CRS's shell-evasion
// patterns spell each command letter by letter with optional quoting
// between letters (b["'\\]*u["'\\]*s...), so no literal longer than one
// byte is required, yet every match of "busybox" needs the bytes b, u, s,
// y, o and x. The stage keeps, per alternative, the byte classes a match
// must hit (an OR of ANDs), and tests them against the set of bytes the
// input contains, ASCII letters folded to lowercase.

// byteMask is a set of byte values.
type byteMask [4]uint64

func (m *byteMask) add(b byte)            { m[b>>6] |= 1 << (b & 63) }
func (m byteMask) hits(in *byteMask) bool { return m[0]&in[0]|m[1]&in[1]|m[2]&in[2]|m[3]&in[3] != 0 }
func (m byteMask) count() int {
	return bits.OnesCount64(m[0]) + bits.OnesCount64(m[1]) + bits.OnesCount64(m[2]) + bits.OnesCount64(m[3])
}

// conj is byte classes a match hits every one of.
type conj []byteMask

// Limits: alternatives kept per node, classes per alternative, and a
// class so wide it says nothing.
const (
	maxConjs      = 512
	maxConjLen    = 24
	maxUsefulBits = 128
)

// byteDNF returns the alternatives of byte classes for re, or nil when
// no claim can be made (some match may need no particular byte).
func byteDNF(re *syntax.Regexp) []conj {
	switch re.Op {
	case syntax.OpLiteral:
		var c conj
		for _, r := range re.Rune {
			m, ok := runeFirstBytes(r, re.Flags&syntax.FoldCase != 0)
			if !ok {
				continue // no claim for this rune; the others still hold
			}
			c = append(c, m)
		}
		return single(c)
	case syntax.OpCharClass:
		var m byteMask
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if hi >= 0x80 {
				// Any non-ASCII rune (and U+FFFD, which the regexp
				// matches against any invalid byte): claim all high bytes.
				for b := 0x80; b <= 0xff; b++ {
					m.add(byte(b))
				}
				hi = 0x7f
			}
			for r := lo; r <= hi; r++ {
				m.add(lowerASCII(byte(r)))
			}
		}
		return single(conj{m})
	case syntax.OpCapture, syntax.OpPlus:
		return byteDNF(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return byteDNF(re.Sub[0])
		}
		return nil
	case syntax.OpConcat:
		out := []conj{{}}
		for _, sub := range re.Sub {
			d := byteDNF(sub)
			if d == nil || len(out)*len(d) > maxConjs {
				continue // dropping a requirement only makes the filter looser
			}
			next := make([]conj, 0, len(out)*len(d))
			for _, a := range out {
				for _, b := range d {
					c := make(conj, 0, len(a)+len(b))
					c = append(append(c, a...), b...)
					if len(c) > maxConjLen {
						c = c[:maxConjLen]
					}
					next = append(next, c)
				}
			}
			out = next
		}
		return nonTrivial(out)
	case syntax.OpAlternate:
		var out []conj
		for _, sub := range re.Sub {
			d := byteDNF(sub)
			if d == nil || len(out)+len(d) > maxConjs {
				return nil
			}
			out = append(out, d...)
		}
		return out
	}
	return nil
}

// runeFirstBytes is the lowercased first byte of r and, under (?i), of each
// of its case variants.
func runeFirstBytes(r rune, fold bool) (byteMask, bool) {
	var m byteMask
	if r == utf8.RuneError || r < 0 || r > unicode.MaxRune {
		return m, false
	}
	add := func(r rune) {
		var buf [utf8.UTFMax]byte
		utf8.EncodeRune(buf[:], r)
		m.add(lowerASCII(buf[0]))
	}
	add(r)
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			add(f)
		}
	}
	return m, true
}

// single wraps one alternative, dropping classes too wide to matter; an
// alternative with no class left means no claim.
func single(c conj) []conj { return nonTrivial([]conj{c}) }

func nonTrivial(d []conj) []conj {
	for i, c := range d {
		kept := c[:0:0]
		for _, m := range c {
			if m.count() <= maxUsefulBits {
				kept = append(kept, m)
			}
		}
		if len(kept) == 0 {
			return nil // this alternative needs nothing: the whole OR is true
		}
		d[i] = kept
	}
	return d
}

// byteFilter is the compiled OR of ANDs.
type byteFilter struct{ alts []conj }

func newByteFilter(re *syntax.Regexp) *byteFilter {
	d := byteDNF(re)
	if d == nil {
		return nil
	}
	return &byteFilter{alts: d}
}

// mayMatch reports whether some alternative has all its classes hit by
// the bytes of s.
func (f *byteFilter) mayMatch(s string) bool {
	var in byteMask
	for i := 0; i < len(s); i++ {
		in.add(lowerASCII(s[i]))
	}
	return f.mayMatchMask(&in)
}

// mayMatchMask is mayMatch given the input's bytes, ASCII letters folded
// to lowercase.
func (f *byteFilter) mayMatchMask(in *byteMask) bool {
	for _, c := range f.alts {
		ok := true
		for _, m := range c {
			if !m.hits(in) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
