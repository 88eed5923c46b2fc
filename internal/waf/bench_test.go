package waf

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkWAFBenignGET is a plain browser GET through the stage at PL1:
// the cost every clean request pays.
func BenchmarkWAFBenignGET(b *testing.B) {
	benchGET(b, Config{ParanoiaLevel: 1}, sameRequest(benignGET(0)))
}

// BenchmarkWAFBenignGETNoSkipping is the same without rule skipping
// (internal/wafrx), to see what it saves.
func BenchmarkWAFBenignGETNoSkipping(b *testing.B) {
	benchGET(b, Config{ParanoiaLevel: 1, NoRuleSkipping: true}, sameRequest(benignGET(0)))
}

func sameRequest(r *http.Request) func(int) *http.Request {
	return func(int) *http.Request { return r }
}

// BenchmarkWAFVariedGET is BenchmarkWAFBenignGET with every value that
// varies in real traffic new on each request (query values, session
// cookie, Referer, the browser's minor version), so rule skipping's
// per-string cache only helps with what browsers repeat.
func BenchmarkWAFVariedGET(b *testing.B) { benchGET(b, Config{ParanoiaLevel: 1}, variedGET) }

func benignGET(int) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://app.example.test/products/42?category=shoes&page=2", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.7")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	r.Header.Set("Cookie", "session=8f14e45fceea167a5a36dedd4bea2543")
	r.RemoteAddr = "192.0.2.10:51234"
	return r
}

func variedGET(i int) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://app.example.test/products/%d?category=shoes-%d&page=%d&q=red+sneakers+%d", i, i%97, i%50, i*7919), nil)
	r.Header.Set("User-Agent", fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.%d", i%20))
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.7")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	r.Header.Set("Referer", fmt.Sprintf("https://app.example.test/products?page=%d", i))
	r.Header.Set("Cookie", fmt.Sprintf("session=%016x", uint64(i)*0x9e3779b97f4a7c15))
	r.RemoteAddr = "192.0.2.10:51234"
	return r
}

// benchGET evaluates req(i) per iteration (built outside the timed part)
// and reports the median beside the mean: the goal is a median.
func benchGET(b *testing.B, c Config, req func(i int) *http.Request) {
	w := newWAF(b, c)
	if res := w.Evaluate(req(0)); res.Action != ActionPass || len(res.RuleIDs) != 0 {
		b.Fatalf("benign GET: %+v", res)
	}
	times := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		r := req(i)
		t0 := time.Now()
		w.Evaluate(r)
		times = append(times, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "median-ns/op")
}
