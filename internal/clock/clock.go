// Package clock is a cheaper time.Now for the request path.
//
// time.Now reads two clocks through the vDSO, the wall clock and the
// monotonic one: about 60 ns on the KVM guests Rampart is benchmarked on,
// and the request path reads the time several times per request (the
// record's timestamp and timings, deadlines, the Date header). Now reads
// only the monotonic clock and adds the time elapsed since a full reading
// taken at most Refresh earlier: about half the cost. Its monotonic
// reading, which durations and deadlines use, is exact; its wall time
// follows a step or slew of the system clock within Refresh.
package clock

import (
	"sync/atomic"
	"time"
)

// Refresh is how long a full time.Now reading is reused as the anchor.
const Refresh = time.Second

type anchor struct{ t time.Time }

var cur atomic.Pointer[anchor]

// Now returns the current time, with a monotonic reading, as time.Now.
func Now() time.Time {
	if a := cur.Load(); a != nil {
		// time.Since reads only the monotonic clock when its argument has
		// a monotonic reading, which a time.Now result always has.
		if d := time.Since(a.t); d >= 0 && d < Refresh {
			return a.t.Add(d)
		}
	}
	t := time.Now()
	cur.Store(&anchor{t})
	return t
}

// Rearm reports whether a deadline set timeout after some earlier moment
// should be moved to now+timeout: when it has come more than an eighth of
// the timeout (at most a second) closer, or lies more than timeout away
// (the timeout was shortened, by a reload). Moving a deadline costs a
// runtime timer update; a busy connection then pays it about once a
// second instead of on every request, and a wait is bounded by between
// the timeout less a second (an eighth of a short one) and the timeout.
func Rearm(deadline, now time.Time, timeout time.Duration) bool {
	d := deadline.Sub(now)
	return d < timeout-min(timeout/8, time.Second) || d > timeout
}
