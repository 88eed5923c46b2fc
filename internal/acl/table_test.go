package acl

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := ParseEntry(s)
	if err != nil {
		t.Fatalf("ParseEntry(%q): %v", s, err)
	}
	return p
}

func buildTable(t testing.TB, source string, entries ...string) *Table {
	t.Helper()
	b := NewTableBuilder(source)
	for _, e := range entries {
		b.Add(mustPrefix(t, e))
	}
	return b.Build()
}

// withHostSetMin runs f with hostSetMin at n, so that both ways of storing
// single IPv4 addresses are tested without millions of entries.
func withHostSetMin(t *testing.T, n int) {
	old := hostSetMin
	hostSetMin = n
	t.Cleanup(func() { hostSetMin = old })
}

func TestTableLookup(t *testing.T) {
	entries := []string{"192.0.2.7", "198.51.100.0/24", "198.51.100.128/25", "10.0.0.0/8", "2001:db8::/32", "2001:db8:1::1", "203.0.113.255"}
	cases := []struct {
		addr, want string // want "" means no match
	}{
		{"192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.8", ""},
		{"198.51.100.1", "198.51.100.0/24"},
		{"198.51.100.200", "198.51.100.128/25"}, // longest prefix
		{"10.255.255.255", "10.0.0.0/8"},
		{"11.0.0.0", ""},
		{"203.0.113.255", "203.0.113.255/32"},
		{"203.0.113.254", ""},
		{"0.0.0.0", ""},
		{"255.255.255.255", ""},
		{"2001:db8:1::1", "2001:db8:1::1/128"},
		{"2001:db8:ffff::1", "2001:db8::/32"},
		{"2001:db9::1", ""},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},       // mapped is unmapped
		{"::ffff:198.51.100.9", "198.51.100.0/24"}, // also for CIDRs
		{"fe80::1%eth0", ""},
	}
	for _, min := range []int{1 << 30, 1} { // bart only; hostSet for every /32
		withHostSetMin(t, min)
		tab := buildTable(t, "test:src", entries...)
		if (tab.hosts != nil) != (min == 1) {
			t.Fatalf("hostSetMin %d: hosts = %v", min, tab.hosts != nil)
		}
		if got := tab.Len(); got != len(entries) {
			t.Errorf("hostSetMin %d: Len = %d, want %d", min, got, len(entries))
		}
		for _, c := range cases {
			src, p, ok := tab.Lookup(netip.MustParseAddr(c.addr))
			switch {
			case c.want == "" && ok:
				t.Errorf("hostSetMin %d: Lookup(%s) = %s %s, want no match", min, c.addr, src, p)
			case c.want != "" && (!ok || p.String() != c.want || src != "test:src"):
				t.Errorf("hostSetMin %d: Lookup(%s) = %q %s %v, want test:src %s", min, c.addr, src, p, ok, c.want)
			}
		}
	}
}

func TestTableBuilderCanonicalises(t *testing.T) {
	b := NewTableBuilder("s")
	b.Add(netip.MustParsePrefix("::ffff:192.0.2.0/120"))
	b.Add(netip.MustParsePrefix("::ffff:198.51.100.7/128"))
	b.Add(netip.MustParsePrefix("10.1.2.3/8"))
	b.Add(netip.Prefix{})
	tab := b.Build()
	for a, want := range map[string]string{"192.0.2.9": "192.0.2.0/24", "198.51.100.7": "198.51.100.7/32", "10.200.0.1": "10.0.0.0/8"} {
		if _, p, ok := tab.Lookup(netip.MustParseAddr(a)); !ok || p.String() != want {
			t.Errorf("Lookup(%s) = %s, %v; want %s", a, p, ok, want)
		}
	}
	if tab.Len() != 3 {
		t.Errorf("Len = %d, want 3", tab.Len())
	}
}

func TestTableNil(t *testing.T) {
	var tab *Table
	if _, _, ok := tab.Lookup(netip.MustParseAddr("192.0.2.1")); ok {
		t.Error("nil table matched")
	}
	if tab.Len() != 0 || tab.Source() != "" {
		t.Error("nil table has entries or a source")
	}
}

// The hostSet must agree with a map on random data, including duplicates
// and neighbours of listed addresses.
func TestHostSetMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	in := make([]uint32, 200_000)
	want := map[uint32]bool{}
	for i := range in {
		v := r.Uint32()
		if i%3 == 0 {
			v &= 0xffff00ff // cluster into fewer runs
		}
		if i%10 == 0 && i > 0 {
			v = in[i-1] // duplicate
		}
		in[i] = v
		want[v] = true
	}
	h := newHostSet(append([]uint32(nil), in...))
	if len(h.low) != len(want) {
		t.Fatalf("hostSet holds %d, want %d distinct", len(h.low), len(want))
	}
	for _, v := range in {
		for _, q := range []uint32{v, v - 1, v + 1, v ^ 0x10000} {
			if got := h.contains(q); got != want[q] {
				t.Fatalf("contains(%08x) = %v, want %v", q, got, want[q])
			}
		}
	}
	for range 100_000 {
		q := r.Uint32()
		if got := h.contains(q); got != want[q] {
			t.Fatalf("contains(%08x) = %v, want %v", q, got, want[q])
		}
	}
	// All returns exactly the set.
	withHostSetMin(t, 1)
	b := NewTableBuilder("x")
	for _, v := range in {
		b.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32))
	}
	tab := b.Build()
	n := 0
	for p := range tab.All {
		a := p.Addr().As4()
		if !want[uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3])] || p.Bits() != 32 {
			t.Fatalf("All yielded %s, not in the set", p)
		}
		n++
	}
	if n != len(want) {
		t.Errorf("All yielded %d prefixes, want %d", n, len(want))
	}
}

func TestTableLookupDoesNotAllocate(t *testing.T) {
	for _, min := range []int{1 << 30, 1} {
		withHostSetMin(t, min)
		tab := buildTable(t, "s", "192.0.2.7", "198.51.100.0/24", "2001:db8::/32")
		for _, a := range []string{"192.0.2.7", "198.51.100.3", "2001:db8::5", "203.0.113.1", "::ffff:192.0.2.7"} {
			addr := netip.MustParseAddr(a)
			if n := testing.AllocsPerRun(100, func() { tab.Lookup(addr) }); n != 0 {
				t.Errorf("hostSetMin %d: Lookup(%s) allocates %v times", min, a, n)
			}
		}
	}
}
