package acl

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/config"
)

func TestParseEntry(t *testing.T) {
	good := map[string]string{
		"192.0.2.7":               "192.0.2.7/32",
		" 192.0.2.7 ":             "192.0.2.7/32",
		"198.51.100.0/24":         "198.51.100.0/24",
		"2001:db8::1":             "2001:db8::1/128",
		"2001:DB8::/32":           "2001:db8::/32",
		"::ffff:192.0.2.7":        "192.0.2.7/32",
		"::ffff:198.51.100.0/120": "198.51.100.0/24",
		"0.0.0.0/0":               "0.0.0.0/0",
	}
	for in, want := range good {
		p, err := ParseEntry(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseEntry(%q) = %s, %v; want %s", in, p, err, want)
		}
	}
	bad := map[string]string{
		"":                "empty",
		"192.0.2":         `"192.0.2" is not an IP address or CIDR`,
		"192.0.2.256":     "is not an IP address",
		"10.1.2.3/8":      "did you mean 10.0.0.0/8?",
		"192.0.2.0/33":    "is not an IP address or CIDR",
		"fe80::1%eth0":    "zoned",
		"example.com":     `"example.com" is not`,
		"192.0.2.1 extra": `"192.0.2.1 extra" is not`,
	}
	for in, want := range bad {
		_, err := ParseEntry(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseEntry(%q) error = %v, want one containing %q", in, err, want)
		}
	}
}

func TestIsBroad(t *testing.T) {
	for s, want := range map[string]bool{
		"0.0.0.0/0": true, "0.0.0.0/7": true, "10.0.0.0/8": false, "192.0.2.1": false,
		"::/0": true, "2000::/15": true, "2001::/16": false, "2001:db8::/32": false,
	} {
		if got := IsBroad(mustPrefix(t, s)); got != want {
			t.Errorf("IsBroad(%s) = %v, want %v", s, got, want)
		}
	}
}

func readAll(t *testing.T, text string, f Format, allowBroad bool) ([]string, error) {
	t.Helper()
	var got []string
	n, err := ReadList(strings.NewReader(text), "list.txt", f, allowBroad, func(p netip.Prefix) { got = append(got, p.String()) })
	if n != len(got) {
		t.Errorf("ReadList returned n = %d but added %d", n, len(got))
	}
	return got, err
}

func TestReadListPlain(t *testing.T) {
	got, err := readAll(t, "\uFEFF# blocklist\n192.0.2.7\n\n  198.51.100.0/24   # office\r\n2001:db8::/32\n#10.0.0.1\n", FormatPlain, false)
	if err != nil {
		t.Fatalf("ReadList: %v", err)
	}
	if want := "192.0.2.7/32 198.51.100.0/24 2001:db8::/32"; strings.Join(got, " ") != want {
		t.Errorf("entries = %v, want %s", got, want)
	}
}

func TestReadListSpamhaus(t *testing.T) {
	text := "; Spamhaus DROP List 2024/01/01 - (c) 2024 The Spamhaus Project\n; Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\n1.10.16.0/20 ; SBL256894\n1.19.0.0/16 ; SBL434604\n2001:db8:bad::/48 ; SBL1\n"
	got, err := readAll(t, text, FormatSpamhaus, false)
	if err != nil {
		t.Fatalf("ReadList: %v", err)
	}
	if want := "1.10.16.0/20 1.19.0.0/16 2001:db8:bad::/48"; strings.Join(got, " ") != want {
		t.Errorf("entries = %v, want %s", got, want)
	}
}

