// Package admin is Rampart's management API (DESIGN §4): JSON over the
// admin listener, errors as application/problem+json (RFC 9457).
package admin

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// Instance is what the API operates on; *server.Server implements it.
type Instance interface {
	Registry() *proxy.Registry
	// Status returns a JSON-encodable summary of the instance.
	StatusJSON() any
	// ReloadConfig re-reads the config file the instance was started with.
	ReloadConfig() error
}

// API serves /api/v1.
type API struct {
	inst Instance
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns the admin handler.
func New(inst Instance, log *slog.Logger) *API {
	a := &API{inst: inst, log: log, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /api/v1/status", a.status)
	a.mux.HandleFunc("POST /api/v1/config/reload", a.reload)
	a.mux.HandleFunc("GET /api/v1/pools", a.pools)
	a.mux.HandleFunc("GET /api/v1/pools/{pool}", a.pool)
	a.mux.HandleFunc("GET /api/v1/pools/{pool}/backends", a.pool)
	a.mux.HandleFunc("POST /api/v1/pools/{pool}/backends", a.register)
	a.mux.HandleFunc("DELETE /api/v1/pools/{pool}/backends/{id}", a.deregister)
	a.mux.HandleFunc("POST /api/v1/pools/{pool}/backends/{id}/{action}", a.backendAction)
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
	if err := a.inst.ReloadConfig(); err != nil {
		var ps config.Problems
		detail := err.Error()
		ext := map[string]any{}
		if errors.As(err, &ps) {
			lines := make([]string, len(ps))
			for i, p := range ps {
				lines[i] = p.String()
			}
			ext["problems"] = lines
		}
		problemExt(w, http.StatusUnprocessableEntity, "config refused; the running config is unchanged", detail, ext)
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
	var b config.Backend
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		problem(w, http.StatusBadRequest, "invalid body", `expected {"id": "...", "address": "host:port", "weight": 1}: `+err.Error())
		return
	}
	st, err := a.inst.Registry().Register(r.PathValue("pool"), b)
	if err != nil {
		lifecycleError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (a *API) deregister(w http.ResponseWriter, r *http.Request) {
	st, done, err := a.inst.Registry().Deregister(r.PathValue("pool"), r.PathValue("id"))
	if err != nil {
		lifecycleError(w, err)
		return
	}
	a.respondAfter(w, r, st, done, "deregistered")
}

func (a *API) backendAction(w http.ResponseWriter, r *http.Request) {
	reg := a.inst.Registry()
	pool, id := r.PathValue("pool"), r.PathValue("id")
	switch r.PathValue("action") {
	case "drain":
		st, done, err := reg.Drain(pool, id)
		if err != nil {
			lifecycleError(w, err)
			return
		}
		a.respondAfter(w, r, st, done, "drained")
	case "quarantine":
		st, err := reg.Quarantine(pool, id)
		if err != nil {
			lifecycleError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	case "restore":
		st, err := reg.Restore(pool, id)
		if err != nil {
			lifecycleError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	default:
		problem(w, http.StatusNotFound, "unknown action", "use drain, quarantine or restore")
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
