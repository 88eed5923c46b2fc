package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// State is an operator-controlled backend state. It is separate from health:
// a quarantined backend stays out of rotation even when it answers health
// checks, because an operator suspects it, not because it is down.
type State string

// Operator states.
const (
	StateActive      State = "active"      // in rotation (if healthy and not ejected)
	StateDraining    State = "draining"    // no new requests; in-flight ones finish
	StateQuarantined State = "quarantined" // no new requests; in-flight ones were cut
)

// Backend is one upstream server of a pool. Its counters are read on the
// request path, so they are atomics rather than fields behind a lock.
type Backend struct {
	ID      string
	Address string
	Weight  int

	state    atomic.Pointer[State]
	healthy  atomic.Bool  // active health checks; true until proven otherwise
	ejectEnd atomic.Int64 // unix nanos until which outlier detection ejected it
	inflight atomic.Int64 // requests currently proxied to it

	// Passive outlier detection counters.
	consecutive5xx     atomic.Int32
	consecutiveConnErr atomic.Int32

	// conns are idle keep-alive connections for the direct client
	// (upstreamconn.go).
	conns connPool

	// cut is cancelled to abort every in-flight request (quarantine, or the
	// end of a drain). It is replaced when the backend is restored.
	mu     sync.Mutex
	cut    context.Context
	cancel context.CancelFunc
	// active are the direct client's connections with a request in flight;
	// a cut closes them. Each knows its index (activeIdx), so track and
	// untrack, twice per request, cost no hashing. gen counts cuts, so a
	// request that chose this backend before a cut cannot register
	// afterwards.
	active []*upstreamConn
	gen    uint64
	// drainCut is how many requests the last drain timeout cut.
	drainCut atomic.Int64
}

// NewBackend returns an active, healthy backend.
func NewBackend(id, address string, weight int) *Backend {
	if weight < 1 {
		weight = 1
	}
	b := &Backend{ID: id, Address: address, Weight: weight}
	s := StateActive
	b.state.Store(&s)
	b.healthy.Store(true)
	b.cut, b.cancel = context.WithCancel(context.Background())
	return b
}

// State returns the operator state.
func (b *Backend) State() State { return *b.state.Load() }

func (b *Backend) setState(s State) { b.state.Store(&s) }

// Healthy reports the active health-check verdict.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// Ejected reports whether passive outlier detection has ejected it.
func (b *Backend) Ejected(now time.Time) bool {
	end := b.ejectEnd.Load()
	return end != 0 && now.UnixNano() < end
}

// InFlight is the number of requests currently proxied to the backend.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Available reports whether new requests may be sent to the backend: the
// operator has it active, health checks pass and it is not ejected. Every
// selection policy calls it, so a quarantine takes effect on the very next
// selection.
func (b *Backend) Available() bool {
	if *b.state.Load() != StateActive || !b.healthy.Load() {
		return false
	}
	end := b.ejectEnd.Load()
	return end == 0 || time.Now().UnixNano() >= end
}

// cutContext returns the context that is cancelled to cut in-flight requests.
func (b *Backend) cutContext() context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cut
}

// cutInFlight aborts every request in flight and arms a fresh context for
// requests after a restore.
func (b *Backend) cutInFlight() {
	b.mu.Lock()
	cancel := b.cancel
	b.cut, b.cancel = context.WithCancel(context.Background())
	b.gen++
	for i, uc := range b.active {
		uc.cut.Store(true)
		uc.activeIdx = -1
		uc.c.Close()
		b.active[i] = nil
	}
	b.active = b.active[:0]
	b.mu.Unlock()
	cancel()
	b.conns.closeIdle()
}

// generation returns the cut generation a request starts in.
func (b *Backend) generation() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen
}

// track registers a connection carrying a request so that a cut closes it.
// It fails when a cut happened since gen, or the backend is quarantined.
func (b *Backend) track(uc *upstreamConn, gen uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen != gen || b.State() == StateQuarantined {
		return false
	}
	uc.activeIdx = len(b.active)
	b.active = append(b.active, uc)
	return true
}

// untrack removes a connection that track registered; after a cut, which
// forgot them all, it does nothing.
func (b *Backend) untrack(uc *upstreamConn) {
	b.mu.Lock()
	if i := uc.activeIdx; i >= 0 {
		last := len(b.active) - 1
		b.active[i] = b.active[last]
		b.active[i].activeIdx = i
		b.active[last] = nil
		b.active = b.active[:last]
		uc.activeIdx = -1
	}
	b.mu.Unlock()
}

// DrainCut is how many in-flight requests the backend's last drain timeout
// cut (0: the drain ended with every request finished).
func (b *Backend) DrainCut() int64 { return b.drainCut.Load() }
