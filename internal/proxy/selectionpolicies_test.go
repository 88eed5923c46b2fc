package proxy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var allAlgorithms = []string{"round_robin", "weighted_round_robin", "least_connections", "power_of_two", "consistent_hash"}

// testBackends returns n healthy backends b0..b(n-1) of weight 1.
func testBackends(n int) []*Backend {
	bs := make([]*Backend, n)
	for i := range bs {
		bs[i] = NewBackend("b"+strconv.Itoa(i), "10.0.0."+strconv.Itoa(i+1)+":80", 1)
	}
	return bs
}

func mustSelector(t testing.TB, algorithm string, bs []*Backend) Selector {
	t.Helper()
	s, err := NewSelector(algorithm, bs)
	if err != nil {
		t.Fatalf("NewSelector(%q): %v", algorithm, err)
	}
	return s
}

// count runs n selections with key "" and counts picks per backend ID.
func count(t *testing.T, s Selector, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		b := s.Select("", nil)
		if b == nil {
			t.Fatal("Select returned nil with backends available")
		}
		got[b.ID]++
	}
	return got
}

func within(got, want int, frac float64) bool {
	return math.Abs(float64(got-want)) <= frac*float64(want)
}

func TestNewSelectorUnknown(t *testing.T) {
	for _, alg := range []string{"", "random", "Round_Robin", "least_conn"} {
		if s, err := NewSelector(alg, testBackends(2)); err == nil {
			t.Errorf("NewSelector(%q) = %T, want error", alg, s)
		}
	}
	if _, err := NewSelector("round_robin", []*Backend{nil}); err == nil {
		t.Error("NewSelector with a nil backend: want error")
	}
}

func TestRoundRobinExactlyEven(t *testing.T) {
	bs := testBackends(3)
	got := count(t, mustSelector(t, "round_robin", bs), 30000)
	for _, b := range bs {
		if got[b.ID] != 10000 {
			t.Errorf("%s: %d picks, want exactly 10000 (all: %v)", b.ID, got[b.ID], got)
		}
	}
}

func TestRoundRobinOrder(t *testing.T) {
	bs := testBackends(3)
	s := mustSelector(t, "round_robin", bs)
	var seq []string
	for range 6 {
		seq = append(seq, s.Select("", nil).ID)
	}
	if got, want := strings.Join(seq, " "), "b0 b1 b2 b0 b1 b2"; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
}

func TestRoundRobinEvenWithOneOut(t *testing.T) {
	bs := testBackends(3)
	bs[0].setState(StateQuarantined)
	got := count(t, mustSelector(t, "round_robin", bs), 30000)
	// The neighbour of the quarantined backend must not inherit its turn.
	if got["b0"] != 0 || got["b1"] != 15000 || got["b2"] != 15000 {
		t.Errorf("picks %v, want b0 never and b1, b2 exactly 15000 each", got)
	}
}

func TestWeightedRoundRobinProportions(t *testing.T) {
	bs := testBackends(3)
	bs[0].Weight, bs[1].Weight, bs[2].Weight = 3, 2, 1
	got := count(t, mustSelector(t, "weighted_round_robin", bs), 30000)
	want := map[string]int{"b0": 15000, "b1": 10000, "b2": 5000}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %d picks, want exactly %d (all: %v)", id, got[id], w, got)
		}
	}
}

func TestWeightedRoundRobinSmooth(t *testing.T) {
	bs := []*Backend{NewBackend("a", "a:80", 5), NewBackend("b", "b:80", 1), NewBackend("c", "c:80", 1)}
	s := mustSelector(t, "weighted_round_robin", bs)
	var seq []string
	for range 14 {
		seq = append(seq, s.Select("", nil).ID)
	}
	// Two full cycles: smooth, not "a a a a a b c".
	want := "a a b a c a a a a b a c a a"
	if got := strings.Join(seq, " "); got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
}

