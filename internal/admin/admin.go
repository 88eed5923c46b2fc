// Package admin is Rampart's management API (DESIGN §4): JSON over the
// admin listener, errors as application/problem+json (RFC 9457).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	opts Options
	mux  *routeMux
	// roles is the least role of each registered pattern, from routes.
	roles map[string]Role

	// state is the authentication settings of the admin config in force,
	// rebuilt when a reload replaces it.
	state   atomic.Pointer[authState]
	stateMu sync.Mutex
	limiter *failureLimiter
	// denials bounds the refused calls recorded per address, with the
	// same limits: a caller without credentials is not an authentication
	// failure, but it must not be able to fill the disk with signed,
	// fsynced entries either.
	denials *failureLimiter
	// crossOrigin refuses mutating calls a browser makes on another
	// site's behalf (CSRF): on loopback without credentials, any web page
	// the operator opens could otherwise quarantine a backend.
	crossOrigin *http.CrossOriginProtection

	metrics http.Handler // nil without metrics

	// mu serialises mutating calls, so that the state read as "before",
	// the action and its audit entry are not interleaved with another
	// call's, and entries appear in the order the actions took effect.
	mu sync.Mutex
}

// route is one admin API endpoint and the least role that may call it.
type route struct {
	pattern string // http.ServeMux pattern: "METHOD /path"
	role    Role
	handle  func(*API, http.ResponseWriter, *http.Request)
}

// routes is every endpoint of the admin API with the least role that may
// call it: the mux is built from this table, requests are authorised from
// it, and the tests call every entry with every role. An endpoint added
// any other way is refused (500) and fails the tests.
//
// viewer reads; operator also changes backends and reloads the config;
// admin may do everything (no endpoint needs more than operator yet).
var routes = []route{
	{"GET /api/v1/status", RoleViewer, (*API).status},
	// Prometheus scrapes /metrics by convention; DESIGN §4 lists it under /api/v1.
	{"GET /metrics", RoleViewer, (*API).serveMetrics},
	{"GET /api/v1/metrics", RoleViewer, (*API).serveMetrics},
	{"POST /api/v1/config/reload", RoleOperator, (*API).reload},
	{"GET /api/v1/pools", RoleViewer, (*API).pools},
	{"GET /api/v1/pools/{pool}", RoleViewer, (*API).pool},
	{"GET /api/v1/pools/{pool}/backends", RoleViewer, (*API).pool},
	{"POST /api/v1/pools/{pool}/backends", RoleOperator, (*API).register},
	{"DELETE /api/v1/pools/{pool}/backends/{id}", RoleOperator, (*API).deregister},
	{"POST /api/v1/pools/{pool}/backends/{id}/{action}", RoleOperator, (*API).backendAction},
	{"GET /api/v1/audit", RoleViewer, (*API).auditTrail},
	{"POST /api/v1/audit/verify", RoleOperator, (*API).auditVerify},
	{"GET /api/v1/acls/feeds", RoleViewer, (*API).aclFeeds},
	{"GET /api/v1/acls/{list}", RoleViewer, (*API).aclList},
	{"POST /api/v1/acls/{list}", RoleOperator, (*API).aclAdd},
	{"DELETE /api/v1/acls/{list}/{entry...}", RoleOperator, (*API).aclRemove},
	{"GET /api/v1/certificates", RoleViewer, (*API).certificates},
	// Anything else is 404, to authenticated callers only.
	{"/", RoleViewer, (*API).notFound},
}

// routeMux is an http.ServeMux that remembers its patterns, so that a
// test can hold them against the routes table.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// New returns the admin handler.
func New(inst Instance, log *slog.Logger, opts Options) *API {
	a := &API{inst: inst, log: log, opts: opts, mux: &routeMux{ServeMux: http.NewServeMux()},
		roles: map[string]Role{}, limiter: newFailureLimiter(opts.Now), denials: newFailureLimiter(opts.Now), crossOrigin: http.NewCrossOriginProtection()}
	if m := inst.Metrics(); m != nil {
		a.metrics = m.Handler()
	}
	for _, rt := range routes {
		handle := rt.handle
		a.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { handle(a, w, r) })
		a.roles[rt.pattern] = rt.role
	}
	return a
}

// ServeHTTP authenticates the caller, checks its role against the
// route's and serves the route.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := a.crossOrigin.Check(r); err != nil {
		// Not recorded in the audit trail: a hostile page could loop it.
		a.log.Warn("admin API: cross-origin browser request refused", "client_ip", clientIP(r),
			"origin", r.Header.Get("Origin"), "method", r.Method, "path", r.URL.Path)
		problem(w, http.StatusForbidden, "cross-origin request refused",
			"the admin API takes no mutating call a browser makes from another site (Sec-Fetch-Site, Origin)")
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	p, ok := a.authenticate(sw, r)
	if !ok {
		if sw.status == http.StatusUnauthorized || sw.status == http.StatusForbidden {
			a.recordDenied(r, audit.Actor{Type: "api", IP: clientIP(r)}, sw.status)
		}
		return
	}
	_, pattern := a.mux.Handler(r)
	need, declared := a.roles[pattern]
	if !declared {
		a.log.Error("admin API: endpoint without a declared role refused; add it to the routes table", "pattern", pattern)
		problem(w, http.StatusInternalServerError, "endpoint has no declared role", "this endpoint is refused until it declares the role it needs")
		return
	}
	if p.role < need {
		a.log.Warn("admin API: call refused for lack of role", "actor_id", p.actor.ID, "auth_method", p.actor.AuthMethod,
			"client_ip", p.actor.IP, "role", p.role.String(), "needs", need.String(), "method", r.Method, "path", r.URL.Path)
		problem(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s has role %s; %s %s needs %s",
			callerName(p), p.role, r.Method, r.URL.Path, need))
		a.recordDenied(r, p.actor, http.StatusForbidden)
		return
	}
	a.mux.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
}

