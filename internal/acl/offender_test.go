package acl

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

func newTestOffender(t *testing.T, ab config.AutoBlock) (*Offender, *Dynamic, *fakeClock) {
	t.Helper()
	clk := newClock()
	d := openTestDynamic(t, filepath.Join(t.TempDir(), "b.db"), clk)
	t.Cleanup(func() { d.Close() })
	return newOffender(d, &ab, clk.Now, quietLog()), d, clk
}

// blockOf returns the live dynamic block entry covering ip, if any.
func blockOf(t *testing.T, d *Dynamic, ip string) (Entry, bool) {
	t.Helper()
	src, p, ok := d.Lookup(Blocklist, netip.MustParseAddr(ip))
	if !ok {
		return Entry{}, false
	}
	e, ok := d.Get(Blocklist, p)
	if !ok || "dynamic:"+e.ID != src {
		t.Fatalf("Lookup(%s) = %s %s but Get = %+v %v", ip, src, p, e, ok)
	}
	return e, true
}

func offend(o *Offender, ip, kind string, n int) {
	for range n {
		o.Offense(netip.MustParseAddr(ip), kind)
	}
}

func TestOffenderRateLimitLadder(t *testing.T) {
	o, d, clk := newTestOffender(t, config.AutoBlock{})
	const ip = "198.51.100.7"
	for step, want := range []time.Duration{time.Hour, 4 * time.Hour, 24 * time.Hour, 168 * time.Hour, 168 * time.Hour} {
		offend(o, ip, OffenceRateLimit, 2)
		if _, ok := blockOf(t, d, ip); ok {
			t.Fatalf("step %d: blocked after 2 offences", step)
		}
		offend(o, ip, OffenceRateLimit, 1)
		e, ok := blockOf(t, d, ip)
		if !ok {
			t.Fatalf("step %d: not blocked after 3 offences", step)
		}
		if got := e.ExpiresAt.Sub(clk.Now()); got != want {
			t.Errorf("step %d: blocked for %s, want %s", step, got, want)
		}
		if e.Source != "auto:rate_limit" || e.Severity != "medium" || e.Prefix.String() != ip+"/32" {
			t.Errorf("step %d: entry %+v", step, e)
		}
		// Offences while blocked do not count towards the next block.
		offend(o, ip, OffenceRateLimit, 5)
		clk.Advance(want)
		if _, ok := blockOf(t, d, ip); ok {
			t.Fatalf("step %d: still blocked after %s", step, want)
		}
	}
	// A week without trouble since the last block ended: back to 1h.
	clk.Advance(168 * time.Hour)
	offend(o, ip, OffenceRateLimit, 3)
	if e, ok := blockOf(t, d, ip); !ok || e.ExpiresAt.Sub(clk.Now()) != time.Hour {
		t.Errorf("after a clean week: %+v, %v; want a 1h block", e, ok)
	}
}

func TestOffenderWindow(t *testing.T) {
	o, d, clk := newTestOffender(t, config.AutoBlock{})
	const ip = "198.51.100.8"
	for range 3 {
		o.Offense(netip.MustParseAddr(ip), OffenceRateLimit)
		clk.Advance(40 * time.Minute) // 0, 40m, 80m: never 3 within 1h
	}
	if _, ok := blockOf(t, d, ip); ok {
		t.Fatal("blocked for offences spread over more than the window")
	}
	clk.Advance(-30 * time.Minute) // now 90m: offences at 40m, 80m, 90m
	o.Offense(netip.MustParseAddr(ip), OffenceRateLimit)
	if _, ok := blockOf(t, d, ip); !ok {
		t.Fatal("not blocked for 3 offences within the window")
	}
}

func TestOffenderWAF(t *testing.T) {
	o, d, clk := newTestOffender(t, config.AutoBlock{})
	const ip = "203.0.113.50"
	offend(o, ip, OffenceWAF, 9)
	offend(o, ip, OffenceRateLimit, 2) // other kinds count apart
	if _, ok := blockOf(t, d, ip); ok {
		t.Fatal("blocked after 9 WAF offences")
	}
	clk.Advance(4 * time.Minute)
	offend(o, ip, OffenceWAF, 1)
	e, ok := blockOf(t, d, ip)
	if !ok || e.ExpiresAt.Sub(clk.Now()) != 24*time.Hour || e.Source != "auto:waf" || e.Severity != "high" {
		t.Fatalf("after 10 WAF offences in 4m: %+v, %v; want a 24h high block", e, ok)
	}
	// Unknown kinds are ignored.
	offend(o, "203.0.113.51", "mystery", 100)
	if _, ok := blockOf(t, d, "203.0.113.51"); ok || o.Tracked() != 1 {
		t.Errorf("unknown kind blocked or tracked (%d tracked)", o.Tracked())
	}
}

