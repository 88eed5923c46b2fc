package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// NewSelector returns the Selector for a pool's load-balancing algorithm
// over a fixed backend set. The names are those of config.Algorithms.
//
// The selector keeps its own copy of backends, so the caller may reuse the
// slice. Membership changes are handled by building a new selector; state
// changes (health, quarantine, drain, ejection) are not, because every
// Select consults Backend.Available.
func NewSelector(algorithm string, backends []*Backend) (Selector, error) {
	for i, b := range backends {
		if b == nil {
			return nil, fmt.Errorf("selector: backend %d is nil", i)
		}
	}
	bs := slices.Clone(backends)
	switch algorithm {
	case "round_robin":
		return &roundRobin{backends: bs}, nil
	case "weighted_round_robin":
		return &weightedRoundRobin{backends: bs, current: make([]int64, len(bs))}, nil
	case "least_connections":
		return &leastConnections{backends: bs, order: weightedOrder(bs)}, nil
	case "power_of_two":
		return &powerOfTwo{backends: bs, order: weightedOrder(bs)}, nil
	case "consistent_hash":
		return newConsistentHash(bs), nil
	case "":
		return nil, errors.New("selector: no algorithm")
	default:
		return nil, fmt.Errorf("selector: unknown algorithm %q", algorithm)
	}
}

// selectable reports whether b may take this request: it is available and
// no earlier attempt of the request already failed on it.
func selectable(b *Backend, tried []*Backend) bool {
	// tried is at most a handful of entries (one per retry), so a linear
	// scan beats any set and does not allocate.
	for _, t := range tried {
		if t == b {
			return false
		}
	}
	return b.Available()
}

// weightOf is b.Weight clamped to at least 1. NewBackend already clamps, but
// a Backend built as a literal may carry 0, and a zero weight would divide
// the ring or stall weighted round robin.
func weightOf(b *Backend) int64 {
	if b.Weight < 1 {
		return 1
	}
	return int64(b.Weight)
}

// maxOrder bounds weightedOrder's length: weights are scaled down to fit.
const maxOrder = 1024