// recordDenied puts a mutating call refused for its credentials (401) or
// its role (403) in the audit trail: who tried to change what is evidence
// too. Reads are not recorded, and an address is recorded at most
// admin.auth_failures.max times per window (then not for the block's
// length), so no loop of refused calls, with or without credentials, adds
// more than that.
func (a *API) recordDenied(r *http.Request, actor audit.Actor, status int) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return
	}
	l := a.inst.Audit()
	if l == nil {
		return
	}
	ip, _ := netip.ParseAddr(actor.IP)
	if wait, over, started := a.denials.fail(ip, a.auth().limits); over {
		if started {
			a.log.Warn("admin API: too many refused calls, further ones from this address are not recorded in the audit trail",
				"client_ip", actor.IP, "for", wait.String())
		}
		return
	}
	// The path as sent on the wire (ASCII: no bidi or C1 character the
	// client chose reaches the trail raw), clipped.
	ev := audit.Event{Actor: actor, Action: audit.ActionAPIDenied,
		Resource: audit.Resource{Type: "api", ID: clip(r.Method + " " + r.URL.EscapedPath())},
		Details:  map[string]any{"status": status}, Result: audit.ResultRefused}
	if _, err := l.Append(context.WithoutCancel(r.Context()), ev); err != nil {
		a.log.Error("refused admin call NOT recorded in the audit trail", "method", r.Method, "path", r.URL.Path,
			"actor_ip", actor.IP, "error", err.Error())
	}
}

// statusWriter remembers the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// clientIP is r's remote address without its port.
func clientIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func callerName(p principal) string {
	switch p.actor.AuthMethod {
	case "token":
		return "token " + strconv.Quote(p.actor.ID)
	case "mtls":
		return "certificate " + strconv.Quote(p.actor.ID)
	}
	return "this caller"
}

// notFound answers what no route matched: 405 with Allow when the path is
// an endpoint under other methods, 404 otherwise.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); m != r.Method && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		problem(w, http.StatusMethodNotAllowed, "method not allowed", r.Method+" "+r.URL.Path+" is not allowed; it takes "+strings.Join(allow, ", "))
		return
	}
	problem(w, http.StatusNotFound, "no such endpoint", r.Method+" "+r.URL.Path+" is not part of the admin API")
}

func (a *API) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if a.metrics == nil {
		a.notFound(w, r)
		return
	}
	a.metrics.ServeHTTP(w, r)
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
	answer := map[string]any{"reloaded": true}
	if p, ok := a.inst.(interface{ PendingRestart() []string }); ok {
		if pending := p.PendingRestart(); len(pending) > 0 {
			// Applied, except these: the operator must not believe them
			// in force (a listener still plain HTTP, ...).
			answer["pending_restart"] = pending
		}
	}
	writeJSON(w, http.StatusOK, answer)
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
	// Weight is a pointer so that a weight sent as 0 is refused like the
	// config file's, while a missing one is the default 1.
	var body struct {
		ID      string `json:"id"`
		Address string `json:"address"`
		Weight  *int   `json:"weight"`
	}
	// The body is read before taking the lock: a slow client must not
	// hold up other mutating calls.
	derr := decodeBody(r.Body, &body)
	b := config.Backend{ID: body.ID, Address: body.Address, Weight: 1}
	if body.Weight != nil {
		b.Weight = *body.Weight
		if b.Weight == 0 && derr == nil {
			derr = errors.New("weight 0: a weight is between 1 and 1000 (to send a backend no traffic, drain or deregister it)")
		}
	}
	a.mu.Lock()
	if derr != nil {
		err := fmt.Errorf(`%w: expected {"id": "...", "address": "host:port", "weight": 1}: %v`, errInvalidBody, derr)
		// The id the caller named, when the body had one: the trail says
		// which registration was refused.
		ok := a.record(w, r, backendEvent(r, audit.ActionBackendRegister, pool, body.ID, nil, proxy.BackendStatus{}, err), "the registration was refused")
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
	var b *proxy.Backend // looked up first: a deregistered one leaves the pool
	if p := a.inst.Registry().Pool(st.Pool); p != nil {
		b = p.Backend(st.ID)
	}
	select {
	case <-done:
	case <-r.Context().Done():
		return
	case <-time.After(1 * time.Hour):
	}
	if b != nil {
		st.State, st.InFlight, st.CutAtDrainTimeout = b.State(), b.InFlight(), b.DrainCut()
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

// decodeBody reads one JSON object of at most 64 KiB into v, refusing
// unknown fields and anything after the object (a body with trailing
// data is not what the caller meant to send, and is not half-applied).
func decodeBody(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}
