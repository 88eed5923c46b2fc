package wafrx

import (
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/crsregress"
)

// TestPrefilterSound checks the pre-filter on the values CRS really feeds
// @rx: the whole regression suite goes through the plugin build at every
// paranoia level, and each value the pre-filter rejects (after CRS's
// transformations) is run through the regexp, which must not match.
func TestPrefilterSound(t *testing.T) {
	b := getBuilds(t)
	cases, err := crsregress.Load()
	if err != nil {
		t.Fatal(err)
	}
	cases = sampleForRace(cases)
	rejected, violations := 0, 0
	rejectHook = func(re *regexp.Regexp, value string) {
		rejected++
		if re.MatchString(value) {
			violations++
			if violations <= 10 {
				t.Errorf("pre-filter rejected %q but %s matches it", value, re)
			}
		}
	}
	defer func() { rejectHook = nil }()
	for _, c := range cases {
		if c.Skip == crsregress.SkipRaw || c.Skip == crsregress.SkipHTTP0 {
			continue
		}
		r := c.Request()
		body, _ := io.ReadAll(r.Body)
		evaluate(b.pluginRegress, r, body)
	}
	t.Logf("%d values rejected by the pre-filter over %d suite requests, %d wrongly", rejected, len(cases), violations)
	if rejected == 0 {
		t.Fatal("the pre-filter rejected nothing: the hook is not wired or the plugin not registered")
	}
}

// TestPrefilterCoverage pins how much of CRS the analysis covers, so a
// change that silently loses pre-filters shows.
func TestPrefilterCoverage(t *testing.T) {
	getBuilds(t)
	with := 0
	for _, p := range crsPatterns {
		if NewPrefilter(p) != nil {
			with++
		}
	}
	t.Logf("%d of %d CRS @rx patterns have a pre-filter", with, len(crsPatterns))
	if len(crsPatterns) < 250 || with < len(crsPatterns)*85/100 {
		t.Fatalf("%d of %d CRS @rx patterns have a pre-filter, want ≥ 85%%", with, len(crsPatterns))
	}
}

// FuzzPrefilter: for any input and every CRS @rx pattern, a rejection by
// the pre-filter means the regexp does not match. Seeds are benign
// traffic, attack payloads, and the case-folding traps (U+017F LONG S,
// U+212A KELVIN SIGN) the analysis has to respect.
// Run: go test ./internal/wafrx -run '^$' -fuzz FuzzPrefilter -fuzztime 60s
func FuzzPrefilter(f *testing.F) {
	getBuilds(f)
	type compiledPattern struct {
		re *regexp.Regexp
		pf *Prefilter
	}
	var patterns []compiledPattern
	for _, p := range crsPatterns {
		if pf := NewPrefilter(p); pf != nil {
			patterns = append(patterns, compiledPattern{regexp.MustCompile(p), pf})
		}
	}
	for _, s := range []string{
		"", "shoes", "price_asc", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"1' UNION SELECT password FROM users--", "1' union ſelect password from users--",
		"<script>alert(1)</script>", "<ſcript>alert(1)</ſcript>", "<img src=x onerror=alert(1)>",
		"../../etc/passwd", "..%2f..%2fetc%2fpasswd", "; cat /etc/passwd", "$(whoami)", "`id`",
		"${jndi:ldap://127.0.0.1/a}", "<?php system($_GET['c']); ?>", "java.lang.Runtime",
		"\u212aill -9 1", "ſleep(5)", "\xff\xfe<\x00s\x00", "SeLeCt * FrOm", "/bin/bash -c 'id'",
	} {
		f.Add(s)
	}
	// Real payloads from the suite, decoded as CRS would see them.
	if cases, err := crsregress.Load(); err == nil {
		for i, c := range cases {
			if i%25 != 0 {
				continue
			}
			f.Add(c.URI)
			if u, err := url.QueryUnescape(c.URI); err == nil {
				f.Add(strings.ToLower(u))
			}
			if len(c.Body) > 0 && len(c.Body) < 4096 {
				f.Add(string(c.Body))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, p := range patterns {
			if !p.pf.MayMatch(in) && p.re.MatchString(in) {
				t.Fatalf("pre-filter %s rejects %q, but %s matches it", fmt.Sprintf("%q", p.pf.Literals()), in, p.re)
			}
		}
	})
}
