package ratelimit

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/redistest"
)

// BenchmarkSyncWindowAllow is the redis_sync check on the request path
// (64k clients, as BenchmarkBucketAllow) while the store's sync loop
// pushes and reads counts every 250ms (the default) against a real
// redis-server on the same cores. Run with -cpu 1,2: it stays a local,
// sharded check (0 allocs/op; the loop's own allocations, amortised over
// the checks, round to 0 too).
func BenchmarkSyncWindowAllow(b *testing.B) {
	srv := redistest.Start(b, false)
	r := NewRedis(RedisOptions{Network: srv.Network, Addr: srv.Addr, Prefix: "b:", DialTimeout: time.Second,
		Timeout: time.Second, SyncInterval: 250 * time.Millisecond})
	defer r.Close()
	l := NewSyncWindow("per_ip", WindowLimit{Limit: 1 << 30, Window: time.Hour}, 0)
	r.SetSyncWindows([]*SyncWindow{l})
	keys := make([]Key, 1<<16)
	for i := range keys {
		keys[i] = IPKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		l.Allow(keys[i], Now())
	}
	from := r.Syncs()
	for r.Syncs() < from+2 { // every key synced once: the dirty lists have grown to size
		time.Sleep(5 * time.Millisecond)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1) * 7919)
		now := Now()
		for pb.Next() {
			i++
			if i&255 == 0 {
				now = Now()
			}
			l.Allow(keys[i&(len(keys)-1)], now)
		}
	})
	b.StopTimer()
	if r.Syncs() == from || !r.Up() {
		b.Fatalf("the sync loop did not run (up %v)", r.Up())
	}
}

// BenchmarkRedisExactLatency is the time redis_exact adds to a request:
// one EVALSHA of the token-bucket script on a loopback redis-server,
// sequential, reported as p50 and p99.
func BenchmarkRedisExactLatency(b *testing.B) {
	srv := redistest.Start(b, false)
	r := NewRedis(RedisOptions{Network: srv.Network, Addr: srv.Addr, Prefix: "b:", DialTimeout: time.Second,
		Timeout: time.Second, SyncInterval: time.Hour})
	defer r.Close()
	bk := r.NewExactBucket("per_ip", Rate{RPS: 1e6, Burst: 1 << 20})
	lat := make([]time.Duration, 0, min(b.N, 1<<20))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := IPKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		t0 := time.Now()
		if _, err := bk.Allow(ctx, k); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t0))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
