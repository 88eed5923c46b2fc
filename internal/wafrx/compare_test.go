package wafrx

import (
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/corazawaf/coraza/v3"
)

// benchCompare alternates stock and plugin on the same request, so both
// see the same machine load, and reports each one's median thread CPU and
// the plugin/stock ratio.
func benchCompare(b *testing.B, req func() *http.Request, body []byte) {
	builds := getBuilds(b)
	r := req()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var stock, plugin []time.Duration
	wafs := [2]coraza.WAF{builds.stock, builds.plugin}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, waf := range wafs {
			c0 := threadCPU()
			evaluate(waf, r, body)
			d := threadCPU() - c0
			if j == 0 {
				stock = append(stock, d)
			} else {
				plugin = append(plugin, d)
			}
		}
	}
	b.StopTimer()
	ms, mp := median(stock), median(plugin)
	b.ReportMetric(float64(ms.Nanoseconds()), "stock-median-cpu-ns")
	b.ReportMetric(float64(mp.Nanoseconds()), "plugin-median-cpu-ns")
	if ms > 0 {
		b.ReportMetric(float64(mp)/float64(ms), "plugin/stock")
	}
}

func BenchmarkCompareBenignGET(b *testing.B) { benchCompare(b, benignGET, nil) }

func BenchmarkCompareBenignPOSTJSON(b *testing.B) {
	benchCompare(b, benignPOSTJSON, benignJSONBody)
}