func TestWeightedRoundRobinSkipsUnavailable(t *testing.T) {
	bs := testBackends(3)
	bs[0].Weight = 5
	bs[0].setState(StateDraining)
	got := count(t, mustSelector(t, "weighted_round_robin", bs), 1000)
	if got["b0"] != 0 || got["b1"] != 500 || got["b2"] != 500 {
		t.Errorf("picks %v, want b0 never and b1, b2 500 each", got)
	}
}

func TestLeastConnectionsPicksLowest(t *testing.T) {
	bs := testBackends(3)
	bs[0].inflight.Store(5)
	bs[1].inflight.Store(2)
	bs[2].inflight.Store(7)
	s := mustSelector(t, "least_connections", bs)
	for range 100 {
		if b := s.Select("", nil); b != bs[1] {
			t.Fatalf("picked %s, want b1 (fewest in flight)", b.ID)
		}
	}
	// With b1 tried, b0 is the least loaded left.
	if b := s.Select("", []*Backend{bs[1]}); b != bs[0] {
		t.Errorf("with b1 tried picked %v, want b0", b.ID)
	}
}

func TestLeastConnectionsWeighted(t *testing.T) {
	bs := testBackends(2)
	// 9/3 = 3 per weight unit against 4/1: the heavier backend is less loaded.
	bs[0].Weight = 3
	bs[0].inflight.Store(9)
	bs[1].inflight.Store(4)
	s := mustSelector(t, "least_connections", bs)
	if b := s.Select("", nil); b != bs[0] {
		t.Errorf("picked %s, want b0 (9 in flight / weight 3 < 4 / 1)", b.ID)
	}
	bs[0].inflight.Store(13) // 13/3 > 4/1
	if b := s.Select("", nil); b != bs[1] {
		t.Errorf("picked %s, want b1 (13/3 > 4/1)", b.ID)
	}
}

func TestLeastConnectionsTiesSpread(t *testing.T) {
	bs := testBackends(3)
	got := count(t, mustSelector(t, "least_connections", bs), 30000)
	for _, b := range bs {
		if got[b.ID] != 10000 {
			t.Errorf("%s: %d picks, want 10000 with equal load (all: %v)", b.ID, got[b.ID], got)
		}
	}
}

// Equally loaded backends (an idle pool, sequential requests) share by
// weight, as in nginx's least_conn: weights 3,2,1 give 3:2:1, not 1:1:1.
func TestLeastConnectionsTiesByWeight(t *testing.T) {
	bs := testBackends(3)
	bs[0].Weight, bs[1].Weight, bs[2].Weight = 3, 2, 1
	got := count(t, mustSelector(t, "least_connections", bs), 30000)
	want := map[string]int{"b0": 15000, "b1": 10000, "b2": 5000}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %d picks, want exactly %d (all: %v)", id, got[id], w, got)
		}
	}
}

func TestPowerOfTwoTiesByWeight(t *testing.T) {
	bs := testBackends(2)
	bs[0].Weight = 3
	got := count(t, mustSelector(t, "power_of_two", bs), 40000)
	if !within(got["b0"], 30000, 0.05) || !within(got["b1"], 10000, 0.15) {
		t.Errorf("weights 3:1, equal load: %v, want about 30000:10000", got)
	}
}

func TestWeightedOrder(t *testing.T) {
	bs := testBackends(3)
	if got := fmt.Sprint(weightedOrder(bs)); got != "[0 1 2]" {
		t.Errorf("equal weights: %s, want [0 1 2]", got)
	}
	bs[0].Weight, bs[1].Weight, bs[2].Weight = 5, 1, 1
	if got := fmt.Sprint(weightedOrder(bs)); got != "[0 0 1 0 2 0 0]" {
		t.Errorf("weights 5,1,1: %s, want the smooth [0 0 1 0 2 0 0]", got)
	}
	bs[0].Weight, bs[1].Weight, bs[2].Weight = 1000, 1000, 1 // scaled to fit maxOrder
	order := weightedOrder(bs)
	n := map[int]int{}
	for _, i := range order {
		n[i]++
	}
	if len(order) > maxOrder || n[2] < 1 || n[0] != n[1] {
		t.Errorf("weights 1000,1000,1: %d entries, counts %v", len(order), n)
	}
}

