package acl

import (
	"cmp"
	"net/netip"
	"slices"
)

// netSet4 answers longest-prefix matches over a large set of IPv4 CIDRs
// with one read of a small per-/16 table and, when that /16 holds longer
// prefixes, one short scan of its segments: a flat layout for the same
// reason as hostSet (a prefix tree walk is a chain of dependent cache
// misses). Prefixes of /16 or shorter set a /16's cover; longer ones are
// flattened, per /16, into disjoint segments labelled with the longest
// prefix that covers them. IPv4 prefixes never overlap partially (two are
// nested or disjoint), which is what makes the flattening exact.
type netSet4 struct {
	cover [1 << 16]uint8    // 1 + bits of the longest prefix ≤ /16 covering the /16; 0: none
	index [1<<16 + 1]uint32 // segments of /16 k are segs[index[k]:index[k+1]]
	segs  []segment4
}

// A segment4 is a run [lo, hi] of addresses inside one /16 whose longest
// covering prefix has the given length.
type segment4 struct {
	lo, hi uint16
	bits   uint8
}

// segScanMax is the segment count up to which lookup scans a /16's
// segments; more are binary-searched.
const segScanMax = 8

func newNetSet4(prefixes []netip.Prefix) *netSet4 {
	s := new(netSet4)
	type span struct {
		lo, hi uint32
		bits   uint8
	}
	var inner []span
	for _, p := range prefixes {
		if !p.Addr().Is4() {
			continue
		}
		p = p.Masked()
		a4 := p.Addr().As4()
		lo := uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3])
		hi := lo | (1<<(32-p.Bits()) - 1)
		if p.Bits() == 0 {
			hi = 1<<32 - 1
		}
		if p.Bits() <= 16 {
			for k := lo >> 16; k <= hi>>16; k++ {
				s.cover[k] = max(s.cover[k], uint8(p.Bits())+1)
			}
			continue
		}
		inner = append(inner, span{lo, hi, uint8(p.Bits())})
	}
	// Sorted by start, and an enclosing prefix before the ones it holds.
	slices.SortFunc(inner, func(a, b span) int {
		return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(a.bits, b.bits))
	})
	inner = slices.CompactFunc(inner, func(a, b span) bool { return a == b })

	k := uint32(0) // the /16 being flattened
	emit := func(lo, hi uint32, bits uint8) {
		if lo > hi {
			return
		}
		// Merge with the previous segment of the same /16 when they touch
		// and agree.
		if n := len(s.segs); n > int(s.index[k]) {
			last := &s.segs[n-1]
			if last.bits == bits && uint32(last.hi)+1 == lo&0xffff {
				last.hi = uint16(hi)
				return
			}
		}
		s.segs = append(s.segs, segment4{uint16(lo), uint16(hi), bits})
	}
	// One /16 at a time: a stack of the open (enclosing) prefixes; the
	// part of an enclosing prefix before, between and after the prefixes
	// it holds is emitted with its own length.
	var stack []span
	for i := 0; i <= len(inner); {
		if i < len(inner) && inner[i].lo>>16 == k {
			p := inner[i]
			pos := p.lo
			for len(stack) > 0 && stack[len(stack)-1].hi < p.lo {
				top := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				emit(top.lo, top.hi, top.bits)
				if len(stack) > 0 {
					stack[len(stack)-1].lo = top.hi + 1
				}
			}
			if len(stack) > 0 {
				top := &stack[len(stack)-1]
				if pos > top.lo {
					emit(top.lo, pos-1, top.bits)
				}
				top.lo = p.hi + 1 // what remains of it after p
			}
			stack = append(stack, p)
			i++
			continue
		}
		// /16 k is complete: close what is open and start the next.
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			emit(top.lo, top.hi, top.bits)
			if len(stack) > 0 {
				stack[len(stack)-1].lo = top.hi + 1
			}
		}
		next := uint32(1 << 16)
		if i < len(inner) {
			next = inner[i].lo >> 16
		}
		for k++; k <= next && k <= 1<<16; k++ {
			s.index[k] = uint32(len(s.segs))
		}
		k = next
		if i == len(inner) {
			break
		}
	}
	s.segs = slices.Clip(s.segs)
	return s
}

// lookup returns the length of the longest prefix in the set that holds a.
func (s *netSet4) lookup(a uint32) (bits int, ok bool) {
	k := a >> 16
	segs := s.segs[s.index[k]:s.index[k+1]]
	x := uint16(a)
	if len(segs) <= segScanMax {
		for _, g := range segs {
			if x <= g.hi {
				if x >= g.lo {
					return int(g.bits), true
				}
				break
			}
		}
	} else if i, _ := slices.BinarySearchFunc(segs, x, func(g segment4, x uint16) int { return cmp.Compare(g.hi, x) }); i < len(segs) && segs[i].lo <= x {
		return int(segs[i].bits), true
	}
	if c := s.cover[k]; c != 0 {
		return int(c) - 1, true
	}
	return 0, false
}
