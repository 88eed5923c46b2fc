package acl

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"
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
	h := newHostSet(append([]uint32(nil), in...), nil)
	if h.len() != len(want) {
		t.Fatalf("hostSet holds %d, want %d distinct", h.len(), len(want))
	}
	for _, v := range in {
		for _, q := range []uint32{v, v - 1, v + 1, v ^ 0x10000} {
			if bits, got := hostsLookup(h, q); got != want[q] || got && bits != 32 {
				t.Fatalf("lookup(%08x) = /%d %v, want %v", q, bits, got, want[q])
			}
		}
	}
	for range 100_000 {
		q := r.Uint32()
		if bits, got := hostsLookup(h, q); got != want[q] || got && bits != 32 {
			t.Fatalf("lookup(%08x) = /%d %v, want %v", q, bits, got, want[q])
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

// netSet4 must give the same longest-prefix match as bart on random,
// heavily nested prefix sets, probed at every prefix boundary and at
// random addresses.
func TestNetSet4MatchesBart(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 3))
		ps, ref := nestedPrefixes(r, seed)
		s := newNetSet4(ps)
		probeEdges(ps, r, func(v uint32) {
			a := addr4(v)
			want, wok := ref.LookupPrefixLPM(netip.PrefixFrom(a, 32))
			bits, ok := s.lookup(v)
			if ok != wok || (ok && bits != want.Bits()) {
				t.Fatalf("seed %d: lookup(%s) = /%d %v, want %s %v", seed, a, bits, ok, want, wok)
			}
		})
	}
}

// The hostSet's lines answer CIDRs as the netSet4 does, whether a line's
// word holds its answer (a cover, one segment inside) or asks the netSet4,
// and a member still wins over every CIDR.
func TestHostSetAnswersCIDRs(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 4))
		ps, ref := nestedPrefixes(r, seed)
		var hosts []uint32
		for range 5000 {
			v := r.Uint32()
			if r.IntN(2) == 0 {
				p := ps[r.IntN(len(ps))]
				a := p.Addr().As4()
				v = binary.BigEndian.Uint32(a[:]) | v&uint32(uint64(1)<<(32-p.Bits())-1) // inside a prefix
			}
			hosts = append(hosts, v)
			ref.Insert(netip.PrefixFrom(addr4(v), 32))
		}
		h := newHostSet(hosts, newNetSet4(ps))
		kinds := map[string]int{}
		for _, l := range h.lines {
			switch w := l.nets; {
			case w&netAsk != 0:
				kinds["ask"]++
			case w&netSegs != 0:
				kinds["segments"]++
			case w>>6&63 != w&63:
				kinds["segment"]++
			case w != 0:
				kinds["cover"]++
			}
		}
		if kinds["ask"] == 0 || kinds["segments"] == 0 || kinds["segment"] == 0 || kinds["cover"] == 0 {
			t.Fatalf("seed %d: line words %v: every kind must be tested", seed, kinds)
		}
		for _, v := range hosts {
			ps = append(ps, netip.PrefixFrom(addr4(v), 32))
		}
		probeEdges(ps, r, func(v uint32) {
			a := addr4(v)
			want, wok := ref.LookupPrefixLPM(netip.PrefixFrom(a, 32))
			bits, ok := hostsLookup(h, v)
			if ok != wok || (ok && bits != want.Bits()) {
				t.Fatalf("seed %d: lookup(%s) = /%d %v, want %s %v", seed, a, bits, ok, want, wok)
			}
		})
	}
}

// nestedPrefixes returns random, heavily nested IPv4 prefixes, and bart
// holding them as the reference.
func nestedPrefixes(r *rand.Rand, seed uint64) ([]netip.Prefix, *bart.Lite) {
	ref := new(bart.Lite)
	var ps []netip.Prefix
	n := 50 + r.IntN(3000)
	for i := range n {
		v := r.Uint32()
		switch i % 4 {
		case 0:
			v &= 0x0a0b_ffff // nest inside a few /16s
		case 1:
			v = v&0x0000_00ff | 0xc633_6400 // inside one /24
		}
		bits := []int{0, 1, 8, 12, 16, 17, 20, 23, 24, 25, 28, 30, 31, 32}[r.IntN(14)]
		if seed%2 == 0 && bits < 8 {
			bits = 24
		}
		p := netip.PrefixFrom(addr4(v), bits).Masked()
		ps = append(ps, p)
		ref.Insert(p)
	}
	return ps, ref
}

