package admin

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// limits are admin.auth_failures: max failures within window (counted
// from the first) block an address for block.
type limits struct {
	max           int
	window, block time.Duration
}

// maxTrackedAddrs bounds the limiter's memory (about 100 bytes an
// address). Past it, the address that failed least recently is forgotten;
// one that is still blocked is only forgotten once every tracked address
// is blocked, which takes more addresses than this to achieve.
const maxTrackedAddrs = 10000

// failureLimiter counts authentication failures per client address.
// IPv6 addresses are counted per /64, the block a single host usually
// holds, so that walking through one's own addresses does not reset the
// count. It outlives config reloads; the limits are read per call.
type failureLimiter struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[netip.Prefix]*list.Element // of *failures
	lru     list.List                      // front: most recent failure
	cap     int
}

type failures struct {
	key          netip.Prefix
	start        time.Time // of the current window
	count        int
	blockedUntil time.Time
}

func newFailureLimiter(now func() time.Time) *failureLimiter {
	if now == nil {
		now = time.Now
	}
	return &failureLimiter{now: now, entries: map[netip.Prefix]*list.Element{}, cap: maxTrackedAddrs}
}

func limiterKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// blocked reports whether ip is blocked and for how much longer.
func (l *failureLimiter) blocked(ip netip.Addr) (time.Duration, bool) {
	if !ip.IsValid() {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el := l.entries[limiterKey(ip)]
	if el == nil {
		return 0, false
	}
	f := el.Value.(*failures)
	now := l.now()
	if now.Before(f.blockedUntil) {
		return f.blockedUntil.Sub(now), true
	}
	return 0, false
}

// fail counts one failure of ip. When it reaches lim.max within
// lim.window, the address is blocked for lim.block: started is true.
// blocked is true, with the time left, whenever the address is blocked
// after this failure.
func (l *failureLimiter) fail(ip netip.Addr, lim limits) (wait time.Duration, blocked, started bool) {
	if !ip.IsValid() {
		return 0, false, false
	}
	key := limiterKey(ip)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var f *failures
	if el := l.entries[key]; el != nil {
		f = el.Value.(*failures)
		l.lru.MoveToFront(el)
	} else {
		for len(l.entries) >= l.cap {
			l.evict(now)
		}
		f = &failures{key: key}
		l.entries[key] = l.lru.PushFront(f)
	}
	if now.Before(f.blockedUntil) {
		// Blocked callers are refused before authenticating; a failure
		// can only land here in a race with the block's start.
		return f.blockedUntil.Sub(now), true, false
	}
	if f.count == 0 || now.Sub(f.start) >= lim.window {
		f.start, f.count = now, 0
	}
	f.count++
	if f.count < lim.max {
		return 0, false, false
	}
	f.count = 0
	f.blockedUntil = now.Add(lim.block)
	return lim.block, true, true
}

// evict forgets the least recently failed address that is not blocked,
// or, when all are, the least recently failed one.
func (l *failureLimiter) evict(now time.Time) {
	for el := l.lru.Back(); el != nil; el = el.Prev() {
		if f := el.Value.(*failures); !now.Before(f.blockedUntil) {
			l.remove(el)
			return
		}
	}
	l.remove(l.lru.Back())
}

func (l *failureLimiter) remove(el *list.Element) {
	delete(l.entries, el.Value.(*failures).key)
	l.lru.Remove(el)
}

// tracked is the number of addresses in memory (for tests).
func (l *failureLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
