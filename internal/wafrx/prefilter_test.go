package wafrx

import (
	"regexp"
	"slices"
	"testing"
)

func TestPrefilterLiterals(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		want    []string // nil: no pre-filter
	}{
		{`(?sm)union\s+select`, []string{"select"}},
		{`(?sm)(?i)union\s+all`, []string{"union"}},
		{`(?sm)<script`, []string{"<script"}},
		// (?i)s also matches U+017F and (?i)k U+212A: both spellings kept.
		{`(?sm)(?i)sleep\(`, []string{"sleep(", "ſleep("}},
		{`(?sm)(?i)kill`, []string{"kill", "\u212aill"}},
		{`(?sm)(?:foo|bar)baz`, []string{"foobaz", "barbaz"}},
		{`(?sm)ab[cd]e`, []string{"abce", "abde"}},
		{`(?sm)\.\./`, []string{"../"}},
		{`(?sm)x+yz`, []string{"yz"}},
		{`(?sm)(?:abc)?`, nil},
		{`(?sm)a*`, nil},
		{`(?sm)^.*$`, nil},
		{`(?sm)[a-z]*`, nil},
		{`(?sm)foo|.`, nil}, // one alternative needs nothing
	} {
		pf := NewPrefilter(tc.pattern)
		if tc.want == nil {
			if pf != nil {
				t.Errorf("%s: got literals %q, want no pre-filter", tc.pattern, pf.Literals())
			}
			continue
		}
		if pf == nil {
			t.Errorf("%s: no pre-filter, want %q", tc.pattern, tc.want)
			continue
		}
		got := pf.Literals()
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: literals %q, want %q", tc.pattern, got, want)
		}
	}
}

func TestPrefilterMayMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, in string
		may         bool
	}{
		{`(?sm)(?i)select`, "1 UNION SELECT 2", true},
		{`(?sm)(?i)select`, "1 union ſelect 2", true}, // regexp matches this too
		{`(?sm)(?i)select`, "category=shoes", false},
		{`(?sm)select`, "SELECT", true}, // case-insensitive compare is only looser
		{`(?sm)<script`, "<scrip", false},
		{`(?sm)<script`, "x<script", true},
		{`(?sm)\x{e9}t\x{e9}`, "été", true},
		{`(?sm)\x{e9}t\x{e9}`, "ete", false},
	} {
		pf := NewPrefilter(tc.pattern)
		if pf == nil {
			t.Fatalf("%s: no pre-filter", tc.pattern)
		}
		if got := pf.MayMatch(tc.in); got != tc.may {
			t.Errorf("%s on %q: MayMatch=%v, want %v", tc.pattern, tc.in, got, tc.may)
		}
		if !tc.may && regexp.MustCompile(tc.pattern).MatchString(tc.in) {
			t.Errorf("%s on %q: test is wrong, the regexp matches", tc.pattern, tc.in)
		}
	}
}

func TestMayMatchDoesNotAllocate(t *testing.T) {
	pf := NewPrefilter(`(?sm)(?i)(?:union|select|insert|delete)\s`)
	if pf == nil {
		t.Fatal("no pre-filter")
	}
	in := "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	if n := testing.AllocsPerRun(100, func() { pf.MayMatch(in) }); n != 0 {
		t.Fatalf("MayMatch allocates %v times per call", n)
	}
}

func TestMatchesArbitraryBytes(t *testing.T) {
	for pattern, want := range map[string]bool{
		`abc`:          false,
		`[\x80-\xff]`:  true,
		`\x{bc}`:       true,
		`\x41\x42`:     false,
		`\xc3\xa9`:     false, // valid UTF-8 for é
		`\\x80`:        true,  // read as Coraza reads it, for the same engine choice
		`(?i)\x5c\x27`: false,
	} {
		if got := matchesArbitraryBytes(pattern); got != want {
			t.Errorf("matchesArbitraryBytes(%q) = %v, want %v", pattern, got, want)
		}
	}
}

// The byte-class stage: CRS spells shell commands with optional quoting
// between letters, so no literal longer than a byte is required, but the
// letters' bytes are.
func TestByteFilter(t *testing.T) {
	pattern := `(?sm)(?i)(?:b["'\x5c]*u["'\x5c]*s["'\x5c]*y|w["'\x5c]*g["'\x5c]*e["'\x5c]*t)[\s;]`
	pf := NewPrefilter(pattern)
	if pf == nil || pf.bytes == nil {
		t.Fatal("no byte-class pre-filter")
	}
	re := regexp.MustCompile(pattern)
	for in, may := range map[string]bool{
		"price_asc":   false, // no b, no w
		"busy":        false, // all letters, but no whitespace or ';'
		"b'u\"s'y ":   true,
		"W'G'E'T;":    true,
		"ſuby;":       true, // (?i)s matches U+017F: its first byte counts
		"category=42": false,
	} {
		if got := pf.MayMatch(in); got != may {
			t.Errorf("MayMatch(%q) = %v, want %v", in, got, may)
		}
		if !pf.MayMatch(in) && re.MatchString(in) {
			t.Errorf("%q rejected but the regexp matches", in)
		}
	}
}
