package acl

import (
	"cmp"
	"math/bits"
	"slices"
)

// hostSet answers IPv4 lookups in a table of many single addresses, and
// the table's IPv4 CIDRs with them, from one 64-byte cache line per
// lookup. Lookups in a blocklist of millions of addresses miss the CPU
// caches; what they cost is how many misses the CPU can overlap, and a
// second structure asked after the first (the CIDRs) is a second miss
// behind branches that wait on the first.
//
// An address's upper bits choose a line. The line's first four words
// hold up to 16 lower halves of its members, compared with the query all
// at once, four per word, without a branch on the data (a sorted array
// needs as many cache misses but mispredicts a branch at most search
// steps, and each misprediction stalls the lookups the CPU would
// otherwise overlap with the miss). The fifth word answers the CIDRs for
// the line's range: the longest prefix covering the whole range and at
// most one segment inside it. The last three words take what overflows
// in a fuller line: 12 more members, or 3 more segments (2% of lines
// each with 10 million random addresses and 100,000 CIDRs), read only
// when the fifth word says so. (28 members in 7 words over half as many
// lines, always compared, measured slower.) A line that needs more asks
// spill, the sorted members of a densely listed range, and the netSet4,
// which answers every range.
//
// The line count is a power of two chosen for 8 to 16 members per line.
type hostSet struct {
	shift uint                // line index = a >> shift; 8 ≤ shift ≤ 15
	low   uint32              // 1<<shift - 1: an address's lower half
	lines []hostLine          // len 1 << (32 - shift)
	spill map[uint32][]uint16 // sorted members of overflowing lines
	nets  *netSet4            // the table's IPv4 CIDRs; nil when none
	n     int
}

// A hostLine holds up to lineSlots lower halves (unused slots, and all
// slots of a line whose members spill, hold hostEmpty) and the CIDR
// word. Lower halves are at most 15 bits (shift ≤ 15), so hostEmpty is
// never a member and the word's fields hold them. Lines are 64 bytes
// and the Go allocator aligns large slices to pages, so each is one
// cache line.
type hostLine struct {
	slots [lineSlots / 4]uint64
	nets  netWord
	ext   [3]uint64 // 12 more members (netMore), or 3 more segments (netSegs)
}

const (
	lineSlots = 16 // in slots; ext holds 12 more
	extSlots  = 12
	hostEmpty = 0xffff

	lanes = 0x0001_0001_0001_0001 // 1 in each 16-bit lane
	highs = 0x8000_8000_8000_8000 // the top bit of each lane
)

// A netWord is a line's CIDR answer, in fields of 1 + prefix length
// (0: none): bits 0–5 the longest prefix covering the whole line, bits
// 6–11 the one inside it that covers the lower halves lo (bits 12–26)
// to hi (bits 27–41). A line without a segment inside repeats its cover
// there over the whole range, so that lookup needs no branch to tell the
// two apart. The top bits say where the rest of a fuller line is: its
// members continue in ext (netMore), its range holds up to three more
// segments, in ext (netSegs), or the line cannot answer alone and asks
// spill and the netSet4 (netAsk: more than 28 members, or more segments
// than fit).
type netWord uint64

const (
	netAsk  netWord = 1 << 63
	netMore netWord = 1 << 62
	netSegs netWord = 1 << 61

	netRare = netAsk | netMore | netSegs
)

// extSeg is a segment in ext: 1 + prefix length in bits 0–5, the lower
// halves lo and hi in bits 6–20 and 21–35. An unused one (lo 1, hi 0)
// holds nothing.
func extSeg(inner uint8, lo, hi uint16) uint64 {
	return uint64(inner) | uint64(lo)<<6 | uint64(hi)<<21
}

const extSegNone = 1 << 6

func makeNetWord(cover, inner uint8, lo, hi uint16) netWord {
	return netWord(cover) | netWord(inner)<<6 | netWord(lo)<<12 | netWord(hi)<<27
}

