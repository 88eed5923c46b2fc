package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/geotest"
)

func geoipConfig(t *testing.T, b *testBackend, geoip string) string {
	country, asn := geotest.Standard(t, t.TempDir())
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1/32]}
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools: [{name: p, backends: %s}]
logging: {access_log: {path: access.log}}
security:
  ip_lists:
    allowlist: [203.0.113.7]
    geoip:
      country_db: %q
      asn_db: %q
%s`, backendsYAML(b), country, asn, geoip)
}

type geoLine struct {
	client, action, source, country string
	asn                             int
	status                          int
}

func checkGeoLines(t *testing.T, e *testEnv, want []geoLine) {
	t.Helper()
	lines := accessLogLines(t, e.dir+"/access.log", len(want))
	for i, w := range want {
		l := lines[i]
		str := func(k string) string { s, _ := l[k].(string); return s }
		num := func(k string) int { n, _ := l[k].(float64); return int(n) }
		got := geoLine{str("client_ip"), str("acl_action"), str("acl_source"), str("geo_country"), num("asn"), num("status_code")}
		if got != w {
			t.Errorf("line %d: %+v, want %+v", i, got, w)
		}
	}
}

// block_countries and block_asns refuse by the client named in a trusted
// proxy's X-Forwarded-For (the proxy itself, 127.0.0.1, has no country);
// every record carries the client's country and ASN; the allowlist still
// comes first.
func TestGeoIPBlockAndRecord(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, geoipConfig(t, b, `      block_countries: [NL]
      block_asns: [64501]
`))
	for _, c := range []struct {
		client string
		status int
	}{
		{"203.0.113.9", http.StatusForbidden},
		{"198.51.100.9", http.StatusForbidden},
		{"203.0.113.7", http.StatusOK},
		{"192.0.2.1", http.StatusOK},
	} {
		if r := e.getFrom(c.client); r.status != c.status {
			t.Errorf("client %s: %d, want %d", c.client, r.status, c.status)
		}
	}
	if n := b.hits.Load(); n != 2 {
		t.Errorf("backend saw %d requests, want 2", n)
	}
	checkGeoLines(t, e, []geoLine{
		{"203.0.113.9", "deny", "geo:country:NL", "NL", 64500, 403},
		{"198.51.100.9", "deny", "geo:asn:64501", "US", 64501, 403},
		{"203.0.113.7", "allow", "static:allowlist", "NL", 64500, 200},
		{"192.0.2.1", "", "", "", 0, 200},
	})
	text := e.scrape("/metrics")
	if v, _ := metricValue(text, `rampart_blocked_total{reason="geo:country:NL",stage="acl"}`); v != "1" {
		t.Errorf("blocked metric = %q, want 1", v)
	}
}

// allow_countries refuses every other country, and unknown addresses; the
// trusted proxy in front (no country) is not refused at accept for it.
func TestGeoIPAllowCountries(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, geoipConfig(t, b, `      allow_countries: [NL]
`))
	for _, c := range []struct {
		client string
		status int
	}{
		{"203.0.113.9", http.StatusOK},
		{"198.51.100.9", http.StatusForbidden},
		{"2001:db8:1::9", http.StatusOK},
	} {
		if r := e.getFrom(c.client); r.status != c.status {
			t.Errorf("client %s: %d, want %d", c.client, r.status, c.status)
		}
	}
	checkGeoLines(t, e, []geoLine{
		{"203.0.113.9", "", "", "NL", 64500, 200},
		{"198.51.100.9", "deny", "geo:country_not_allowed", "US", 64501, 403},
		{"2001:db8:1::9", "", "", "NL", 64500, 200},
	})
}

// A reload that names a database that does not open is refused and the
// running rules stay.
func TestGeoIPReloadRefusesBrokenDatabase(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, geoipConfig(t, b, `      block_countries: [NL]
`))
	bad := strings.Replace(geoipConfig(t, b, "      block_countries: [US]\n"), "country.mmdb", "missing.mmdb", 1)
	if err := e.reload(bad); err == nil || !strings.Contains(err.Error(), "missing.mmdb") {
		t.Fatalf("reload with a missing database: %v", err)
	}
	if r := e.getFrom("203.0.113.9"); r.status != http.StatusForbidden {
		t.Errorf("NL client after the refused reload: %d, want 403", r.status)
	}
	if r := e.getFrom("198.51.100.9"); r.status != http.StatusOK {
		t.Errorf("US client after the refused reload: %d, want 200", r.status)
	}
}
