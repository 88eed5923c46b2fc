package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Security groups the checks that decide whether traffic may pass: IP
// lists, the dynamic blocklist, connection/protocol hardening and rate
// limits; the WAF joins this section when it is implemented.
type Security struct {
	IPLists          IPLists          `yaml:"ip_lists"`
	DynamicBlocklist DynamicBlocklist `yaml:"dynamic_blocklist"`
	// Connection and protocol hardening (hardening.go).
	SynFloodProtection  SynFloodProtection  `yaml:"syn_flood_protection"`
	SlowlorisProtection SlowlorisProtection `yaml:"slowloris_protection"`
	RequestLimits       RequestLimits       `yaml:"request_limits"`
	HTTP2               HTTP2Limits         `yaml:"http2"`
	Headers             Headers             `yaml:"headers"`
	RateLimits          RateLimits          `yaml:"rate_limits"`
	// WAF is stage 5 (waf.go); nil when the section is absent (off).
	WAF *WAF `yaml:"waf"`
}

// IPLists are the static allow and block lists and the threat feeds. An
// allowlisted client skips every later check; a blocklisted one is refused.
type IPLists struct {
	// Allowlist and Blocklist hold addresses ("192.0.2.7", "2001:db8::1")
	// and CIDRs ("198.51.100.0/24").
	Allowlist []string `yaml:"allowlist"`
	Blocklist []string `yaml:"blocklist"`
	// AllowlistFiles and BlocklistFiles name files with one entry per line
	// and "#" comments, relative to the config file.
	AllowlistFiles []string `yaml:"allowlist_files"`
	BlocklistFiles []string `yaml:"blocklist_files"`
	// AllowBroad permits blocklist entries broader than /8 (IPv4) or /16
	// (IPv6). Without it "0.0.0.0/0" in a blocklist is a mistake that
	// would lock everyone out, so it is refused.
	AllowBroad bool   `yaml:"allow_broad"`
	Feeds      []Feed `yaml:"feeds"`
	GeoIP      GeoIP  `yaml:"geoip"`
}

// GeoIP decides by the country and the autonomous system (ASN) of the
// client, looked up in MaxMind-format databases (MaxMind GeoLite2/GeoIP2
// Country or City and ASN, DB-IP Lite Country and ASN). It applies after
// the allow and block lists: an allowlisted client passes whatever its
// country, a blocklisted one is refused whatever its country.
type GeoIP struct {
	// CountryDB and ASNDB are .mmdb files, relative to the config file.
	// Either may be set alone; with one set every access-log record gets
	// geo_country or asn, whether or not any rule below uses it.
	CountryDB string `yaml:"country_db"`
	ASNDB     string `yaml:"asn_db"`
	// BlockCountries refuses clients located in these countries (ISO
	// 3166-1 alpha-2 codes, upper case: "NL", "US").
	BlockCountries []string `yaml:"block_countries"`
	// AllowCountries refuses clients located anywhere else, including
	// addresses the database does not know. It cannot be combined with
	// BlockCountries.
	AllowCountries []string `yaml:"allow_countries"`
	// BlockASNs refuses clients announced by these autonomous systems.
	BlockASNs []int64 `yaml:"block_asns"`
}

// Enabled reports whether a database is configured.
func (g *GeoIP) Enabled() bool { return g.CountryDB != "" || g.ASNDB != "" }

// MaxASN is the largest autonomous system number (32-bit ASNs, RFC 6793).
const MaxASN = 1<<32 - 1

// Feed is a threat feed: a blocklist maintained by someone else and
// fetched again every Refresh.
type Feed struct {
	Name string `yaml:"name"`
	// File or URL (http(s)), exactly one. Plain http is accepted only from
	// loopback: anyone on the path could otherwise rewrite the list.
	File string `yaml:"file"`
	URL  string `yaml:"url"`
	// Format is spamhaus_drop (also EDROP: "CIDR ; SBLnnn" lines with ";"
	// comments) or plain (one address or CIDR per line, "#" comments).
	Format  string   `yaml:"format"`
	Refresh Duration `yaml:"refresh"`
	// AllowBroad permits entries broader than /8 or /16 in this feed; a
	// feed that suddenly lists 0.0.0.0/0 is refused, not applied.
	AllowBroad bool `yaml:"allow_broad"`
}