// answer returns 1 + the length of the longest prefix holding the lower
// half x, or 0.
func (w netWord) answer(x uint64) uint8 {
	lo, hi := uint64(w>>12&0x7fff), uint64(w>>27&0x7fff)
	c := uint8(w & 63)
	if x-lo <= hi-lo { // lo ≤ x ≤ hi, in one comparison
		c = uint8(w >> 6 & 63)
	}
	return c
}

func newHostSet(addrs []uint32, nets *netSet4) *hostSet {
	// 8 to 16 members per line, and at least 2^17 lines so that lower
	// halves fit in 15 bits.
	lineBits := max(17, min(24, bits.Len(uint(len(addrs)/16))))
	h := &hostSet{shift: uint(32 - lineBits), low: 1<<(32-lineBits) - 1, lines: make([]hostLine, 1<<lineBits), nets: nets}
	// Counting sort by line, then a small sort per line.
	start := make([]uint32, len(h.lines)+1)
	for _, a := range addrs {
		start[a>>h.shift+1]++
	}
	for k := 1; k < len(start); k++ {
		start[k] += start[k-1]
	}
	next := slices.Clone(start[:len(h.lines)])
	low := make([]uint16, len(addrs))
	mask := uint32(1)<<h.shift - 1
	for _, a := range addrs {
		k := a >> h.shift
		low[next[k]] = uint16(a & mask)
		next[k]++
	}
	for k := range h.lines {
		run := low[start[k]:start[k+1]]
		slices.Sort(run)
		run = slices.Compact(run)
		h.n += len(run)
		var slots [lineSlots + extSlots]uint16
		for i := range slots {
			slots[i] = hostEmpty
		}
		if len(run) <= len(slots) {
			copy(slots[:], run)
		} else {
			if h.spill == nil {
				h.spill = make(map[uint32][]uint16)
			}
			h.spill[uint32(k)] = slices.Clone(run)
		}
		pack := func(s []uint16) uint64 {
			return uint64(s[0]) | uint64(s[1])<<16 | uint64(s[2])<<32 | uint64(s[3])<<48
		}
		l := &h.lines[k]
		for w := range l.slots {
			l.slots[w] = pack(slots[4*w:])
		}
		var segs []uint64
		l.nets, segs = h.netWordOf(uint32(k))
		switch {
		case len(run) > len(slots):
			l.nets |= netAsk
		case len(run) > lineSlots:
			for w := range l.ext {
				l.ext[w] = pack(slots[lineSlots+4*w:])
			}
			l.nets |= netMore
			if len(segs) > 0 {
				l.nets |= netAsk // ext holds members: the netSet4 answers
			}
		case len(segs) > 0:
			for w := range l.ext {
				l.ext[w] = extSegNone
				if w < len(segs) {
					l.ext[w] = segs[w]
				}
			}
			l.nets |= netSegs
		}
	}
	return h
}

// netWordOf derives line k's CIDR word from the netSet4, and the
// segments past the word's one that ext must hold (netAsk when more than
// ext can): a line lies inside one /16, whose disjoint segments either
// cover the line, leave it to the /16's cover, or cut into it.
func (h *hostSet) netWordOf(k uint32) (netWord, []uint64) {
	if h.nets == nil {
		return 0, nil
	}
	first := k << h.shift
	k16 := first >> 16
	lo, hi := uint16(first), uint16(first|h.low) // the line within its /16
	cover := h.nets.cover[k16]
	segs := h.nets.segs[h.nets.index[k16]:h.nets.index[k16+1]]
	i, _ := slices.BinarySearchFunc(segs, lo, func(g segment4, x uint16) int { return cmp.Compare(g.hi, x) })
	j := i
	for j < len(segs) && segs[j].lo <= hi {
		j++
	}
	in, low := segs[i:j], uint16(h.low)
	switch {
	case len(in) == 0:
		return makeNetWord(cover, cover, 0, low), nil
	case len(in) > 1+len(hostLine{}.ext):
		return netAsk, nil
	case len(in) == 1 && in[0].lo <= lo && in[0].hi >= hi:
		return makeNetWord(in[0].bits+1, in[0].bits+1, 0, low), nil
	}
	clip := func(g segment4) (uint16, uint16) { return max(g.lo, lo) & low, min(g.hi, hi) & low }
	glo, ghi := clip(in[0])
	w := makeNetWord(cover, in[0].bits+1, glo, ghi)
	var more []uint64
	for _, g := range in[1:] {
		glo, ghi := clip(g)
		more = append(more, extSeg(g.bits+1, glo, ghi))
	}
	return w, more
}