func TestOffenderIPv6ByPrefix64(t *testing.T) {
	o, d, _ := newTestOffender(t, config.AutoBlock{})
	offend(o, "2001:db8:1:2::1", OffenceRateLimit, 1)
	offend(o, "2001:db8:1:2::2", OffenceRateLimit, 1)
	offend(o, "2001:db8:1:2:ffff::3", OffenceRateLimit, 1)
	e, ok := blockOf(t, d, "2001:db8:1:2:abcd::9")
	if !ok || e.Prefix.String() != "2001:db8:1:2::/64" {
		t.Fatalf("block = %+v, %v; want 2001:db8:1:2::/64", e, ok)
	}
	if _, ok := blockOf(t, d, "2001:db8:1:3::1"); ok {
		t.Error("neighbouring /64 blocked")
	}
	// IPv4-mapped is tracked as IPv4.
	offend(o, "::ffff:192.0.2.5", OffenceRateLimit, 3)
	if e, ok := blockOf(t, d, "192.0.2.5"); !ok || e.Prefix.String() != "192.0.2.5/32" {
		t.Errorf("mapped: %+v, %v", e, ok)
	}
}

func TestOffenderBoundedMemory(t *testing.T) {
	o, d, _ := newTestOffender(t, config.AutoBlock{MaxTrackedIPs: 2})
	offend(o, "192.0.2.1", OffenceRateLimit, 2)
	offend(o, "192.0.2.2", OffenceRateLimit, 1)
	offend(o, "192.0.2.3", OffenceRateLimit, 1) // evicts 192.0.2.1
	if n := o.Tracked(); n != 2 {
		t.Errorf("Tracked = %d, want 2", n)
	}
	offend(o, "192.0.2.1", OffenceRateLimit, 1)
	if _, ok := blockOf(t, d, "192.0.2.1"); ok {
		t.Error("an evicted client kept its count")
	}
	offend(o, "192.0.2.1", OffenceRateLimit, 2)
	if _, ok := blockOf(t, d, "192.0.2.1"); !ok {
		t.Error("not blocked after 3 offences since it was forgotten")
	}
}

func TestOffenderConfiguredRules(t *testing.T) {
	off := false
	o, d, clk := newTestOffender(t, config.AutoBlock{
		RateLimitViolations: config.OffenceRule{Enabled: &off},
		WAFAttacks:          config.OffenceRule{Count: 2, Window: config.Duration(time.Minute), Duration: config.Duration(time.Hour)},
	})
	offend(o, "192.0.2.1", OffenceRateLimit, 50)
	if _, ok := blockOf(t, d, "192.0.2.1"); ok {
		t.Error("disabled rule blocked")
	}
	offend(o, "192.0.2.2", OffenceWAF, 2)
	if e, ok := blockOf(t, d, "192.0.2.2"); !ok || e.ExpiresAt.Sub(clk.Now()) != time.Hour {
		t.Errorf("configured WAF rule: %+v, %v; want a 1h block after 2", e, ok)
	}
	// Rules change on reload without forgetting clients.
	on := true
	o.setRules(&config.AutoBlock{RateLimitViolations: config.OffenceRule{Enabled: &on, Count: 1}})
	offend(o, "192.0.2.1", OffenceRateLimit, 1)
	if _, ok := blockOf(t, d, "192.0.2.1"); !ok {
		t.Error("re-enabled rule did not block")
	}
}

// An automatic block never shortens a longer one an operator set.
func TestOffenderKeepsLongerManualBlock(t *testing.T) {
	o, d, clk := newTestOffender(t, config.AutoBlock{})
	manual, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.9"), Expires: clk.Now().Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	offend(o, "192.0.2.9", OffenceRateLimit, 3)
	if e, _ := blockOf(t, d, "192.0.2.9"); e.ID != manual.ID {
		t.Errorf("manual 30-day block replaced by %+v", e)
	}
	// A shorter manual block is extended by the automatic one.
	short, _ := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.10"), Expires: clk.Now().Add(time.Minute)})
	offend(o, "192.0.2.10", OffenceRateLimit, 3)
	if e, _ := blockOf(t, d, "192.0.2.10"); e.ID == short.ID || e.ExpiresAt.Sub(clk.Now()) != time.Hour {
		t.Errorf("short manual block not extended: %+v", e)
	}
}

