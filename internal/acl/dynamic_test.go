package acl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock shared by the parts under test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTestDynamic(t *testing.T, path string, clk *fakeClock) *Dynamic {
	t.Helper()
	d, err := OpenDynamic(path, DynamicOptions{DefaultTTL: time.Hour, Now: clk.Now, Logger: quietLog()})
	if err != nil {
		t.Fatalf("OpenDynamic: %v", err)
	}
	return d
}

func TestDynamicAddLookupRemove(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "state", "blocklist.db")
	d := openTestDynamic(t, path, clk)
	defer d.Close()

	e, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.0/24"), Reason: "scanner", Source: "api:ops", Severity: "high"})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if len(e.ID) != 20 || e.Source != "api:ops" || e.Severity != "high" || !e.CreatedAt.Equal(clk.Now()) || !e.ExpiresAt.Equal(clk.Now().Add(time.Hour)) {
		t.Errorf("entry = %+v", e)
	}
	src, p, ok := d.Lookup(Blocklist, netip.MustParseAddr("192.0.2.77"))
	if !ok || src != "dynamic:"+e.ID || p.String() != "192.0.2.0/24" {
		t.Errorf("Lookup = %q %s %v, want dynamic:%s 192.0.2.0/24", src, p, ok, e.ID)
	}
	if _, _, ok := d.Lookup(Allowlist, netip.MustParseAddr("192.0.2.77")); ok {
		t.Error("block entry matched in the allowlist")
	}
	if _, _, ok := d.Lookup(Blocklist, netip.MustParseAddr("::ffff:192.0.2.77")); !ok {
		t.Error("IPv4-mapped address not matched")
	}

	// Defaults, and replacing the entry of the same prefix.
	e2, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.0/24"), Expires: clk.Now().Add(48 * time.Hour)})
	if err != nil {
		t.Fatalf("re-Add: %v", err)
	}
	if e2.ID == e.ID || e2.Source != "manual" || e2.Severity != "medium" || d.Len(Blocklist) != 1 {
		t.Errorf("replacement = %+v, Len %d", e2, d.Len(Blocklist))
	}
	if src, _, _ := d.Lookup(Blocklist, netip.MustParseAddr("192.0.2.1")); src != "dynamic:"+e2.ID {
		t.Errorf("Lookup after replace = %q, want dynamic:%s", src, e2.ID)
	}

	// Remove is by exact prefix.
	if _, err := d.Remove(Blocklist, mustPrefix(t, "192.0.2.1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove(address inside the CIDR) = %v, want ErrNotFound", err)
	}
	got, err := d.Remove(Blocklist, mustPrefix(t, "192.0.2.0/24"))
	if err != nil || got.ID != e2.ID {
		t.Fatalf("Remove = %+v, %v", got, err)
	}
	if _, _, ok := d.Lookup(Blocklist, netip.MustParseAddr("192.0.2.1")); ok {
		t.Error("removed entry still matches")
	}
	if _, err := d.Remove(Blocklist, mustPrefix(t, "192.0.2.0/24")); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
}

