package acl

import (
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// orderConfig overlaps every source on purpose: 192.0.2.0/24 is in the
// static allowlist, the static blocklist and the feed.
func orderConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	writeFile(t, dir, "feed.txt", "192.0.2.0/24\n198.51.100.0/24\n203.0.113.0/24\n2001:db8:f::/48\n")
	cfg := testConfig(t, dir)
	cfg.Security.IPLists = config.IPLists{
		Allowlist: []string{"192.0.2.0/24", "2001:db8:a::/48"},
		Blocklist: []string{"192.0.2.7", "198.51.100.0/25", "2001:db8:a::1", "2001:db8:b::/48"},
		Feeds:     []config.Feed{{Name: "threats", File: "feed.txt", Format: "plain"}},
	}
	return cfg
}

func TestCheckOrder(t *testing.T) {
	clk := newClock()
	a := newTestACL(t, orderConfig(t, t.TempDir()), clk)
	dyn := a.Dynamic()
	allow, err := dyn.Add(Allowlist, NewEntry{Prefix: mustPrefix(t, "198.51.100.5")})
	if err != nil {
		t.Fatal(err)
	}
	block, err := dyn.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "203.0.113.0/28")})
	if err != nil {
		t.Fatal(err)
	}
	block2, err := dyn.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "100.64.0.0/10")})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr   string
		action Action
		source string
		prefix string
	}{
		// An allowlisted address passes even though it is also in the
		// static blocklist and the feed.
		{"192.0.2.7", ActionAllow, SourceStaticAllow, "192.0.2.0/24"},
		{"::ffff:192.0.2.7", ActionAllow, SourceStaticAllow, "192.0.2.0/24"},
		{"2001:db8:a::1", ActionAllow, SourceStaticAllow, "2001:db8:a::/48"},
		// A dynamic allow beats the static blocklist and the feed.
		{"198.51.100.5", ActionAllow, "dynamic:" + allow.ID, "198.51.100.5/32"},
		// Static blocklist before the feed, the feed before dynamic.
		{"198.51.100.6", ActionDeny, SourceStaticBlock, "198.51.100.0/25"},
		{"198.51.100.200", ActionDeny, "feed:threats", "198.51.100.0/24"},
		{"203.0.113.1", ActionDeny, "feed:threats", "203.0.113.0/24"},
		{"100.64.1.1", ActionDeny, "dynamic:" + block2.ID, "100.64.0.0/10"},
		{"2001:db8:b::9", ActionDeny, SourceStaticBlock, "2001:db8:b::/48"},
		{"2001:db8:f::9", ActionDeny, "feed:threats", "2001:db8:f::/48"},
		// Nothing matched: the later stages decide.
		{"8.8.8.8", ActionNone, "", "invalid Prefix"},
		{"2001:db8:c::1", ActionNone, "", "invalid Prefix"},
	}
	for _, c := range cases {
		d := a.Check(netip.MustParseAddr(c.addr))
		if d.Action != c.action || d.Source != c.source || d.Prefix.String() != c.prefix {
			t.Errorf("Check(%s) = %v %q %s; want %v %q %s", c.addr, d.Action, d.Source, d.Prefix, c.action, c.source, c.prefix)
		}
	}
	if _, err := dyn.Remove(Blocklist, block.Prefix); err != nil {
		t.Fatal(err)
	}
	// The feed still covers it.
	wantDecision(t, a, "203.0.113.1", ActionDeny, "feed:threats", "203.0.113.0/24")
	if s := ActionDeny.String() + ActionAllow.String() + ActionNone.String(); s != "denyallownone" {
		t.Errorf("Action strings = %q", s)
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	clk := newClock()
	a := newTestACL(t, orderConfig(t, t.TempDir()), clk)
	a.Dynamic().Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "100.64.0.0/10")})
	a.Dynamic().Add(Allowlist, NewEntry{Prefix: mustPrefix(t, "100.127.0.1")})
	for _, s := range []string{"192.0.2.7", "198.51.100.6", "198.51.100.200", "100.64.1.1", "100.127.0.1", "8.8.8.8", "2001:db8:c::1", "::ffff:8.8.8.8"} {
		addr := netip.MustParseAddr(s)
		if n := testing.AllocsPerRun(200, func() { a.Check(addr) }); n != 0 {
			t.Errorf("Check(%s) allocates %v times", s, n)
		}
	}
}

func TestNewRefusesBadLists(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Security.IPLists.Blocklist = []string{"0.0.0.0/0"}
	if _, err := New(cfg, Options{Logger: quietLog()}); err == nil || !strings.Contains(err.Error(), "allow_broad") {
		t.Errorf("New with a broad blocklist entry: %v", err)
	}
	cfg = testConfig(t, dir)
	cfg.Security.IPLists.Feeds = []config.Feed{{Name: "x", URL: "https://example.invalid/x", Format: "csv"}}
	if _, err := New(cfg, Options{Logger: quietLog()}); err == nil || !strings.Contains(err.Error(), `unknown feed format "csv"`) {
		t.Errorf("New with a bad feed format: %v", err)
	}
}

func TestCheckLists(t *testing.T) {
	dir := t.TempDir()
	cfg := orderConfig(t, dir)
	if err := CheckLists(cfg); err != nil {
		t.Errorf("CheckLists(good) = %v", err)
	}
	writeFile(t, dir, "bad.txt", "192.0.2.1\n192.0.2.x\n")
	cfg.Security.IPLists.AllowlistFiles = []string{"bad.txt"}
	if err := CheckLists(cfg); err == nil || !strings.Contains(err.Error(), `bad.txt:2: "192.0.2.x"`) {
		t.Errorf("CheckLists(bad file) = %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.db")); len(m) != 0 {
		t.Errorf("CheckLists created %v", m)
	}
}

