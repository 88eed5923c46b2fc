package proxy

import (
	"context"
	"net"
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
	cancel context.CancelFunc
	done   chan struct{}
	// kick asks for a probe of one backend now (see admit).
	kick chan *Backend

	// client probes over the pool's backend TLS as it was when the client
	// was made (clientTLS); a reload that changes it gets a new client.
	client    *http.Client
	clientTLS *backendTLS

	mu     sync.Mutex
	counts map[*Backend]*probeCount
}

type probeCount struct{ ok, fail int }

func startHealthChecker(p *Pool, cfg config.HealthCheck) *healthChecker {
	ctx, cancel := context.WithCancel(context.Background())
	h := &healthChecker{
		pool: p, cfg: cfg, cancel: cancel, done: make(chan struct{}),
		kick:   make(chan *Backend, 16),
		counts: map[*Backend]*probeCount{},
	}
	go h.run(ctx)
	return h
}

// clientFor returns the probe client for the pool's backend TLS bt: probes
// use the same TLS settings as requests (dialBackend), so a backend whose
// certificate requests would refuse is not reported healthy.
func (h *healthChecker) clientFor(bt *backendTLS) *http.Client {
	if h.client != nil && h.clientTLS == bt {
		return h.client
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: maxResponseHeader, // a probe's answer is small; Go's default is 10 MB
	}
	if bt != nil {
		timeout := h.cfg.Timeout.D()
		tr.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialBackend(ctx, bt, addr, timeout)
		}
	}
	h.client = &http.Client{
		Timeout:       h.cfg.Timeout.D(),
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	h.clientTLS = bt
	return h.client
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
		case b := <-h.kick:
			if b.State() == StateQuarantined {
				continue
			}
			client, scheme := h.clientAndScheme()
			go func() { h.record(b, h.probe(ctx, client, scheme, b)) }() // not holding up the ticker
		}
	}
}

// admit takes b out of rotation until it has passed healthy_threshold
// probes in a row, the first one now: a backend restored from quarantine
// or registered at run time has no health anyone checked (a quarantined
// one is not probed), and an operator bringing back a host after an
// incident should not send it traffic before its health check passes.
func (h *healthChecker) admit(b *Backend) {
	h.mu.Lock()
	b.healthy.Store(false)
	h.counts[b] = &probeCount{}
	h.mu.Unlock()
	select {
	case h.kick <- b:
	default: // the next round probes it
	}
}

// clientAndScheme returns the probe client for the pool's backend TLS now,
// and the URL scheme it speaks. Only the run goroutine calls it.
func (h *healthChecker) clientAndScheme() (*http.Client, string) {
	client := h.clientFor(h.pool.tls.Load())
	if h.clientTLS != nil {
		return client, "https://"
	}
	return client, "http://"
}

func (h *healthChecker) probeAll(ctx context.Context) {
	backends := h.pool.Backends()
	h.forgetRemoved(backends)
	client, scheme := h.clientAndScheme()
	var wg sync.WaitGroup
	for _, b := range backends {
		if b.State() == StateQuarantined {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.record(b, h.probe(ctx, client, scheme, b))
		}()
	}
	wg.Wait()
}

// probe passes on any 2xx or 3xx answer within the timeout.
func (h *healthChecker) probe(ctx context.Context, client *http.Client, scheme string, b *Backend) bool {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+b.Address+h.cfg.Path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "rampart-health-check")
	resp, err := client.Do(req)
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
