package proxy

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// healthChecker probes every backend of a pool on an interval. A backend
// turns unhealthy after unhealthy_threshold failed probes in a row and
// healthy again after healthy_threshold passing ones, so one lost packet
// neither ejects nor restores it. Quarantined backends are not probed: an
// operator isolated them, and Rampart should not keep talking to them.
type healthChecker struct {
	pool   *Pool
	cfg    config.HealthCheck
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	counts map[*Backend]*probeCount
}

type probeCount struct{ ok, fail int }

func startHealthChecker(p *Pool, cfg config.HealthCheck) *healthChecker {
	ctx, cancel := context.WithCancel(context.Background())
	h := &healthChecker{
		pool: p, cfg: cfg, cancel: cancel, done: make(chan struct{}),
		counts: map[*Backend]*probeCount{},
		client: &http.Client{
			Timeout: cfg.Timeout.D(),
			Transport: &http.Transport{
				Proxy:             nil,
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	go h.run(ctx)
	return h
}

func (h *healthChecker) stop() {
	h.cancel()
	<-h.done
}

func (h *healthChecker) run(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.cfg.Interval.D())
	defer t.Stop()
	h.probeAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.probeAll(ctx)
		}
	}
}

func (h *healthChecker) probeAll(ctx context.Context) {
	backends := h.pool.Backends()
	h.forgetRemoved(backends)
	var wg sync.WaitGroup
	for _, b := range backends {
		if b.State() == StateQuarantined {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.record(b, h.probe(ctx, b))
		}()
	}
	wg.Wait()
}

// probe passes on any 2xx or 3xx answer within the timeout.
func (h *healthChecker) probe(ctx context.Context, b *Backend) bool {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.Address+h.cfg.Path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "rampart-health-check")
	resp, err := h.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// forgetRemoved drops the counters of backends that left the pool.
func (h *healthChecker) forgetRemoved(current []*Backend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for b := range h.counts {
		if !slices.Contains(current, b) {
			delete(h.counts, b)
		}
	}
}

func (h *healthChecker) record(b *Backend, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.counts[b]
	if c == nil {
		c = &probeCount{}
		h.counts[b] = c
	}
	if ok {
		c.ok, c.fail = c.ok+1, 0
		if !b.Healthy() && c.ok >= h.cfg.HealthyThreshold {
			b.healthy.Store(true)
		}
		return
	}
	c.ok, c.fail = 0, c.fail+1
	if b.Healthy() && c.fail >= h.cfg.UnhealthyThreshold {
		b.healthy.Store(false)
	}
}
