package acl

import (
	"math/bits"
	"slices"
)

// hostSet is a set of IPv4 addresses built for lookups that miss the CPU
// caches, which is what lookups in a blocklist of millions of addresses
// do. An address's upper bits choose a bucket of 16 slots in 32 bytes,
// half a cache line, which holds the lower bits of the bucket's members;
// a lookup reads that one bucket and compares all 16 slots at once, four
// per 64-bit word, without a branch on the data. That matters more than
// the memory touched: a sorted array needs as many cache misses but
// mispredicts a branch at most search steps, and each misprediction
// stalls the lookups the CPU would otherwise overlap with the miss.
//
// The bucket count is a power of two chosen for 8 to 16 members per
// bucket, so that few buckets overflow (2% with 10 million random
// addresses); the members of one that does (a densely listed range) are
// kept as a sorted run in spill, found through a marker in the bucket's
// first slot.
type hostSet struct {
	shift   uint                // bucket index = a >> shift
	buckets []hostBucket        // len 1 << (32 - shift)
	spill   map[uint32][]uint16 // sorted members of overflowing buckets
	n       int
}

// A hostBucket holds up to hostSlots lower halves; unused slots hold
// hostEmpty. Lower halves are at most 15 bits (shift ≤ 15), so the two
// markers can never be members.
type hostBucket [hostSlots / 4]uint64

const (
	hostSlots = 16
	hostEmpty = 0xffff
	hostSpill = 0xfffe // in slot 0: the members are in spill

	lanes = 0x0001_0001_0001_0001 // 1 in each 16-bit lane
	highs = 0x8000_8000_8000_8000 // the top bit of each lane
)

func newHostSet(addrs []uint32) *hostSet {
	// 8 to 16 members per bucket, and at least 2^17 buckets so that the
	// lower halves leave the markers free.
	bucketBits := max(17, min(24, bits.Len(uint(len(addrs)/16))))
	h := &hostSet{shift: uint(32 - bucketBits), buckets: make([]hostBucket, 1<<bucketBits)}
	// Counting sort by bucket, then a small sort per bucket.
	start := make([]uint32, len(h.buckets)+1)
	for _, a := range addrs {
		start[a>>h.shift+1]++
	}
	for k := 1; k < len(start); k++ {
		start[k] += start[k-1]
	}
	next := slices.Clone(start[:len(h.buckets)])
	low := make([]uint16, len(addrs))
	mask := uint32(1)<<h.shift - 1
	for _, a := range addrs {
		k := a >> h.shift
		low[next[k]] = uint16(a & mask)
		next[k]++
	}
	for k := range h.buckets {
		run := low[start[k]:start[k+1]]
		slices.Sort(run)
		run = slices.Compact(run)
		h.n += len(run)
		var slots [hostSlots]uint16
		for i := range slots {
			slots[i] = hostEmpty
		}
		if len(run) <= hostSlots {
			copy(slots[:], run)
		} else {
			if h.spill == nil {
				h.spill = make(map[uint32][]uint16)
			}
			h.spill[uint32(k)] = slices.Clone(run)
			slots[0] = hostSpill
		}
		for w := range h.buckets[k] {
			h.buckets[k][w] = uint64(slots[4*w]) | uint64(slots[4*w+1])<<16 | uint64(slots[4*w+2])<<32 | uint64(slots[4*w+3])<<48
		}
	}
	return h
}

func (h *hostSet) contains(a uint32) bool {
	k := a >> h.shift
	b := &h.buckets[k]
	x := uint64(a&(1<<h.shift-1)) * lanes
	// A lane of t is zero where the slot equals x; (t - lanes) &^ t has
	// a lane's top bit set exactly when some lane is zero (the classic
	// has-zero test, exact as to whether any lane matched).
	var found uint64
	for _, w := range b {
		t := w ^ x
		found |= (t - lanes) &^ t
	}
	if found&highs != 0 {
		return true
	}
	if uint16(b[0]) != hostSpill {
		return false
	}
	_, ok := slices.BinarySearch(h.spill[k], uint16(a&(1<<h.shift-1)))
	return ok
}

// len is the number of distinct addresses in the set.
func (h *hostSet) len() int { return h.n }

// all yields every address in the set, in ascending order.
func (h *hostSet) all(yield func(uint32) bool) {
	for k := range h.buckets {
		emit := func(lo uint16) bool { return yield(uint32(k)<<h.shift | uint32(lo)) }
		if run, ok := h.spill[uint32(k)]; ok {
			for _, lo := range run {
				if !emit(lo) {
					return
				}
			}
			continue
		}
		for _, w := range h.buckets[k] {
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
