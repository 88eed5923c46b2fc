package acl

import (
	"bufio"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// The targets, with 10,000,000 random single IPv4 addresses and
// 100,000 random CIDRs loaded: a lookup in at most 100 ns with 0
// allocations, at most 256 MB of heap (reported also as a multiple of the
// 40 MB the raw addresses take), and a load in at most 10 s.
//
// The big list is generated and loaded only inside BenchmarkBigList, which
// go test runs only with -bench; unit tests stay small. Run it with
//
//	go test -run '^$' -bench . -benchmem -count 1 ./internal/acl/
const (
	bigHosts = 10_000_000
	bigCIDRs = 100_000
	rawBytes = bigHosts * 4 // 40 MB
)

func BenchmarkBigList(b *testing.B) {
	if testing.Short() {
		b.Skip("loads 10 million addresses")
	}
	dir := b.TempDir()
	writeBigList(b, filepath.Join(dir, "big.txt"))

	cfg := &config.Config{File: filepath.Join(dir, "rampart.yaml"), DataDir: dir}
	cfg.Security.IPLists.BlocklistFiles = []string{"big.txt"}
	before := heapStats()
	start := time.Now()
	a, err := New(cfg, Options{Logger: quietLog()})
	load := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	after := heapStats()
	heap := float64(after.HeapAlloc - before.HeapAlloc)
	tab := a.lists.Load().block
	if tab.Len() < bigHosts*99/100 {
		b.Fatalf("table holds %d entries", tab.Len())
	}

	b.Run("Load", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(load.Seconds(), "load-s")
		b.ReportMetric(heap/1e6, "heap-MB")
		b.ReportMetric(heap/rawBytes, "x-raw-40MB")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/1e6, "allocated-MB")
	})
	// Query addresses come from a generator, not from a slice, so that
	// streaming through a large query slice does not evict the table
	// from the caches: each lookup sees the caches as a lone lookup
	// would. "listed" replays the generator that wrote the list (every
	// lookup hits a single address); "random" draws fresh addresses
	// (most miss; some fall in a CIDR).
	run := func(name string, seed uint64, f func(netip.Addr) bool) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			g := rand.New(rand.NewPCG(seed, 1))
			hits, n := 0, 0
			for b.Loop() {
				if n%bigHosts == 0 && n > 0 {
					g = rand.New(rand.NewPCG(seed, 1)) // replay from the start
				}
				if f(addr4(g.Uint32())) {
					hits++
				}
				n++
			}
			if seed == bigListSeed && hits != n {
				b.Fatalf("%d of %d listed addresses not found", n-hits, n)
			}
			b.ReportMetric(float64(hits)/float64(n), "hit-ratio")
		})
	}
	lookup := func(a netip.Addr) bool { _, _, ok := tab.Lookup(a); return ok }
	check := func(ad netip.Addr) bool { return a.Check(ad).Action == ActionDeny }
	run("Lookup/listed", bigListSeed, lookup)
	run("Lookup/random", 77, lookup)
	run("Check/listed", bigListSeed, check)
	run("Check/random", 77, check)
	// The cost of making up the query address, included in the above.
	run("GeneratorOnly", 77, func(a netip.Addr) bool { return a.Is4() })
}

const bigListSeed = 2025

// writeBigList writes the benchmark's list: bigHosts addresses from the
// generator seeded with bigListSeed, then bigCIDRs random CIDRs.
func writeBigList(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	hosts := rand.New(rand.NewPCG(bigListSeed, 1))
	buf := make([]byte, 0, 64)
	for range bigHosts {
		buf = addr4(hosts.Uint32()).AppendTo(buf[:0])
		buf = append(buf, '\n')
		w.Write(buf)
	}
	cidrs := rand.New(rand.NewPCG(bigListSeed, 2))
	for range bigCIDRs {
		// Lengths as in real blocklists: /16 to /30.
		p, _ := addr4(cidrs.Uint32()).Prefix(16 + cidrs.IntN(15))
		buf = p.AppendTo(buf[:0])
		buf = append(buf, '\n')
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func heapStats() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// BenchmarkCheckSmall is Check with a typical small configuration: a few
// static entries, a feed of about a thousand CIDRs and some dynamic
// entries, all in cache.
func BenchmarkCheckSmall(b *testing.B) {
	dir := b.TempDir()
	r := rand.New(rand.NewPCG(1, 1))
	f, err := os.Create(filepath.Join(dir, "drop.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for range 1000 {
		p, _ := addr4(r.Uint32()).Prefix(16 + r.IntN(9))
		f.WriteString(p.String() + " ; SBL1\n")
	}
	f.Close()
	cfg := &config.Config{File: filepath.Join(dir, "rampart.yaml"), DataDir: dir}
	cfg.Security.IPLists = config.IPLists{
		Allowlist: []string{"10.0.0.0/8", "192.168.0.0/16"},
		Blocklist: []string{"203.0.113.0/24", "198.51.100.7", "2001:db8:bad::/48"},
		Feeds:     []config.Feed{{Name: "drop", File: "drop.txt", Format: "spamhaus_drop"}},
	}
	a, err := New(cfg, Options{Logger: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	for i := range 100 {
		a.Dynamic().Add(Blocklist, NewEntry{Prefix: netip.PrefixFrom(addr4(0x64400000+uint32(i)), 32)})
	}
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = addr4(r.Uint32())
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.Check(addrs[i&(len(addrs)-1)])
		i++
	}
}