func TestReloadKeepsDynamicAndRefusesBadConfig(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	cfg := orderConfig(t, dir)
	a := newTestACL(t, cfg, clk)
	e, err := a.Dynamic().Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "100.64.0.1")})
	if err != nil {
		t.Fatal(err)
	}

	// A bad entry: nothing changes.
	bad := orderConfig(t, dir)
	bad.Security.IPLists.Allowlist = nil
	bad.Security.IPLists.Blocklist = []string{"198.51.100.0/25", "not-an-ip"}
	if err := a.Reload(bad); err == nil || !strings.Contains(err.Error(), `"not-an-ip"`) {
		t.Fatalf("Reload(bad) = %v", err)
	}
	wantDecision(t, a, "192.0.2.7", ActionAllow, SourceStaticAllow, "192.0.2.0/24")

	// A moved store: refused.
	moved := orderConfig(t, dir)
	moved.Security.DynamicBlocklist.Store = "elsewhere.db"
	if err := a.Reload(moved); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("Reload(moved store) = %v", err)
	}

	// A good reload: new static lists, same dynamic entries, feed gone,
	// new TTL in effect.
	next := testConfig(t, dir)
	next.Security.IPLists.Blocklist = []string{"192.0.2.0/24"}
	next.Security.DynamicBlocklist.ManualDefaultTTL = config.Duration(2 * time.Hour)
	if err := a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	wantDecision(t, a, "192.0.2.7", ActionDeny, SourceStaticBlock, "192.0.2.0/24")
	wantDecision(t, a, "203.0.113.1", ActionNone, "", "")
	wantDecision(t, a, "100.64.0.1", ActionDeny, "dynamic:"+e.ID, "100.64.0.1/32")
	if len(a.Feeds()) != 0 {
		t.Errorf("feeds after reload without feeds: %+v", a.Feeds())
	}
	e2, _ := a.Dynamic().Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "100.64.0.2")})
	if got := e2.ExpiresAt.Sub(e2.CreatedAt); got != 2*time.Hour {
		t.Errorf("TTL after reload = %s, want 2h", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(next); err == nil {
		t.Error("Reload after Close succeeded")
	}
}

// While reloads swap the lists, an address that is blocked by every config
// must never slip through, and one allowed by every config never be
// refused: there is no moment with an empty or half-built list.
func TestReloadHasNoEmptyWindow(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	cfgs := make([]*config.Config, 2)
	for i := range cfgs {
		cfgs[i] = testConfig(t, dir)
		cfgs[i].Security.IPLists.Blocklist = []string{"203.0.113.0/24", []string{"192.0.2.1", "192.0.2.2"}[i]}
		cfgs[i].Security.IPLists.Allowlist = []string{"10.0.0.0/8"}
		writeFile(t, dir, "big.txt", bigList(5000))
		cfgs[i].Security.IPLists.BlocklistFiles = []string{"big.txt"}
	}
	a := newTestACL(t, cfgs[0], clk)
	var stop atomic.Bool
	var wrong atomic.Int64
	var checks atomic.Int64
	var wg sync.WaitGroup
	blocked, allowed := netip.MustParseAddr("203.0.113.77"), netip.MustParseAddr("10.1.2.3")
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if a.Check(blocked).Action != ActionDeny || a.Check(allowed).Action != ActionAllow {
					wrong.Add(1)
				}
				checks.Add(1)
			}
		}()
	}
	for i := range 30 {
		if err := a.Reload(cfgs[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if wrong.Load() != 0 {
		t.Errorf("%d of %d checks during reloads decided wrongly", wrong.Load(), checks.Load())
	}
	if checks.Load() == 0 {
		t.Error("no checks ran during the reloads")
	}
}

func bigList(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}).String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestOffenseSparesAllowlisted(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t, t.TempDir())
	cfg.Security.IPLists.Allowlist = []string{"10.0.0.0/8"}
	a := newTestACL(t, cfg, clk)
	for range 10 {
		a.Offense(netip.MustParseAddr("10.0.0.5"), OffenceRateLimit)
		a.Offense(netip.MustParseAddr("192.0.2.5"), OffenceRateLimit)
	}
	if n := a.Dynamic().Len(Blocklist); n != 1 {
		t.Errorf("%d dynamic blocks, want 1 (the allowlisted client is never blocked)", n)
	}
	if d := a.Check(netip.MustParseAddr("192.0.2.5")); d.Action != ActionDeny || !strings.HasPrefix(d.Source, "dynamic:") || d.Prefix.String() != "192.0.2.5/32" {
		t.Errorf("offender: Check = %+v, want a dynamic deny of 192.0.2.5/32", d)
	}
	if a.Offender().Tracked() != 1 {
		t.Errorf("Tracked = %d, want 1", a.Offender().Tracked())
	}
}

func TestDynamicStorePathDefault(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	if got, want := cfg.DynamicStorePath(), filepath.Join(dir, "blocklist.db"); got != want {
		t.Errorf("DynamicStorePath = %s, want %s", got, want)
	}
	a := newTestACL(t, cfg, newClock())
	a.Dynamic().Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.1")})
	a.Close()
	d := openTestDynamic(t, filepath.Join(dir, "blocklist.db"), newClock())
	defer d.Close()
	if d.Len(Blocklist) != 1 {
		t.Error("entry not in data_dir/blocklist.db")
	}
}
