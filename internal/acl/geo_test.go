package acl

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/geotest"
)

func geoConfig(t testing.TB, dir string, g config.GeoIP) *config.Config {
	country, asn := geotest.Standard(t, dir)
	if g.CountryDB == "-" {
		g.CountryDB = ""
	} else if g.CountryDB == "" {
		g.CountryDB = filepath.Base(country)
	}
	if g.ASNDB == "-" {
		g.ASNDB = ""
	} else if g.ASNDB == "" {
		g.ASNDB = filepath.Base(asn)
	}
	cfg := &config.Config{File: filepath.Join(dir, "rampart.yaml"), DataDir: dir}
	cfg.Security.IPLists.GeoIP = g
	return cfg
}

func wantGeo(t *testing.T, a *ACL, addr, country string, asn int) {
	t.Helper()
	if g := a.Geo(netip.MustParseAddr(addr)); g.Country != country || g.ASN != asn {
		t.Errorf("Geo(%s) = %+v, want %s AS%d", addr, g, country, asn)
	}
}

func TestGeoLookup(t *testing.T) {
	a := newTestACL(t, geoConfig(t, t.TempDir(), config.GeoIP{}), newClock())
	wantGeo(t, a, "203.0.113.9", "NL", geotest.NLASN)
	wantGeo(t, a, "::ffff:203.0.113.9", "NL", geotest.NLASN)
	wantGeo(t, a, "198.51.100.9", "US", geotest.USASN)
	wantGeo(t, a, "2001:db8:1::5", "NL", geotest.NLASN)
	wantGeo(t, a, "192.0.2.1", "", 0)
	// Databases alone decide nothing.
	wantDecision(t, a, "203.0.113.9", ActionNone, "", "")
	d, g := a.CheckGeo(netip.MustParseAddr("198.51.100.9"))
	if d.Action != ActionNone || g != (Geo{"US", geotest.USASN}) {
		t.Errorf("CheckGeo = %+v %+v", d, g)
	}
}

func TestGeoBlockCountries(t *testing.T) {
	a := newTestACL(t, geoConfig(t, t.TempDir(), config.GeoIP{BlockCountries: []string{"NL"}}), newClock())
	wantDecision(t, a, "203.0.113.9", ActionDeny, "geo:country:NL", "")
	wantDecision(t, a, "2001:db8:1::5", ActionDeny, "geo:country:NL", "")
	wantDecision(t, a, "198.51.100.9", ActionNone, "", "")
	wantDecision(t, a, "192.0.2.1", ActionNone, "", "") // unknown country passes a blocklist
}

func TestGeoBlockASNs(t *testing.T) {
	a := newTestACL(t, geoConfig(t, t.TempDir(), config.GeoIP{CountryDB: "-", BlockASNs: []int64{geotest.USASN}}), newClock())
	wantDecision(t, a, "198.51.100.9", ActionDeny, "geo:asn:64501", "")
	wantDecision(t, a, "203.0.113.9", ActionNone, "", "")
	wantGeo(t, a, "198.51.100.9", "", geotest.USASN) // no country_db: no country
}

func TestGeoAllowCountries(t *testing.T) {
	a := newTestACL(t, geoConfig(t, t.TempDir(), config.GeoIP{AllowCountries: []string{"NL"}}), newClock())
	wantDecision(t, a, "203.0.113.9", ActionNone, "", "")
	wantDecision(t, a, "198.51.100.9", ActionDeny, SourceGeoCountryNotAllowed, "")
	wantDecision(t, a, "192.0.2.1", ActionDeny, SourceGeoCountryNotAllowed, "") // unknown is not allowed
}

// The lists come first: an allowlisted address in a blocked country
// passes, a blocklisted one keeps its list as the source.
func TestGeoAfterLists(t *testing.T) {
	cfg := geoConfig(t, t.TempDir(), config.GeoIP{BlockCountries: []string{"NL"}, BlockASNs: []int64{geotest.USASN}})
	cfg.Security.IPLists.Allowlist = []string{"203.0.113.7", "198.51.100.7"}
	cfg.Security.IPLists.Blocklist = []string{"203.0.113.128/25"}
	a := newTestACL(t, cfg, newClock())
	wantDecision(t, a, "203.0.113.7", ActionAllow, SourceStaticAllow, "203.0.113.7/32")
	wantDecision(t, a, "198.51.100.7", ActionAllow, SourceStaticAllow, "198.51.100.7/32")
	wantDecision(t, a, "203.0.113.200", ActionDeny, SourceStaticBlock, "203.0.113.128/25")
	wantDecision(t, a, "203.0.113.8", ActionDeny, "geo:country:NL", "")
	wantDecision(t, a, "198.51.100.8", ActionDeny, "geo:asn:64501", "")
	// A dynamic allow beats geo too.
	if _, err := a.Dynamic().Add(Allowlist, NewEntry{Prefix: mustPrefix(t, "203.0.113.8")}); err != nil {
		t.Fatal(err)
	}
	if d := a.Check(netip.MustParseAddr("203.0.113.8")); d.Action != ActionAllow {
		t.Errorf("dynamically allowed address in a blocked country: %+v", d)
	}
	// CheckGeo reports the location also for allowlisted addresses.
	if d, g := a.CheckGeo(netip.MustParseAddr("203.0.113.7")); d.Action != ActionAllow || g.Country != "NL" || g.ASN != geotest.NLASN {
		t.Errorf("CheckGeo(allowlisted) = %+v %+v", d, g)
	}
}