// Source is the feed's URL or file as written.
func (f *Feed) Source() string {
	if f.URL != "" {
		return f.URL
	}
	return f.File
}

// RefreshInterval is Refresh or its default.
func (f *Feed) RefreshInterval() time.Duration {
	if f.Refresh == 0 {
		return DefaultFeedRefresh
	}
	return f.Refresh.D()
}

// DynamicBlocklist configures the blocklist and allowlist changed at run
// time by operators and by auto_block rules.
type DynamicBlocklist struct {
	// Store is the database file; empty means blocklist.db in data_dir.
	Store string `yaml:"store"`
	// ManualDefaultTTL is how long an entry added without expires_at
	// lasts. Entries never last forever: a forgotten block outlives the
	// reason it was added for.
	ManualDefaultTTL Duration  `yaml:"manual_default_ttl"`
	AutoBlock        AutoBlock `yaml:"auto_block"`
}

// TTL is ManualDefaultTTL or its default.
func (d *DynamicBlocklist) TTL() time.Duration {
	if d.ManualDefaultTTL == 0 {
		return DefaultManualTTL
	}
	return d.ManualDefaultTTL.D()
}

// AutoBlock turns repeated offences into dynamic blocks. Both rules are on
// by default with the values below; "enabled: false" turns one off.
type AutoBlock struct {
	RateLimitViolations OffenceRule `yaml:"rate_limit_violations"`
	WAFAttacks          OffenceRule `yaml:"waf_attacks"`
	// SlowClients blocks a client whose slow-client score stays over
	// slowloris_protection.slow_client_score_threshold: each slow
	// indicator beyond the threshold is one offence.
	SlowClients OffenceRule `yaml:"slow_clients"`
	// MaxTrackedIPs bounds the memory spent remembering offenders; the
	// least recently seen are forgotten first.
	MaxTrackedIPs int `yaml:"max_tracked_ips"`
}

// OffenceRule blocks an address after Count offences within Window.
// Escalation lists block durations for the first, second, ... block of the
// same address (the last repeats); Duration is a one-step ladder.
type OffenceRule struct {
	Enabled    *bool      `yaml:"enabled"`
	Count      int        `yaml:"count"`
	Window     Duration   `yaml:"window"`
	Duration   Duration   `yaml:"duration"`
	Escalation []Duration `yaml:"escalation"`
}

// Defaults for ip_lists and dynamic_blocklist. They are applied by the
// accessors above and by Effective, so that a file that leaves a key out
// and one that writes the default behave the same.
const (
	DefaultFeedRefresh   = time.Hour
	MinFeedRefresh       = time.Minute
	DefaultManualTTL     = 720 * time.Hour
	DefaultMaxTrackedIPs = 100_000
	// BroadIPv4Bits and BroadIPv6Bits: a prefix shorter than these is
	// "broad" and needs allow_broad in a blocklist.
	BroadIPv4Bits = 8
	BroadIPv6Bits = 16
)

// FeedFormats are the feed formats Rampart parses.
var FeedFormats = []string{"spamhaus_drop", "spamhaus_edrop", "plain"}

// RateLimitRule and WAFRule return the effective auto_block rules with
// defaults filled in; a disabled rule has Count 0.
func (a *AutoBlock) RateLimitRule() EffectiveRule {
	return a.RateLimitViolations.effective(3, time.Hour, []time.Duration{time.Hour, 4 * time.Hour, 24 * time.Hour, 168 * time.Hour})
}

// WAFRule: see RateLimitRule.
func (a *AutoBlock) WAFRule() EffectiveRule {
	return a.WAFAttacks.effective(10, 5*time.Minute, []time.Duration{24 * time.Hour})
}

