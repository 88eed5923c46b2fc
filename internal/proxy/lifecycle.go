package proxy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// Backend lifecycle for incident response. The model is the one of
// `aws elb deregister-instances-from-load-balancer`: an operator takes a
// backend out (gently with drain/deregister, at once with quarantine),
// investigates, and puts it back with restore/register. Every change is
// persisted before it is acknowledged.

// Lifecycle errors, mapped to HTTP statuses by the admin API.
var (
	ErrUnknownPool    = errors.New("unknown pool")
	ErrUnknownBackend = errors.New("unknown backend")
	ErrExists         = errors.New("backend already registered")
	ErrInvalid        = errors.New("invalid backend")
)

// BackendStatus is a backend as the admin API shows it.
type BackendStatus struct {
	Pool         string     `json:"pool"`
	ID           string     `json:"id"`
	Address      string     `json:"address"`
	Weight       int        `json:"weight"`
	State        State      `json:"state"`
	Healthy      bool       `json:"healthy"`
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	InFlight     int64      `json:"in_flight"`
	Available    bool       `json:"available"`
	Source       string     `json:"source"` // config | api
	// CutAtDrainTimeout is how many in-flight requests the last drain's
	// drain_timeout cut (set in the answer to a drain waited for).
	CutAtDrainTimeout int64 `json:"cut_at_drain_timeout,omitempty"`
	// Warning tells the operator of a consequence they may not expect
	// (the pool left with no backend to send requests to).
	Warning string `json:"warning,omitempty"`
}

// PoolStatus is a pool as the admin API shows it.
type PoolStatus struct {
	Name      string          `json:"name"`
	Algorithm string          `json:"algorithm"`
	Available int             `json:"available"`
	Backends  []BackendStatus `json:"backends"`
}

// Status describes every pool.
func (r *Registry) Status() []PoolStatus {
	out := []PoolStatus{}
	for _, p := range r.Pools() {
		out = append(out, r.PoolStatus(p))
	}
	return out
}

// PoolStatus describes one pool.
func (r *Registry) PoolStatus(p *Pool) PoolStatus {
	r.mu.Lock()
	po := r.ovr.pool(p.Name)
	registered := map[string]bool{}
	for _, b := range po.Registered {
		registered[b.ID] = true
	}
	r.mu.Unlock()
	ps := PoolStatus{Name: p.Name, Algorithm: p.Algorithm(), Backends: []BackendStatus{}}
	for _, b := range p.Backends() {
		ps.Backends = append(ps.Backends, backendStatus(p, b, registered[b.ID]))
	}
	ps.Available = p.Available()
	return ps
}

func backendStatus(p *Pool, b *Backend, fromAPI bool) BackendStatus {
	s := BackendStatus{Pool: p.Name, ID: b.ID, Address: b.Address, Weight: b.Weight, State: b.State(),
		Healthy: b.Healthy(), InFlight: b.InFlight(), Available: b.Available(), Source: "config"}
	if t := b.EjectedUntil(); !t.IsZero() {
		s.EjectedUntil = &t
	}
	if fromAPI {
		s.Source = "api"
	}
	return s
}

func (r *Registry) find(pool, id string) (*Pool, *Backend, error) {
	p := r.pools[pool]
	if p == nil {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownPool, pool)
	}
	b := p.Backend(id)
	if b == nil {
		return p, nil, fmt.Errorf("%w %q in pool %q", ErrUnknownBackend, id, pool)
	}
	return p, b, nil
}

// Quarantine takes a backend out of rotation at once and cuts its in-flight
// requests. It stays quarantined across reloads and restarts until Restore.
func (r *Registry) Quarantine(pool, id string) (BackendStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, b, err := r.find(pool, id)
	if err != nil {
		return BackendStatus{}, err
	}
	// In memory first: isolation must not wait for the disk.
	b.setState(StateQuarantined)
	b.cutInFlight()
	po := r.ovr.pool(pool)
	po.States[id] = StateQuarantined
	po.quarantineAddress(id, b.Address)
	err = r.saveLocked()
	r.log.Warn("backend quarantined", "pool", pool, "backend", id, "address", b.Address)
	st := backendStatus(p, b, false)
	if p.Available() == 0 {
		st.Warning = "pool " + strconv.Quote(pool) + " has no available backend now: its requests get 503 until one is restored or registered"
	}
	return st, err
}

// Drain stops sending new requests to a backend; in-flight requests may
// finish until the pool's drain_timeout, after which they are cut. The
// returned channel is closed when the drain is complete.
func (r *Registry) Drain(pool, id string) (BackendStatus, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drainLocked(pool, id)
}

func (r *Registry) drainLocked(pool, id string) (BackendStatus, <-chan struct{}, error) {
	p, b, err := r.find(pool, id)
	if err != nil {
		return BackendStatus{}, nil, err
	}
	if b.State() == StateQuarantined {
		// Draining would loosen a quarantine; keep the stricter state.
		done := make(chan struct{})
		close(done)
		return backendStatus(p, b, false), done, nil
	}
	b.setState(StateDraining)
	b.drainCut.Store(0)
	r.ovr.pool(pool).States[id] = StateDraining
	err = r.saveLocked()
	r.log.Info("backend draining", "pool", pool, "backend", id, "in_flight", b.InFlight())
	return backendStatus(p, b, false), r.watchDrain(b, r.cfgs[pool].DrainTimeout.D()), err
}

