package acl

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/rampart-proxy/rampart/internal/config"
)

// Sources reported for GeoIP decisions: SourceGeoCountryPrefix and
// SourceGeoASNPrefix are followed by the country code ("geo:country:NL")
// or the AS number ("geo:asn:64500").
const (
	SourceGeoPrefix            = "geo:"
	SourceGeoCountryPrefix     = "geo:country:"
	SourceGeoASNPrefix         = "geo:asn:"
	SourceGeoCountryNotAllowed = "geo:country_not_allowed"
)

// Geo is what the GeoIP databases say about an address: the ISO 3166-1
// country code ("" when unknown or without country_db) and the AS number
// (0 when unknown or without asn_db).
type Geo struct {
	Country string
	ASN     int
}

// geoDB is one opened database file. Readers are memory-mapped and are
// never closed explicitly: a lookup may still be running on a reader that
// a reload has just replaced, so the mapping is released by the reader's
// own cleanup once nothing refers to it any more.
type geoDB struct {
	path    string
	size    int64
	modTime time.Time
	r       *maxminddb.Reader
}

// same reports whether the file at path is still the one g was opened
// from; a reload reopens a database whose file was replaced.
func (g *geoDB) same(path string) bool {
	if g == nil || g.path != path {
		return false
	}
	st, err := os.Stat(path)
	return err == nil && st.Size() == g.size && st.ModTime().Equal(g.modTime)
}

func openGeoDB(path string, kind config.GeoDBKind) (*geoDB, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot be opened as a MaxMind database: %v", path, err)
	}
	if err := config.CheckGeoDBType(r.Metadata.DatabaseType, kind); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("%s %v", path, err)
	}
	return &geoDB{path: path, size: st.Size(), modTime: st.ModTime(), r: r}, nil
}

// countryRecord and asnRecord are the parts of a record Rampart reads. The
// registered country stands in when the database has no located country
// (some anycast and satellite networks).
type countryRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

type asnRecord struct {
	ASN uint32 `maxminddb:"autonomous_system_number"`
}