func TestOffenderAdminAuth(t *testing.T) {
	o, d, clk := newTestOffender(t, config.AutoBlock{})
	const ip = "192.0.2.77"
	offend(o, ip, OffenceAdminAuth, 19)
	if _, ok := blockOf(t, d, ip); ok {
		t.Fatal("blocked after 19 admin authentication failures")
	}
	clk.Advance(9 * time.Minute)
	offend(o, ip, OffenceAdminAuth, 1)
	e, ok := blockOf(t, d, ip)
	if !ok || e.ExpiresAt.Sub(clk.Now()) != time.Hour || e.Source != "auto:admin_auth" {
		t.Fatalf("after 20 failures in 9m: %+v, %v; want a 1h auto:admin_auth block", e, ok)
	}
}

func TestOffenderReportsAutomaticBlocks(t *testing.T) {
	o, _, _ := newTestOffender(t, config.AutoBlock{})
	got := make(chan audit.Event, 1)
	o.events = func(ev audit.Event) { got <- ev }
	offend(o, "198.51.100.99", OffenceRateLimit, 3)
	select {
	case ev := <-got:
		if ev.Action != audit.ActionAutoBlock || ev.Actor.ID != "auto_block" || ev.Resource.ID != "198.51.100.99/32" || ev.Details["kind"] != OffenceRateLimit {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no audit event for an automatic block")
	}
}

// slow_client offences follow auto_block.slow_clients: by default 3
// within 10 minutes block for 1h, then 24h; a custom rule applies.
func TestOffenderSlowClients(t *testing.T) {
	o, d, clk := newTestOffender(t, config.AutoBlock{})
	const ip = "198.51.100.9"
	offend(o, ip, OffenceSlowClient, 2)
	if _, ok := blockOf(t, d, ip); ok {
		t.Fatal("blocked after 2 slow_client offences")
	}
	offend(o, ip, OffenceSlowClient, 1)
	e, ok := blockOf(t, d, ip)
	if !ok || e.Source != "auto:slow_client" || e.ExpiresAt.Sub(clk.Now()) != time.Hour {
		t.Fatalf("after 3 offences: %+v %v", e, ok)
	}
	off := false
	o2, d2, _ := newTestOffender(t, config.AutoBlock{SlowClients: config.OffenceRule{Enabled: &off}})
	offend(o2, ip, OffenceSlowClient, 10)
	if _, ok := blockOf(t, d2, ip); ok {
		t.Fatal("blocked with slow_clients disabled")
	}
}

// A proxy any listener trusts is never auto-blocked (the offence may come
// from a listener that does not trust it, the block applies to all), and
// an IPv6 offender whose /64 holds one is blocked alone: the /64 block cut
// off every client behind the proxy.
func TestOffenderNeverBlocksTrustedProxies(t *testing.T) {
	o, d, _ := newTestOffender(t, config.AutoBlock{})
	o.setProxies([]config.Listener{{Name: "a"}, {Name: "b", TrustedProxies: []string{"192.0.2.10", "2001:db8:1:2::10"}}})
	offend(o, "192.0.2.10", OffenceRateLimit, 5)
	offend(o, "::ffff:192.0.2.10", OffenceRateLimit, 5)
	if e, ok := blockOf(t, d, "192.0.2.10"); ok {
		t.Fatalf("trusted proxy blocked: %+v", e)
	}
	offend(o, "2001:db8:1:2::7", OffenceRateLimit, 3)
	e, ok := blockOf(t, d, "2001:db8:1:2::7")
	if !ok || e.Prefix.String() != "2001:db8:1:2::7/128" {
		t.Fatalf("offender next to a proxy: %+v, %v; want 2001:db8:1:2::7/128", e, ok)
	}
	if _, ok := blockOf(t, d, "2001:db8:1:2::10"); ok {
		t.Error("the proxy's /64 blocked")
	}
	offend(o, "192.0.2.11", OffenceRateLimit, 3) // a neighbour is an offender like any
	if _, ok := blockOf(t, d, "192.0.2.11"); !ok {
		t.Error("an untrusted neighbour of the proxy not blocked")
	}
}
