package acl

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
)

// A Table is an immutable set of prefixes that share one source, such as
// "static:blocklist" or "feed:spamhaus-drop". Tables are built off-line by
// a TableBuilder and published with an atomic pointer swap, so a lookup
// sees either the old list or the new one, never a half-built or empty one.
//
// Every prefix lives in a bart.Lite prefix table, the smallest bart
// variant (no payload: the source is per table), which answers IPv6 and
// small tables. Large tables answer IPv4 from flat structures instead,
// because a tree walk over millions of entries is a chain of cache misses:
// many single addresses, which is what big blocklists and feeds mostly
// hold, go into a hostSet (and not into bart, where 10 million addresses
// took 576 MB and 0.7–1 µs per lookup), which answers the table's IPv4
// CIDRs too; many CIDRs without many single addresses go into a netSet4.
//
// Lookup does not allocate, and a Table is safe for concurrent use.
type Table struct {
	source string
	hosts  *hostSet   // nil unless there were at least hostSetMin IPv4 hosts
	nets4  *netSet4   // without hosts: nil unless there were at least netSet4Min IPv4 CIDRs
	nets   *bart.Lite // never nil
	size   int
}

// hostSetMin is the number of single IPv4 addresses from which a Table
// stores them in a hostSet: its at least 2^17 lines take 8.4 MB, and
// bart ~100 bytes an address (65,536 random addresses: 6.6 MB in bart,
// lookups 21–24 ns against the hostSet's 17 ns; 131,072: 12.7 MB, 32 ns
// against 16–19). A variable so tests can exercise both.
var hostSetMin = 1 << 16

// netSet4Min is the number of IPv4 CIDRs from which a Table also answers
// IPv4 lookups from a netSet4: a few thousand prefixes, such as Spamhaus
// DROP, keep bart's few nodes in cache, while a hundred thousand make each
// walk a chain of cache misses. A variable so tests can exercise both.
var netSet4Min = 1 << 14

// Lookup reports whether a is in the table and, if so, the table's source
// and the longest prefix that contains a. A nil Table contains nothing.
// IPv4-mapped IPv6 addresses are looked up as the IPv4 address they carry.
func (t *Table) Lookup(a netip.Addr) (source string, p netip.Prefix, ok bool) {
	if t == nil || t.size == 0 { // most lists are empty: no tree walk
		return "", netip.Prefix{}, false
	}
	if !a.Is4() {
		if a = a.Unmap(); !a.Is4() {
			return t.lookupTree(a)
		}
	}
	// The flat structures index IPv4 addresses as numbers; the hostSet
	// answers the table's IPv4 CIDRs too, from the same cache line.
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:])
	var bits int
	switch {
	case t.hosts != nil: // a hostSet lookup, spelled out (see hostSet.line)
		l, x := t.hosts.line(v)
		switch {
		case l.has(x):
			return t.source, netip.PrefixFrom(a, 32), true
		case l.nets&netRare != 0:
			bits, ok = t.hosts.lookupRare(l, v, x)
		default:
			c := l.nets.answer(x)
			bits, ok = int(c)-1, c != 0
		}
	case t.nets4 != nil:
		bits, ok = t.nets4.lookup(v)
	default:
		return t.lookupTree(a)
	}
	if !ok {
		return "", netip.Prefix{}, false
	}
	// The prefix's address is v masked to its bits (bits ≤ 32; the shift
	// of a 64-bit mask makes /0 work), built in line: a.Prefix is a call.
	v &= uint32(uint64(0xffff_ffff_0000_0000) >> bits)
	return t.source, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits), true
}

// lookupTree answers from bart: IPv6, and IPv4 in small tables.
func (t *Table) lookupTree(a netip.Addr) (source string, p netip.Prefix, ok bool) {
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
		for v := range h.all {
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			if !yield(netip.PrefixFrom(a, 32)) {
				return
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
		// bart keeps the prefixes too: for All, and for IPv6.
		var nets4 *netSet4
		if t.nets.Size4() > 0 {
			nets4 = newNetSet4(slices.Collect(t.nets.All4()))
		}
		t.hosts = newHostSet(b.hosts, nets4)
		t.size = t.hosts.len()
	} else {
		for _, v := range b.hosts {
			t.nets.Insert(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32))
		}
		if t.nets.Size4() >= netSet4Min {
			t.nets4 = newNetSet4(slices.Collect(t.nets.All4()))
		}
	}
	t.size += t.nets.Size()
	b.hosts, b.nets = nil, nil
	return t
}
