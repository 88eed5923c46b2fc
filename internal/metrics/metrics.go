// Package metrics holds Rampart's Prometheus collectors (DESIGN §5), served
// on the admin listener's /metrics.
//
// Labels are low-cardinality by construction: listener, pool and backend
// names come from the config, status codes are bounded, and refusal
// reasons are fixed strings chosen by the code that refuses. Client IPs and
// paths never become labels. State that already lives elsewhere (backend
// health, open connections, dropped log lines) is read at scrape time
// instead of being mirrored on the request path.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// Source is what the scrape-time metrics are read from; *server.Server
// implements it.
type Source interface {
	// Pools describes every pool and backend.
	Pools() []proxy.PoolStatus
	// ActiveConnections returns open client connections per listener.
	ActiveConnections() map[string]int
	// AccessLogDropped returns access-log lines dropped so far.
	AccessLogDropped() int64
	// Reloads returns successful config reloads so far.
	Reloads() int64
	// ReloadFailures returns refused config reloads so far, and whether
	// the last reload was refused (the running config is then older than
	// the file).
	ReloadFailures() (total int64, lastFailed bool)
}

// Metrics is one process's collectors; it outlives config reloads.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	upstream *prometheus.HistogramVec
	blocked  *prometheus.CounterVec

	// series caches resolved request series per listener and pool. The
	// label sets come from the config, so the cache is small; a reload
	// that renames things leaves a few stale entries behind, harmlessly.
	seriesMu sync.Mutex
	series   atomic.Pointer[map[seriesKey]*poolSeries]
}

// New registers Rampart's collectors, the Go runtime's and the process's.
func New(src Source) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_requests_total",
			Help: "Requests answered, by listener, pool (\"none\" when no route matched) and status code.",
		}, []string{"listener", "pool", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rampart_request_duration_seconds",
			Help:    "Time from the request head to the end of the response, by listener and pool.",
			Buckets: prometheus.DefBuckets,
		}, []string{"listener", "pool"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rampart_upstream_duration_seconds",
			Help:    "Time from sending a request to a backend to its response head, by pool and backend.",
			Buckets: prometheus.DefBuckets,
		}, []string{"pool", "backend"}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_blocked_total",
			Help: "Requests and connections refused by a protection stage, by stage and reason.",
		}, []string{"stage", "reason"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.upstream, m.blocked,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&scrapeCollector{src: src})
	return m
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is for tests and for collectors other packages add.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveRequest counts a finished request from its record.
func (m *Metrics) ObserveRequest(rec *pipeline.Record) {
	pool := rec.PoolID
	if pool == "" {
		pool = "none"
	}
	ps := m.seriesFor(rec.Listener, pool)
	ps.count(rec.StatusCode).Inc()
	ps.duration.Observe(rec.RequestTimeMs / 1000)
	if rec.UpstreamTimeMs >= 0 && rec.BackendID != "" {
		ps.upstreamFor(rec.BackendID).Observe(rec.UpstreamTimeMs / 1000)
	}
}

// poolSeries caches the resolved series of one listener and pool:
// resolving label values costs a hash and a lock per call, which the
// request path would pay three times per request.
type poolSeries struct {
	m              *Metrics
	listener, pool string
	duration       prometheus.Observer
	codes          [600]atomic.Pointer[prometheus.Counter]
	mu             sync.Mutex
	upstream       atomic.Pointer[map[string]prometheus.Observer]
}

type seriesKey struct{ listener, pool string }

