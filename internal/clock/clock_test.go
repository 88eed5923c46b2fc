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
