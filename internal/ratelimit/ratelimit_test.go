package ratelimit

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

const sec = int64(time.Second)

func TestBucketBurstThenRefill(t *testing.T) {
	b := NewBucket(Rate{RPS: 2, Burst: 3}, 0)
	k := IPKey(netip.MustParseAddr("192.0.2.1"))
	now := 10 * sec
	for i := range 3 {
		r := b.Allow(k, now)
		if !r.Allowed || r.Remaining() != 2-i || r.Limit != 3 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, r, 2-i)
		}
	}
	r := b.Allow(k, now)
	if r.Allowed || r.Remaining() != 0 {
		t.Fatalf("4th request in the burst: %+v, want refused", r)
	}
	if r.RetryAfter != 500*time.Millisecond {
		t.Errorf("RetryAfter = %v, want 500ms (one token at 2/s)", r.RetryAfter)
	}
	if r.Reset != 1500*time.Millisecond {
		t.Errorf("Reset = %v, want 1.5s (three tokens at 2/s)", r.Reset)
	}
	// Another client is unaffected.
	if r := b.Allow(IPKey(netip.MustParseAddr("192.0.2.2")), now); !r.Allowed {
		t.Fatal("another client was refused")
	}
	// 499ms later: still nothing; at 500ms one token.
	if r := b.Allow(k, now+499*int64(time.Millisecond)); r.Allowed {
		t.Fatal("allowed before a token refilled")
	}
	if r := b.Allow(k, now+sec/2); !r.Allowed || r.Remaining() != 0 {
		t.Fatalf("after 500ms: %+v, want one token", r)
	}
	if r := b.Allow(k, now+sec/2); r.Allowed {
		t.Fatal("second request after one refill allowed")
	}
	// After a long pause the bucket is full again, never more than burst.
	later := now + 100*sec
	for i := range 3 {
		if r := b.Allow(k, later); !r.Allowed {
			t.Fatalf("after a pause, request %d refused", i)
		}
	}
	if r := b.Allow(k, later); r.Allowed {
		t.Fatal("bucket held more than burst after a pause")
	}
}

func TestBucketSetRateKeepsState(t *testing.T) {
	b := NewBucket(Rate{RPS: 1, Burst: 2}, 0)
	k := IPKey(netip.MustParseAddr("192.0.2.1"))
	b.Allow(k, sec)
	b.Allow(k, sec)
	b.SetRate(Rate{RPS: 1, Burst: 3})
	if r := b.Allow(k, sec); !r.Allowed || r.Remaining() != 0 {
		t.Fatalf("after raising the burst: %+v, want the one extra token", r)
	}
	if r := b.Allow(k, sec); r.Allowed {
		t.Fatal("state was lost on SetRate")
	}
}

func TestIPKeyV6Prefix(t *testing.T) {
	a := IPKey(netip.MustParseAddr("2001:db8::1"))
	b := IPKey(netip.MustParseAddr("2001:db8::ffff:1"))
	c := IPKey(netip.MustParseAddr("2001:db8:0:1::1"))
	if a != b || a == c {
		t.Fatal("IPv6 keys are not per /64")
	}
	if IPKey(netip.MustParseAddr("::ffff:192.0.2.1")) != IPKey(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("mapped IPv4 differs from IPv4")
	}
	if IPKey(netip.MustParseAddr("192.0.2.1")) == IPKey(netip.MustParseAddr("192.0.2.2")) {
		t.Fatal("IPv4 keys collide")
	}
}

func TestBoundedMemory(t *testing.T) {
	b := NewBucket(Rate{RPS: 1, Burst: 5}, 10_000)
	for i := range 100_000 {
		b.Allow(IPKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})), sec)
	}
	if n := b.Len(); n > 10_000*9/8+numShards {
		t.Fatalf("tracking %d clients, cap 10000", n)
	}
	// Expired state is swept first: once every bucket is full again, new
	// clients replace them and a refused client stays refused.
	k := IPKey(netip.MustParseAddr("192.0.2.9"))
	for range 5 {
		b.Allow(k, 100*sec)
	}
	if b.Allow(k, 100*sec).Allowed {
		t.Fatal("burst not enforced")
	}
	b.Sweep(200 * sec)
	if n := b.Len(); n != 0 {
		t.Fatalf("after sweep: %d tracked, want 0", n)
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(WindowLimit{Limit: 5, Window: time.Minute}, 0)
	k := IPKey(netip.MustParseAddr("192.0.2.1"))
	start := 60 * 10 * sec // the start of a fixed window
	for i := range 5 {
		r := w.Allow(k, start+int64(i)*sec)
		if !r.Allowed || r.Remaining() != 4-i {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	r := w.Allow(k, start+10*sec)
	if r.Allowed {
		t.Fatal("6th request within a minute allowed")
	}
	// Next window: the 5 of the previous one still weigh 5*(1-e/W); one
	// more is allowed once 5*(1-e/60s) + 1 <= 5, i.e. e >= 12s.
	if want := 50*time.Second + 12*time.Second; r.RetryAfter != want {
		t.Errorf("RetryAfter = %v, want %v", r.RetryAfter, want)
	}
	if w.Allow(k, start+60*sec+11*sec).Allowed {
		t.Fatal("allowed while the previous window still weighs 5")
	}
	if !w.Allow(k, start+60*sec+12*sec).Allowed {
		t.Fatal("refused once the previous window decayed")
	}
	// Two windows later everything is forgotten.
	for i := range 5 {
		if !w.Allow(k, start+180*sec).Allowed {
			t.Fatalf("after two windows, request %d refused", i)
		}
	}
}

func TestGlobal(t *testing.T) {
	g := NewGlobal(Rate{RPS: 10, Burst: 10})
	for i := range 10 {
		if !g.Allow(sec).Allowed {
			t.Fatalf("request %d refused", i)
		}
	}
	r := g.Allow(sec)
	if r.Allowed || r.RetryAfter != 100*time.Millisecond {
		t.Fatalf("11th: %+v", r)
	}
	if !g.Allow(sec + sec/10).Allowed {
		t.Fatal("no refill")
	}
}

// TestMemoryOneMillion measures the heap for 1,000,000 distinct clients;
// the budget is 150 MB.
func TestMemoryOneMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := NewBucket(Rate{RPS: 1, Burst: 10}, 1_000_000)
	for i := range 1_000_000 {
		b.Allow(IPKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})), sec)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := b.Len()
	mb := float64(after.HeapAlloc-before.HeapAlloc) / 1e6
	t.Logf("%d clients tracked in %.1f MB of heap", n, mb)
	if n < 900_000 {
		t.Errorf("only %d of 1,000,000 clients tracked", n)
	}
	if mb > 150 {
		t.Errorf("%.1f MB for 1M clients, budget 150 MB", mb)
	}
	runtime.KeepAlive(b)
}