// seriesFor returns the cached series, creating them on first use (copy on
// write: the request path only reads an immutable map).
func (m *Metrics) seriesFor(listener, pool string) *poolSeries {
	if cur := m.series.Load(); cur != nil {
		if ps := (*cur)[seriesKey{listener, pool}]; ps != nil {
			return ps
		}
	}
	m.seriesMu.Lock()
	defer m.seriesMu.Unlock()
	old := map[seriesKey]*poolSeries{}
	if cur := m.series.Load(); cur != nil {
		old = *cur
	}
	if ps := old[seriesKey{listener, pool}]; ps != nil {
		return ps
	}
	ps := &poolSeries{m: m, listener: listener, pool: pool, duration: m.duration.WithLabelValues(listener, pool)}
	next := make(map[seriesKey]*poolSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[seriesKey{listener, pool}] = ps
	m.series.Store(&next)
	return ps
}

func (ps *poolSeries) count(code int) prometheus.Counter {
	if code < 0 || code >= len(ps.codes) {
		return ps.m.requests.WithLabelValues(ps.listener, ps.pool, "other")
	}
	if c := ps.codes[code].Load(); c != nil {
		return *c
	}
	c := ps.m.requests.WithLabelValues(ps.listener, ps.pool, statusLabels[code])
	ps.codes[code].Store(&c)
	return c
}

func (ps *poolSeries) upstreamFor(backend string) prometheus.Observer {
	if cur := ps.upstream.Load(); cur != nil {
		if o := (*cur)[backend]; o != nil {
			return o
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	old := map[string]prometheus.Observer{}
	if cur := ps.upstream.Load(); cur != nil {
		old = *cur
	}
	if o := old[backend]; o != nil {
		return o
	}
	o := ps.m.upstream.WithLabelValues(ps.pool, backend)
	next := make(map[string]prometheus.Observer, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[backend] = o
	ps.upstream.Store(&next)
	return o
}

// Blocked counts a refusal. reason must come from a fixed set.
func (m *Metrics) Blocked(stage, reason string) {
	m.blocked.WithLabelValues(stage, reason).Inc()
}

var statusLabels = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return
}()

// scrapeCollector reads state that other parts of Rampart own.
type scrapeCollector struct{ src Source }

var (
	backendUpDesc = prometheus.NewDesc("rampart_backend_up",
		"1 when the backend takes new requests (active, healthy, not ejected), else 0.", []string{"pool", "backend"}, nil)
	backendInFlightDesc = prometheus.NewDesc("rampart_backend_in_flight_requests",
		"Requests in flight to the backend.", []string{"pool", "backend"}, nil)
	backendStateDesc = prometheus.NewDesc("rampart_backend_state",
		"1 for the backend's lifecycle state (active, draining, quarantined).", []string{"pool", "backend", "state"}, nil)
	connectionsDesc = prometheus.NewDesc("rampart_connections_active",
		"Open client connections.", []string{"listener"}, nil)
	droppedDesc = prometheus.NewDesc("rampart_access_log_dropped_lines_total",
		"Access log lines dropped because the writer could not keep up.", nil, nil)
	reloadsDesc = prometheus.NewDesc("rampart_config_reloads_total",
		"Successful configuration reloads.", nil, nil)
	reloadFailuresDesc = prometheus.NewDesc("rampart_config_reload_failures_total",
		"Configuration reloads refused (the running config was kept).", nil, nil)
	lastReloadDesc = prometheus.NewDesc("rampart_config_last_reload_successful",
		"1 if the last configuration reload was applied (or there was none), 0 if it was refused.", nil, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{backendUpDesc, backendInFlightDesc, backendStateDesc, connectionsDesc, droppedDesc, reloadsDesc, reloadFailuresDesc, lastReloadDesc} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.src.Pools() {
		for _, b := range p.Backends {
			up := 0.0
			if b.Available {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(backendUpDesc, prometheus.GaugeValue, up, p.Name, b.ID)
			ch <- prometheus.MustNewConstMetric(backendInFlightDesc, prometheus.GaugeValue, float64(b.InFlight), p.Name, b.ID)
			ch <- prometheus.MustNewConstMetric(backendStateDesc, prometheus.GaugeValue, 1, p.Name, b.ID, string(b.State))
		}
	}
	for l, n := range c.src.ActiveConnections() {
		ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(n), l)
	}
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.src.AccessLogDropped()))
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(c.src.Reloads()))
	failures, lastFailed := c.src.ReloadFailures()
	ch <- prometheus.MustNewConstMetric(reloadFailuresDesc, prometheus.CounterValue, float64(failures))
	ok := 1.0
	if lastFailed {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(lastReloadDesc, prometheus.GaugeValue, ok)
}