func TestDynamicAddRefusesBadInput(t *testing.T) {
	clk := newClock()
	d := openTestDynamic(t, filepath.Join(t.TempDir(), "b.db"), clk)
	defer d.Close()
	cases := []struct {
		l    List
		n    NewEntry
		want string
	}{
		{Blocklist, NewEntry{}, "missing or invalid ip/cidr"},
		{Blocklist, NewEntry{Prefix: netip.MustParsePrefix("10.1.2.3/8")}, "did you mean 10.0.0.0/8"},
		{Blocklist, NewEntry{Prefix: netip.MustParsePrefix("0.0.0.0/0")}, "needs allow_broad"},
		{Blocklist, NewEntry{Prefix: netip.MustParsePrefix("2000::/3")}, "needs allow_broad"},
		// Allowlisted, a range skips every check: a broad one needs the flag too.
		{Allowlist, NewEntry{Prefix: netip.MustParsePrefix("0.0.0.0/0")}, "skips every check for that range and needs allow_broad"},
		{Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.1"), Expires: clk.Now().Add(-time.Second)}, "not in the future"},
		{Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.1"), Severity: "urgent"}, `severity "urgent"`},
		{Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.1"), Reason: "line\ninjected"}, "control characters"},
		{Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.1"), Reason: strings.Repeat("x", 1025)}, "at most 1024"},
		{Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.1"), Source: "a b"}, `source "a b"`},
	}
	for _, c := range cases {
		if _, err := d.Add(c.l, c.n); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%+v) error = %v, want one containing %q", c.n, err, c.want)
		}
	}
	if d.Len(Blocklist) != 0 || d.Len(Allowlist) != 0 {
		t.Errorf("refused entries were stored: %d, %d", d.Len(Blocklist), d.Len(Allowlist))
	}
	// Broad entries: fine with AllowBroad, in either list.
	if _, err := d.Add(Blocklist, NewEntry{Prefix: netip.MustParsePrefix("0.0.0.0/0"), AllowBroad: true}); err != nil {
		t.Errorf("broad with AllowBroad: %v", err)
	}
	if _, err := d.Add(Allowlist, NewEntry{Prefix: netip.MustParsePrefix("0.0.0.0/4"), AllowBroad: true}); err != nil {
		t.Errorf("broad allow entry with AllowBroad: %v", err)
	}
	// An IPv4-mapped prefix is stored as IPv4.
	e, err := d.Add(Allowlist, NewEntry{Prefix: netip.MustParsePrefix("::ffff:198.51.100.0/120")})
	if err != nil || e.Prefix.String() != "198.51.100.0/24" {
		t.Errorf("mapped prefix stored as %s, %v", e.Prefix, err)
	}
}

func TestDynamicExpiryAndPurge(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.db")
	d := openTestDynamic(t, path, clk)
	short, _ := d.Add(Allowlist, NewEntry{Prefix: mustPrefix(t, "192.0.2.1")}) // default TTL 1h
	long, _ := d.Add(Allowlist, NewEntry{Prefix: mustPrefix(t, "192.0.2.2"), Expires: clk.Now().Add(3 * time.Hour)})
	a1 := netip.MustParseAddr("192.0.2.1")

	clk.Advance(59 * time.Minute)
	if _, _, ok := d.Lookup(Allowlist, a1); !ok {
		t.Fatal("entry expired early")
	}
	clk.Advance(time.Minute)
	// Expired entries stop counting at once, before any purge.
	if _, _, ok := d.Lookup(Allowlist, a1); ok {
		t.Error("expired allow entry still allows")
	}
	if pg := d.List(Allowlist, Filter{}); pg.Total != 1 || pg.Entries[0].ID != long.ID {
		t.Errorf("List after expiry = %+v, want only %s", pg, long.ID)
	}
	if d.Len(Allowlist) != 2 {
		t.Errorf("Len before purge = %d, want 2", d.Len(Allowlist))
	}
	n, err := d.Purge()
	if n != 1 || err != nil {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if _, ok := d.Get(Allowlist, short.Prefix); ok {
		t.Error("purged entry still there")
	}
	d.Close()

	// Purged entries are gone from disk; entries that expired while
	// Rampart was down are purged at open.
	clk.Advance(3 * time.Hour)
	d = openTestDynamic(t, path, clk)
	defer d.Close()
	if d.Len(Allowlist) != 0 {
		t.Errorf("after reopen past every expiry: %d entries", d.Len(Allowlist))
	}
}

func TestDynamicListFiltersAndPages(t *testing.T) {
	clk := newClock()
	d := openTestDynamic(t, filepath.Join(t.TempDir(), "b.db"), clk)
	defer d.Close()
	var ids []string
	for i := range 25 {
		src := "manual"
		if i%5 == 0 {
			src = "auto:waf"
		}
		e, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, fmt.Sprintf("198.51.100.%d", i)), Source: src, Reason: fmt.Sprintf("Case %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
		clk.Advance(time.Millisecond) // ids sort by creation time
	}
	var walked []string
	f := Filter{Limit: 10}
	for pages := 0; ; pages++ {
		pg := d.List(Blocklist, f)
		if pg.Total != 25 {
			t.Fatalf("Total = %d", pg.Total)
		}
		for _, e := range pg.Entries {
			walked = append(walked, e.ID)
		}
		if pg.NextCursor == "" {
			if pages != 2 {
				t.Errorf("cursor walk took %d pages, want 3", pages+1)
			}
			break
		}
		f.Cursor = pg.NextCursor
	}
	if strings.Join(walked, ",") != strings.Join(ids, ",") {
		t.Errorf("cursor walk = %v\nwant %v", walked, ids)
	}
	if pg := d.List(Blocklist, Filter{Offset: 20, Limit: 10}); len(pg.Entries) != 5 || pg.Entries[0].ID != ids[20] || pg.NextCursor != "" {
		t.Errorf("offset page = %d entries, first %v", len(pg.Entries), pg.Entries)
	}
	if pg := d.List(Blocklist, Filter{Offset: 99}); len(pg.Entries) != 0 || pg.Entries == nil {
		t.Errorf("offset past the end = %+v, want empty non-nil", pg)
	}
	if pg := d.List(Blocklist, Filter{Source: "auto:waf"}); pg.Total != 5 {
		t.Errorf("source filter: %d, want 5", pg.Total)
	}
	if pg := d.List(Blocklist, Filter{Reason: "case 1"}); pg.Total != 11 { // 1, 10..19
		t.Errorf("reason filter: %d, want 11", pg.Total)
	}
	if pg := d.List(Blocklist, Filter{Contains: netip.MustParseAddr("198.51.100.7")}); pg.Total != 1 || pg.Entries[0].ID != ids[7] {
		t.Errorf("contains filter: %+v", pg)
	}
	if pg := d.List(Blocklist, Filter{Contains: netip.MustParseAddr("203.0.113.1")}); pg.Total != 0 {
		t.Errorf("contains filter, no match: %d", pg.Total)
	}
}

func TestDynamicLookupDoesNotAllocate(t *testing.T) {
	clk := newClock()
	d := openTestDynamic(t, filepath.Join(t.TempDir(), "b.db"), clk)
	defer d.Close()
	d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.0/24")})
	for _, s := range []string{"192.0.2.1", "198.51.100.1"} {
		a := netip.MustParseAddr(s)
		if n := testing.AllocsPerRun(100, func() { d.Lookup(Blocklist, a) }); n != 0 {
			t.Errorf("Lookup(%s) allocates %v times", s, n)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// An acknowledged Add must be on disk when Add returns: a copy of the file
// taken at that moment, with the store still open and never closed, is
// what a crash would leave behind.
func TestDynamicAddIsDurableBeforeClose(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "b.db")
	d := openTestDynamic(t, path, clk)
	if d.st.db.NoSync {
		t.Fatal("store opened with NoSync: commits would not be fsynced")
	}
	e, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "203.0.113.9"), Reason: "crash test"})
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	copyFile(t, path, crashed)
	removed, err := d.Add(Allowlist, NewEntry{Prefix: mustPrefix(t, "2001:db8::/48")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Remove(Allowlist, removed.Prefix); err != nil {
		t.Fatal(err)
	}
	afterRemove := filepath.Join(dir, "after-remove.db")
	copyFile(t, path, afterRemove)
	defer d.Close()

	d2 := openTestDynamic(t, crashed, clk)
	defer d2.Close()
	got, ok := d2.Get(Blocklist, e.Prefix)
	if !ok || got.ID != e.ID || got.Reason != "crash test" || !got.ExpiresAt.Equal(e.ExpiresAt) {
		t.Fatalf("after crash: %+v, %v; want %+v", got, ok, e)
	}
	if src, _, ok := d2.Lookup(Blocklist, netip.MustParseAddr("203.0.113.9")); !ok || src != "dynamic:"+e.ID {
		t.Errorf("after crash, Lookup = %q, %v", src, ok)
	}
	d3 := openTestDynamic(t, afterRemove, clk)
	defer d3.Close()
	if _, ok := d3.Get(Allowlist, removed.Prefix); ok {
		t.Error("a durable Remove came back")
	}
	if _, ok := d3.Get(Blocklist, e.Prefix); !ok {
		t.Error("entry lost")
	}
}

// The store is locked against a second process (or a second open).
func TestDynamicStoreIsLocked(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.db")
	d := openTestDynamic(t, path, clk)
	defer d.Close()
	_, err := OpenDynamic(path, DynamicOptions{Now: clk.Now})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("second open = %v, want a lock error", err)
	}
}

func TestDynamicRefusesCorruptStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	if err := os.WriteFile(path, []byte("this is not a bbolt file, but it is long enough to be read as one......................"), 0o600); err != nil {
		t.Fatal(err)
	}
	if d, err := OpenDynamic(path, DynamicOptions{}); err == nil {
		d.Close()
		t.Fatal("opened a corrupt store")
	}
}

const kill9Env = "RAMPART_ACL_KILL9_STORE"

// TestKill9Helper is the child process of TestDynamicSurvivesKill9: it
// adds an entry, says so, and waits to be killed.
func TestKill9Helper(t *testing.T) {
	path := os.Getenv(kill9Env)
	if path == "" {
		t.Skip("helper process for TestDynamicSurvivesKill9")
	}
	d, err := OpenDynamic(path, DynamicOptions{})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	e, err := d.Add(Blocklist, NewEntry{Prefix: netip.MustParsePrefix("192.0.2.99/32"), Reason: "kill -9"})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("ADDED", e.ID)
	time.Sleep(time.Minute)
	os.Exit(2) // not killed: the parent gave up
}

// An acknowledged Add survives kill -9 of a real process.
func TestDynamicSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	path := filepath.Join(t.TempDir(), "b.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Helper$")
	cmd.Env = append(os.Environ(), kill9Env+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	var id string
	select {
	case s := <-line:
		var ok bool
		if id, ok = strings.CutPrefix(strings.TrimSpace(s), "ADDED "); !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper said %q", s)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("helper did not add in 30s")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	d, err := OpenDynamic(path, DynamicOptions{Logger: quietLog()})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer d.Close()
	e, ok := d.Get(Blocklist, netip.MustParsePrefix("192.0.2.99/32"))
	if !ok || e.ID != id || e.Reason != "kill -9" {
		t.Fatalf("after kill -9: %+v, %v; want id %s", e, ok, id)
	}
}

// An expiry past 2262 (beyond what Unix nanoseconds hold) is enforced as
// never coming, also after a reopen: it wrapped to the past, and the
// acknowledged block was never enforced.
func TestDynamicFarExpiryEnforced(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "b.db")
	d := openTestDynamic(t, path, clk)
	far := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if _, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.7"), Expires: far}); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.7")
	if _, _, ok := d.Lookup(Blocklist, a); !ok {
		t.Fatal("a block expiring in 9999 is not enforced")
	}
	d.Close()
	d = openTestDynamic(t, path, clk)
	defer d.Close()
	if _, _, ok := d.Lookup(Blocklist, a); !ok {
		t.Fatal("after a reopen, a block expiring in 9999 is not enforced")
	}
}

// An expired entry inside a live wider one leaves the wider one in force
// (before the purge removes it, it hid the wider block).
func TestDynamicExpiredEntryDoesNotHideAWiderOne(t *testing.T) {
	clk := newClock()
	d := openTestDynamic(t, filepath.Join(t.TempDir(), "b.db"), clk)
	defer d.Close()
	wide, _ := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.0/24"), Expires: clk.Now().Add(24 * time.Hour)})
	d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.5"), Expires: clk.Now().Add(3 * time.Second)})
	clk.Advance(10 * time.Second)
	src, p, ok := d.Lookup(Blocklist, netip.MustParseAddr("192.0.2.5"))
	if !ok || src != "dynamic:"+wide.ID || p.String() != "192.0.2.0/24" {
		t.Fatalf("Lookup after the /32 expired = %q %s %v, want the /24 block", src, p, ok)
	}
	if _, _, ok := d.Lookup(Blocklist, netip.MustParseAddr("198.51.100.1")); ok {
		t.Error("an address outside every entry matched")
	}
}

// A full list takes an operator's entry by evicting the automatic entry
// that expires first; automatic entries are refused (auto_block filling
// the list answered every operator's block 507).
func TestDynamicFullListEvictsAutomaticForManual(t *testing.T) {
	defer func(n int) { dynamicCap = n }(dynamicCap)
	dynamicCap = 3
	clk := newClock()
	d := openTestDynamic(t, filepath.Join(t.TempDir(), "b.db"), clk)
	defer d.Close()
	for i, h := range []int{3, 1, 2} { // the second expires first
		if _, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, fmt.Sprintf("192.0.2.%d", i+1)), Source: "auto:rate_limit", Expires: clk.Now().Add(time.Duration(h) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "192.0.2.9"), Source: "auto:waf"}); !errors.Is(err, ErrFull) {
		t.Fatalf("automatic entry into a full list: %v, want ErrFull", err)
	}
	if _, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "198.51.100.1")}); err != nil {
		t.Fatalf("operator's entry into a full list of automatic ones: %v", err)
	}
	if _, _, ok := d.Lookup(Blocklist, netip.MustParseAddr("198.51.100.1")); !ok {
		t.Error("the operator's entry is not enforced")
	}
	if _, _, ok := d.Lookup(Blocklist, netip.MustParseAddr("192.0.2.2")); ok {
		t.Error("the automatic entry expiring first was not the one evicted")
	}
	if d.Len(Blocklist) != 3 {
		t.Errorf("%d entries, want 3", d.Len(Blocklist))
	}
	for i := 0; i < 3; i++ { // only operators' entries left to evict: full
		d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, fmt.Sprintf("198.51.100.%d", i+2))})
	}
	if _, err := d.Add(Blocklist, NewEntry{Prefix: mustPrefix(t, "198.51.100.99")}); !errors.Is(err, ErrFull) {
		t.Errorf("full of operators' entries: %v, want ErrFull", err)
	}
}