// SlowClientRule: see RateLimitRule. By default 3 slow indicators
// beyond the score threshold within 10 minutes block for 1h, then 24h.
func (a *AutoBlock) SlowClientRule() EffectiveRule {
	return a.SlowClients.effective(3, 10*time.Minute, []time.Duration{time.Hour, 24 * time.Hour})
}

// TrackedIPs is MaxTrackedIPs or its default.
func (a *AutoBlock) TrackedIPs() int {
	if a.MaxTrackedIPs == 0 {
		return DefaultMaxTrackedIPs
	}
	return a.MaxTrackedIPs
}

// EffectiveRule is an OffenceRule with defaults applied.
type EffectiveRule struct {
	Count  int // 0: disabled
	Window time.Duration
	Ladder []time.Duration // block duration of the 1st, 2nd, ... block; the last repeats
}

func (r *OffenceRule) effective(count int, window time.Duration, ladder []time.Duration) EffectiveRule {
	if r.Enabled != nil && !*r.Enabled {
		return EffectiveRule{}
	}
	e := EffectiveRule{Count: count, Window: window, Ladder: ladder}
	if r.Count != 0 {
		e.Count = r.Count
	}
	if r.Window != 0 {
		e.Window = r.Window.D()
	}
	switch {
	case len(r.Escalation) > 0:
		e.Ladder = make([]time.Duration, len(r.Escalation))
		for i, d := range r.Escalation {
			e.Ladder[i] = d.D()
		}
	case r.Duration != 0:
		e.Ladder = []time.Duration{r.Duration.D()}
	}
	return e
}

// DynamicStorePath is where the dynamic blocklist is kept: store resolved
// against the config file, or blocklist.db in data_dir (which Parse has
// already resolved).
func (c *Config) DynamicStorePath() string {
	if s := c.Security.DynamicBlocklist.Store; s != "" {
		return c.Resolve(s)
	}
	return filepath.Join(c.DataDir, "blocklist.db")
}

// ParseListEntry parses one allow/block list entry: an address
// ("192.0.2.7", "2001:db8::1") or a CIDR ("198.51.100.0/24"). It is
// stricter than ParsePrefix because a list entry decides who gets in: host
// bits set under the mask ("10.1.2.3/8") are refused rather than silently
// widened, zones are refused, and IPv4-mapped IPv6 forms are turned into
// the IPv4 entry they mean, because lookups unmap addresses first.
func ParseListEntry(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("empty entry")
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("%q: zoned addresses cannot be listed", s)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set beyond its /%d mask (did you mean %s?)", s, p.Bits(), m)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// IsBroad reports whether p is shorter than /8 (IPv4) or /16 (IPv6).
func IsBroad(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() < BroadIPv4Bits
	}
	return p.Bits() < BroadIPv6Bits
}

// BroadError is the message for a broad blocklist entry without
// allow_broad, shared by config validation and list files.
func BroadError(p netip.Prefix) error {
	return fmt.Errorf("%s blocks %s; a blocklist entry broader than /%d (IPv4) or /%d (IPv6) needs allow_broad: true",
		p, broadWhat(p), BroadIPv4Bits, BroadIPv6Bits)
}

func broadWhat(p netip.Prefix) string {
	if p.Bits() == 0 {
		return "every address"
	}
	return "a very large range"
}

func (v *validator) ipLists() {
	const base = "security.ip_lists"
	l := &v.cfg.Security.IPLists
	for i, s := range l.Allowlist {
		if _, err := ParseListEntry(s); err != nil {
			v.add(fmt.Sprintf("%s.allowlist[%d]", base, i), "allowlist entry: %v", err)
		}
	}
	for i, s := range l.Blocklist {
		p, err := ParseListEntry(s)
		switch {
		case err != nil:
			v.add(fmt.Sprintf("%s.blocklist[%d]", base, i), "blocklist entry: %v", err)
		case IsBroad(p) && !l.AllowBroad:
			v.add(fmt.Sprintf("%s.blocklist[%d]", base, i), "blocklist entry: %v", BroadError(p))
		}
	}
	for _, files := range []struct {
		key   string
		paths []string
	}{{"allowlist_files", l.AllowlistFiles}, {"blocklist_files", l.BlocklistFiles}} {
		for i, f := range files.paths {
			path := fmt.Sprintf("%s.%s[%d]", base, files.key, i)
			if f == "" {
				v.add(path, "%s: empty file name", files.key)
				continue
			}
			if st, err := os.Stat(v.cfg.Resolve(f)); err != nil {
				v.add(path, "%s: %q cannot be read: %v", files.key, f, unwrapPathError(err))
			} else if st.IsDir() {
				v.add(path, "%s: %q is a directory, not a list file", files.key, f)
			}
		}
	}
	names := map[string]bool{}
	for i := range l.Feeds {
		v.feed(fmt.Sprintf("%s.feeds[%d]", base, i), &l.Feeds[i], names)
	}
	v.geoIP()
	v.dynamicBlocklist()
}

