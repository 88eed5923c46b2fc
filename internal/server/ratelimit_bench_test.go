package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/redistest"
)

// BenchmarkRateLimitStage is pipeline stage 3 alone, per_ip and an
// endpoint limit on (limits high enough never to refuse), one client: the
// local limiters, with the IETF and success headers, and with both tiers
// in redis_sync and redis_exact against a loopback redis-server.
func BenchmarkRateLimitStage(b *testing.B) {
	tb := newTestBackend(b, "a")
	const tiers = "    per_ip: {requests_per_second: 1000000000, burst: 1000000000}\n" +
		"    endpoints: [{path: /api/login, limit: 1000000000, window: 1h}]\n"
	run := func(b *testing.B, limits string) {
		e := startEnv(b, rlConfig(tb, limits))
		rl := e.srv.table.Load().limits
		h := &entry{srv: e.srv}
		req := httptest.NewRequest(http.MethodPost, "http://bench.test/api/login", nil)
		client := netip.MustParseAddr("198.51.100.1")
		w := httptest.NewRecorder()
		b.ReportAllocs()
		for b.Loop() {
			var rec pipeline.Record
			if h.rateLimit(rl, w, req, &rec, client, time.Now()) {
				b.Fatalf("refused: %d", w.Code)
			}
		}
	}
	b.Run("local", func(b *testing.B) { run(b, tiers) })
	b.Run("local+headers", func(b *testing.B) { run(b, tiers+"    ietf_headers: true\n    headers_on_success: true\n") })
	rs := redistest.Start(b, false)
	b.Run("redis_sync", func(b *testing.B) { run(b, tiers+distributedYAML(rs, "redis_sync", "")) })
	b.Run("redis_exact", func(b *testing.B) { run(b, tiers+distributedYAML(rs, "redis_exact", "")) })
}
