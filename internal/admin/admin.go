// Package admin is Rampart's management API (DESIGN §4): JSON over the
// admin listener, errors as application/problem+json (RFC 9457).
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/metrics"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// Instance is what the API operates on; *server.Server implements it.
type Instance interface {
	Registry() *proxy.Registry
	// Status returns a JSON-encodable summary of the instance.
	StatusJSON() any
	// ReloadConfig re-reads the config file the instance was started with.
	ReloadConfig() error
	// Audit returns the trail every mutating call is recorded in.
	Audit() *audit.Log
	// Metrics returns the Prometheus collectors served on /metrics.
	Metrics() *metrics.Metrics
	// ACL returns the IP lists (nil when the instance has none).
	ACL() *acl.ACL
}

// API serves /api/v1.
type API struct {
	inst Instance
	log  *slog.Logger
	mux  *http.ServeMux

	// mu serialises mutating calls, so that the state read as "before",
	// the action and its audit entry are not interleaved with another
	// call's, and entries appear in the order the actions took effect.
	mu sync.Mutex
}

// New returns the admin handler.
func New(inst Instance, log *slog.Logger) *API {
	a := &API{inst: inst, log: log, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /api/v1/status", a.status)
	// Prometheus scrapes /metrics by convention; DESIGN §4 lists it under /api/v1.
	if m := inst.Metrics(); m != nil {
		a.mux.Handle("GET /metrics", m.Handler())
		a.mux.Handle("GET /api/v1/metrics", m.Handler())
	}
	a.mux.HandleFunc("POST /api/v1/config/reload", a.reload)
	a.mux.HandleFunc("GET /api/v1/pools", a.pools)
	a.mux.HandleFunc("GET /api/v1/pools/{pool}", a.pool)
	a.mux.HandleFunc("GET /api/v1/pools/{pool}/backends", a.pool)
	a.mux.HandleFunc("POST /api/v1/pools/{pool}/backends", a.register)
	a.mux.HandleFunc("DELETE /api/v1/pools/{pool}/backends/{id}", a.deregister)
	a.mux.HandleFunc("POST /api/v1/pools/{pool}/backends/{id}/{action}", a.backendAction)
	a.mux.HandleFunc("GET /api/v1/audit", a.auditTrail)
	a.registerACLRoutes()
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "no such endpoint", r.Method+" "+r.URL.Path+" is not part of the admin API")
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	a.mux.ServeHTTP(w, r)
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.inst.StatusJSON())
}

func (a *API) reload(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.inst.ReloadConfig()
	ev := ReloadEvent(apiActor(r), requestDetails(r), err)
	outcome := "the config was reloaded"
	if err != nil {
		outcome = "the reload was refused and the running config is unchanged"
	}
	if !a.record(w, r, ev, outcome) {
		return
	}
	if err != nil {
		ext := map[string]any{}
		if lines, ok := ev.Details["problems"]; ok {
			ext["problems"] = lines
		}
		problemExt(w, http.StatusUnprocessableEntity, "config refused; the running config is unchanged", err.Error(), ext)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true})
}

func (a *API) pools(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"pools": a.inst.Registry().Status()})
}