func TestGeoCheckDoesNotAllocate(t *testing.T) {
	a := newTestACL(t, geoConfig(t, t.TempDir(), config.GeoIP{BlockCountries: []string{"NL"}, BlockASNs: []int64{geotest.USASN}}), newClock())
	for _, s := range []string{"203.0.113.9", "198.51.100.9", "192.0.2.1", "2001:db8:1::1"} {
		addr := netip.MustParseAddr(s)
		a.CheckGeo(addr) // warm the library's string cache
		if n := testing.AllocsPerRun(200, func() { a.CheckGeo(addr) }); n != 0 {
			t.Errorf("CheckGeo(%s) allocates %v times", s, n)
		}
	}
}

func TestGeoRefusesBadDatabases(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "junk.mmdb", "not a database")
	country, asn := geotest.Standard(t, dir)
	cases := []struct {
		name string
		g    config.GeoIP
		msg  string
	}{
		{"missing file", config.GeoIP{CountryDB: "nope.mmdb"}, "no such file"},
		{"not a database", config.GeoIP{CountryDB: "junk.mmdb"}, "cannot be opened as a MaxMind database"},
		{"swapped", config.GeoIP{CountryDB: filepath.Base(asn)}, "is an ASN database"},
		{"swapped asn", config.GeoIP{ASNDB: filepath.Base(country)}, "is a country database"},
		{"rule without db", config.GeoIP{ASNDB: filepath.Base(asn), BlockCountries: []string{"NL"}}, "need country_db"},
		{"both country lists", config.GeoIP{CountryDB: filepath.Base(country), BlockCountries: []string{"NL"}, AllowCountries: []string{"US"}}, "not both"},
	}
	for _, c := range cases {
		cfg := &config.Config{File: filepath.Join(dir, "rampart.yaml"), DataDir: dir}
		cfg.Security.IPLists.GeoIP = c.g
		if _, err := New(cfg, Options{Logger: quietLog()}); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: New: %v, want %q", c.name, err, c.msg)
		}
		if err := CheckLists(cfg); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: CheckLists: %v, want %q", c.name, err, c.msg)
		}
	}
}

// Reload reopens a database whose path or file changed; one that fails
// to open keeps the running databases and refuses the reload.
func TestGeoReload(t *testing.T) {
	dir := t.TempDir()
	cfg := geoConfig(t, dir, config.GeoIP{BlockCountries: []string{"NL"}})
	a := newTestACL(t, cfg, newClock())
	// Same files: the open readers are kept.
	kept := a.lists.Load().geo
	cfg2 := &config.Config{File: cfg.File, DataDir: dir}
	cfg2.Security.IPLists.GeoIP = config.GeoIP{CountryDB: "country.mmdb", ASNDB: "asn.mmdb", BlockCountries: []string{"NL"}}
	if err := a.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	if now := a.lists.Load().geo; now.country != kept.country || now.asn != kept.asn {
		t.Error("unchanged database files were reopened")
	}

	// A new file at another path: 203.0.113.0/24 moves to US.
	geotest.WriteCountry(t, filepath.Join(dir, "country2.mmdb"), map[string]string{geotest.NLNet: "US"})
	cfg3 := &config.Config{File: cfg.File, DataDir: dir}
	cfg3.Security.IPLists.GeoIP = config.GeoIP{CountryDB: "country2.mmdb", BlockCountries: []string{"NL"}}
	if err := a.Reload(cfg3); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, a, "203.0.113.9", ActionNone, "", "")
	wantGeo(t, a, "203.0.113.9", "US", 0)

	// The same path, file replaced: reopened.
	geotest.WriteCountry(t, filepath.Join(dir, "country2.mmdb"), map[string]string{geotest.NLNet: "NL", "192.0.2.0/24": "NL"})
	if err := a.Reload(cfg3); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, a, "192.0.2.1", ActionDeny, "geo:country:NL", "")

	// A broken database is refused and the running one stays.
	if err := os.WriteFile(filepath.Join(dir, "broken.mmdb"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg4 := &config.Config{File: cfg.File, DataDir: dir}
	cfg4.Security.IPLists.GeoIP = config.GeoIP{CountryDB: "broken.mmdb"}
	cfg4.Security.IPLists.Blocklist = []string{"198.51.100.0/24"}
	if err := a.Reload(cfg4); err == nil || !strings.Contains(err.Error(), "broken.mmdb") {
		t.Fatalf("Reload with a broken database: %v", err)
	}
	wantDecision(t, a, "192.0.2.1", ActionDeny, "geo:country:NL", "")
	wantDecision(t, a, "198.51.100.9", ActionNone, "", "") // the rest of the reload did not apply either

	// Removing the section turns GeoIP off.
	if err := a.Reload(&config.Config{File: cfg.File, DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	if a.GeoEnabled() {
		t.Error("GeoIP still enabled after the section was removed")
	}
	wantDecision(t, a, "192.0.2.1", ActionNone, "", "")
}

// BenchmarkGeoLookup is the cost CheckGeo adds per request with both
// databases configured and rules set.
func BenchmarkGeoLookup(b *testing.B) {
	dir := b.TempDir()
	a, err := New(geoConfig(b, dir, config.GeoIP{BlockCountries: []string{"RU"}, BlockASNs: []int64{1}}), Options{Logger: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:1::1")}
	b.Run("CheckGeo", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			a.CheckGeo(addrs[i&3])
			i++
		}
	})
	b.Run("Geo", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			a.Geo(addrs[i&3])
			i++
		}
	})
}
