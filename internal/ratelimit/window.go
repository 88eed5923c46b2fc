package ratelimit

import (
	"math"
	"sync/atomic"
	"time"
)

// WindowLimit is Limit requests per Window.
type WindowLimit struct {
	Limit  int
	Window time.Duration
}

// winState is a sliding-window counter: the counts of the current and the
// previous fixed window; the previous one is weighted by how much of it
// the sliding window still covers.
type winState struct {
	idx        int64 // index of the current fixed window (now / window)
	prev, curr uint32
}

// Window limits each client to Limit requests in any Window (a sliding
// window counter: exact within one window, a weighted estimate across the
// boundary).
type Window struct {
	params atomic.Pointer[WindowLimit]
	t      table[winState]
}

// NewWindow returns a sliding-window limiter tracking at most maxKeys
// clients (0: DefaultMaxKeys).
func NewWindow(l WindowLimit, maxKeys int) *Window {
	w := &Window{}
	w.SetLimit(l)
	w.t.init(maxKeys, func(s winState, now int64) bool {
		p := w.params.Load()
		return now/int64(p.Window) >= s.idx+2
	})
	return w
}

// SetLimit changes the limit; counts are kept (after a window change they
// are read against the new window's boundaries).
func (w *Window) SetLimit(l WindowLimit) {
	if l.Window <= 0 {
		l.Window = time.Second
	}
	l.Limit = max(l.Limit, 0)
	w.params.Store(&l)
}

// Limit returns the current limit.
func (w *Window) Limit() WindowLimit { return *w.params.Load() }

// Allow counts a request of k at now if it is within the limit.
func (w *Window) Allow(k Key, now int64) Result {
	p := w.params.Load()
	win := int64(p.Window)
	idx := now / win
	s := w.t.shard(&k)
	s.mu.Lock()
	sp := w.t.get(s, k, now)
	st := *sp
	switch {
	case st.idx == idx:
	case st.idx == idx-1:
		st.prev, st.curr = st.curr, 0
	default:
		st.prev, st.curr = 0, 0
	}
	st.idx = idx
	into := now - idx*win // elapsed in the current fixed window
	prevW := float64(st.prev) * float64(win-into) / float64(win)
	used := prevW + float64(st.curr)
	r := Result{Limit: p.Limit}
	if used+1 <= float64(p.Limit) {
		st.curr++
		r.Allowed = true
		r.remaining = max(int(float64(p.Limit)-used-1), 0)
	} else {
		r.RetryAfter = retryAfter(st, p.Limit, win, into)
	}
	*sp = st
	s.mu.Unlock()
	if st.curr > 0 {
		r.Reset = time.Duration(2*win - into)
	} else {
		r.Reset = time.Duration(win - into)
	}
	return r
}

// retryAfter is how long until prev*(1-e/W) + curr + 1 <= limit holds.
func retryAfter(st winState, limit int, win, into int64) time.Duration {
	if limit <= 0 {
		return time.Duration(win - into)
	}
	if st.curr+1 > uint32(limit) {
		// Wait for the next window, then for this window's count, become
		// the previous one, to decay enough.
		frac := 1 - float64(limit-1)/float64(st.curr)
		return time.Duration(win - into + int64(math.Ceil(frac*float64(win))))
	}
	frac := 1 - float64(limit-1-int(st.curr))/float64(st.prev)
	d := int64(math.Ceil(frac*float64(win))) - into
	return time.Duration(max(d, 1))
}

// Len returns the number of clients tracked.
func (w *Window) Len() int { return w.t.Len() }
