package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/audit"
)

// ACL endpoints (DESIGN §4): the dynamic blocklist and allowlist, and the
// threat feeds' status.
//
//	GET    /api/v1/acls/{list}            ?source= &reason= &contains=IP &limit= &offset= | &cursor=
//	POST   /api/v1/acls/{list}            {"ip"|"cidr", "reason", "source", "expires_at", "severity", "allow_broad"}
//	DELETE /api/v1/acls/{list}/{entry...} an IP or a CIDR (the slash may be sent as %2F)
//	GET    /api/v1/acls/feeds
//
// {list} is blocklist or allowlist. The routes and their roles are in the
// routes table (admin.go).

func listOf(w http.ResponseWriter, r *http.Request) (acl.List, bool) {
	switch r.PathValue("list") {
	case "blocklist":
		return acl.Blocklist, true
	case "allowlist":
		return acl.Allowlist, true
	}
	problem(w, http.StatusNotFound, "no such list", "use /acls/blocklist or /acls/allowlist")
	return 0, false
}

func (a *API) aclUnavailable(w http.ResponseWriter) bool {
	if a.inst.ACL() == nil {
		problem(w, http.StatusServiceUnavailable, "IP lists unavailable", "this instance has no IP lists")
		return true
	}
	return false
}

func (a *API) aclFeeds(w http.ResponseWriter, r *http.Request) {
	if a.aclUnavailable(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"feeds": a.inst.ACL().Feeds()})
}

func (a *API) aclList(w http.ResponseWriter, r *http.Request) {
	l, ok := listOf(w, r)
	if !ok || a.aclUnavailable(w) {
		return
	}
	q := r.URL.Query()
	f := acl.Filter{Source: q.Get("source"), Reason: q.Get("reason"), Cursor: q.Get("cursor")}
	for _, k := range []string{"limit", "offset"} {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				problemExt(w, http.StatusBadRequest, "invalid query parameter", k+" must be a non-negative integer", map[string]any{"field": k})
				return
			}
			if k == "limit" {
				f.Limit = n
			} else {
				f.Offset = n
			}
		}
	}
	if v := q.Get("contains"); v != "" {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			problemExt(w, http.StatusBadRequest, "invalid query parameter", "contains must be an IP address", map[string]any{"field": "contains"})
			return
		}
		f.Contains = ip
	}
	writeJSON(w, http.StatusOK, a.inst.ACL().Dynamic().List(l, f))
}

// aclEntryBody is the body of POST /acls/{list}.
type aclEntryBody struct {
	IP         string    `json:"ip"`
	CIDR       string    `json:"cidr"`
	Reason     string    `json:"reason"`
	Source     string    `json:"source"`
	Severity   string    `json:"severity"`
	ExpiresAt  time.Time `json:"expires_at"`
	AllowBroad bool      `json:"allow_broad"`
}

// fieldError is a body that failed validation, naming the field.
type fieldError struct{ field, msg string }

func (e fieldError) Error() string { return e.field + ": " + e.msg }

func (b aclEntryBody) toNewEntry(now time.Time) (acl.NewEntry, error) {
	var n acl.NewEntry
	switch {
	case b.IP != "" && b.CIDR != "":
		return n, fieldError{"ip", "give ip or cidr, not both"}
	case b.IP != "":
		ip, err := netip.ParseAddr(b.IP)
		if err != nil || ip.Zone() != "" {
			return n, fieldError{"ip", fmt.Sprintf("%q is not an IP address", b.IP)}
		}
		ip = ip.Unmap()
		n.Prefix = netip.PrefixFrom(ip, ip.BitLen())
	case b.CIDR != "":
		p, err := acl.ParseEntry(b.CIDR)
		if err != nil {
			return n, fieldError{"cidr", err.Error()}
		}
		n.Prefix = p
	default:
		return n, fieldError{"ip", "ip or cidr is required"}
	}
	if b.Severity != "" && !slices.Contains(acl.Severities, b.Severity) {
		return n, fieldError{"severity", "must be one of " + strings.Join(acl.Severities, ", ")}
	}
	if !b.ExpiresAt.IsZero() && !b.ExpiresAt.After(now) {
		return n, fieldError{"expires_at", "must be in the future"}
	}
	if len(b.Reason) > 512 || len(b.Source) > 128 {
		return n, fieldError{"reason", "reason is limited to 512 bytes and source to 128"}
	}
	n.Reason, n.Source, n.Severity, n.Expires, n.AllowBroad = b.Reason, b.Source, b.Severity, b.ExpiresAt, b.AllowBroad
	return n, nil
}