func TestPowerOfTwoEven(t *testing.T) {
	bs := testBackends(3)
	got := count(t, mustSelector(t, "power_of_two", bs), 30000)
	for _, b := range bs {
		if !within(got[b.ID], 10000, 0.10) {
			t.Errorf("%s: %d picks, want 10000 ±10%% (all: %v)", b.ID, got[b.ID], got)
		}
	}
}

func TestPowerOfTwoAvoidsLoaded(t *testing.T) {
	bs := testBackends(3)
	bs[2].inflight.Store(1000)
	got := count(t, mustSelector(t, "power_of_two", bs), 30000)
	// b2 loses every comparison, and one of the two draws is always
	// another backend.
	if got["b2"] != 0 {
		t.Errorf("heavily loaded b2 picked %d times (all: %v)", got["b2"], got)
	}
	for _, id := range []string{"b0", "b1"} {
		if !within(got[id], 15000, 0.10) {
			t.Errorf("%s: %d picks, want 15000 ±10%% (all: %v)", id, got[id], got)
		}
	}
}

func TestPowerOfTwoSkipsUnavailableEvenly(t *testing.T) {
	bs := testBackends(4)
	bs[1].healthy.Store(false)
	got := count(t, mustSelector(t, "power_of_two", bs), 30000)
	if got["b1"] != 0 {
		t.Errorf("unhealthy b1 picked %d times", got["b1"])
	}
	for _, id := range []string{"b0", "b2", "b3"} {
		if !within(got[id], 10000, 0.15) {
			t.Errorf("%s: %d picks, want 10000 ±15%% (all: %v)", id, got[id], got)
		}
	}
}

func hashKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "192.168." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	return keys
}

func TestConsistentHashStable(t *testing.T) {
	bs := testBackends(3)
	s := mustSelector(t, "consistent_hash", bs)
	// A second selector over the same backends maps identically, as a
	// second Rampart instance or a restarted one must.
	s2 := mustSelector(t, "consistent_hash", testBackends(3))
	for _, k := range hashKeys(1000) {
		first := s.Select(k, nil)
		for range 3 {
			if b := s.Select(k, nil); b != first {
				t.Fatalf("key %q: %s then %s", k, first.ID, b.ID)
			}
		}
		if b := s2.Select(k, nil); b.ID != first.ID {
			t.Fatalf("key %q: %s in one selector, %s in an identical one", k, first.ID, b.ID)
		}
	}
}

func TestConsistentHashSpread(t *testing.T) {
	bs := testBackends(3)
	s := mustSelector(t, "consistent_hash", bs)
	got := map[string]int{}
	keys := hashKeys(10000)
	for _, k := range keys {
		got[s.Select(k, nil).ID]++
	}
	for _, b := range bs {
		if !within(got[b.ID], len(keys)/3, 0.25) {
			t.Errorf("%s: %d keys, want %d ±25%% (all: %v)", b.ID, got[b.ID], len(keys)/3, got)
		}
	}
}

func TestConsistentHashWeighted(t *testing.T) {
	bs := testBackends(2)
	bs[0].Weight = 3
	s := mustSelector(t, "consistent_hash", bs)
	got := map[string]int{}
	for _, k := range hashKeys(10000) {
		got[s.Select(k, nil).ID]++
	}
	if !within(got["b0"], 7500, 0.10) {
		t.Errorf("weight 3 of 4: b0 got %d keys, want 7500 ±10%% (all: %v)", got["b0"], got)
	}
}

