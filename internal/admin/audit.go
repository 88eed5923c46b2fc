package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// Recording mutating calls in the audit trail.
//
// Every mutating call (config reload, backend register, deregister, drain,
// quarantine, restore) runs in this order: validate, perform, record,
// answer. The entry is appended and fsynced after the action has taken
// effect and before any response is written, so a 2xx is never sent for
// an action that is not on disk in the trail; refused calls (unknown pool,
// invalid body, a config that does not validate) are recorded too, with
// result "refused".
//
// Why not record first? An entry written before the action records an
// intent, not an outcome: it would claim a quarantine that then failed,
// or need a second entry to correct it.
//
// If the append fails, the call answers 500 (application/problem+json,
// "recorded": false) saying the action was performed but not recorded,
// and the action is NOT rolled back. Rolling back is the wrong default for
// a security boundary: undoing a quarantine or a drain would put traffic
// back on a backend an operator just isolated, and a drain's cut
// connections cannot be restored anyway. Refusing up front is not possible
// either: the failure (a full disk, an fsync error) is only known when the
// append is tried. The event is written to the process log at ERROR level
// instead, so it is not lost entirely, and the audit package stops
// accepting appends until a restart has re-read the trail.

// apiActor is the caller of an admin API request, as ServeHTTP
// authenticated it: the token name or certificate subject in ID, and the
// auth_method ("token", "mtls" or "loopback").
func apiActor(r *http.Request) audit.Actor {
	if p, ok := r.Context().Value(principalKey{}).(principal); ok {
		return p.actor
	}
	// Not reached through ServeHTTP (which always sets the caller).
	ip := r.RemoteAddr
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	return audit.Actor{Type: "api", IP: ip, AuthMethod: "none"}
}

func requestDetails(r *http.Request) map[string]any {
	return map[string]any{"method": r.Method, "path": r.URL.Path}
}

// record appends ev. When that fails it answers 500 and returns false;
// outcome says what happened to the action, for the answer.
func (a *API) record(w http.ResponseWriter, r *http.Request, ev audit.Event, outcome string) bool {
	l := a.inst.Audit()
	err := errors.New("no audit trail is open")
	if l != nil {
		// The action has happened: a client that hung up must not stop
		// it being recorded.
		_, err = l.Append(context.WithoutCancel(r.Context()), ev)
	}
	if err == nil {
		return true
	}
	a.log.Error("admin action NOT recorded in the audit trail", "action", ev.Action, "result", ev.Result,
		"resource_type", ev.Resource.Type, "pool", ev.Resource.Pool, "resource_id", ev.Resource.ID,
		"actor_ip", ev.Actor.IP, "error", err.Error())
	problemExt(w, http.StatusInternalServerError, "action not recorded in the audit trail",
		outcome+", but this was NOT recorded in the audit trail ("+err.Error()+"). The action was not rolled back; the server log has the event.",
		map[string]any{"action": ev.Action, "result": ev.Result, "recorded": false})
	return false
}

// ReloadEvent is the audit event of a config reload by actor (an API
// caller, or the SIGHUP handler) that ended with err. details is extended
// with the problems of a refused file.
func ReloadEvent(actor audit.Actor, details map[string]any, err error) audit.Event {
	if details == nil {
		details = map[string]any{}
	}
	ev := audit.Event{Actor: actor, Action: audit.ActionConfigReload, Resource: audit.Resource{Type: "config"},
		Details: details, Result: audit.ResultSuccess}
	if err != nil {
		ev.Result = audit.ResultRefused
		var ps config.Problems
		if errors.As(err, &ps) {
			// An entry is at most audit.MaxLineBytes: keep the first
			// problems, which is what an operator fixes first anyway.
			var lines []string
			for i, p := range ps {
				if i == maxRecordedProblems {
					lines = append(lines, fmt.Sprintf("... and %d more", len(ps)-i))
					break
				}
				lines = append(lines, clip(p.String()))
			}
			details["problems"] = lines
		} else {
			details["error"] = clip(err.Error())
		}
	}
	return ev
}

// Bounds on what a caller's input can put into one entry (entries are
// limited to audit.MaxLineBytes; an oversized one could not be recorded).
const (
	maxRecordedProblems = 20
	maxRecordedText     = 512
)

// clip shortens s to maxRecordedText bytes (on a rune boundary).
func clip(s string) string {
	if len(s) <= maxRecordedText {
		return s
	}
	cut := maxRecordedText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "...(truncated)"
}

// backendSnapshot is a backend's state as GET /pools shows it, or nil when
// the pool or backend does not exist.
func (a *API) backendSnapshot(pool, id string) *proxy.BackendStatus {
	reg := a.inst.Registry()
	p := reg.Pool(pool)
	if p == nil || id == "" {
		return nil
	}
	for _, b := range reg.PoolStatus(p).Backends {
		if b.ID == id {
			return &b
		}
	}
	return nil
}

