package wafrx

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// inputFacts is what rule skipping learns about one input string, shared
// by every rule and every request that sees the same string: its bytes
// (ASCII folded, for the byte-class filters), the rules one of whose
// literals it contains, and, for rules whose operator had to run on it,
// the outcome. All of it is a pure function of the string, so it can be
// reused across requests: browsers send the same User-Agent, Accept and
// cookie names again and again, and running a CRS regexp on them once
// is enough.
type inputFacts struct {
	s     string
	mask  byteMask
	lits  []uint64        // rule bit set; fixed once built
	ran   []atomic.Uint64 // rules whose other conditions were checked on s
	match []atomic.Uint64 // ... and held; set before ran
	// chains holds, per transformation chain of the plan, what the
	// operator gets for s: outputs are strings, not facts, so a cached
	// string never keeps other cache entries alive.
	chains []atomic.Pointer[chainOutput]
}

// chainOutput is a transformation chain applied to one string.
type chainOutput struct {
	outs     []string
	followed bool
}

func newInputFacts(p *skipPlan, s string) *inputFacts {
	words := (p.n + 63) / 64
	f := &inputFacts{s: s, lits: make([]uint64, words), ran: make([]atomic.Uint64, words), match: make([]atomic.Uint64, words),
		chains: make([]atomic.Pointer[chainOutput], len(p.chains))}
	for i := 0; i < len(s); i++ {
		f.mask.add(lowerASCII(s[i]))
	}
	p.scanner.scan(s, func(r int32) { f.lits[r>>6] |= 1 << (r & 63) })
	return f
}

// chain returns chain ci applied to f's string, working it out once.
func (f *inputFacts) chain(p *skipPlan, ci int) *chainOutput {
	if co := f.chains[ci].Load(); co != nil {
		return co
	}
	c := &p.chains[ci]
	outs, ok := c.chain.apply(f.s, c.multi, nil)
	for i, o := range outs {
		if o == f.s {
			outs[i] = f.s // share, not a copy
		}
	}
	co := &chainOutput{outs: outs, followed: ok}
	f.chains[ci].Store(co)
	return co
}

// mayMatch reports whether r's byte-class filter and operator (the
// conditions after its literals) hold on f's string, working it out once.
// Concurrent first evaluations compute the same answer.
func (f *inputFacts) mayMatch(r *skipRule) bool {
	w, bit := r.idx>>6, uint64(1)<<(r.idx&63)
	if f.ran[w].Load()&bit != 0 {
		return f.match[w].Load()&bit != 0
	}
	var m bool
	switch {
	case r.bytes != nil && !r.bytes.mayMatchMask(&f.mask):
	case r.hasQuiet && isQuiet(&f.mask):
		// Exact for quiet inputs: the reduced pattern matches them
		// exactly when the pattern does (quiet.go).
		q := &r.quiet
		m = !q.never && (q.pf == nil || q.pf.MayMatch(f.s)) && (q.re == nil && r.exact(f.s) || q.re != nil && q.re.MatchString(f.s))
	default:
		m = r.exact == nil || r.exact(f.s)
	}
	if m {
		f.match[w].Or(bit)
	}
	f.ran[w].Or(bit)
	return m
}

// Bounds of the shared cache: strings longer than maxCachedInput are
// examined per request and not kept; a shard that reaches its limit is
// emptied, so hostile traffic full of unique values costs bounded memory
// and only loses the reuse. Per entry: the string, its facts (~0.5 KB)
// and the outputs of the transformation chains that change it: 28.7 MB
// per rule set measured with every entry a distinct 256-byte string that
// most chains change (the worst case), ~1 MB for real traffic.
const (
	inputShards    = 16
	inputsPerShard = 512
	maxCachedInput = 256
)

// inputCache maps input strings to their facts, per skip plan.
type inputCache struct {
	seed   maphash.Seed
	shards [inputShards]struct {
		mu sync.RWMutex
		m  map[string]*inputFacts
	}
}

func newInputCache() *inputCache {
	c := &inputCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[string]*inputFacts{}
	}
	return c
}

// facts returns the facts of s, examining s the first time; s is at
// most maxCachedInput long.
func (c *inputCache) facts(p *skipPlan, s string) *inputFacts {
	sh := &c.shards[maphash.String(c.seed, s)%inputShards]
	sh.mu.RLock()
	f := sh.m[s]
	sh.mu.RUnlock()
	if f != nil {
		return f
	}
	// The key is cloned: s may point into a large request buffer.
	f = newInputFacts(p, strings.Clone(s))
	sh.mu.Lock()
	if len(sh.m) >= inputsPerShard {
		clear(sh.m)
	}
	sh.m[f.s] = f
	sh.mu.Unlock()
	return f
}
