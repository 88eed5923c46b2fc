package acl

import (
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
)

// A Table is an immutable set of prefixes that share one source, such as
// "static:blocklist" or "feed:spamhaus-drop". Tables are built off-line by
// a TableBuilder and published with an atomic pointer swap, so a lookup
// sees either the old list or the new one, never a half-built or empty one.
//
// CIDRs and IPv6 entries live in a bart.Lite prefix table, the smallest
// bart variant (no payload: the source is per table). Large numbers of
// single IPv4 addresses, which is what big blocklists and feeds mostly
// hold, go into a hostSet instead. Measured with 10 million random
// addresses, bart.Lite alone needs about 576 MB and 0.7–1 µs per lookup
// (every lookup walks several nodes, each a cache miss), while the hostSet
// needs 20 MB and one or two cache misses.
//
// Lookup does not allocate, and a Table is safe for concurrent use.
type Table struct {
	source string
	hosts  *hostSet   // nil unless there were at least hostSetMin IPv4 hosts
	nets   *bart.Lite // never nil
	size   int
}

// hostSetMin is the number of single IPv4 addresses from which a Table
// stores them in a hostSet: below it the hostSet's fixed 256 KiB index
// would cost more than bart does. A variable so tests can exercise both.
var hostSetMin = 1 << 16

// Lookup reports whether a is in the table and, if so, the table's source
// and the longest prefix that contains a. A nil Table contains nothing.
// IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry.
func (t *Table) Lookup(a netip.Addr) (source string, p netip.Prefix, ok bool) {
	if t == nil {
		return "", netip.Prefix{}, false
	}
	a = a.Unmap()
	// A single address is the longest possible match, so the hostSet is
	// asked first.
	if t.hosts != nil && a.Is4() {
		b := a.As4()
		if t.hosts.contains(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) {
			return t.source, netip.PrefixFrom(a.WithZone(""), 32), true
		}
	}
	// Contains is cheaper than LookupPrefixLPM and most addresses are not
	// listed: pay for the matched prefix only on a hit.
	if !t.nets.Contains(a) {
		return "", netip.Prefix{}, false
	}
	p, ok = t.nets.LookupPrefixLPM(netip.PrefixFrom(a.WithZone(""), a.BitLen()))
	return t.source, p, ok
}

// Source is the name lookups report, e.g. "static:blocklist".
func (t *Table) Source() string {
	if t == nil {
		return ""
	}
	return t.source
}

// Len is the number of distinct prefixes in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.size
}

// All calls yield for every prefix in the table, in no particular order,
// until yield returns false. It is meant for tests and diagnostics.
func (t *Table) All(yield func(netip.Prefix) bool) {
	if t == nil {
		return
	}
	if h := t.hosts; h != nil {
		for k := range 1 << 16 {
			for _, lo := range h.low[h.index[k]:h.index[k+1]] {
				v := uint32(k)<<16 | uint32(lo)
				a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
				if !yield(netip.PrefixFrom(a, 32)) {
					return
				}
			}
		}
	}
	for p := range t.nets.All() {
		if !yield(p) {
			return
		}
	}
}

// A TableBuilder collects prefixes for a Table. It is not safe for
// concurrent use; the Table it builds is.
type TableBuilder struct {
	source string
	hosts  []uint32
	nets   *bart.Lite
}

// NewTableBuilder starts a table whose lookups report source.
func NewTableBuilder(source string) *TableBuilder {
	return &TableBuilder{source: source, nets: new(bart.Lite)}
}

// Add adds a prefix, normally one from ParseEntry. Host bits are masked
// off and IPv4-mapped IPv6 prefixes are stored as IPv4, because lookups
// unmap addresses; invalid prefixes are ignored.
func (b *TableBuilder) Add(p netip.Prefix) {
	if !p.IsValid() {
		return
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if p.Bits() == 32 && p.Addr().Is4() {
		a := p.Addr().As4()
		b.hosts = append(b.hosts, uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3]))
		return
	}
	b.nets.Insert(p.Masked())
}

// Build returns the table. The builder must not be used afterwards.
func (b *TableBuilder) Build() *Table {
	t := &Table{source: b.source, nets: b.nets}
	if len(b.hosts) >= hostSetMin && len(b.hosts) < 1<<31 {
		t.hosts = newHostSet(b.hosts)
		t.size = len(t.hosts.low)
	} else {
		for _, v := range b.hosts {
			t.nets.Insert(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32))
		}
	}
	t.size += t.nets.Size()
	b.hosts, b.nets = nil, nil
	return t
}

// hostSet is a set of IPv4 addresses in 2 bytes per address plus a fixed
// 256 KiB index: addresses are grouped by their upper 16 bits, and each
// group is a sorted run of lower 16 bits in low. A lookup reads one index
// slot (small enough to stay in cache) and binary-searches one run, which
// for 10 million random addresses is about 150 entries in 300 bytes, of
// which an interpolated first probe usually reads one cache line.
type hostSet struct {
	index [1<<16 + 1]uint32 // run k is low[index[k]:index[k+1]]
	low   []uint16
}

func newHostSet(addrs []uint32) *hostSet {
	h := new(hostSet)
	// Counting sort on the upper half, then a small sort per run: linear
	// apart from the runs, and it never sorts the whole 4-byte slice.
	for _, a := range addrs {
		h.index[a>>16+1]++
	}
	for k := 1; k < len(h.index); k++ {
		h.index[k] += h.index[k-1]
	}
	next := make([]uint32, 1<<16)
	copy(next, h.index[:1<<16])
	low := make([]uint16, len(addrs))
	for _, a := range addrs {
		k := a >> 16
		low[next[k]] = uint16(a)
		next[k]++
	}
	w := uint32(0)
	for k := range 1 << 16 {
		run := low[h.index[k]:h.index[k+1]]
		slices.Sort(run)
		run = slices.Compact(run)
		h.index[k] = w // index[k+1] still holds the old end for the next run
		w += uint32(copy(low[w:], run))
	}
	h.index[1<<16] = w
	if int(w) < len(low)-len(low)/8 {
		// Many duplicates: do not keep their space.
		low = slices.Clone(low[:w])
	}
	h.low = low[:w:w]
	return h
}

func (h *hostSet) contains(a uint32) bool {
	k := a >> 16
	lo, hi := h.index[k], h.index[k+1]
	if lo == hi {
		return false
	}
	x := uint16(a)
	// The lower halves in a run are close to uniform, so x sits about
	// x/65536 of the way through it: probe there first, which usually
	// settles the search within one cache line, then gallop outwards to
	// a bracket and binary-search it. A skewed run costs O(log n) more
	// probes, never a wrong answer.
	g := lo + uint32(uint64(x)*uint64(hi-lo)>>16)
	switch v := h.low[g]; {
	case v == x:
		return true
	case v < x:
		lo = g + 1
		for step := uint32(1); g+step < hi; step <<= 1 {
			if h.low[g+step] >= x {
				hi = g + step + 1
				break
			}
			lo = g + step + 1
		}
	default:
		hi = g
		for step := uint32(1); step <= g-lo; step <<= 1 {
			if h.low[g-step] <= x {
				lo = g - step
				break
			}
			hi = g - step
		}
	}
	end := hi
	for lo < hi {
		m := lo + (hi-lo)>>1
		if h.low[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < end && h.low[lo] == x
}