func (a *API) aclAdd(w http.ResponseWriter, r *http.Request) {
	l, ok := listOf(w, r)
	if !ok || a.aclUnavailable(w) {
		return
	}
	var body aclEntryBody
	action := "acl." + l.String() + ".add"
	if err := decodeBody(r.Body, &body); err != nil {
		err = fmt.Errorf("%w: %v", errInvalidBody, err)
		if a.recordRefusal(w, r, action, netip.Prefix{}, err) {
			problemExt(w, http.StatusBadRequest, "invalid body", err.Error(), nil)
		}
		return
	}
	n, err := body.toNewEntry(time.Now())
	if err != nil {
		if a.recordRefusal(w, r, action, netip.Prefix{}, err) {
			var fe fieldError
			errors.As(err, &fe)
			problemExt(w, http.StatusBadRequest, "invalid entry", err.Error(), map[string]any{"field": fe.field})
		}
		return
	}
	if n.Source == "" {
		n.Source = "api"
	}
	dyn := a.inst.ACL().Dynamic()
	a.mu.Lock()
	before, existed := dyn.Get(l, n.Prefix)
	e, err := dyn.Add(l, n)
	ev := aclEvent(r, action, n.Prefix, existed, before, e, err)
	recorded := a.record(w, r, ev, aclOutcome(ev, err))
	a.mu.Unlock()
	if !recorded {
		return
	}
	if err != nil {
		aclError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, e)
}

func (a *API) aclRemove(w http.ResponseWriter, r *http.Request) {
	l, ok := listOf(w, r)
	if !ok || a.aclUnavailable(w) {
		return
	}
	p, err := acl.ParseEntry(r.PathValue("entry"))
	if err != nil {
		if a.recordRefusal(w, r, "acl."+l.String()+".remove", netip.Prefix{}, err) {
			problemExt(w, http.StatusBadRequest, "invalid entry", err.Error(), map[string]any{"field": "entry"})
		}
		return
	}
	dyn := a.inst.ACL().Dynamic()
	a.mu.Lock()
	before, existed := dyn.Get(l, p)
	_, err = dyn.Remove(l, p)
	ev := aclEvent(r, "acl."+l.String()+".remove", p, existed, before, acl.Entry{}, err)
	recorded := a.record(w, r, ev, aclOutcome(ev, err))
	a.mu.Unlock()
	if !recorded {
		return
	}
	if err != nil {
		aclError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func aclError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, acl.ErrNotFound):
		problem(w, http.StatusNotFound, "no such entry", err.Error())
	case errors.Is(err, acl.ErrFull):
		problem(w, http.StatusInsufficientStorage, "list full", err.Error())
	case errors.Is(err, acl.ErrInvalid):
		problemExt(w, http.StatusBadRequest, "invalid entry", err.Error(), map[string]any{"field": "cidr"})
	default:
		problem(w, http.StatusInternalServerError, "list not changed", err.Error())
	}
}

// recordRefusal records a call refused before it touched a list (bad body
// or entry): refused calls are in the trail like the others.
func (a *API) recordRefusal(w http.ResponseWriter, r *http.Request, action string, p netip.Prefix, err error) bool {
	ev := aclEvent(r, action, p, false, acl.Entry{}, acl.Entry{}, err)
	return a.record(w, r, ev, aclOutcome(ev, err))
}

// aclEvent describes a dynamic-list change for the audit trail.
func aclEvent(r *http.Request, action string, p netip.Prefix, existed bool, before, after acl.Entry, err error) audit.Event {
	id := ""
	if p.IsValid() {
		id = p.String()
	}
	ev := audit.Event{Actor: apiActor(r), Action: action, Resource: audit.Resource{Type: "acl_entry", ID: id},
		Details: requestDetails(r), Result: audit.ResultSuccess}
	if existed {
		ev.Before = before
	}
	if err != nil {
		ev.Result, ev.After = audit.ResultRefused, ev.Before
		ev.Details["error"] = clip(err.Error())
		return ev
	}
	if after.ID != "" {
		ev.After = after
	}
	return ev
}

func aclOutcome(ev audit.Event, err error) string {
	if err != nil {
		return fmt.Sprintf("the call was refused (%v) and nothing changed", err)
	}
	return fmt.Sprintf("%s %s was applied", ev.Action, ev.Resource.ID)
}
