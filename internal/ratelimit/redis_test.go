package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/redistest"
)

// newStore connects a store to srv, as one instance of a fleet. The loops
// run rarely: tests call Sync themselves, so they are deterministic.
func newStore(t *testing.T, srv *redistest.Server) *Redis {
	t.Helper()
	r := NewRedis(RedisOptions{Network: srv.Network, Addr: srv.Addr, Prefix: "t:", DialTimeout: time.Second,
		Timeout: time.Second, SyncInterval: time.Hour, HealthInterval: time.Hour})
	t.Cleanup(r.Close)
	if !r.Up() {
		t.Fatal("store is not up")
	}
	return r
}

var testIP = IPKey(netip.MustParseAddr("198.51.100.1"))

// Two instances share an exact bucket: burst 50 (and no refill to speak
// of) admits exactly 50 of 120 requests, alternating between them.
func TestExactBucketFleet(t *testing.T) {
	srv := redistest.Start(t, false)
	a, b := newStore(t, srv), newStore(t, srv)
	rate := Rate{RPS: 0.001, Burst: 50}
	ba, bb := a.NewExactBucket("per_ip", rate), b.NewExactBucket("per_ip", rate)
	allowed := 0
	for i := range 120 {
		l := ba
		if i%2 == 1 {
			l = bb
		}
		res, err := l.Allow(context.Background(), testIP)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
			if res.Limit != 50 || res.Remaining() != 50-allowed {
				t.Fatalf("request %d: limit %d remaining %d, want 50 and %d", i, res.Limit, res.Remaining(), 50-allowed)
			}
		} else if res.RetryAfter <= 0 || res.RetryAfter > 1000*time.Second {
			t.Fatalf("refusal %d: RetryAfter %v", i, res.RetryAfter)
		}
	}
	if allowed != 50 {
		t.Fatalf("fleet admitted %d, want exactly 50", allowed)
	}
	// Another client has its own bucket.
	if res, err := ba.Allow(context.Background(), IPKey(netip.MustParseAddr("198.51.100.2"))); err != nil || !res.Allowed {
		t.Fatalf("other client: %+v %v", res, err)
	}
	if ttl := srv.Do("PTTL t:per_ip:" + hexKey(testIP)); strings.HasPrefix(ttl, "-") || ttl == ":0" {
		t.Errorf("bucket key has no TTL: %s", ttl)
	}
}

func hexKey(k Key) string { return string(new(Redis).key(nil, "", &k)[1:]) }

// The exact sliding window: limit 7 per hour, exactly 7 across two
// instances.
func TestExactWindowFleet(t *testing.T) {
	srv := redistest.Start(t, true) // over the unix socket
	a, b := newStore(t, srv), newStore(t, srv)
	lim := WindowLimit{Limit: 7, Window: time.Hour}
	wa, wb := a.NewExactWindow("login", lim), b.NewExactWindow("login", lim)
	allowed := 0
	for i := range 20 {
		l := wa
		if i%3 == 0 {
			l = wb
		}
		res, err := l.Allow(context.Background(), testIP)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
		} else if res.RetryAfter <= 0 || res.Remaining() != 0 {
			t.Fatalf("refusal %d: %+v", i, res)
		}
	}
	if allowed != 7 {
		t.Fatalf("fleet admitted %d, want exactly 7", allowed)
	}
}

// redis_sync: two instances count locally and exchange counts through
// Redis after every round; the fleet admits the limit within 10%.
func TestSyncWindowFleet(t *testing.T) {
	srv := redistest.Start(t, false)
	a, b := newStore(t, srv), newStore(t, srv)
	lim := WindowLimit{Limit: 200, Window: time.Hour}
	wa, wb := NewSyncWindow("per_ip", lim, 0), NewSyncWindow("per_ip", lim, 0)
	a.SetSyncWindows([]*SyncWindow{wa})
	b.SetSyncWindows([]*SyncWindow{wb})
	allowed := 0
	for range 40 { // 40 rounds × 2 instances × 10 requests = 2× the limit
		for _, w := range []*SyncWindow{wa, wb} {
			for range 10 {
				if w.Allow(testIP, Now()).Allowed {
					allowed++
				}
			}
		}
		a.Sync(nil)
		b.Sync(nil)
	}
	if allowed < 180 || allowed > 220 {
		t.Fatalf("fleet admitted %d, want 200 ± 10%%", allowed)
	}
	// Without syncing, each instance alone would have admitted 200.
	if !a.Up() || a.Errors() != 0 {
		t.Errorf("store up %v errors %d", a.Up(), a.Errors())
	}
}

// Redis going away: calls fail at once with ErrRedisDown after the first
// error, the state and error count say so, and the health ping brings it
// back when Redis returns on the same address.
func TestRedisDownAndRecovery(t *testing.T) {
	srv := redistest.Start(t, false)
	r := NewRedis(RedisOptions{Network: srv.Network, Addr: srv.Addr, Prefix: "t:", DialTimeout: time.Second,
		Timeout: time.Second, SyncInterval: time.Hour, HealthInterval: 20 * time.Millisecond})
	defer r.Close()
	bk := r.NewExactBucket("b", Rate{RPS: 1, Burst: 100})
	if _, err := bk.Allow(context.Background(), testIP); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for r.Up() {
		if time.Now().After(deadline) {
			t.Fatal("store still up after redis-server was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := bk.Allow(context.Background(), testIP); err != ErrRedisDown {
		t.Fatalf("Allow while down: %v, want ErrRedisDown", err)
	}
	if r.Errors() == 0 {
		t.Error("no error counted")
	}
	srv.Start()
	for !r.Up() {
		if time.Now().After(deadline) {
			t.Fatal("store not up again after redis-server restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The restarted Redis lost the scripts; the recovery loaded them.
	if res, err := bk.Allow(context.Background(), testIP); err != nil || !res.Allowed {
		t.Fatalf("after recovery: %+v %v", res, err)
	}
}

func TestStableKey(t *testing.T) {
	a1, a2 := StableKey("alice"), StableKey(string([]byte("alice")))
	if a1 != a2 || a1 == StableKey("bob") {
		t.Fatal("StableKey is not a stable, distinguishing hash")
	}
}

// A sync that fails keeps the deltas: they are pushed once Redis is back.
func TestSyncWindowKeepsDeltasOverAnOutage(t *testing.T) {
	srv := redistest.Start(t, false)
	r := NewRedis(RedisOptions{Network: srv.Network, Addr: srv.Addr, Prefix: "t:", DialTimeout: time.Second,
		Timeout: time.Second, SyncInterval: time.Hour, HealthInterval: 20 * time.Millisecond})
	defer r.Close()
	w := NewSyncWindow("w", WindowLimit{Limit: 100, Window: time.Hour}, 0)
	r.SetSyncWindows([]*SyncWindow{w})
	for range 7 {
		w.Allow(testIP, Now())
	}
	srv.Stop()
	items := w.collect(nil, Now())
	if len(items) != 1 || items[0].currDelta != 7 {
		t.Fatalf("collected %+v", items)
	}
	if err := r.syncWindow(w, items); err == nil {
		t.Fatal("sync succeeded without Redis")
	}
	w.restore(items)
	srv.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !r.Up() {
		if r.Sync(nil); time.Now().After(deadline) {
			t.Fatal("store not up again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Sync(nil)
	if got := srv.Do(fmt.Sprintf("GET t:w:%s:%d", hexKey(testIP), items[0].idx)); got != "7" {
		t.Fatalf("fleet count in Redis after the outage: %q, want 7", got)
	}
}
