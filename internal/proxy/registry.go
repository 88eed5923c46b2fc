package proxy

import (
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

// Registry owns every pool by name. It lives for the whole process: a
// reload re-applies the config to the same Pool objects, so health, in-flight
// counts and operator overrides survive it.
type Registry struct {
	log *slog.Logger

	mu    sync.Mutex
	pools map[string]*Pool
	cfgs  map[string]config.Pool
	ovr   *overrides
	store stateFile
	// retrying: a failed save is being retried (saveLocked); closed stops it.
	retrying, closed bool

	// events receives automatic actions (outlier ejections) for the audit
	// trail; nil until SetEvents.
	events atomic.Pointer[func(audit.Event)]
}

// SetEvents sets the sink for automatic actions. It is called from a
// goroutine of its own, never on the request path.
func (r *Registry) SetEvents(sink func(audit.Event)) { r.events.Store(&sink) }

// StateFileName is the file in the data directory that holds backend overrides.
const StateFileName = "backends.json"

// NewRegistry loads persisted overrides from dataDir.
func NewRegistry(dataDir string, log *slog.Logger) (*Registry, error) {
	st := stateFile{path: filepath.Join(dataDir, StateFileName)}
	o, err := st.load()
	if err != nil {
		return nil, err
	}
	return &Registry{log: log, pools: map[string]*Pool{}, cfgs: map[string]config.Pool{}, ovr: o, store: st}, nil
}

// Apply makes the pools match a validated config, with the persisted
// overrides applied on top.
func (r *Registry) Apply(pools []config.Pool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := map[string]bool{}
	for _, c := range pools {
		keep[c.Name] = true
		p := r.pools[c.Name]
		if p == nil {
			p = newPool(c.Name)
			p.events = &r.events
			r.pools[c.Name] = p
		}
		old, had := r.cfgs[c.Name]
		r.cfgs[c.Name] = c
		p.configure(c)
		r.rebuildLocked(p)
		if !had || !reflect.DeepEqual(old.HealthCheck, c.HealthCheck) {
			p.mu.Lock()
			if p.health != nil {
				p.health.stop()
				p.health = nil
			}
			if c.HealthCheck != nil {
				p.health = startHealthChecker(p, *c.HealthCheck)
			}
			p.mu.Unlock()
		}
	}
	for name, p := range r.pools {
		if !keep[name] {
			p.stop()
			delete(r.pools, name)
			delete(r.cfgs, name)
		}
	}
}

// rebuildLocked recomputes a pool's members from its config and overrides.
func (r *Registry) rebuildLocked(p *Pool) {
	c := r.cfgs[p.Name]
	po := r.ovr.pool(p.Name)
	want := make([]config.Backend, 0, len(c.Backends)+len(po.Registered))
	for _, b := range c.Backends {
		if !slices.Contains(po.Deregistered, b.ID) && !slices.ContainsFunc(po.Registered, func(x config.Backend) bool { return x.ID == b.ID }) {
			want = append(want, b)
		}
	}
	want = append(want, po.Registered...)
	// Quarantined addresses, with the id they were quarantined as.
	quarantined := map[string]string{}
	for id, a := range po.QuarantinedAt {
		quarantined[a] = id
	}
	for _, w := range want {
		if po.States[w.ID] == StateQuarantined {
			quarantined[addressKey(w.Address)] = w.ID
		}
	}
	cur := p.members.Load().byID
	next := make([]*Backend, 0, len(want))
	inherited := false
	for _, w := range want {
		if qid, ok := quarantined[addressKey(w.Address)]; ok && po.States[w.ID] != StateQuarantined {
			// The same host under another id (renamed in the file, or
			// registered anew): still isolated, until restored.
			po.States[w.ID] = StateQuarantined
			po.quarantineAddress(w.ID, w.Address)
			r.log.Warn("backend kept out of rotation: its address is quarantined", "pool", p.Name, "backend", w.ID,
				"address", w.Address, "quarantined_as", qid)
			inherited = true
		}
		b := cur[w.ID]
		if b == nil || b.Address != w.Address || b.Weight != max(w.Weight, 1) {
			nb := NewBackend(w.ID, w.Address, w.Weight)
			if b != nil {
				nb.healthy.Store(b.Healthy())
			}
			b = nb
		}
		st := StateActive
		if s, ok := po.States[w.ID]; ok {
			st = s
		}
		if b.State() != st {
			b.setState(st)
			if st == StateQuarantined {
				b.cutInFlight()
			}
		}
		next = append(next, b)
	}
	if inherited {
		r.saveLocked() // a failure is retried (saveLocked)
	}
	p.setMembers(next)
}

// Pool returns the pool named name, or nil.
func (r *Registry) Pool(name string) *Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pools[name]
}

// Pools returns every pool, sorted by name.
func (r *Registry) Pools() []*Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Pool, 0, len(r.pools))
	for _, p := range r.pools {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CutInFlight cuts every request in flight to every backend, as a
// quarantine cuts one backend's: at the end of a shutdown's grace period,
// so that the handlers still waiting on backends end, and are logged,
// before the process exits.
func (r *Registry) CutInFlight() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pools {
		for _, b := range p.Backends() {
			b.cutInFlight()
		}
	}
}

// saveLocked persists the overrides. When the disk refuses (full,
// read-only), the change is in effect in memory and the caller reports the
// error; the save is then retried every few seconds until it succeeds, so
// that a restart once the disk is back does not undo a quarantine.
func (r *Registry) saveLocked() error {
	err := r.store.save(r.ovr)
	if err != nil && !r.retrying && !r.closed {
		r.retrying = true
		go r.retrySave()
	}
	return err
}

// saveRetryInterval is how often a failed save of the overrides is retried.
const saveRetryInterval = 2 * time.Second

func (r *Registry) retrySave() {
	for {
		time.Sleep(saveRetryInterval)
		r.mu.Lock()
		if r.closed {
			r.retrying = false
			r.mu.Unlock()
			return
		}
		err := r.store.save(r.ovr)
		if err == nil {
			r.retrying = false
			r.mu.Unlock()
			r.log.Warn("backend states persisted after an earlier failure", "file", r.store.path)
			return
		}
		r.mu.Unlock()
		r.log.Error("backend states still not persisted; retrying", "file", r.store.path, "error", err, "in", saveRetryInterval)
	}
}

// Close stops health checks and closes idle backend connections.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, p := range r.pools {
		p.stop()
	}
}