// geoIP checks the geoip section: country codes are two upper-case
// letters, ASNs are 32-bit and positive, every rule has the database it
// needs, and the databases open as MaxMind DBs of the right kind.
func (v *validator) geoIP() {
	const base = "security.ip_lists.geoip"
	g := &v.cfg.Security.IPLists.GeoIP
	for _, list := range []struct {
		key   string
		codes []string
	}{{"block_countries", g.BlockCountries}, {"allow_countries", g.AllowCountries}} {
		for i, c := range list.codes {
			if !IsCountryCode(c) {
				hint := ""
				if u := strings.ToUpper(c); IsCountryCode(u) {
					hint = fmt.Sprintf(" (did you mean %s?)", u)
				}
				v.add(fmt.Sprintf("%s.%s[%d]", base, list.key, i), "%s: %q is not a country code: use two upper-case letters (ISO 3166-1 alpha-2)%s", list.key, c, hint)
			}
		}
	}
	for i, n := range g.BlockASNs {
		if n <= 0 || n > MaxASN {
			v.add(fmt.Sprintf("%s.block_asns[%d]", base, i), "block_asns: %d is not an AS number (1 to %d)", n, int64(MaxASN))
		}
	}
	if len(g.AllowCountries) > 0 && len(g.BlockCountries) > 0 {
		v.add(base+".allow_countries", "use allow_countries or block_countries, not both: allow_countries already refuses every country it does not list")
	}
	if (len(g.AllowCountries) > 0 || len(g.BlockCountries) > 0) && g.CountryDB == "" {
		v.add(base, "block_countries and allow_countries need country_db")
	}
	if len(g.BlockASNs) > 0 && g.ASNDB == "" {
		v.add(base, "block_asns needs asn_db")
	}
	if g.CountryDB != "" {
		if err := CheckGeoDB(v.cfg.Resolve(g.CountryDB), GeoCountryDB); err != nil {
			v.add(base+".country_db", "country_db: %q: %v", g.CountryDB, err)
		}
	}
	if g.ASNDB != "" {
		if err := CheckGeoDB(v.cfg.Resolve(g.ASNDB), GeoASNDB); err != nil {
			v.add(base+".asn_db", "asn_db: %q: %v", g.ASNDB, err)
		}
	}
}