func TestConsistentHashMinimalMovement(t *testing.T) {
	bs := testBackends(3)
	s := mustSelector(t, "consistent_hash", bs)
	keys := hashKeys(10000)
	before := make([]*Backend, len(keys))
	for i, k := range keys {
		before[i] = s.Select(k, nil)
	}

	check := func(name string, sel func(string) *Backend) {
		t.Helper()
		moved := 0
		for i, k := range keys {
			after := sel(k)
			if after == nil || after.ID == "b1" {
				t.Fatalf("%s: key %q went to %v", name, k, after)
			}
			if before[i].ID != "b1" && after.ID != before[i].ID {
				t.Fatalf("%s: key %q moved from %s to %s though %s is still up", name, k, before[i].ID, after.ID, before[i].ID)
			}
			if after.ID != before[i].ID {
				moved++
			}
		}
		// Every key of b1 moved and nothing else did; b1's keys must also
		// land on both survivors, not pile onto one.
		if moved == 0 {
			t.Errorf("%s: no key moved", name)
		}
	}

	// b1 unavailable: only its keys move.
	bs[1].setState(StateQuarantined)
	check("quarantined", func(k string) *Backend { return s.Select(k, nil) })
	// b1 tried: same.
	bs[1].setState(StateActive)
	check("tried", func(k string) *Backend { return s.Select(k, []*Backend{bs[1]}) })
	// Ring rebuilt without b1: same, since points depend only on IDs.
	s2 := mustSelector(t, "consistent_hash", []*Backend{bs[0], bs[2]})
	check("removed", func(k string) *Backend { return s2.Select(k, nil) })

	// b1 back: every key returns to where it was.
	for i, k := range keys {
		if b := s.Select(k, nil); b != before[i] {
			t.Fatalf("key %q: %s after restore, want %s", k, b.ID, before[i].ID)
		}
	}

	// b1's keys spread over both survivors.
	spread := map[string]int{}
	for i, k := range keys {
		if before[i].ID == "b1" {
			spread[s2.Select(k, nil).ID]++
		}
	}
	if spread["b0"] == 0 || spread["b2"] == 0 {
		t.Errorf("b1's keys went %v, want some on each survivor", spread)
	}
}

// TestNeverSelectsUnavailable marks backends out in each of the ways
// Available knows about and checks no policy picks them.
func TestNeverSelectsUnavailable(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			bs := testBackends(5)
			bs[0].setState(StateQuarantined)
			bs[1].healthy.Store(false)
			bs[2].setState(StateDraining)
			bs[3].ejectEnd.Store(time.Now().Add(time.Hour).UnixNano())
			s := mustSelector(t, alg, bs)
			for i := range 2000 {
				b := s.Select(strconv.Itoa(i), nil)
				if b != bs[4] {
					t.Fatalf("picked %v, want b4 (the only available backend)", b)
				}
			}
			// An expired ejection puts b3 back.
			bs[3].ejectEnd.Store(time.Now().Add(-time.Second).UnixNano())
			seen := false
			for i := range 2000 {
				if s.Select(strconv.Itoa(i), nil) == bs[3] {
					seen = true
					break
				}
			}
			if !seen {
				t.Error("b3 never picked after its ejection expired")
			}
		})
	}
}

func TestTriedHonoured(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			bs := testBackends(4)
			s := mustSelector(t, alg, bs)
			tried := []*Backend{bs[0], bs[2]}
			got := map[*Backend]int{}
			for i := range 2000 {
				b := s.Select(strconv.Itoa(i), tried)
				if b != bs[1] && b != bs[3] {
					t.Fatalf("picked %v with b0, b2 tried", b)
				}
				got[b]++
			}
			if alg != "consistent_hash" && (got[bs[1]] == 0 || got[bs[3]] == 0) {
				t.Errorf("picks %v: want both untried backends used", got)
			}
			// A tried backend is matched by pointer, not ID: a distinct
			// backend with the same ID is not excluded.
			twin := NewBackend(bs[1].ID, bs[1].Address, 1)
			if b := s.Select("k", []*Backend{bs[0], bs[2], bs[3], twin}); b != bs[1] {
				t.Errorf("picked %v, want b1 (its twin is not b1)", b)
			}
			if b := s.Select("k", bs); b != nil {
				t.Errorf("all tried: picked %s, want nil", b.ID)
			}
		})
	}
}

