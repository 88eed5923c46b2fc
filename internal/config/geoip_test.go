package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/geotest"
)

// geoDir holds the test databases and a junk file; configs are loaded from
// rampart.yaml in it so that relative paths resolve there.
func geoDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	geotest.Standard(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "junk.mmdb"), []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "geo"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadIn(t *testing.T, dir, src string) (*Config, error) {
	t.Helper()
	path := filepath.Join(dir, "rampart.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestGeoIPSection(t *testing.T) {
	dir := geoDir(t)
	cfg, err := loadIn(t, dir, valid+doc(`
security:
  ip_lists:
    geoip:
      country_db: country.mmdb
      asn_db: asn.mmdb
      block_countries: [NL, RU]
      block_asns: [64500, 4294967295]
`))
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	g := &cfg.Security.IPLists.GeoIP
	if !g.Enabled() || g.CountryDB != "country.mmdb" || g.ASNDB != "asn.mmdb" ||
		!slices.Equal(g.BlockCountries, []string{"NL", "RU"}) || !slices.Equal(g.BlockASNs, []int64{64500, MaxASN}) {
		t.Errorf("geoip = %+v", g)
	}
	if cfg.Resolve(g.CountryDB) != filepath.Join(dir, "country.mmdb") {
		t.Errorf("country_db resolves to %s", cfg.Resolve(g.CountryDB))
	}

	// A database alone, for the access log, and allow_countries.
	if _, err := loadIn(t, dir, valid+doc(`
security:
  ip_lists:
    geoip: {country_db: country.mmdb, allow_countries: [NL, BE]}
`)); err != nil {
		t.Fatalf("allow_countries:\n%v", err)
	}
	cfg, err = Parse("t.yaml", []byte(valid))
	if err != nil || cfg.Security.IPLists.GeoIP.Enabled() {
		t.Errorf("no geoip section: enabled %v, %v", cfg.Security.IPLists.GeoIP.Enabled(), err)
	}
}

func TestGeoIPMistakes(t *testing.T) {
	dir := geoDir(t)
	cases := []struct {
		name string
		sec  string // appended to valid, which has 8 lines
		line int
		msg  string
	}{
		{"lower-case country", `
security:
  ip_lists:
    geoip:
      country_db: country.mmdb
      block_countries: [NL, ru]
`, 13, `block_countries: "ru" is not a country code: use two upper-case letters (ISO 3166-1 alpha-2) (did you mean RU?)`},
		{"mixed-case country", `
security:
  ip_lists:
    geoip: {country_db: country.mmdb, block_countries: [Nl]}
`, 11, `"Nl" is not a country code: use two upper-case letters (ISO 3166-1 alpha-2) (did you mean NL?)`},
		{"country name", `
security:
  ip_lists:
    geoip:
      country_db: country.mmdb
      allow_countries:
        - Netherlands
`, 14, `allow_countries: "Netherlands" is not a country code`},
		{"three-letter code", `
security:
  ip_lists:
    geoip: {country_db: country.mmdb, block_countries: [NLD]}
`, 11, `"NLD" is not a country code`},
		{"zero ASN", `
security:
  ip_lists:
    geoip:
      asn_db: asn.mmdb
      block_asns: [64500, 0]
`, 13, `block_asns: 0 is not an AS number (1 to 4294967295)`},
		{"negative ASN", `
security:
  ip_lists:
    geoip: {asn_db: asn.mmdb, block_asns: [-7]}
`, 11, `-7 is not an AS number`},
		{"ASN too large", `
security:
  ip_lists:
    geoip: {asn_db: asn.mmdb, block_asns: [4294967296]}
`, 11, `4294967296 is not an AS number`},
		{"ASN as a string", `
security:
  ip_lists:
    geoip: {asn_db: asn.mmdb, block_asns: [AS64500]}
`, 11, `AS64500`},
		{"both country lists", `
security:
  ip_lists:
    geoip:
      country_db: country.mmdb
      block_countries: [RU]
      allow_countries: [NL]
`, 14, `use allow_countries or block_countries, not both`},
		{"countries without country_db", `
security:
  ip_lists:
    geoip:
      asn_db: asn.mmdb
      block_countries: [RU]
`, 11, `block_countries and allow_countries need country_db`},
		{"ASNs without asn_db", `
security:
  ip_lists:
    geoip:
      country_db: country.mmdb
      block_asns: [64500]
`, 11, `block_asns needs asn_db`},
		{"missing database", `
security:
  ip_lists:
    geoip:
      country_db: geo/GeoLite2-Country.mmdb
`, 12, `country_db: "geo/GeoLite2-Country.mmdb": cannot be opened as a MaxMind database: no such file or directory`},
		{"not a database", `
security:
  ip_lists:
    geoip:
      asn_db: junk.mmdb
`, 12, `asn_db: "junk.mmdb": cannot be opened as a MaxMind database`},
		{"a directory", `
security:
  ip_lists:
    geoip:
      asn_db: geo
`, 12, `asn_db: "geo": cannot be opened as a MaxMind database`},
		{"databases swapped", `
security:
  ip_lists:
    geoip:
      country_db: asn.mmdb
`, 12, `country_db: "asn.mmdb": is an ASN database (GeoLite2-ASN), not a country database`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadIn(t, dir, valid+doc(c.sec))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Load = %v, want Problems", err)
			}
			if len(ps) != 1 || ps[0].Line != c.line || !strings.Contains(ps[0].Msg, c.msg) {
				t.Errorf("problems:\n%v\nwant exactly one: line %d: ...%s...", err, c.line, c.msg)
			}
		})
	}
}

func TestCheckGeoDBType(t *testing.T) {
	for _, c := range []struct {
		dbType string
		kind   GeoDBKind
		ok     bool
	}{
		{"GeoLite2-Country", GeoCountryDB, true},
		{"GeoIP2-City", GeoCountryDB, true},
		{"DBIP-Country-Lite", GeoCountryDB, true},
		{"DBIP-City-Lite", GeoCountryDB, true},
		{"GeoLite2-ASN", GeoCountryDB, false},
		{"DBIP-ASN-Lite", GeoCountryDB, false},
		{"GeoLite2-ASN", GeoASNDB, true},
		{"DBIP-ASN-Lite", GeoASNDB, true},
		{"GeoIP2-ISP", GeoASNDB, true},
		{"GeoLite2-Country", GeoASNDB, false},
		{"my-own-db", GeoASNDB, true},
	} {
		if err := CheckGeoDBType(c.dbType, c.kind); (err == nil) != c.ok {
			t.Errorf("CheckGeoDBType(%q, %d) = %v, want ok %v", c.dbType, c.kind, err, c.ok)
		}
	}
}
