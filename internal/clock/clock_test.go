package clock

import (
	"testing"
	"time"
)

// Now agrees with time.Now: its wall time within a few milliseconds (the
// system clock is not stepped during a test), and its monotonic reading
// ordered with time.Now's both ways.
func TestNow(t *testing.T) {
	for i := range 1000 {
		before := time.Now()
		got := Now()
		after := time.Now()
		if got.Before(before) || got.After(after) {
			t.Fatalf("round %d: Now() = %v outside [%v, %v] (monotonic)", i, got, before, after)
		}
		if d := got.Round(0).Sub(before.Round(0)); d < -5*time.Millisecond || d > 5*time.Millisecond {
			t.Fatalf("round %d: wall time %v off time.Now's by %v", i, got.Round(0), d)
		}
		if got.Location() != time.Local {
			t.Fatalf("location %v, want Local as time.Now", got.Location())
		}
	}
}

// After Refresh, Now takes a new full reading.
func TestNowRefreshes(t *testing.T) {
	Now()
	first := cur.Load()
	cur.Store(&anchor{first.t.Add(-2 * Refresh)})
	got := Now()
	if cur.Load().t.Sub(first.t) < 0 {
		t.Fatal("anchor not refreshed after Refresh")
	}
	if d := got.Round(0).Sub(time.Now().Round(0)); d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Fatalf("wall time off by %v after a refresh", d)
	}
}

func BenchmarkNow(b *testing.B) {
	for b.Loop() {
		Now()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		time.Now()
	}
}

// Rearm moves a deadline that came more than a second (an eighth of a
// short timeout) closer, or that lies beyond a shortened timeout.
func TestRearm(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		left, timeout time.Duration // deadline = now + left
		want          bool
	}{
		{60 * time.Second, 60 * time.Second, false},
		{59*time.Second + time.Millisecond, 60 * time.Second, false},
		{59*time.Second - time.Millisecond, 60 * time.Second, true},
		{800 * time.Millisecond, time.Second, true}, // an eighth of 1 s: 125 ms
		{900 * time.Millisecond, time.Second, false},
		{60 * time.Second, 5 * time.Second, true}, // shortened by a reload
		{-time.Hour, time.Second, true},           // never set (zero) or past
	} {
		if got := Rearm(now.Add(c.left), now, c.timeout); got != c.want {
			t.Errorf("deadline in %v, timeout %v: Rearm = %v, want %v", c.left, c.timeout, got, c.want)
		}
	}
	if !Rearm(time.Time{}, now, time.Second) {
		t.Error("a connection without a deadline is not armed")
	}
}
