package ratelimit

import (
	"math"
	"sync/atomic"
	"time"
)

// Rate is a token bucket's parameters: RPS tokens per second, up to Burst.
type Rate struct {
	RPS   float64
	Burst int
}

// gcra is a Rate in the form the generic cell rate algorithm uses: one
// token per interval, and a tolerance of (burst-1) intervals.
type gcra struct {
	interval int64 // ns per token
	tau      int64 // (burst-1) * interval
	burst    int
}

func newGCRA(r Rate) *gcra {
	iv := int64(math.Ceil(float64(time.Second) / r.RPS))
	if r.RPS <= 0 || iv <= 0 {
		iv = math.MaxInt64 / 4 // no refill
	}
	b := max(r.Burst, 1)
	tau := iv * int64(b-1)
	if b > 1 && tau/int64(b-1) != iv { // overflow: effectively unlimited tolerance
		tau = math.MaxInt64 / 4
	}
	return &gcra{interval: iv, tau: tau, burst: b}
}

// check runs GCRA on the theoretical arrival time tat (0: a fresh client)
// and returns the new tat to store and the result.
func (g *gcra) check(tat, now int64) (int64, Result) {
	if tat < now {
		tat = now
	}
	r := Result{Limit: g.burst}
	if tat-now > g.tau {
		// Refused: nothing is consumed.
		r.RetryAfter = time.Duration(tat - g.tau - now)
		r.Reset = time.Duration(tat - now)
		return tat, r
	}
	tat += g.interval
	r.Allowed = true
	r.Reset = time.Duration(tat - now)
	r.interval = g.interval
	r.slack = now + g.tau + g.interval - tat
	return tat, r
}

// Bucket is a token bucket per client, sharded, with bounded memory. The
// state of a client is one int64 (GCRA's theoretical arrival time).
type Bucket struct {
	params atomic.Pointer[gcra]
	t      table[int64]
}

// NewBucket returns a limiter of rate r per key, tracking at most maxKeys
// clients (0: DefaultMaxKeys).
func NewBucket(r Rate, maxKeys int) *Bucket {
	b := &Bucket{}
	b.params.Store(newGCRA(r))
	// A client whose tat has passed has a full bucket: forgetting it
	// changes nothing.
	b.t.init(maxKeys, func(tat int64, now int64) bool { return tat <= now })
	return b
}

// SetRate changes the rate; clients keep their state.
func (b *Bucket) SetRate(r Rate) { b.params.Store(newGCRA(r)) }

// Rate returns the current rate.
func (b *Bucket) Rate() Rate {
	g := b.params.Load()
	return Rate{RPS: float64(time.Second) / float64(g.interval), Burst: g.burst}
}

// Allow takes a token for k at now (see Now) if one is left.
func (b *Bucket) Allow(k Key, now int64) Result {
	g := b.params.Load()
	s := b.t.shard(&k)
	s.mu.Lock()
	tat := b.t.get(s, k, now)
	var r Result
	*tat, r = g.check(*tat, now)
	s.mu.Unlock()
	return r
}

// Len returns the number of clients tracked.
func (b *Bucket) Len() int { return b.t.Len() }

// Sweep forgets clients whose bucket is full again.
func (b *Bucket) Sweep(now int64) { b.t.Sweep(now) }

// Global is one token bucket for the whole instance, lock-free (a CAS on
// one word).
type Global struct {
	params atomic.Pointer[gcra]
	tat    atomic.Int64
}

// NewGlobal returns an instance-wide limiter of rate r.
func NewGlobal(r Rate) *Global {
	g := &Global{}
	g.params.Store(newGCRA(r))
	return g
}

// SetRate changes the rate; the state is kept.
func (g *Global) SetRate(r Rate) { g.params.Store(newGCRA(r)) }

// Allow takes a token at now if one is left.
func (g *Global) Allow(now int64) Result {
	p := g.params.Load()
	for {
		old := g.tat.Load()
		nt, r := p.check(old, now)
		if !r.Allowed || nt == old || g.tat.CompareAndSwap(old, nt) {
			return r
		}
	}
}