// A lookup, which Table.Lookup spells out so that the compiler inlines
// its parts (it does not inline a whole lookup, and the call alone
// measured a quarter of a lookup that misses the caches): line, then
// has, then the line's netWord answer, or lookupRare when the word has
// a netRare bit.

// line returns a's line and a's lower half.
func (h *hostSet) line(a uint32) (*hostLine, uint64) {
	return &h.lines[a>>(h.shift&31)], uint64(a & h.low) // &31: no guard for shifts past 31
}

// has reports whether the lower half x is a member of the line. A lane
// of t is zero where the slot equals x; (t - lanes) &^ t has a lane's top
// bit set exactly when some lane is zero (the classic has-zero test,
// exact as to whether any lane matched).
func (l *hostLine) has(x uint64) bool {
	xs := x * lanes
	t0, t1, t2, t3 := l.slots[0]^xs, l.slots[1]^xs, l.slots[2]^xs, l.slots[3]^xs
	return ((t0-lanes)&^t0|(t1-lanes)&^t1|(t2-lanes)&^t2|(t3-lanes)&^t3)&highs != 0
}

// lookupRare answers for a line whose word has a netRare bit.
func (h *hostSet) lookupRare(l *hostLine, a uint32, x uint64) (bits int, ok bool) {
	if l.nets&netMore != 0 && l.hasMore(x) {
		return 32, true
	}
	if l.nets&netAsk != 0 {
		if run, spilled := h.spill[a>>h.shift]; spilled {
			if _, ok := slices.BinarySearch(run, uint16(x)); ok {
				return 32, true
			}
		}
		if h.nets == nil {
			return 0, false
		}
		return h.nets.lookup(a)
	}
	c := l.nets.answer(x)
	if l.nets&netSegs != 0 {
		for _, s := range l.ext {
			// x-lo or hi-x wraps exactly when x is outside [lo, hi].
			if lo, hi := s>>6&0x7fff, s>>21&0x7fff; ((x-lo)|(hi-x))>>63 == 0 {
				c = uint8(s & 63)
			}
		}
	}
	return int(c) - 1, c != 0
}

// hasMore reports whether the lower half x is one of the members in ext.
func (l *hostLine) hasMore(x uint64) bool {
	xs := x * lanes
	t0, t1, t2 := l.ext[0]^xs, l.ext[1]^xs, l.ext[2]^xs
	return ((t0-lanes)&^t0|(t1-lanes)&^t1|(t2-lanes)&^t2)&highs != 0
}

// len is the number of distinct addresses in the set.
func (h *hostSet) len() int { return h.n }

// all yields every address in the set, in ascending order.
func (h *hostSet) all(yield func(uint32) bool) {
	for k := range h.lines {
		emit := func(lo uint16) bool { return yield(uint32(k)<<h.shift | uint32(lo)) }
		if run, ok := h.spill[uint32(k)]; ok {
			for _, lo := range run {
				if !emit(lo) {
					return
				}
			}
			continue
		}
		for _, w := range h.lines[k].slots {
			for i := range 4 {
				if lo := uint16(w >> (16 * i)); lo != hostEmpty {
					if !emit(lo) {
						return
					}
				}
			}
		}
	}
}