// IsCountryCode reports whether s is two upper-case ASCII letters.
func IsCountryCode(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// GeoDBKind is what a GeoIP database is expected to hold.
type GeoDBKind uint8

const (
	GeoCountryDB GeoDBKind = iota // country.iso_code (Country or City)
	GeoASNDB                      // autonomous_system_number (ASN or ISP)
)

// CheckGeoDB opens path as a MaxMind DB and refuses one that is plainly
// of the other kind (an ASN database given as country_db, or the reverse),
// which would otherwise look up nothing, silently.
func CheckGeoDB(path string, kind GeoDBKind) error {
	r, err := maxminddb.Open(path)
	if err != nil {
		return fmt.Errorf("cannot be opened as a MaxMind database: %v", unwrapPathError(err))
	}
	defer r.Close()
	return CheckGeoDBType(r.Metadata.DatabaseType, kind)
}

// CheckGeoDBType checks a database_type from a MaxMind DB's metadata
// against the kind of database expected. Unknown types are accepted.
func CheckGeoDBType(dbType string, kind GeoDBKind) error {
	t := strings.ToLower(dbType)
	asn := strings.Contains(t, "asn") || strings.Contains(t, "isp")
	geo := strings.Contains(t, "country") || strings.Contains(t, "city")
	switch {
	case kind == GeoCountryDB && asn && !geo:
		return fmt.Errorf("is an ASN database (%s), not a country database", dbType)
	case kind == GeoASNDB && geo && !asn:
		return fmt.Errorf("is a country database (%s), not an ASN database", dbType)
	}
	return nil
}

func (v *validator) feed(p string, f *Feed, names map[string]bool) {
	switch {
	case f.Name == "":
		v.add(p, "feed has no name")
	case strings.ContainsAny(f.Name, " /\t:"):
		v.add(p+".name", "feed name %q must not contain spaces, slashes or colons", f.Name)
	case names[f.Name]:
		v.add(p+".name", "duplicate feed name %q", f.Name)
	}
	names[f.Name] = true
	switch {
	case f.File == "" && f.URL == "":
		v.add(p, "feed %q needs a file or a url", f.Name)
	case f.File != "" && f.URL != "":
		v.add(p+".url", "feed %q has both file and url; use one", f.Name)
	case f.URL != "":
		if err := checkFeedURL(f.URL); err != nil {
			v.add(p+".url", "feed %q: url %q: %v", f.Name, f.URL, err)
		}
	}
	switch {
	case f.Format == "":
		v.add(p, "feed %q needs a format (one of %s)", f.Name, strings.Join(FeedFormats, ", "))
	case !slices.Contains(FeedFormats, f.Format):
		v.add(p+".format", "feed %q: unknown format %q (one of %s)", f.Name, f.Format, strings.Join(FeedFormats, ", "))
	}
	if f.Refresh != 0 && f.Refresh.D() < MinFeedRefresh {
		v.add(p+".refresh", "feed %q: refresh %s is too frequent; use %s or more (feed providers ban clients that poll too often)", f.Name, f.Refresh.D(), MinFeedRefresh)
	}
}

// checkFeedURL accepts https URLs, and http only to a loopback address.
func checkFeedURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("not an absolute http(s) URL")
	}
	if u.User != nil {
		return fmt.Errorf("credentials in the URL would end up in logs; serve the feed without them or from a file")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if a, err := netip.ParseAddr(host); host == "localhost" || (err == nil && a.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("plain http lets anyone on the path rewrite the list; use https (http is accepted only from loopback)")
	}
	return fmt.Errorf("scheme %q is not http or https", u.Scheme)
}

func (v *validator) dynamicBlocklist() {
	const base = "security.dynamic_blocklist"
	d := &v.cfg.Security.DynamicBlocklist
	if d.ManualDefaultTTL != 0 && d.ManualDefaultTTL.D() < time.Minute {
		v.add(base+".manual_default_ttl", "manual_default_ttl %s is shorter than a minute", d.ManualDefaultTTL.D())
	}
	a := &d.AutoBlock
	if a.MaxTrackedIPs < 0 {
		v.add(base+".auto_block.max_tracked_ips", "max_tracked_ips must be 1 or more")
	}
	for _, r := range []struct {
		key  string
		rule *OffenceRule
	}{{"rate_limit_violations", &a.RateLimitViolations}, {"waf_attacks", &a.WAFAttacks}, {"slow_clients", &a.SlowClients}} {
		p := base + ".auto_block." + r.key
		if r.rule.Count < 0 {
			v.add(p+".count", "%s: count must be 1 or more", r.key)
		}
		if len(r.rule.Escalation) > 0 && r.rule.Duration != 0 {
			v.add(p+".duration", "%s: use duration or escalation, not both", r.key)
		}
		for i, e := range r.rule.Escalation {
			if e == 0 {
				v.add(fmt.Sprintf("%s.escalation[%d]", p, i), "%s: escalation steps must be longer than 0s", r.key)
			}
		}
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
