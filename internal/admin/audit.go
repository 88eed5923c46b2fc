package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
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
// instead, so it is not lost entirely. The audit package removes what the
// failed append left in the file before it appends again, so the trail
// resumes by itself once the disk does.

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
		if k != "order" && k != "limit" && k != "cursor" && k != "since" {
			problem(w, http.StatusBadRequest, "unknown parameter", fmt.Sprintf("unknown query parameter %q: use order, limit, cursor and since", k))
			return
		}
	}
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			problem(w, http.StatusBadRequest, "invalid since", "since must be an RFC 3339 time, e.g. 2026-11-22T06:00:00Z")
			return
		}
		since = t
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
	entries, next, err := pageSince(l, order == "desc", cursor, limit, since)
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

// pageSince is Log.Page keeping only entries stamped at or after since
// (all of them when since is zero). Entries are appended in time order, so
// oldest-first skips ahead to since, and newest-first stops at it.
func pageSince(l *audit.Log, desc bool, cursor uint64, limit int, since time.Time) ([]json.RawMessage, uint64, error) {
	if since.IsZero() {
		return l.Page(desc, cursor, limit)
	}
	var out []json.RawMessage
	for {
		page, next, err := l.Page(desc, cursor, limit)
		if err != nil {
			return nil, 0, err
		}
		for i, raw := range page {
			var e struct {
				Seq       uint64    `json:"seq"`
				Timestamp time.Time `json:"timestamp"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				return nil, 0, err
			}
			if e.Timestamp.Before(since) {
				if desc {
					return out, 0, nil // everything further is older
				}
				continue
			}
			out = append(out, raw)
			if len(out) == limit {
				if i < len(page)-1 || next != 0 {
					return out, e.Seq, nil
				}
				return out, 0, nil
			}
		}
		if next == 0 {
			return out, 0, nil
		}
		cursor = next
	}
}

// auditVerify serves POST /api/v1/audit/verify: the running trail checked
// against this instance's public key and checkpoint, exactly as `rampart
// audit verify` would. A tampered trail is a 200 with valid:false: the
// check itself worked. The check is recorded in the trail.
func (a *API) auditVerify(w http.ResponseWriter, r *http.Request) {
	l := a.inst.Audit()
	if l == nil {
		problem(w, http.StatusServiceUnavailable, "no audit trail", "this instance has no audit trail open")
		return
	}
	// The checkpoint first: the log read afterwards reaches at least as far.
	cp, err := audit.ReadCheckpoint(l.CheckpointPath())
	if err != nil {
		cp = nil
	}
	body := map[string]any{"file": l.Path(), "public_key": audit.EncodePublicKey(l.PublicKey())}
	f, err := os.Open(l.Path())
	if err != nil {
		problem(w, http.StatusInternalServerError, "cannot read the audit trail", "see the server log")
		a.log.Error("audit verify: opening the trail", "error", err.Error())
		return
	}
	rep, verr := audit.Verify(f, l.PublicKey(), cp)
	f.Close()
	var ve *audit.VerifyError
	switch {
	case verr == nil:
		body["valid"], body["report"] = true, rep
	case errors.As(verr, &ve):
		body["valid"], body["error"], body["line"], body["event_id"] = false, ve.Error(), ve.Line, ve.EventID
	default:
		problem(w, http.StatusInternalServerError, "cannot read the audit trail", "see the server log")
		a.log.Error("audit verify", "error", verr.Error())
		return
	}
	ev := audit.Event{Actor: apiActor(r), Action: audit.ActionVerify, Resource: audit.Resource{Type: "audit", ID: "trail"},
		Details: requestDetails(r), Result: audit.ResultSuccess}
	ev.Details["valid"] = body["valid"]
	if !ev.Details["valid"].(bool) {
		ev.Details["error"] = clip(fmt.Sprint(body["error"]))
	}
	if !a.record(w, r, ev, "the trail was verified") {
		return
	}
	writeJSON(w, http.StatusOK, body)
}
