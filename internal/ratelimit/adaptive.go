package ratelimit

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Adaptive states.
const (
	StateNormal      = "normal"
	StateUnderAttack = "under_attack"
	StateRecovering  = "recovering"
)

// AdaptiveSettings configure an Adaptive controller.
type AdaptiveSettings struct {
	Multiplier  float64       // attack: rate > Multiplier × normal ...
	Trigger     time.Duration // ... for this long (and as long to calm down)
	Recovery    time.Duration // limits relax linearly over this long
	MinRate     float64       // rates below this never count as an attack
	UnderAttack Rate          // the per-IP rate while under attack
}

// AdaptiveStatus is the controller's state for status and metrics.
type AdaptiveStatus struct {
	State       string    `json:"state"`
	Since       time.Time `json:"since"`
	NormalRate  float64   `json:"normal_rate"`  // learned requests/s (EWMA)
	CurrentRate float64   `json:"current_rate"` // requests/s over the last tick
	PerIPRate   float64   `json:"per_ip_requests_per_second"`
	Transitions int64     `json:"transitions"`
}

// Adaptive learns the normal instance-wide request rate (an EWMA over
// ticks that are not part of an attack) and tightens a per-IP bucket to
// UnderAttack when the rate stays above Multiplier × normal for Trigger;
// once it has stayed below for Trigger, it relaxes the limit linearly over
// Recovery. Hit is called per request; Tick about once a second.
type Adaptive struct {
	hits atomic.Int64

	mu          sync.Mutex
	set         AdaptiveSettings
	base        Rate
	bucket      *Bucket
	onChange    func(from, to string, st AdaptiveStatus)
	state       string
	since       time.Time
	last        time.Time
	ewma        float64
	rate        float64
	aboveSince  time.Time
	belowSince  time.Time
	transitions int64
}

// ewmaWindow is the time constant of the learned normal rate.
const ewmaWindow = 10 * time.Minute

// NewAdaptive controls bucket, whose normal rate is base. onChange (may be
// nil) is called on every state transition, outside the lock.
func NewAdaptive(bucket *Bucket, base Rate, s AdaptiveSettings, onChange func(from, to string, st AdaptiveStatus)) *Adaptive {
	return &Adaptive{bucket: bucket, base: base, set: s, onChange: onChange, state: StateNormal}
}

// Configure applies reloaded settings and the new normal per-IP rate,
// keeping the learned rate and the state.
func (a *Adaptive) Configure(base Rate, s AdaptiveSettings) {
	a.mu.Lock()
	a.base, a.set = base, s
	a.applyLocked(a.last)
	a.mu.Unlock()
}

// Hit counts one request.
func (a *Adaptive) Hit() { a.hits.Add(1) }

// Tick closes a measurement interval at now.
func (a *Adaptive) Tick(now time.Time) {
	n := a.hits.Swap(0)
	a.mu.Lock()
	if a.last.IsZero() {
		a.last, a.since = now, now
		a.mu.Unlock()
		return
	}
	dt := now.Sub(a.last)
	if dt <= 0 {
		a.mu.Unlock()
		return
	}
	a.last = now
	a.rate = float64(n) / dt.Seconds()
	high := a.ewma > 0 && a.rate > a.set.MinRate && a.rate > a.set.Multiplier*a.ewma
	from := a.state
	switch a.state {
	case StateNormal:
		if !high {
			a.aboveSince = time.Time{}
			if a.ewma == 0 {
				a.ewma = a.rate
			} else {
				alpha := 1 - math.Exp(-dt.Seconds()/ewmaWindow.Seconds())
				a.ewma += alpha * (a.rate - a.ewma)
			}
			break
		}
		if a.aboveSince.IsZero() {
			a.aboveSince = now.Add(-dt)
		}
		if now.Sub(a.aboveSince) >= a.set.Trigger {
			a.state = StateUnderAttack
		}
	case StateUnderAttack:
		if high {
			a.belowSince = time.Time{}
			break
		}
		if a.belowSince.IsZero() {
			a.belowSince = now.Add(-dt)
		}
		if now.Sub(a.belowSince) >= a.set.Trigger {
			a.state = StateRecovering
		}
	case StateRecovering:
		if high {
			a.state = StateUnderAttack
		} else if now.Sub(a.since) >= a.set.Recovery {
			a.state = StateNormal
		}
	}
	if a.state != from {
		a.since, a.aboveSince, a.belowSince = now, time.Time{}, time.Time{}
		a.transitions++
	}
	a.applyLocked(now)
	st := a.statusLocked()
	a.mu.Unlock()
	if a.state != from && a.onChange != nil {
		a.onChange(from, st.State, st)
	}
}

// applyLocked sets the bucket's rate for the state.
func (a *Adaptive) applyLocked(now time.Time) {
	switch a.state {
	case StateUnderAttack:
		a.bucket.SetRate(a.tight())
	case StateRecovering:
		f := 1.0
		if a.set.Recovery > 0 {
			f = min(float64(now.Sub(a.since))/float64(a.set.Recovery), 1)
		}
		t := a.tight()
		a.bucket.SetRate(Rate{
			RPS:   t.RPS + f*(a.base.RPS-t.RPS),
			Burst: t.Burst + int(f*float64(a.base.Burst-t.Burst)),
		})
	default:
		a.bucket.SetRate(a.base)
	}
}

// tight is the under-attack rate, never looser than the normal one.
func (a *Adaptive) tight() Rate {
	t := a.set.UnderAttack
	t.RPS = min(t.RPS, a.base.RPS)
	t.Burst = min(max(t.Burst, 1), a.base.Burst)
	return t
}

func (a *Adaptive) statusLocked() AdaptiveStatus {
	return AdaptiveStatus{State: a.state, Since: a.since, NormalRate: a.ewma, CurrentRate: a.rate,
		PerIPRate: a.bucket.Rate().RPS, Transitions: a.transitions}
}

// Status returns the current state.
func (a *Adaptive) Status() AdaptiveStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statusLocked()
}
