package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

// Pool is a named set of backends behind one balancing algorithm. A Pool
// outlives config reloads: its backends keep their health, ejection and
// in-flight state when the file changes, and its operator overrides (see
// lifecycle.go) are re-applied on top of whatever the file says.
type Pool struct {
	Name string

	// members is the current backend set and the selector built for it,
	// swapped as one so a request never sees a selector for another set.
	members atomic.Pointer[members]

	settings atomic.Pointer[poolSettings]
	// transport holds the keep-alive connections to the backends. It is
	// in use by requests at all times, so a reload that changes its
	// settings installs a new one rather than writing to its fields.
	transport atomic.Pointer[http.Transport]
	// tls is the compiled backend_tls (backendtls.go), nil for plaintext.
	tls atomic.Pointer[backendTLS]

	// events is the registry's sink for automatic actions (shared by
	// every pool, set by the server).
	events *atomic.Pointer[func(audit.Event)]

	mu     sync.Mutex // guards health
	health *healthChecker
}

// admitChecked holds b out of rotation until the pool's health check has
// passed for it (healthChecker.admit); without a health check, b is in
// at once.
func (p *Pool) admitChecked(b *Backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.health != nil {
		p.health.admit(b)
	}
}

type members struct {
	backends []*Backend
	byID     map[string]*Backend
	selector Selector
}

// poolSettings is the part of the pool config read on the request path.
type poolSettings struct {
	cfg       config.Pool
	algorithm string
	hashKey   config.HashKey
}

func newPool(name string) *Pool {
	p := &Pool{Name: name}
	p.members.Store(&members{byID: map[string]*Backend{}, selector: emptySelector{}})
	p.transport.Store(newTransport(config.Pool{}, nil))
	return p
}

// newTransport returns the http.Transport for requests the direct client
// does not take. With bt it dials TLS itself (the same dial as the direct
// client's), and requests to it use the https scheme.
func newTransport(c config.Pool, bt *backendTLS) *http.Transport {
	t := &http.Transport{
		Proxy:                 nil, // never follow HTTP_PROXY from the environment
		DialContext:           (&net.Dialer{Timeout: c.ConnectTimeout.D(), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   c.MaxIdleConnsPerBackend,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: c.ResponseHeaderTimeout.D(),
		// The direct path's limit; Go's default is 10 MB a head.
		MaxResponseHeaderBytes: maxResponseHeader,
		ForceAttemptHTTP2:      false,
	}
	if bt != nil {
		timeout := c.ConnectTimeout.D()
		t.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialBackend(ctx, bt, addr, timeout)
		}
	}
	return t
}

type emptySelector struct{}

func (emptySelector) Select(string, []*Backend) *Backend { return nil }

// configure applies pool settings from a (validated) config.
func (p *Pool) configure(c config.Pool) {
	hk, _ := config.ParseHashKey(c.HashKey)
	old := p.settings.Swap(&poolSettings{cfg: c, algorithm: c.Algorithm, hashKey: hk})
	// New backend TLS settings or files (a new CRL, CA or client
	// certificate) must apply to the next request: connections made
	// under the old ones are closed, and never reused (connPool.get).
	bt := p.tls.Load()
	tlsChanged := !bt.matches(c.BackendTLS.Material())
	if tlsChanged {
		bt = newBackendTLS(c.BackendTLS)
		p.tls.Store(bt)
	}
	// Unchanged settings keep the transport and its idle connections.
	if old == nil || tlsChanged || old.cfg.ConnectTimeout != c.ConnectTimeout || old.cfg.ResponseHeaderTimeout != c.ResponseHeaderTimeout ||
		old.cfg.MaxIdleConnsPerBackend != c.MaxIdleConnsPerBackend {
		prev := p.transport.Swap(newTransport(c, bt))
		prev.CloseIdleConnections()
	}
	if tlsChanged {
		for _, b := range p.Backends() {
			b.conns.closeIdle()
		}
	}
}

// setMembers installs a new backend set. Backends keep their identity (and
// so their counters) when they appear in both the old and the new set.
func (p *Pool) setMembers(backends []*Backend) {
	s := p.settings.Load()
	sel, err := NewSelector(s.algorithm, backends)
	if err != nil { // validated earlier; fall back rather than serve nothing
		sel, _ = NewSelector("round_robin", backends)
	}
	byID := make(map[string]*Backend, len(backends))
	for _, b := range backends {
		byID[b.ID] = b
	}
	old := p.members.Swap(&members{backends: backends, byID: byID, selector: sel})
	for _, b := range old.backends {
		if byID[b.ID] != b {
			b.conns.retire() // left the pool (or was replaced)
		}
	}
}

// Backends returns the current members.
func (p *Pool) Backends() []*Backend { return p.members.Load().backends }

// Backend returns the member with the given id, or nil.
func (p *Pool) Backend(id string) *Backend { return p.members.Load().byID[id] }

// Algorithm returns the balancing algorithm in use.
func (p *Pool) Algorithm() string { return p.settings.Load().algorithm }

// Available counts members that may take new requests.
func (p *Pool) Available() int {
	n := 0
	for _, b := range p.Backends() {
		if b.Available() {
			n++
		}
	}
	return n
}

// stop ends background work (health checks) when the pool leaves the config.
func (p *Pool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.health != nil {
		p.health.stop()
		p.health = nil
	}
	p.transport.Load().CloseIdleConnections()
	for _, b := range p.Backends() {
		b.conns.retire()
	}
}
