package tlsterm

import (
	"crypto/tls"
	"strings"

	"github.com/rampart-proxy/rampart/internal/config"
)

// Entry is the SNI entry a connection was accepted under.
type Entry struct {
	// Pattern is the sni value ("api.example.com", "*.example.com"), or
	// "" for the default entry.
	Pattern     string
	Certificate string
	Pool        string // "" : the routes decide

	slot *certSlot   // the named certificate, nil without one
	cfg  *tls.Config // what a handshake under this entry uses
}

// AllowsHost reports whether a request's Host (without port) belongs to
// this entry; a request on a connection whose SNI named another host is
// domain fronting and gets 421. The default entry allows any host.
func (e *Entry) AllowsHost(host string) bool {
	if e == nil || e.Pattern == "" {
		return true
	}
	return matchName(e.Pattern, strings.ToLower(host))
}

// sniTable maps server names to entries: exact names first, then one-label
// wildcards, then the default.
type sniTable struct {
	exact    map[string]*Entry
	wildcard map[string]*Entry // by the suffix after "*."
	def      *Entry            // nil with reject
	reject   bool
	empty    bool // no sni_routing: every name is served
}

// newSNITable builds the table of routes; slots are the listener's
// certificates by name.
func newSNITable(rs []config.SNIRoute, slots map[string]*certSlot) *sniTable {
	t := &sniTable{exact: map[string]*Entry{}, wildcard: map[string]*Entry{}, empty: len(rs) == 0}
	for _, r := range rs {
		if r.Default != nil {
			if r.Default.Action == "reject" {
				t.reject = true
			} else {
				t.def = &Entry{Certificate: r.Default.Certificate, Pool: r.Default.Pool, slot: slots[r.Default.Certificate]}
			}
			continue
		}
		p := strings.ToLower(r.SNI)
		e := &Entry{Pattern: p, Certificate: r.Certificate, Pool: r.Pool, slot: slots[r.Certificate]}
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			t.wildcard[suffix] = e
		} else {
			t.exact[p] = e
		}
	}
	return t
}

// entries calls f on every entry, the default one included.
func (t *sniTable) entries(f func(*Entry)) {
	for _, e := range t.exact {
		f(e)
	}
	for _, e := range t.wildcard {
		f(e)
	}
	if t.def != nil {
		f(t.def)
	}
}

// lookup returns the entry for name (lower case); ok false means the
// handshake is refused. A listener without sni_routing has no entries:
// lookup returns nil, true.
func (t *sniTable) lookup(name string) (e *Entry, ok bool) {
	if t.empty {
		return nil, true
	}
	if e := t.exact[name]; e != nil {
		return e, true
	}
	// A wildcard covers exactly one label: "a.example.com" looks up
	// "example.com", and "a.b.example.com" looks up "b.example.com" only.
	if _, rest, found := strings.Cut(name, "."); found {
		if e := t.wildcard[rest]; e != nil {
			return e, true
		}
	}
	if t.reject {
		return nil, false
	}
	if t.def != nil {
		return t.def, true
	}
	return nil, true
}

// matchName reports whether host matches pattern (exact, or "*." plus
// exactly one label).
func matchName(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		label, rest, found := strings.Cut(host, ".")
		return found && label != "" && rest == suffix
	}
	return pattern == host
}