// watchDrain closes the returned channel once b has no request in flight,
// cutting what is left when timeout expires.
func (r *Registry) watchDrain(b *Backend, timeout time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(timeout)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for b.InFlight() > 0 && b.State() == StateDraining {
			if time.Now().After(deadline) {
				n := b.InFlight()
				r.log.Warn("drain timeout: cutting in-flight requests", "backend", b.ID, "in_flight", n)
				b.drainCut.Store(n)
				b.cutInFlight()
				// The cut requests end and leave the count soon: wait a
				// little, so that the drain's answer says 0 in flight.
				for range 50 {
					if b.InFlight() == 0 {
						break
					}
					<-t.C
				}
				return
			}
			<-t.C
		}
	}()
	return done
}

// Deregister drains a backend and then removes it from the pool. The
// removal is persisted at once, so a restart during the drain does not bring
// it back. The returned channel is closed once it has left the pool.
func (r *Registry) Deregister(pool, id string) (BackendStatus, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, drained, err := r.drainLocked(pool, id)
	if st.ID == "" {
		return st, nil, err
	}
	po := r.ovr.pool(pool)
	po.Registered = slices.DeleteFunc(po.Registered, func(x config.Backend) bool { return x.ID == id })
	inConfig := slices.ContainsFunc(r.cfgs[pool].Backends, func(x config.Backend) bool { return x.ID == id })
	if inConfig && !slices.Contains(po.Deregistered, id) {
		po.Deregistered = append(po.Deregistered, id)
	}
	// A quarantine outlives deregistration: re-registering the same id
	// later must not silently put a suspect machine back.
	if po.States[id] == StateDraining {
		delete(po.States, id)
	}
	if serr := r.saveLocked(); serr != nil && err == nil {
		err = serr
	}
	removed := make(chan struct{})
	go func() {
		<-drained
		r.mu.Lock()
		if p := r.pools[pool]; p != nil {
			r.rebuildLocked(p)
		}
		r.mu.Unlock()
		r.log.Info("backend deregistered", "pool", pool, "backend", id)
		close(removed)
	}()
	return st, removed, err
}

// Register adds a backend to a pool at run time (or re-adds a deregistered
// one). A backend id that is quarantined stays quarantined.
func (r *Registry) Register(pool string, nb config.Backend) (BackendStatus, error) {
	if nb.Weight == 0 {
		nb.Weight = 1
	}
	if err := config.CheckBackend(nb); err != nil {
		return BackendStatus{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pools[pool]
	if p == nil {
		return BackendStatus{}, fmt.Errorf("%w %q", ErrUnknownPool, pool)
	}
	if b := p.Backend(nb.ID); b != nil {
		return backendStatus(p, b, false), fmt.Errorf("%w: %q in pool %q", ErrExists, nb.ID, pool)
	}
	po := r.ovr.pool(pool)
	po.Deregistered = slices.DeleteFunc(po.Deregistered, func(x string) bool { return x == nb.ID })
	po.Registered = append(po.Registered, nb)
	err := r.saveLocked()
	r.rebuildLocked(p)
	b := p.Backend(nb.ID)
	p.admitChecked(b)
	r.log.Info("backend registered", "pool", pool, "backend", nb.ID, "address", nb.Address, "state", b.State())
	return backendStatus(p, b, true), err
}

// Restore returns a drained or quarantined backend to rotation and clears
// any outlier ejection. Health checks still apply: a backend back from
// quarantine, which was not probed meanwhile, waits for them to pass.
func (r *Registry) Restore(pool, id string) (BackendStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, b, err := r.find(pool, id)
	if err != nil {
		return BackendStatus{}, err
	}
	wasActive := b.State() == StateActive && b.ejectEnd.Load() <= time.Now().UnixNano()
	po := r.ovr.pool(pool)
	// A quarantine follows the host (see rebuildLocked): restoring it
	// restores every id the pool knows it by.
	same := []*Backend{b}
	if b.State() == StateQuarantined {
		for _, m := range p.Backends() {
			if m != b && m.State() == StateQuarantined && addressKey(m.Address) == addressKey(b.Address) {
				same = append(same, m)
			}
		}
	}
	saved := maps.Clone(po.States)
	savedAt := maps.Clone(po.QuarantinedAt)
	for _, m := range same {
		delete(po.States, m.ID)
	}
	po.releaseAddress(b.Address)
	if err := r.saveLocked(); err != nil {
		// Not restored: still isolated, on disk and in memory.
		po.States, po.QuarantinedAt = saved, savedAt
		return backendStatus(p, b, false), err
	}
	for _, m := range same {
		m.ejectEnd.Store(0)
		if m.State() == StateQuarantined {
			p.admitChecked(m) // out until its health check passes again
		}
		m.setState(StateActive)
		r.log.Info("backend restored", "pool", pool, "backend", m.ID, "address", m.Address)
	}
	st := backendStatus(p, b, false)
	if wasActive {
		st.Warning = "backend " + strconv.Quote(id) + " was neither quarantined, draining nor ejected: nothing changed"
	}
	return st, nil
}