func TestAllUnavailableNil(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			bs := testBackends(3)
			s := mustSelector(t, alg, bs)
			for _, b := range bs {
				b.setState(StateQuarantined)
			}
			if b := s.Select("k", nil); b != nil {
				t.Errorf("all quarantined: picked %s, want nil", b.ID)
			}
			// One back in rotation is picked straight away.
			bs[1].setState(StateActive)
			if b := s.Select("k", nil); b != bs[1] {
				t.Errorf("picked %v, want b1", b)
			}
			empty := mustSelector(t, alg, nil)
			if b := empty.Select("k", nil); b != nil {
				t.Errorf("no backends: picked %s, want nil", b.ID)
			}
		})
	}
}

func TestZeroWeightTreatedAsOne(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			bs := []*Backend{NewBackend("a", "a:80", 1), NewBackend("b", "b:80", 1)}
			bs[0].Weight, bs[1].Weight = 0, -3 // as a struct literal might
			s := mustSelector(t, alg, bs)
			for i := range 100 {
				if b := s.Select(strconv.Itoa(i), nil); b == nil {
					t.Fatal("Select returned nil")
				}
			}
		})
	}
}

func TestSelectZeroAllocs(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			bs := testBackends(8)
			bs[3].setState(StateQuarantined) // exercise the skipping path too
			s := mustSelector(t, alg, bs)
			tried := []*Backend{bs[5]}
			key := "203.0.113.7"
			if n := testing.AllocsPerRun(1000, func() { s.Select(key, tried) }); n != 0 {
				t.Errorf("%v allocs per Select, want 0", n)
			}
		})
	}
}

// TestSelectConcurrent exercises every policy from several goroutines while
// backends change state; run with -race. Round robin must still hand out
// exactly even shares.
func TestSelectConcurrent(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			bs := testBackends(4)
			s := mustSelector(t, alg, bs)
			const workers, per = 4, 2000
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := map[*Backend]int{}
			for w := range workers {
				wg.Go(func() {
					local := map[*Backend]int{}
					for i := range per {
						b := s.Select(strconv.Itoa(w*per+i), nil)
						if b == nil {
							t.Error("nil with backends available")
							return
						}
						b.inflight.Add(1)
						local[b]++
						b.inflight.Add(-1)
					}
					mu.Lock()
					for b, n := range local {
						got[b] += n
					}
					mu.Unlock()
				})
			}
			wg.Wait()
			total := 0
			for _, n := range got {
				total += n
			}
			if total != workers*per {
				t.Fatalf("%d selections, want %d", total, workers*per)
			}
			if alg == "round_robin" {
				for _, b := range bs {
					if got[b] != workers*per/len(bs) {
						t.Errorf("%s: %d picks, want %d", b.ID, got[b], workers*per/len(bs))
					}
				}
			}
		})
	}
	// State flips racing with selection.
	bs := testBackends(3)
	sels := make([]Selector, 0, len(allAlgorithms))
	for _, alg := range allAlgorithms {
		sels = append(sels, mustSelector(t, alg, bs))
	}
	stop := make(chan struct{})
	var flipper sync.WaitGroup
	flipper.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				bs[0].setState(StateQuarantined)
			} else {
				bs[0].setState(StateActive)
			}
		}
	})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range 2000 {
				for _, s := range sels {
					if b := s.Select(strconv.Itoa(i), nil); b == nil {
						t.Error("nil while b1, b2 are available")
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flipper.Wait()
}
