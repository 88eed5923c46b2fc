package accesslog

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// benchRecord is a typical proxied request: a query with one sensitive
// parameter, a Referer, a browser User-Agent.
func benchRecord() *pipeline.Record {
	r := pipeline.NewRecord()
	r.Timestamp = time.Now()
	r.RequestID = "3f2a9c1b7e5d4a60-1a2b3c"
	r.ClientIP, r.ClientPort, r.ServerIP, r.ServerPort = "198.51.100.23", 53122, "10.0.0.5", 8443
	r.XForwardedFor, r.Listener, r.LBInstance = "198.51.100.23", "public", "lb-1"
	r.Method, r.Host, r.Path = "GET", "shop.example.com", "/api/v1/orders/123456/items"
	r.Query = "page=2&per_page=50&access_token=eyJhbGciOiJIUzI1NiJ9.abc.def&sort=desc"
	r.Protocol = "HTTP/1.1"
	r.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	r.Referer = "https://shop.example.com/cart?step=3&coupon=SPRING"
	r.StatusCode, r.RequestSizeBytes, r.ResponseSizeBytes, r.RequestTimeMs = 200, 312, 18231, 3.417
	r.Route, r.PoolID, r.BackendServer, r.BackendID, r.Attempts = "api", "pool-api", "10.0.42.100:8080", "api-42", 1
	r.UpstreamTimeMs, r.TargetStatusCode, r.TargetProcessingTimeMs = 3.1, 200, 3.1
	return r
}

// BenchmarkSanitizeEncode is the per-request cost on the request
// goroutine: every rule and the JSON encoding of one line.
func BenchmarkSanitizeEncode(b *testing.B) {
	s := mustSanitizer(b, SanitizeOptions{})
	r := benchRecord()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendLine(buf[:0], r)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkEncodingJSON is the reflection encoder this replaced, without
// any sanitising, for comparison.
func BenchmarkEncodingJSON(b *testing.B) {
	r := benchRecord()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogToFile logs from parallel goroutines into a file in the
// test's temp directory (same disk as the work tree here), with rotation
// at 100 MB and compression. It reports lines/s that reached the file and
// the share dropped; Log's ns/op is the request path's cost.
func BenchmarkLogToFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "access.log")
	l, err := Open(path, Options{MaxSizeBytes: 100 << 20, MaxBackups: 3, Compress: true, Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		r := benchRecord()
		for pb.Next() {
			l.Log(r)
		}
	})
	l.Close()
	el := time.Since(start)
	b.ReportMetric(float64(l.Written())/el.Seconds(), "lines/s")
	b.ReportMetric(float64(l.Dropped())/float64(b.N)*100, "%dropped")
}
