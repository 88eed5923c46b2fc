package ratelimit

import (
	"sync/atomic"
	"time"
)

// SyncWindow is the local half of redis_sync: a sliding-window counter per
// client whose counts are the fleet's, as last read back from Redis, plus
// this instance's requests not pushed yet. A check never waits on Redis:
// the store's sync loop pushes the deltas and reads the fleet's counts
// every sync interval (Redis.sync), so the fleet-wide count is off by at
// most what the other instances admitted within one interval.
//
// Windows are aligned on wall-clock (Unix) time, so every instance counts
// into the same Redis keys; instance clocks must agree (NTP) to well
// within a window.
type SyncWindow struct {
	name   string // part of the Redis keys
	params atomic.Pointer[WindowLimit]
	t      table[syncState]
}

// syncState is a client's two fixed windows (as in Window), each split
// into the fleet's count as last read and the local delta since.
type syncState struct {
	idx                  int64
	prevFleet, currFleet uint32
	prevDelta, currDelta uint32
	dirty                bool // queued in its shard's dirty list
}

// wallBase turns the limiters' monotonic time into Unix nanoseconds.
var wallBase = epoch.UnixNano()

// NewSyncWindow returns a redis_sync limiter named name (unique among the
// limiters sharing one Redis key prefix).
func NewSyncWindow(name string, l WindowLimit, maxKeys int) *SyncWindow {
	w := &SyncWindow{name: name}
	w.SetLimit(l)
	w.t.init(maxKeys, func(s syncState, now int64) bool {
		p := w.params.Load()
		return (now+wallBase)/int64(p.Window) >= s.idx+2
	})
	return w
}

// SetLimit changes the limit; counts are kept.
func (w *SyncWindow) SetLimit(l WindowLimit) {
	if l.Window <= 0 {
		l.Window = time.Second
	}
	l.Limit = max(l.Limit, 0)
	w.params.Store(&l)
}

// Limit returns the current limit.
func (w *SyncWindow) Limit() WindowLimit { return *w.params.Load() }

// roll moves st to the fixed window idx.
func (st *syncState) roll(idx int64) {
	switch {
	case st.idx == idx:
	case st.idx == idx-1:
		st.prevFleet, st.prevDelta = st.currFleet, st.currDelta
		st.currFleet, st.currDelta = 0, 0
	default:
		st.prevFleet, st.prevDelta, st.currFleet, st.currDelta = 0, 0, 0, 0
	}
	st.idx = idx
}

// Allow counts a request of k at now (see Now) if the fleet's count plus
// the local delta is within the limit.
func (w *SyncWindow) Allow(k Key, now int64) Result {
	p := w.params.Load()
	win := int64(p.Window)
	wall := now + wallBase
	idx := wall / win
	s := w.t.shard(&k)
	s.mu.Lock()
	sp := w.t.get(s, k, now)
	st := *sp
	st.roll(idx)
	into := wall - idx*win
	ws := winState{prev: st.prevFleet + st.prevDelta, curr: st.currFleet + st.currDelta}
	used := float64(ws.prev)*float64(win-into)/float64(win) + float64(ws.curr)
	r := Result{Limit: p.Limit}
	if used+1 <= float64(p.Limit) {
		st.currDelta++
		ws.curr++
		r.Allowed = true
		r.remaining = max(int(float64(p.Limit)-used-1), 0)
	} else {
		r.RetryAfter = retryAfter(ws, p.Limit, win, into)
	}
	// Touched clients get their fleet counts refreshed by the next sync,
	// refused ones too (the fleet's window may have moved on).
	if !st.dirty {
		st.dirty = true
		s.dirty = append(s.dirty, k)
	}
	*sp = st
	s.mu.Unlock()
	if ws.curr > 0 {
		r.Reset = time.Duration(2*win - into)
	} else {
		r.Reset = time.Duration(win - into)
	}
	return r
}

// Len returns the number of clients tracked.
func (w *SyncWindow) Len() int { return w.t.Len() }

// syncItem is one client's deltas to push, and the fleet counts read back.
type syncItem struct {
	key                  Key
	idx                  int64
	prevDelta, currDelta uint32
	prevFleet, currFleet uint32
}

// collect appends the deltas of every client touched since the last sync
// and moves them into the local view of the fleet's counts (which Redis
// will include once they are pushed).
func (w *SyncWindow) collect(items []syncItem, now int64) []syncItem {
	idx := (now + wallBase) / int64(w.params.Load().Window)
	for i := range w.t.shards {
		s := &w.t.shards[i]
		s.mu.Lock()
		for _, k := range s.dirty {
			j, ok := s.m[k]
			if !ok {
				continue // evicted since
			}
			st := &s.vals[j]
			if !st.dirty {
				continue // listed twice (evicted and seen again)
			}
			st.dirty = false
			st.roll(idx)
			items = append(items, syncItem{key: k, idx: st.idx, prevDelta: st.prevDelta, currDelta: st.currDelta})
			st.prevFleet += st.prevDelta
			st.currFleet += st.currDelta
			st.prevDelta, st.currDelta = 0, 0
		}
		clear(s.dirty)
		s.dirty = s.dirty[:0]
		s.mu.Unlock()
	}
	return items
}

// update stores the fleet counts read back for items.
func (w *SyncWindow) update(items []syncItem) {
	for i := range items {
		it := &items[i]
		s := w.t.shard(&it.key)
		s.mu.Lock()
		if j, ok := s.m[it.key]; ok {
			st := &s.vals[j]
			switch st.idx {
			case it.idx:
				st.prevFleet, st.currFleet = it.prevFleet, it.currFleet
			case it.idx + 1: // the window rolled meanwhile
				st.prevFleet = it.currFleet
			}
		}
		s.mu.Unlock()
	}
}

// restore gives back the deltas of items whose push failed, so a later
// sync pushes them: Redis missing an outage's requests would let the
// fleet admit them twice.
func (w *SyncWindow) restore(items []syncItem) {
	for i := range items {
		it := &items[i]
		s := w.t.shard(&it.key)
		s.mu.Lock()
		if j, ok := s.m[it.key]; ok {
			st := &s.vals[j]
			switch st.idx {
			case it.idx:
				st.prevFleet -= min(st.prevFleet, it.prevDelta)
				st.currFleet -= min(st.currFleet, it.currDelta)
				st.prevDelta += it.prevDelta
				st.currDelta += it.currDelta
			case it.idx + 1: // rolled meanwhile: the old current is the previous
				st.prevFleet -= min(st.prevFleet, it.currDelta)
				st.prevDelta += it.currDelta
			}
			if !st.dirty {
				st.dirty = true
				s.dirty = append(s.dirty, it.key)
			}
		}
		s.mu.Unlock()
	}
}