// backendEvent describes a backend lifecycle call: before is the state
// read just before it, st what the registry returned, err its error.
func backendEvent(r *http.Request, action, pool, id string, before *proxy.BackendStatus, st proxy.BackendStatus, err error) audit.Event {
	ev := audit.Event{Actor: apiActor(r), Action: action, Resource: audit.Resource{Type: "backend", ID: id, Pool: pool},
		Details: requestDetails(r), Result: audit.ResultSuccess}
	if before != nil {
		ev.Before = before
	}
	if err != nil {
		ev.Details["error"] = clip(err.Error())
	}
	switch {
	case err == nil:
		if st.ID != "" {
			ev.After = st
		}
		if action == audit.ActionBackendDeregister {
			ev.Details["note"] = "draining; it leaves the pool once drained"
		}
	case refusal(err):
		// Nothing changed.
		ev.Result, ev.After = audit.ResultRefused, ev.Before
	default:
		// The change is in effect in memory but was not persisted.
		ev.Result = audit.ResultError
		if st.ID != "" {
			ev.After = st
		}
	}
	return ev
}

// refusal reports whether a lifecycle error means nothing was changed.
func refusal(err error) bool {
	return errors.Is(err, proxy.ErrUnknownPool) || errors.Is(err, proxy.ErrUnknownBackend) ||
		errors.Is(err, proxy.ErrExists) || errors.Is(err, proxy.ErrInvalid) || errors.Is(err, errInvalidBody)
}

// errInvalidBody is a request body that could not be decoded.
var errInvalidBody = errors.New("invalid body")

var pastTense = map[string]string{
	audit.ActionBackendRegister:   "registered",
	audit.ActionBackendDeregister: "deregistered (it leaves the pool once drained)",
	audit.ActionBackendDrain:      "set to drain",
	audit.ActionBackendQuarantine: "quarantined",
	audit.ActionBackendRestore:    "restored",
}

// outcome says in words what a backend call did, for a 500 answer.
func outcome(ev audit.Event, err error) string {
	b := fmt.Sprintf("backend %q in pool %q", ev.Resource.ID, ev.Resource.Pool)
	switch ev.Result {
	case audit.ResultSuccess:
		return b + " was " + pastTense[ev.Action]
	case audit.ResultRefused:
		return fmt.Sprintf("the call was refused (%v) and nothing changed", err)
	default:
		return fmt.Sprintf("%s was %s in memory but not persisted (%v)", b, pastTense[ev.Action], err)
	}
}

// auditTrail serves GET /api/v1/audit: the trail's entries exactly as
// stored, a page at a time.
//
//	order   desc (default: newest first) or asc (oldest first)
//	limit   1..1000, default 100
//	cursor  from the previous page's next_cursor; omit for the first page
//
// The cursor is a line number (the entry's seq in an intact trail): asc
// returns the entries after it, desc the entries before it. next_cursor is
// absent on the last page.
func (a *API) auditTrail(w http.ResponseWriter, r *http.Request) {
	l := a.inst.Audit()
	if l == nil {
		problem(w, http.StatusServiceUnavailable, "no audit trail", "this instance has no audit trail open")
		return
	}
	q := r.URL.Query()
	for k := range q {
		if k != "order" && k != "limit" && k != "cursor" {
			problem(w, http.StatusBadRequest, "unknown parameter", fmt.Sprintf("unknown query parameter %q: use order, limit and cursor", k))
			return
		}
	}
	order := q.Get("order")
	if order == "" {
		order = "desc"
	}
	if order != "asc" && order != "desc" {
		problem(w, http.StatusBadRequest, "invalid order", "order must be asc (oldest first) or desc (newest first)")
		return
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > audit.MaxPage {
			problem(w, http.StatusBadRequest, "invalid limit", fmt.Sprintf("limit must be a number from 1 to %d", audit.MaxPage))
			return
		}
		limit = n
	}
	var cursor uint64
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			problem(w, http.StatusBadRequest, "invalid cursor", "cursor must be the next_cursor of a previous page")
			return
		}
		cursor = n
	}
	entries, next, err := l.Page(order == "desc", cursor, limit)
	if err != nil {
		a.log.Error("reading the audit trail", "error", err.Error())
		problem(w, http.StatusInternalServerError, "cannot read the audit trail", "see the server log")
		return
	}
	if entries == nil {
		entries = []json.RawMessage{}
	}
	body := map[string]any{"order": order, "limit": limit, "entries": entries,
		"public_key": audit.EncodePublicKey(l.PublicKey())}
	if next != 0 {
		body["next_cursor"] = next
	}
	writeJSON(w, http.StatusOK, body)
}
