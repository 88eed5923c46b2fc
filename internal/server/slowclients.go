package server

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/server/http1"
)

// slowClients is the behavioural half of slowloris protection. The engine
// cuts a slow connection off by itself (header timeout, minimum data rate,
// write timeout) and names the indicator; one such connection is bad luck
// (a phone in a tunnel), many from one client are an attack that opens
// connection after connection. So every indicator adds a point to the
// client's score, which halves every half-life; while the score is at or
// above the threshold, each further indicator is a slow_client offence for
// the dynamic blocklist (auto_block.slow_clients decides when it blocks).
//
// Memory is bounded: at most slow_client_max_tracked_ips clients are
// scored, the least recently scored forgotten first. IPv6 clients are
// scored by their /64, as the offender tracks them.
type slowClients struct {
	mu  sync.Mutex
	lru *simplelru.LRU[netip.Addr, *slowScore]
	// size mirrors lru.Len(), so a request's record skips the lookup (and
	// the lock) while no client has a score: the common case.
	size atomic.Int64
	cfg  atomic.Pointer[slowSettings]

	indicators [5]atomic.Int64 // by position in http1.SlowIndicators
}

type slowSettings struct {
	threshold float64 // 0: detection off
	halfLife  time.Duration
}

type slowScore struct {
	score float64
	at    time.Time
}

func newSlowClients(cfg *config.Config) *slowClients {
	sc := &slowClients{}
	sc.lru, _ = simplelru.NewLRU[netip.Addr, *slowScore](1, func(netip.Addr, *slowScore) { sc.size.Add(-1) })
	sc.configure(cfg)
	return sc
}

// configure applies slowloris_protection's slow_client_* keys; scores are
// kept across reloads.
func (sc *slowClients) configure(cfg *config.Config) {
	s := &cfg.Security.SlowlorisProtection
	sc.cfg.Store(&slowSettings{threshold: s.SlowClientScoreThreshold, halfLife: config.Seconds(max(s.SlowClientHalfLifeSeconds, 1))})
	sc.mu.Lock()
	sc.lru.Resize(max(s.SlowClientMaxTrackedIPs, 1))
	sc.mu.Unlock()
}

func slowKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// decayed is s's score at now.
func (s *slowScore) decayed(now time.Time, halfLife time.Duration) float64 {
	dt := now.Sub(s.at)
	if dt <= 0 {
		return s.score
	}
	return s.score * math.Exp2(-float64(dt)/float64(halfLife))
}

// add scores one indicator for ip and reports the new score and whether it
// is at or above the threshold (always false with detection off).
func (sc *slowClients) add(ip netip.Addr, now time.Time) (float64, bool) {
	set := sc.cfg.Load()
	if set.threshold <= 0 {
		return 0, false
	}
	k := slowKey(ip)
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s, ok := sc.lru.Get(k)
	if !ok {
		s = &slowScore{}
		sc.lru.Add(k, s)
		sc.size.Add(1)
	}
	s.score = s.decayed(now, set.halfLife) + 1
	s.at = now
	return s.score, s.score >= set.threshold
}

// score is ip's current score, 0 when it has none.
func (sc *slowClients) score(ip netip.Addr, now time.Time) float64 {
	if sc.size.Load() == 0 || !ip.IsValid() {
		return 0
	}
	set := sc.cfg.Load()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s, ok := sc.lru.Peek(slowKey(ip))
	if !ok {
		return 0
	}
	// Two decimals are enough for a log field and keep lines short.
	return math.Round(s.decayed(now, set.halfLife)*100) / 100
}

// overThreshold counts the clients whose score is at or above the
// threshold now (a gauge, computed at scrape time).
func (sc *slowClients) overThreshold(now time.Time) int {
	set := sc.cfg.Load()
	if set.threshold <= 0 {
		return 0
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	n := 0
	for _, k := range sc.lru.Keys() {
		if s, ok := sc.lru.Peek(k); ok && s.decayed(now, set.halfLife) >= set.threshold {
			n++
		}
	}
	return n
}

func (sc *slowClients) count(indicator string) {
	for i, s := range http1.SlowIndicators {
		if s == indicator && i < len(sc.indicators) {
			sc.indicators[i].Add(1)
		}
	}
}

// slowIndicator is the engine's OnSlow hook: c is the connection as the
// hooks see it (with PROXY protocol, the client's address). Peers that are
// trusted proxies are counted but not scored: a proxy's slowness is its
// clients', and blocking it would block them all.
func (e *entry) slowIndicator(c net.Conn, indicator string) {
	sc := e.srv.slow
	sc.count(indicator)
	ap, ok := addrPort(c.RemoteAddr())
	if !ok {
		return
	}
	ip := ap.Addr()
	if lt := e.srv.table.Load().listeners[*e.l.name.Load()]; lt != nil && !e.pp && lt.trusted.contains(ip) {
		return
	}
	if _, over := sc.add(ip, time.Now()); over {
		// Off the connection's goroutine: the block is stored with an
		// fsync, and the indicator may come from inside a handler's write.
		go e.srv.acl.Offense(ip, acl.OffenceSlowClient)
	}
}

// slowClientCollector exports the indicators and the clients over the
// threshold at scrape time.
type slowClientCollector struct{ sc *slowClients }

var (
	slowIndicatorDesc = prometheus.NewDesc("rampart_slow_client_indicators_total",
		"Connections or requests ended by a slow-client indicator (header_timeout, slow_body, body_timeout, slow_read, write_timeout).",
		[]string{"indicator"}, nil)
	slowOverDesc = prometheus.NewDesc("rampart_slow_clients_over_threshold",
		"Clients whose slow-client score is at or above slow_client_score_threshold.", nil, nil)
)

func (c slowClientCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- slowIndicatorDesc
	ch <- slowOverDesc
}

func (c slowClientCollector) Collect(ch chan<- prometheus.Metric) {
	for i, s := range http1.SlowIndicators {
		if i < len(c.sc.indicators) {
			ch <- prometheus.MustNewConstMetric(slowIndicatorDesc, prometheus.CounterValue, float64(c.sc.indicators[i].Load()), s)
		}
	}
	ch <- prometheus.MustNewConstMetric(slowOverDesc, prometheus.GaugeValue, float64(c.sc.overThreshold(time.Now())))
}