func TestReadListErrorsNameFileLineAndEntry(t *testing.T) {
	text := "192.0.2.7\nnot-an-ip\n10.1.2.3/8\n0.0.0.0/0\n::/0\n"
	_, err := readAll(t, text, FormatPlain, false)
	if err == nil {
		t.Fatal("ReadList accepted bad lines")
	}
	for _, want := range []string{
		`list.txt:2: "not-an-ip" is not an IP address or CIDR`,
		`list.txt:3: "10.1.2.3/8" has bits set beyond its /8 mask (did you mean 10.0.0.0/8?)`,
		`list.txt:4: 0.0.0.0/0 blocks every address; a blocklist entry broader than /8 (IPv4) or /16 (IPv6) needs allow_broad: true`,
		`list.txt:5: ::/0 blocks every address`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
	// With allowBroad only the malformed lines remain errors.
	got, err := readAll(t, text, FormatPlain, true)
	if err == nil || strings.Contains(err.Error(), "broader") || len(got) != 3 {
		t.Errorf("allowBroad: entries %v, err %v; want 3 entries and only the malformed lines", got, err)
	}
}

func TestReadListBoundsErrors(t *testing.T) {
	text := strings.Repeat("bad\n", 50)
	_, err := readAll(t, text, FormatPlain, false)
	if err == nil {
		t.Fatal("no error")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != maxListErrors+1 {
		t.Errorf("%d error lines, want %d:\n%v", n, maxListErrors+1, err)
	}
	if !strings.Contains(err.Error(), "40 more bad lines") {
		t.Errorf("error does not count the rest: %v", err)
	}
	// A line too long for the scanner (a binary file) is an error, not a
	// silent stop.
	_, err = readAll(t, "192.0.2.1\n"+strings.Repeat("x", 70_000)+"\n192.0.2.2\n", FormatPlain, false)
	if err == nil || !strings.Contains(err.Error(), "list.txt:2: line longer than 64 KiB") {
		t.Errorf("long line error = %v", err)
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildStaticFromConfigAndFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "allow.txt", "# partners\n203.0.113.0/24\n")
	writeFile(t, dir, "block.txt", "192.0.2.0/24\n2001:db8:bad::/48\n")
	cfg := &config.Config{File: filepath.Join(dir, "rampart.yaml"), DataDir: dir}
	cfg.Security.IPLists = config.IPLists{
		Allowlist:      []string{"10.0.0.0/8"},
		Blocklist:      []string{"198.51.100.7"},
		AllowlistFiles: []string{"allow.txt"},
		BlocklistFiles: []string{"block.txt"},
	}
	s, err := buildStatic(cfg)
	if err != nil {
		t.Fatalf("buildStatic: %v", err)
	}
	if s.allow.Len() != 2 || s.block.Len() != 3 {
		t.Errorf("allow %d, block %d entries; want 2, 3", s.allow.Len(), s.block.Len())
	}
	for _, c := range []struct {
		tab  *Table
		addr string
		src  string
	}{
		{s.allow, "10.1.1.1", SourceStaticAllow},
		{s.allow, "203.0.113.9", SourceStaticAllow},
		{s.block, "198.51.100.7", SourceStaticBlock},
		{s.block, "192.0.2.1", SourceStaticBlock},
		{s.block, "2001:db8:bad::1", SourceStaticBlock},
	} {
		if src, _, ok := c.tab.Lookup(netip.MustParseAddr(c.addr)); !ok || src != c.src {
			t.Errorf("Lookup(%s) = %q, %v; want %s", c.addr, src, ok, c.src)
		}
	}
}

func TestBuildStaticErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "block.txt", "192.0.2.0/24\n0.0.0.0/0\n")
	cfg := &config.Config{File: filepath.Join(dir, "rampart.yaml"), DataDir: dir}
	cfg.Security.IPLists = config.IPLists{
		Blocklist:      []string{"198.51.100.7", "198.51.100.300"},
		BlocklistFiles: []string{"block.txt", "missing.txt"},
	}
	_, err := buildStatic(cfg)
	if err == nil {
		t.Fatal("buildStatic accepted bad entries")
	}
	for _, want := range []string{
		`blocklist entry: "198.51.100.300" is not an IP address or CIDR`,
		`block.txt:2: 0.0.0.0/0 blocks every address`,
		`missing.txt`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
	// allow_broad admits the broad entry; the others still fail.
	cfg.Security.IPLists.AllowBroad = true
	cfg.Security.IPLists.Blocklist = cfg.Security.IPLists.Blocklist[:1]
	cfg.Security.IPLists.BlocklistFiles = cfg.Security.IPLists.BlocklistFiles[:1]
	s, err := buildStatic(cfg)
	if err != nil {
		t.Fatalf("with allow_broad: %v", err)
	}
	if _, p, ok := s.block.Lookup(netip.MustParseAddr("8.8.8.8")); !ok || p.Bits() != 0 {
		t.Errorf("0.0.0.0/0 not in effect: %s %v", p, ok)
	}
}