func (a *API) pool(w http.ResponseWriter, r *http.Request) {
	reg := a.inst.Registry()
	p := reg.Pool(r.PathValue("pool"))
	if p == nil {
		problem(w, http.StatusNotFound, "unknown pool", "pool "+strconv.Quote(r.PathValue("pool"))+" does not exist")
		return
	}
	writeJSON(w, http.StatusOK, reg.PoolStatus(p))
}

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	pool := r.PathValue("pool")
	var b config.Backend
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	// The body is read before taking the lock: a slow client must not
	// hold up other mutating calls.
	derr := dec.Decode(&b)
	a.mu.Lock()
	if derr != nil {
		err := fmt.Errorf(`%w: expected {"id": "...", "address": "host:port", "weight": 1}: %v`, errInvalidBody, derr)
		ok := a.record(w, r, backendEvent(r, audit.ActionBackendRegister, pool, "", nil, proxy.BackendStatus{}, err), "the registration was refused")
		a.mu.Unlock()
		if ok {
			problem(w, http.StatusBadRequest, "invalid body", strings.TrimPrefix(err.Error(), "invalid body: "))
		}
		return
	}
	before := a.backendSnapshot(pool, b.ID)
	st, err := a.inst.Registry().Register(pool, b)
	ev := backendEvent(r, audit.ActionBackendRegister, pool, b.ID, before, st, err)
	ok := a.record(w, r, ev, outcome(ev, err))
	a.mu.Unlock()
	if !ok {
		return
	}
	if err != nil {
		lifecycleError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (a *API) deregister(w http.ResponseWriter, r *http.Request) {
	pool, id := r.PathValue("pool"), r.PathValue("id")
	a.mu.Lock()
	before := a.backendSnapshot(pool, id)
	st, done, err := a.inst.Registry().Deregister(pool, id)
	ev := backendEvent(r, audit.ActionBackendDeregister, pool, id, before, st, err)
	ok := a.record(w, r, ev, outcome(ev, err))
	a.mu.Unlock()
	if !ok {
		return
	}
	if err != nil {
		lifecycleError(w, err)
		return
	}
	a.respondAfter(w, r, st, done, "deregistered")
}

func (a *API) backendAction(w http.ResponseWriter, r *http.Request) {
	reg := a.inst.Registry()
	pool, id, action := r.PathValue("pool"), r.PathValue("id"), r.PathValue("action")
	if action != "drain" && action != "quarantine" && action != "restore" {
		problem(w, http.StatusNotFound, "unknown action", "use drain, quarantine or restore")
		return
	}
	a.mu.Lock()
	before := a.backendSnapshot(pool, id)
	var (
		st   proxy.BackendStatus
		done <-chan struct{}
		err  error
	)
	switch action {
	case "drain":
		st, done, err = reg.Drain(pool, id)
	case "quarantine":
		st, err = reg.Quarantine(pool, id)
	case "restore":
		st, err = reg.Restore(pool, id)
	}
	ev := backendEvent(r, "backend."+action, pool, id, before, st, err)
	ok := a.record(w, r, ev, outcome(ev, err))
	a.mu.Unlock()
	if !ok {
		return
	}
	switch {
	case err != nil:
		lifecycleError(w, err)
	case action == "drain":
		a.respondAfter(w, r, st, done, "drained")
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// respondAfter answers 202 at once, or with ?wait=true once the drain (or
// removal) is complete, like `aws elb wait target-deregistered`.
func (a *API) respondAfter(w http.ResponseWriter, r *http.Request, st proxy.BackendStatus, done <-chan struct{}, finalState string) {
	if r.URL.Query().Get("wait") != "true" {
		writeJSON(w, http.StatusAccepted, st)
		return
	}
	select {
	case <-done:
	case <-r.Context().Done():
		return
	case <-time.After(1 * time.Hour):
	}
	if p := a.inst.Registry().Pool(st.Pool); p != nil {
		if b := p.Backend(st.ID); b != nil {
			st.State, st.InFlight = b.State(), b.InFlight()
		}
	}
	if finalState == "deregistered" {
		st.State = "deregistered"
	}
	writeJSON(w, http.StatusOK, st)
}

func lifecycleError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, proxy.ErrUnknownPool), errors.Is(err, proxy.ErrUnknownBackend):
		problem(w, http.StatusNotFound, "not found", err.Error())
	case errors.Is(err, proxy.ErrExists):
		problem(w, http.StatusConflict, "already registered", err.Error())
	case errors.Is(err, proxy.ErrInvalid):
		problem(w, http.StatusBadRequest, "invalid backend", err.Error())
	default:
		// The change is in effect in memory but could not be persisted.
		problem(w, http.StatusInternalServerError, "state not persisted", err.Error())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func problem(w http.ResponseWriter, status int, title, detail string) {
	problemExt(w, status, title, detail, nil)
}

// problemExt writes an RFC 9457 problem document.
func problemExt(w http.ResponseWriter, status int, title, detail string, ext map[string]any) {
	body := map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail}
	for k, v := range ext {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
