package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

type fakeSource struct{}

func (fakeSource) Pools() []proxy.PoolStatus {
	return []proxy.PoolStatus{{Name: "p", Backends: []proxy.BackendStatus{{ID: "a", State: proxy.StateActive, Available: true, InFlight: 2}}}}
}
func (fakeSource) ActiveConnections() map[string]int { return map[string]int{"web": 3} }
func (fakeSource) AccessLogDropped() int64           { return 7 }
func (fakeSource) Reloads() int64                    { return 1 }
func (fakeSource) ReloadFailures() (int64, bool)     { return 2, true }

func TestObserveRequestLabels(t *testing.T) {
	m := New(fakeSource{})
	m.ObserveRequest(&pipeline.Record{Listener: "web", PoolID: "p", StatusCode: 503, RequestTimeMs: 12, UpstreamTimeMs: -1})
	m.ObserveRequest(&pipeline.Record{Listener: "web", StatusCode: 404, RequestTimeMs: 1, UpstreamTimeMs: -1})
	m.ObserveRequest(&pipeline.Record{Listener: "web", PoolID: "p", BackendID: "a", StatusCode: 200, RequestTimeMs: 5, UpstreamTimeMs: 4})
	want := `
# HELP rampart_requests_total Requests answered, by listener, pool ("none" when no route matched) and status code.
# TYPE rampart_requests_total counter
rampart_requests_total{code="200",listener="web",pool="p"} 1
rampart_requests_total{code="404",listener="web",pool="none"} 1
rampart_requests_total{code="503",listener="web",pool="p"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "rampart_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.upstream); n != 1 {
		t.Errorf("%d upstream series, want 1 (only answered requests)", n)
	}
	scrape := `
# HELP rampart_access_log_dropped_lines_total Access log lines dropped because the writer could not keep up.
# TYPE rampart_access_log_dropped_lines_total counter
rampart_access_log_dropped_lines_total 7
# HELP rampart_backend_in_flight_requests Requests in flight to the backend.
# TYPE rampart_backend_in_flight_requests gauge
rampart_backend_in_flight_requests{backend="a",pool="p"} 2
# HELP rampart_connections_active Open client connections.
# TYPE rampart_connections_active gauge
rampart_connections_active{listener="web"} 3
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(scrape), "rampart_access_log_dropped_lines_total", "rampart_backend_in_flight_requests", "rampart_connections_active"); err != nil {
		t.Error(err)
	}
}

// The per-request cost of the metrics (on every proxied request).
func BenchmarkObserveRequest(b *testing.B) {
	m := New(fakeSource{})
	rec := &pipeline.Record{Listener: "web", PoolID: "p", BackendID: "a", StatusCode: 200, RequestTimeMs: 5, UpstreamTimeMs: 4}
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveRequest(rec)
	}
}