// probeEdges calls probe at every prefix's first, last and middle
// address and their outer neighbours, and at 20,000 random addresses.
func probeEdges(ps []netip.Prefix, r *rand.Rand, probe func(uint32)) {
	for _, p := range ps {
		lo := p.Addr().As4()
		v := binary.BigEndian.Uint32(lo[:])
		hi := v | uint32(uint64(1)<<(32-p.Bits())-1)
		for _, q := range []uint32{v, v - 1, hi, hi + 1, v + (hi-v)/2} {
			probe(q)
		}
	}
	for range 20_000 {
		probe(r.Uint32())
	}
}

// A Table answers the same through its flat IPv4 structures as through
// bart alone.
func TestTableFlatMatchesBart(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	var entries []netip.Prefix
	for i := range 5000 {
		bits := 32
		if i%3 == 0 {
			bits = 16 + r.IntN(16)
		}
		entries = append(entries, netip.PrefixFrom(addr4(r.Uint32()&0x0fff_ffff), bits).Masked())
	}
	entries = append(entries, netip.MustParsePrefix("2001:db8::/32"))
	build := func(hostMin, netMin int) *Table {
		oldH, oldN := hostSetMin, netSet4Min
		hostSetMin, netSet4Min = hostMin, netMin
		defer func() { hostSetMin, netSet4Min = oldH, oldN }()
		b := NewTableBuilder("s")
		for _, p := range entries {
			b.Add(p)
		}
		return b.Build()
	}
	flat, tree := build(1, 1), build(1<<30, 1<<30)
	if flat.hosts == nil || flat.hosts.nets == nil || tree.hosts != nil || tree.nets4 != nil {
		t.Fatal("thresholds did not select the structures")
	}
	if flat.Len() != tree.Len() {
		t.Errorf("Len %d, want %d", flat.Len(), tree.Len())
	}
	for range 200_000 {
		a := addr4(r.Uint32() & 0x0fff_ffff)
		_, p1, ok1 := flat.Lookup(a)
		_, p2, ok2 := tree.Lookup(a)
		if ok1 != ok2 || p1 != p2 {
			t.Fatalf("Lookup(%s) = %s %v, want %s %v", a, p1, ok1, p2, ok2)
		}
	}
	for _, a := range []string{"2001:db8::1", "::ffff:" + entries[1].Addr().String()} {
		_, p1, ok1 := flat.Lookup(netip.MustParseAddr(a))
		_, p2, ok2 := tree.Lookup(netip.MustParseAddr(a))
		if ok1 != ok2 || p1 != p2 {
			t.Fatalf("Lookup(%s) = %s %v, want %s %v", a, p1, ok1, p2, ok2)
		}
	}
}

// hostsLookup looks v up in h as Table.Lookup does, the only place a
// hostSet lookup is spelled out.
func hostsLookup(h *hostSet, v uint32) (bits int, ok bool) {
	_, p, ok := (&Table{source: "test", hosts: h, nets: new(bart.Lite), size: max(1, h.len())}).Lookup(addr4(v))
	return p.Bits(), ok
}

// Members that do not fit their two candidate words spill, and are
// found there; a line whose members just fit does not spill.
func TestHostSetFullLines(t *testing.T) {
	h0 := newHostSet([]uint32{0}, nil)
	lineOf := func(a uint32) uint32 { return a >> h0.shift }
	var in []uint32
	dense := uint32(0x0a00_0000) // 30 consecutive addresses: more than 24 slots
	for i := range uint32(30) {
		in = append(in, dense+i)
	}
	crowded := uint32(0x0b00_0000) // 9 members whose two words are words 0 and 4
	for i := range uint32(9) {
		in = append(in, crowded+i*8)
	}
	fits := uint32(0x0c00_0000) // 8 such members: words 0 and 4 hold them
	for i := range uint32(8) {
		in = append(in, fits+i*8)
	}
	h := newHostSet(in, nil)
	for _, c := range []struct {
		base  uint32
		spill bool
	}{{dense, true}, {crowded, true}, {fits, false}} {
		if _, ok := h.spill[lineOf(c.base)]; ok != c.spill {
			t.Errorf("line of %08x spilled: %v, want %v", c.base, ok, c.spill)
		}
	}
	want := map[uint32]bool{}
	for _, v := range in {
		want[v] = true
	}
	for _, v := range in {
		for _, q := range []uint32{v, v + 1, v + 4, v - 1} {
			if bits, got := hostsLookup(h, q); got != want[q] || got && bits != 32 {
				t.Fatalf("lookup(%08x) = /%d %v, want %v", q, bits, got, want[q])
			}
		}
	}
	n := 0
	prev := uint32(0)
	for v := range h.all {
		if !want[v] || (n > 0 && v <= prev) {
			t.Fatalf("all yielded %08x after %08x", v, prev)
		}
		prev = v
		n++
	}
	if n != len(want) {
		t.Errorf("all yielded %d, want %d", n, len(want))
	}
}
