package wafrx

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/corazawaf/coraza/v3"
)

// benchCompare alternates the stock build, the @rx plugin build and the
// build with rule skipping on the same request, so all see the same
// machine load, and reports each one's median thread CPU and the ratios
// to stock. Allocations are the sum of the three.
func benchCompare(b *testing.B, req func() *http.Request, body []byte) {
	benchCompareEach(b, func(int) *http.Request { return req() }, body)
}

// benchCompareEach is benchCompare with a request per iteration.
func benchCompareEach(b *testing.B, req func(i int) *http.Request, body []byte) {
	builds := getBuilds(b)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wafs := [3]coraza.WAF{builds.stock, builds.plugin, builds.skip}
	var cpu [3][]time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := req(i)
		for j, waf := range wafs {
			c0 := threadCPU()
			evaluate(waf, r, body)
			cpu[j] = append(cpu[j], threadCPU()-c0)
		}
	}
	b.StopTimer()
	ms, mp, mk := median(cpu[0]), median(cpu[1]), median(cpu[2])
	b.ReportMetric(float64(ms.Nanoseconds()), "stock-median-cpu-ns")
	b.ReportMetric(float64(mp.Nanoseconds()), "plugin-median-cpu-ns")
	b.ReportMetric(float64(mk.Nanoseconds()), "skip-median-cpu-ns")
	if ms > 0 {
		b.ReportMetric(float64(mp)/float64(ms), "plugin/stock")
		b.ReportMetric(float64(mk)/float64(ms), "skip/stock")
	}
}

func BenchmarkCompareBenignGET(b *testing.B) { benchCompare(b, benignGET, nil) }

// BenchmarkCompareVariedGET sends a different browser GET every time:
// session cookie, query values, Referer and the browser's minor version
// change, so what rule skipping caches per input string is only reused
// for what real browsers repeat (header names, Accept, cookie names).
func BenchmarkCompareVariedGET(b *testing.B) { benchCompareEach(b, variedGET, nil) }

func variedGET(i int) *http.Request {
	r := benignGET()
	q := fmt.Sprintf("category=shoes-%d&page=%d&sort=price_asc&q=red+sneakers+%d", i%97, i, i*7919)
	r.RequestURI = "/products/list?" + q
	r.URL.RawQuery = q
	h := r.Header
	h.Set("User-Agent", fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.%d", i%20))
	h.Set("Referer", fmt.Sprintf("https://shop.example.test/products/%d?category=shoes", i))
	h.Set("Cookie", fmt.Sprintf("session=%016x; theme=dark; consent=yes", uint64(i)*0x9e3779b97f4a7c15))
	return r
}

func BenchmarkCompareBenignPOSTJSON(b *testing.B) {
	benchCompare(b, benignPOSTJSON, benignJSONBody)
}
