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
// An address's upper bits choose a line. Six of the line's eight words
// hold up to 24 lower halves of its members, four per word; a member sits
// in one of two words its own bits choose, so a lookup compares the query
// with those two words at once, without a branch on the data (a sorted
// array needs as many cache misses but mispredicts a branch at most
// search steps, and each misprediction stalls the lookups the CPU would
// otherwise overlap with the miss; comparing all the words, as this did
// before, costs instructions that stall them too). One word answers the
// CIDRs for the line's range: the longest prefix covering the whole range
// and at most one segment inside it; another holds a second segment
// when the range has one. A line whose members do not fit (0.14% of lines
// with 10 million random addresses) or whose range holds more segments
// (0.5% with 100,000 random CIDRs besides) asks spill, the sorted members
// of a densely listed range, and the netSet4, which answers every range.
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

// A hostLine holds up to 24 lower halves in six words of four slots
// (unused slots, and all slots of a line whose members spill, hold
// hostEmpty), a second segment inside its range (when the CIDR word says
// netSegs), and the CIDR word. A member x sits in word x&3 or, when that is full, in word
// 4 + (x>>2)&1, so that a lookup compares two words, not six: fewer
// instructions behind the cache miss let the CPU overlap more lookups.
// Lower halves are at most 15 bits (shift ≤ 15), so hostEmpty is never a
// member and the CIDR word's fields hold them. Lines are 64 bytes and the
// Go allocator aligns large slices to pages, so each is one cache line.
type hostLine struct {
	slots [6]uint64
	seg2  netWord // only its segment fields
	nets  netWord
}

const (
	hostEmpty = 0xffff

	lanes = 0x0001_0001_0001_0001 // 1 in each 16-bit lane
	highs = 0x8000_8000_8000_8000 // the top bit of each lane
)

// slotWords returns the two words the lower half x may sit in.
func slotWords(x uint64) (first, second uint64) { return x & 3, 4 + x>>2&1 }

// A netWord is a line's CIDR answer, in fields of 1 + prefix length
// (0: none): bits 0–5 the longest prefix covering the whole line, bits
// 6–11 the one inside it that covers the lower halves lo (bits 12–26)
// to hi (bits 27–41). A line without a segment inside repeats its cover
// there over the whole range, so that lookup needs no branch to tell the
// two apart. The top bits say where the rest of a fuller line is: its
// range holds a second segment, in seg2 (netSegs), or the line cannot
// answer alone and asks spill and the netSet4 (netAsk: its members do not
// fit, or its segments do not).
type netWord uint64

const (
	netAsk  netWord = 1 << 63
	netSegs netWord = 1 << 61

	netRare = netAsk | netSegs
)

func makeNetWord(cover, inner uint8, lo, hi uint16) netWord {
	return netWord(cover) | netWord(inner)<<6 | netWord(lo)<<12 | netWord(hi)<<27
}

// answer returns 1 + the length of the longest prefix holding the lower
// half x, or 0.
func (w netWord) answer(x uint64) uint8 {
	if c, ok := w.inner(x); ok {
		return c
	}
	return uint8(w & 63)
}

// inner returns 1 + the length of the segment's prefix when the segment
// holds the lower half x.
func (w netWord) inner(x uint64) (uint8, bool) {
	lo, hi := uint64(w>>12&0x7fff), uint64(w>>27&0x7fff)
	return uint8(w >> 6 & 63), x-lo <= hi-lo // lo ≤ x ≤ hi, in one comparison
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
	for _, a := range addrs {
		k := a >> h.shift
		low[next[k]] = uint16(a & h.low)
		next[k]++
	}
	for k := range h.lines {
		run := low[start[k]:start[k+1]]
		slices.Sort(run)
		run = slices.Compact(run)
		h.n += len(run)
		l := &h.lines[k]
		placed := l.place(run)
		if !placed {
			if h.spill == nil {
				h.spill = make(map[uint32][]uint16)
			}
			h.spill[uint32(k)] = slices.Clone(run)
			l.slots = emptyLine.slots
		}
		l.nets, l.seg2 = h.netWordOf(uint32(k))
		if !placed {
			l.nets |= netAsk
		}
	}
	return h
}

// emptyLine has every slot hostEmpty.
var emptyLine = func() (l hostLine) {
	for w := range l.slots {
		l.slots[w] = hostEmpty * lanes
	}
	return l
}()

// place puts the lower halves run into the line's slots, each in the
// first of its two words with room, and reports whether all fit.
func (l *hostLine) place(run []uint16) bool {
	l.slots = emptyLine.slots
	var used [len(l.slots)]int
	for _, x := range run {
		first, second := slotWords(uint64(x))
		w := first
		if used[w] == 4 {
			w = second
		}
		if used[w] == 4 {
			return false
		}
		l.slots[w] &^= 0xffff << (16 * used[w])
		l.slots[w] |= uint64(x) << (16 * used[w])
		used[w]++
	}
	return true
}

// netWordOf derives line k's CIDR word from the netSet4, and its second
// segment when it has two (netSegs; more: netAsk): a line lies inside one
// /16, whose disjoint segments either cover the line, leave it to the
// /16's cover, or cut into it.
func (h *hostSet) netWordOf(k uint32) (w, seg2 netWord) {
	if h.nets == nil {
		return 0, 0
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
		return makeNetWord(cover, cover, 0, low), 0
	case len(in) > 2:
		return netAsk, 0
	case len(in) == 1 && in[0].lo <= lo && in[0].hi >= hi:
		return makeNetWord(in[0].bits+1, in[0].bits+1, 0, low), 0
	}
	clip := func(g segment4) netWord {
		return makeNetWord(cover, g.bits+1, max(g.lo, lo)&low, min(g.hi, hi)&low)
	}
	if len(in) == 2 {
		return clip(in[0]) | netSegs, clip(in[1])
	}
	return clip(in[0]), 0
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
	first, second := slotWords(x)
	t0, t1 := l.slots[first]^xs, l.slots[second]^xs
	return ((t0-lanes)&^t0|(t1-lanes)&^t1)&highs != 0
}

// lookupRare answers for a line whose word has a netRare bit.
func (h *hostSet) lookupRare(l *hostLine, a uint32, x uint64) (bits int, ok bool) {
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
	if c2, ok := l.seg2.inner(x); ok && l.nets&netSegs != 0 {
		c = c2
	}
	return int(c) - 1, c != 0
}

// len is the number of distinct addresses in the set.
func (h *hostSet) len() int { return h.n }

// all yields every address in the set, in ascending order.
func (h *hostSet) all(yield func(uint32) bool) {
	for k := range h.lines {
		run, ok := h.spill[uint32(k)]
		if !ok {
			var buf [4 * len(hostLine{}.slots)]uint16
			run = buf[:0]
			for _, w := range h.lines[k].slots {
				for i := range 4 {
					if lo := uint16(w >> (16 * i)); lo != hostEmpty {
						run = append(run, lo)
					}
				}
			}
			slices.Sort(run)
		}
		for _, lo := range run {
			if !yield(uint32(k)<<h.shift | uint32(lo)) {
				return
			}
		}
	}
}