// weightedOrder is a smooth weighted round robin sequence of indices into
// backends, each index appearing in proportion to its backend's weight
// (weights 3,1: 0 0 1 0); with equal weights it is 0 1 ... n-1. Selectors
// that pick by load use it to break ties by weight without a lock.
func weightedOrder(backends []*Backend) []int {
	if len(backends) == 0 {
		return []int{0}
	}
	w := make([]int64, len(backends))
	var total int64
	for i, b := range backends {
		w[i] = weightOf(b)
		total += w[i]
	}
	if total > maxOrder {
		scaled := int64(0)
		for i := range w {
			w[i] = max(1, w[i]*maxOrder/total)
			scaled += w[i]
		}
		total = scaled
	}
	order := make([]int, 0, total)
	current := make([]int64, len(w))
	for range total {
		best := 0
		for i := range w {
			current[i] += w[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		order = append(order, best)
	}
	return order
}

// roundRobin hands requests to backends in turn. A single atomic counter is
// enough: concurrent callers each get a distinct start, so no lock is taken
// on the request path.
type roundRobin struct {
	backends []*Backend
	next     atomic.Uint64
}

func (p *roundRobin) Select(_ string, tried []*Backend) *Backend {
	n := uint64(len(p.backends))
	if n == 0 {
		return nil
	}
	// A backend that cannot be used passes its turn on: each attempt takes
	// a fresh tick rather than stepping to the neighbour, so the turn goes
	// round the whole pool and the backends left in keep exactly even
	// shares (stepping would hand the neighbour of an out backend a double
	// share).
	var i uint64
	for range n {
		i = p.next.Add(1) - 1
		if b := p.backends[i%n]; selectable(b, tried) {
			return b
		}
	}
	// Concurrent callers took the ticks in between, so n ticks need not
	// have covered every backend. Scan once before giving up: a request
	// fails only when no backend at all is left.
	for k := range n {
		if b := p.backends[(i+k)%n]; selectable(b, tried) {
			return b
		}
	}
	return nil
}

// weightedRoundRobin is nginx's smooth weighted round robin: on every pick
// each candidate's current weight grows by its weight, the largest current
// weight wins and is lowered by the total. Weights 5,1,1 then give
// a a b a c a a rather than a a a a a b c, so a heavy backend never receives
// a burst.
//
// The current weights are read and written together on every pick; a
// mutex is the simplest way to keep that read-modify-write consistent
// across backends (per-backend atomics would let two callers pick the same
// winner from the same snapshot and skew the sequence). The critical
// section is a short loop without I/O or allocation.
type weightedRoundRobin struct {
	backends []*Backend

	mu      sync.Mutex
	current []int64 // guarded by mu; current[i] belongs to backends[i]
}

func (p *weightedRoundRobin) Select(_ string, tried []*Backend) *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	var total int64
	for i, b := range p.backends {
		// Like nginx, a backend that is unavailable (or already tried)
		// does not take part: its current weight is frozen and its share
		// goes to the others for as long as it is out.
		if !selectable(b, tried) {
			continue
		}
		w := weightOf(b)
		p.current[i] += w
		total += w
		if best < 0 || p.current[i] > p.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	p.current[best] -= total
	return p.backends[best]
}

// leastConnections sends the request to the backend with the fewest
// requests in flight relative to its weight. It suits backends whose
// requests vary in duration, where round robin piles work onto the slow
// ones.
type leastConnections struct {
	backends []*Backend
	// next rotates the scan's starting point through order, so that of
	// equally loaded backends (an idle pool: all at zero) each gets its
	// turn in proportion to its weight, as with nginx's least_conn.
	// Without it every such request would go to the first backend, and
	// concurrent requests would arrive there before its count rose.
	next  atomic.Uint64
	order []int
}

func (p *leastConnections) Select(_ string, tried []*Backend) *Backend {
	n := uint64(len(p.backends))
	if n == 0 {
		return nil
	}
	start := uint64(p.order[(p.next.Add(1)-1)%uint64(len(p.order))])
	var best *Backend
	var bestLoad, bestWeight int64
	for i := range n {
		b := p.backends[(start+i)%n]
		if !selectable(b, tried) {
			continue
		}
		load, w := b.InFlight(), weightOf(b)
		// load/w < bestLoad/bestWeight, cross-multiplied to stay in
		// integers. Strictly less keeps the first of equals, which the
		// rotating start makes a different one each call.
		if best == nil || load*bestWeight < bestLoad*w {
			best, bestLoad, bestWeight = b, load, w
		}
	}
	return best
}

// powerOfTwo ("power of two random choices") draws two distinct backends at
// random and takes the less loaded one (in-flight per weight). It spreads
// load almost as well as least connections while reading only two
// counters, and, unlike least connections, concurrent callers do not all
// stampede the same momentarily idle backend.
//
// The random numbers come from math/rand/v2's top-level functions, which
// use a per-thread runtime generator: no lock and no allocation.
type powerOfTwo struct {
	backends []*Backend
	order    []int // draws are made from it: in proportion to weight
}

func (p *powerOfTwo) Select(_ string, tried []*Backend) *Backend {
	a := p.draw(nil, tried)
	if a == nil {
		return nil // nothing is selectable
	}
	b := p.draw(a, tried)
	if b == nil {
		return a // a is the only selectable backend
	}
	// b wins only when strictly less loaded: ties keep a, which was itself
	// drawn at random, so ties still spread evenly.
	if b.InFlight()*weightOf(a) < a.InFlight()*weightOf(b) {
		return b
	}
	return a
}

// p2cDraws is how many random draws powerOfTwo.draw makes before it falls
// back to a scan. With all backends up the first draw succeeds; with half
// the pool out, four draws all miss only one time in sixteen.
const p2cDraws = 4

// draw returns a backend chosen at random, in proportion to its weight
// (through order), among the selectable ones other than not, or nil if
// there is none; the scan that follows missed draws is unweighted.
//
// Uniformity matters: stepping from a rejected index to its neighbour would
// be cheaper but would double the neighbour's share of draws, and with
// equal load it would get twice the traffic. Redrawing (rejection
// sampling) keeps the common case O(1); when the draws keep missing, most
// of the pool is out and a counting scan picks uniformly instead.
func (p *powerOfTwo) draw(not *Backend, tried []*Backend) *Backend {
	n := len(p.backends)
	if n == 0 {
		return nil
	}
	for range p2cDraws {
		if b := p.backends[p.order[rand.IntN(len(p.order))]]; b != not && selectable(b, tried) {
			return b
		}
	}
	m := 0
	for _, b := range p.backends {
		if b != not && selectable(b, tried) {
			m++
		}
	}
	if m == 0 {
		return nil
	}
	r := rand.IntN(m)
	var last *Backend
	for _, b := range p.backends {
		if b != not && selectable(b, tried) {
			if r == 0 {
				return b
			}
			r--
			last = b
		}
	}
	// A backend went out between the two scans: take any still in.
	return last
}

// Virtual nodes per unit of (normalised) weight, and the most a single
// backend gets. ~128 points per backend keeps the spread of keys within a
// few percent of even; the cap bounds the ring (and its build time) when an
// operator writes weights such as 1 and 1000.
const (
	vnodesPerWeight = 128
	maxVnodes       = 128 * 64
)

// ringPoint is one virtual node: a position on the ring and the backend
// (index into consistentHash.backends) it stands for.
type ringPoint struct {
	hash uint64
	idx  int32
}

// consistentHash maps a key (client IP, header value) to a backend through
// a hash ring with virtual nodes, so the same key keeps reaching the same
// backend. A backend's points depend only on its ID, so adding or removing
// one backend moves only the keys that land on its points; an unavailable
// or already-tried backend is passed over clockwise, which likewise moves
// only its own keys, and they come back when it returns.
//
// The hash is FNV-1a followed by a 64-bit finaliser, written inline: it is
// deterministic across processes and restarts (hash/maphash seeds are
// random per process, which would give every Rampart instance a different
// mapping) and it does not allocate. The finaliser is needed because plain
// FNV-1a barely moves the high bits for keys differing in the last byte
// (10.0.0.1, 10.0.0.2, ...), and ring order is decided by the high bits.
type consistentHash struct {
	backends []*Backend
	ring     []ringPoint // sorted by hash, then idx
}

func newConsistentHash(backends []*Backend) *consistentHash {
	// Normalise weights by their GCD: 2,4 and 1,2 should give the same ring
	// size and the same key spread.
	var g int64
	for _, b := range backends {
		g = gcd(g, weightOf(b))
	}
	var points int
	for _, b := range backends {
		points += vnodeCount(b, g)
	}
	p := &consistentHash{backends: backends, ring: make([]ringPoint, 0, points)}
	for i, b := range backends {
		for v := range vnodeCount(b, g) {
			h := hashString(b.ID + "#" + strconv.Itoa(v))
			p.ring = append(p.ring, ringPoint{hash: h, idx: int32(i)})
		}
	}
	slices.SortFunc(p.ring, func(x, y ringPoint) int {
		switch {
		case x.hash < y.hash:
			return -1
		case x.hash > y.hash:
			return 1
		}
		return int(x.idx - y.idx) // collisions: order by backend, deterministically
	})
	return p
}

func vnodeCount(b *Backend, g int64) int {
	return int(min(weightOf(b)/g*vnodesPerWeight, maxVnodes))
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (p *consistentHash) Select(key string, tried []*Backend) *Backend {
	n := len(p.ring)
	if n == 0 {
		return nil
	}
	h := hashString(key)
	// First point at or after h (a hand-written sort.Search, so no closure).
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.ring[mid].hash < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// Walk clockwise. A rejected backend owns many points, so with up to
	// 64 backends a bit set remembers rejections: each backend is checked
	// once and the walk stops as soon as every backend has been rejected.
	// Larger pools re-check, bounded by one lap of the ring.
	var rejected uint64
	nrejected, nb := 0, len(p.backends)
	for k := range n {
		pt := p.ring[(lo+k)%n]
		if nb <= 64 {
			bit := uint64(1) << uint(pt.idx)
			if rejected&bit != 0 {
				continue
			}
			if b := p.backends[pt.idx]; selectable(b, tried) {
				return b
			}
			rejected |= bit
			if nrejected++; nrejected == nb {
				return nil
			}
			continue
		}
		if b := p.backends[pt.idx]; selectable(b, tried) {
			return b
		}
	}
	return nil
}

// hashString is 64-bit FNV-1a over s followed by the murmur3 fmix64
// finaliser for avalanche; see consistentHash for why.
func hashString(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
