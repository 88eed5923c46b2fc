package ratelimit

import (
	"net/netip"
	"sync/atomic"
	"testing"
)

// BenchmarkBucketAllow is the per-IP check on the request path: 64k
// distinct clients, spread over the shards. Run with -cpu 1,2. The clock
// is read every 256 checks: the server passes the time it took at the
// start of the request (BenchmarkNow is that read's cost, paid anyway).
func BenchmarkBucketAllow(b *testing.B) {
	l := NewBucket(Rate{RPS: 1, Burst: 1 << 30}, 0)
	for i := range 1 << 16 {
		l.Allow(IPKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})), Now())
	}
	keys := make([]Key, 1<<16)
	for i := range keys {
		keys[i] = IPKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	var seq atomic.Uint64
	b.ReportAllocs()
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
}

// BenchmarkBucketOneMillion checks with 1M distinct clients tracked.
func BenchmarkBucketOneMillion(b *testing.B) {
	l := NewBucket(Rate{RPS: 1, Burst: 1 << 30}, 1_000_000)
	keys := make([]Key, 1<<20)
	for i := range keys {
		keys[i] = IPKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		l.Allow(keys[i], Now())
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1) * 104729)
		now := Now()
		for pb.Next() {
			i++
			if i&255 == 0 {
				now = Now()
			}
			l.Allow(keys[i&(len(keys)-1)], now)
		}
	})
}

func BenchmarkWindowAllow(b *testing.B) {
	l := NewWindow(WindowLimit{Limit: 1 << 30, Window: 60e9}, 0)
	keys := make([]Key, 1<<16)
	for i := range keys {
		keys[i] = IPKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	var seq atomic.Uint64
	b.ReportAllocs()
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
}

func BenchmarkGlobalAllow(b *testing.B) {
	g := NewGlobal(Rate{RPS: 1e9, Burst: 1e6})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Allow(Now())
		}
	})
}

func BenchmarkIPKey(b *testing.B) {
	a := netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	var k Key
	for b.Loop() {
		k = IPKey(a)
	}
	_ = k
}

// BenchmarkNow is the clock read the other benchmarks include; the server
// takes the time once per request anyway and passes it (Mono).
func BenchmarkNow(b *testing.B) {
	var n int64
	for b.Loop() {
		n += Now()
	}
	_ = n
}

// BenchmarkBucketAllowHot is BenchmarkBucketAllow with 1024 clients, whose
// state stays in the CPU caches: the check's own cost without cache misses.
func BenchmarkBucketAllowHot(b *testing.B) {
	l := NewBucket(Rate{RPS: 1, Burst: 1 << 30}, 0)
	keys := make([]Key, 1<<10)
	for i := range keys {
		keys[i] = IPKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		l.Allow(keys[i], Now())
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1) * 7919)
		now := Now()
		for pb.Next() {
			i++
			l.Allow(keys[i&(len(keys)-1)], now)
		}
	})
}
