package waf

import (
	"net/http"
	"testing"
)

// BenchmarkWAFBenignGET is a plain browser GET through the stage at PL1:
// the cost every clean request pays.
func BenchmarkWAFBenignGET(b *testing.B) { benchBenignGET(b) }

// BenchmarkWAFBenignGETNoSkipping is the same without rule skipping
// (internal/wafrx), to see what it saves.
func BenchmarkWAFBenignGETNoSkipping(b *testing.B) {
	ruleSkipping = false
	defer func() { ruleSkipping = true }()
	benchBenignGET(b)
}

func benchBenignGET(b *testing.B) {
	w := newWAF(b, Config{ParanoiaLevel: 1})
	r, _ := http.NewRequest(http.MethodGet, "http://app.example.test/products/42?category=shoes&page=2", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.7")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	r.Header.Set("Cookie", "session=8f14e45fceea167a5a36dedd4bea2543")
	r.RemoteAddr = "192.0.2.10:51234"
	if res := w.Evaluate(r); res.Action != ActionPass || len(res.RuleIDs) != 0 {
		b.Fatalf("benign GET: %+v", res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.Evaluate(r)
	}
}
