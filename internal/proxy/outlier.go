package proxy

import (
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// Passive outlier detection: a backend that answers several 5xx in a row,
// or refuses several connections in a row, is ejected for ejection_time
// without waiting for the next active health check. Counters reset on the
// first success, so only consecutive failures count.

func (b *Backend) observeStatus(code int, od *config.OutlierDetection) {
	b.consecutiveConnErr.Store(0)
	if code < 500 {
		b.consecutive5xx.Store(0)
		return
	}
	n := b.consecutive5xx.Add(1)
	if od != nil && od.Consecutive5xx > 0 && int(n) >= od.Consecutive5xx {
		b.eject(od.EjectionTime.D())
		b.consecutive5xx.Store(0)
	}
}

func (b *Backend) observeConnectFailure(od *config.OutlierDetection) {
	n := b.consecutiveConnErr.Add(1)
	if od != nil && od.ConsecutiveConnectFailure > 0 && int(n) >= od.ConsecutiveConnectFailure {
		b.eject(od.EjectionTime.D())
		b.consecutiveConnErr.Store(0)
	}
}

func (b *Backend) eject(d time.Duration) {
	b.ejectEnd.Store(time.Now().Add(d).UnixNano())
}

// EjectedUntil returns the end of the current ejection, or the zero time.
func (b *Backend) EjectedUntil() time.Time {
	end := b.ejectEnd.Load()
	if end == 0 || time.Now().UnixNano() >= end {
		return time.Time{}
	}
	return time.Unix(0, end)
}
