package wafrx

import (
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
	builds := getBuilds(b)
	r := req()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wafs := [3]coraza.WAF{builds.stock, builds.plugin, builds.skip}
	var cpu [3][]time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
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

func BenchmarkCompareBenignPOSTJSON(b *testing.B) {
	benchCompare(b, benignPOSTJSON, benignJSONBody)
}