// scratch is where lookup decodes. The decoder takes an interface, so a
// record on the stack would escape and cost an allocation per lookup; the
// pool keeps lookups free of allocations.
type scratch struct {
	country countryRecord
	asn     asnRecord
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// geoSet is the compiled geoip section: immutable once published in a
// snapshot.
type geoSet struct {
	country, asn *geoDB // nil when not configured

	// blockCountry/allowCountry are indexed by countryIndex; the source
	// strings are built once so that a decision does not allocate.
	blockCountry [26 * 26]string
	allowCountry [26 * 26]bool
	allowOnly    bool
	blockASN     map[uint32]string
	rules        bool // any of the above set: Check has to look up
}

// countryCodes interns every possible country code, indexed by
// countryIndex: lookups return these, not strings from the decoder.
var countryCodes = func() (c [26 * 26]string) {
	for i := range c {
		c[i] = string([]byte{byte('A' + i/26), byte('A' + i%26)})
	}
	return c
}()

func countryIndex(c string) (int, bool) {
	if !config.IsCountryCode(c) {
		return 0, false
	}
	return int(c[0]-'A')*26 + int(c[1]-'A'), true
}

// buildGeo opens the databases of cfg, reusing those of old whose files
// have not changed, and compiles the rules. It fails as a whole.
func buildGeo(cfg *config.Config, old *geoSet) (*geoSet, error) {
	gc := &cfg.Security.IPLists.GeoIP
	if !gc.Enabled() && len(gc.BlockCountries)+len(gc.AllowCountries)+len(gc.BlockASNs) == 0 {
		return nil, nil
	}
	g := &geoSet{}
	var oldCountry, oldASN *geoDB
	if old != nil {
		oldCountry, oldASN = old.country, old.asn
	}
	open := func(key, file string, kind config.GeoDBKind, prev *geoDB) (*geoDB, error) {
		if file == "" {
			return nil, nil
		}
		path := cfg.Resolve(file)
		if prev.same(path) {
			return prev, nil
		}
		db, err := openGeoDB(path, kind)
		if err != nil {
			return nil, fmt.Errorf("security.ip_lists.geoip.%s: %v", key, err)
		}
		return db, nil
	}
	var err error
	if g.country, err = open("country_db", gc.CountryDB, config.GeoCountryDB, oldCountry); err != nil {
		return nil, err
	}
	if g.asn, err = open("asn_db", gc.ASNDB, config.GeoASNDB, oldASN); err != nil {
		return nil, err
	}
	switch {
	case len(gc.AllowCountries) > 0 && len(gc.BlockCountries) > 0:
		return nil, fmt.Errorf("security.ip_lists.geoip: use allow_countries or block_countries, not both")
	case len(gc.AllowCountries)+len(gc.BlockCountries) > 0 && g.country == nil:
		return nil, fmt.Errorf("security.ip_lists.geoip: block_countries and allow_countries need country_db")
	case len(gc.BlockASNs) > 0 && g.asn == nil:
		return nil, fmt.Errorf("security.ip_lists.geoip: block_asns needs asn_db")
	}
	for _, c := range gc.BlockCountries {
		i, ok := countryIndex(c)
		if !ok {
			return nil, fmt.Errorf("security.ip_lists.geoip.block_countries: %q is not a country code", c)
		}
		g.blockCountry[i] = SourceGeoCountryPrefix + c
		g.rules = true
	}
	for _, c := range gc.AllowCountries {
		i, ok := countryIndex(c)
		if !ok {
			return nil, fmt.Errorf("security.ip_lists.geoip.allow_countries: %q is not a country code", c)
		}
		g.allowCountry[i] = true
		g.allowOnly, g.rules = true, true
	}
	for _, n := range gc.BlockASNs {
		if n <= 0 || n > config.MaxASN {
			return nil, fmt.Errorf("security.ip_lists.geoip.block_asns: %d is not an AS number", n)
		}
		if g.blockASN == nil {
			g.blockASN = map[uint32]string{}
		}
		g.blockASN[uint32(n)] = SourceGeoASNPrefix + strconv.FormatInt(n, 10)
		g.rules = true
	}
	return g, nil
}

// lookup reads the country and the AS number of addr (unmapped), one
// lookup per configured database. A database error reads as "unknown".
// The country code returned is one of the interned countryCodes,
// so the record that keeps it does not hold on to decoder memory.
func (g *geoSet) lookup(addr netip.Addr) Geo {
	var out Geo
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	if g.country != nil {
		rec := &sc.country
		*rec = countryRecord{}
		if err := g.country.r.Lookup(addr).Decode(rec); err == nil {
			c := rec.Country.ISOCode
			if c == "" {
				c = rec.RegisteredCountry.ISOCode
			}
			if i, ok := countryIndex(c); ok {
				out.Country = countryCodes[i]
			}
		}
	}
	if g.asn != nil {
		rec := &sc.asn
		*rec = asnRecord{}
		if err := g.asn.r.Lookup(addr).Decode(rec); err == nil {
			out.ASN = int(rec.ASN)
		}
	}
	return out
}

// decide applies the geoip rules to what lookup found: blocked countries,
// then blocked ASNs, then allow_countries (where an unknown country is not
// allowed).
func (g *geoSet) decide(geo Geo) (Decision, bool) {
	i, known := countryIndex(geo.Country)
	if known && g.blockCountry[i] != "" {
		return Decision{Action: ActionDeny, Source: g.blockCountry[i]}, true
	}
	if geo.ASN > 0 && g.blockASN != nil {
		if src, ok := g.blockASN[uint32(geo.ASN)]; ok {
			return Decision{Action: ActionDeny, Source: src}, true
		}
	}
	if g.allowOnly && (!known || !g.allowCountry[i]) {
		return Decision{Action: ActionDeny, Source: SourceGeoCountryNotAllowed}, true
	}
	return Decision{}, false
}
