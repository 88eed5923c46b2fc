// Package geotest builds small MaxMind-format databases for tests, with
// MaxMind's own writer, so that GeoIP code is tested against the format it
// reads in production. Only tests import it.
package geotest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// The networks of Standard. Documentation ranges (RFC 5737, RFC 3849) are
// reserved, which is why the writer is told to include reserved networks.
const (
	NLNet  = "203.0.113.0/24"  // NL, AS64500
	USNet  = "198.51.100.0/24" // US, AS64501
	NL6Net = "2001:db8:1::/48" // NL, AS64500
	NLASN  = 64500
	USASN  = 64501
)

// Standard writes country.mmdb (GeoLite2-Country layout) and asn.mmdb
// (GeoLite2-ASN layout) into dir with the networks above and returns their
// paths.
func Standard(tb testing.TB, dir string) (country, asn string) {
	tb.Helper()
	country = filepath.Join(dir, "country.mmdb")
	asn = filepath.Join(dir, "asn.mmdb")
	WriteCountry(tb, country, map[string]string{NLNet: "NL", USNet: "US", NL6Net: "NL"})
	WriteASN(tb, asn, map[string]uint32{NLNet: NLASN, USNet: USASN, NL6Net: NLASN})
	return country, asn
}

// WriteCountry writes a country database mapping CIDRs to ISO codes.
func WriteCountry(tb testing.TB, path string, nets map[string]string) {
	tb.Helper()
	write(tb, path, "GeoLite2-Country", func(code string) mmdbtype.DataType {
		return mmdbtype.Map{
			"country": mmdbtype.Map{
				"iso_code":   mmdbtype.String(code),
				"geoname_id": mmdbtype.Uint32(1),
				"names":      mmdbtype.Map{"en": mmdbtype.String("Country " + code)},
			},
			"continent": mmdbtype.Map{"code": mmdbtype.String("EU")},
		}
	}, nets)
}

// WriteASN writes an ASN database mapping CIDRs to AS numbers.
func WriteASN(tb testing.TB, path string, nets map[string]uint32) {
	tb.Helper()
	write(tb, path, "GeoLite2-ASN", func(n uint32) mmdbtype.DataType {
		return mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(n),
			"autonomous_system_organization": mmdbtype.String("Example Networks"),
		}
	}, nets)
}

func write[V any](tb testing.TB, path, dbType string, value func(V) mmdbtype.DataType, nets map[string]V) {
	tb.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		RecordSize:              24,
		IncludeReservedNetworks: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	for cidr, v := range nets {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			tb.Fatal(err)
		}
		if err := tree.Insert(n, value(v)); err != nil {
			tb.Fatalf("insert %s: %v", cidr, err)
		}
	}
	// Written aside and renamed, the way a database should be replaced
	// under a running Rampart.
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}
