package proxy

import (
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

// Passive outlier detection: a backend that answers several 5xx in a row,
// or refuses several connections in a row, is ejected for ejection_time
// without waiting for the next active health check. Counters reset on the
// first success, so only consecutive failures count.

// observeStatus counts an answer; it returns the reason when this answer
// ejected the backend, "" otherwise.
func (b *Backend) observeStatus(code int, od *config.OutlierDetection) string {
	b.consecutiveConnErr.Store(0)
	if code < 500 {
		b.consecutive5xx.Store(0)
		return ""
	}
	n := b.consecutive5xx.Add(1)
	if od != nil && od.Consecutive5xx > 0 && int(n) >= od.Consecutive5xx {
		b.eject(od.EjectionTime.D())
		b.consecutive5xx.Store(0)
		return "consecutive_5xx"
	}
	return ""
}

// observeConnectFailure counts a refused connection, like observeStatus.
func (b *Backend) observeConnectFailure(od *config.OutlierDetection) string {
	n := b.consecutiveConnErr.Add(1)
	if od != nil && od.ConsecutiveConnectFailure > 0 && int(n) >= od.ConsecutiveConnectFailure {
		b.eject(od.EjectionTime.D())
		b.consecutiveConnErr.Store(0)
		return "consecutive_connect_failures"
	}
	return ""
}

// ejected reports an outlier ejection to the registry's event sink (the
// audit trail): the request path never waits for it.
func (p *Pool) ejected(b *Backend, reason string, od *config.OutlierDetection) {
	sink := p.events.Load()
	if sink == nil {
		return
	}
	ev := audit.Event{Actor: audit.System("outlier_detector"), Action: audit.ActionBackendEject,
		Resource: audit.Resource{Type: "backend", ID: b.ID, Pool: p.Name},
		Details:  map[string]any{"reason": reason, "ejection_time": od.EjectionTime.D().String(), "address": b.Address},
		Result:   audit.ResultSuccess,
		After:    map[string]any{"ejected_until": b.EjectedUntil().UTC().Format(time.RFC3339)}}
	go (*sink)(ev)
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
