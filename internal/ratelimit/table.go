// Package ratelimit holds Rampart's rate limiters (DESIGN §1 stage 3): a
// sharded GCRA token bucket keyed by client (IP or user), a sliding-window
// counter for per-endpoint limits, an instance-wide bucket and the
// adaptive controller that tightens per-IP limits under attack.
//
// Limiters are long-lived: the server keeps them by name across config
// reloads and only swaps their parameters, so the state of every client
// survives a reload and changed limits apply from the next check.
//
// Every check takes the current time as monotonic nanoseconds (Now, or a
// fake clock in tests), so the math is testable without sleeping.
package ratelimit

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Key identifies a client in a limiter: an IP address (IPKey) or a hashed
// user identity (StringKey). Keys of different kinds live in different
// limiters, so they never collide with each other.
type Key [16]byte

// IPKey is the key of a client address. IPv4 addresses (also when mapped
// into IPv6) are keyed as themselves; IPv6 addresses by their /64, because
// one host usually owns a whole /64 and could otherwise pick a fresh
// address, and so a fresh bucket, for every request.
func IPKey(a netip.Addr) Key {
	if a.Is4In6() {
		a = a.Unmap()
	}
	k := Key(a.As16())
	if a.Is6() {
		clear(k[8:])
	}
	return k
}

var seedA, seedB = maphash.MakeSeed(), maphash.MakeSeed()

// StringKey is the key of a user identity (an API key, a JWT subject): 128
// bits of two randomly seeded hashes, so clients cannot engineer
// collisions, and no copy of the identity is kept.
func StringKey(s string) Key {
	var k Key
	binary.LittleEndian.PutUint64(k[:8], maphash.String(seedA, s))
	binary.LittleEndian.PutUint64(k[8:], maphash.String(seedB, s))
	return k
}

var epoch = time.Now()

// Now returns monotonic nanoseconds since the process started; Mono turns a
// time.Time taken anyway (the request's start) into the same scale without
// another clock read.
func Now() int64 { return Mono(time.Now()) }

// Mono converts t (with its monotonic reading) to the limiters' time scale.
func Mono(t time.Time) int64 { return int64(t.Sub(epoch)) }

const numShards = 256

// DefaultMaxKeys bounds the clients one limiter tracks.
const DefaultMaxKeys = 1_000_000

// table is a map from Key to per-client state, split into shards with a
// mutex each (no global lock). The map holds an index into a slice of
// states, so a check hashes its key once and updates the state in place.
// Memory is bounded: when a shard reaches its share of maxKeys it first
// drops expired state (a full bucket, an elapsed window: forgetting it
// changes no decision) and then, if still full, an arbitrary eighth of its
// clients, who start over with a fresh limit.
type table[V any] struct {
	shards  [numShards]shard[V]
	perCap  int
	expired func(v V, now int64) bool
}

type shard[V any] struct {
	mu        sync.Mutex
	m         map[Key]int32
	vals      []V
	free      []int32
	nextSweep int
	dirty     []Key    // SyncWindow: keys touched since the last sync
	_         [32]byte // keep shards on separate cache lines (128 bytes)
}

const minSweep = 64

func (t *table[V]) init(maxKeys int, expired func(v V, now int64) bool) {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	// Shards fill unevenly; 1/8 slack lets maxKeys clients fit.
	t.perCap = max((maxKeys+maxKeys/8+numShards-1)/numShards, 1)
	t.expired = expired
	for i := range t.shards {
		t.shards[i].m = make(map[Key]int32)
		t.shards[i].nextSweep = min(minSweep, t.perCap)
	}
}

func (t *table[V]) shard(k *Key) *shard[V] {
	a := binary.LittleEndian.Uint64(k[:8])
	b := binary.LittleEndian.Uint64(k[8:])
	h := (a ^ b*0x9E3779B97F4A7C15) * 0xBF58476D1CE4E5B9
	return &t.shards[h>>(64-8)]
}

// get returns k's state, adding a zero state for a new key. It runs under
// s.mu; the pointer is valid until s.mu is released.
func (t *table[V]) get(s *shard[V], k Key, now int64) *V {
	if i, ok := s.m[k]; ok {
		return &s.vals[i]
	}
	t.makeRoom(s, now)
	var i int32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
		var zero V
		s.vals[i] = zero
	} else {
		i = int32(len(s.vals))
		s.vals = append(s.vals, *new(V))
	}
	s.m[k] = i
	return &s.vals[i]
}

func (s *shard[V]) remove(k Key, i int32) {
	delete(s.m, k)
	s.free = append(s.free, i)
}

// makeRoom runs under s.mu before a new key is added.
func (t *table[V]) makeRoom(s *shard[V], now int64) {
	if len(s.m) < s.nextSweep {
		return
	}
	for k, i := range s.m {
		if t.expired(s.vals[i], now) {
			s.remove(k, i)
		}
	}
	if len(s.m) >= t.perCap {
		drop := max(len(s.m)/8, 1)
		for k, i := range s.m {
			s.remove(k, i)
			if drop--; drop == 0 {
				break
			}
		}
	}
	s.nextSweep = min(max(2*len(s.m), minSweep), t.perCap)
}

// Len returns the number of tracked clients.
func (t *table[V]) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Sweep drops every expired entry.
func (t *table[V]) Sweep(now int64) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, j := range s.m {
			if t.expired(s.vals[j], now) {
				s.remove(k, j)
			}
		}
		s.mu.Unlock()
	}
}

// Result is the outcome of one check, with what the response headers need.
type Result struct {
	Allowed   bool
	Limit     int           // requests allowed in a burst or window
	remaining int           // requests left right now (windows)
	Reset     time.Duration // until the limit is fully available again
	// RetryAfter is how long until a request would be allowed (0 when
	// Allowed).
	RetryAfter time.Duration

	// For a token bucket Remaining is computed on demand: the division
	// is not paid by requests that need no headers.
	interval, slack int64
}

// Remaining is how many more requests would be allowed right now.
func (r *Result) Remaining() int {
	if r.interval > 0 {
		return int(r.slack / r.interval)
	}
	return r.remaining
}
