package server

import (
	"sort"
	"strings"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// router is stage 6: host and path to pool. It is built once per config and
// never changed, so lookups take no lock; a reload swaps in a new router.
//
// Precedence is by specificity, not file order: an exact host beats a
// wildcard host, which beats a route without host; within those, the longest
// path prefix wins. A prefix matches whole path segments: "/api" matches
// "/api" and "/api/x" but not "/apix", so a route cannot leak into a sibling.
type router struct {
	exact    map[string][]*route // by lower-case host
	wildcard map[string][]*route // by suffix after "*", e.g. ".example.com"
	anyHost  []*route
}

type route struct {
	name    string
	prefix  string
	pool    *proxy.Pool
	maxBody int64      // max_body_bytes of the route or the global one
	headers *headerSet // security.headers with the route's additions
}

// newRouter builds a router for routes alone (no body limit, default
// headers).
func newRouter(routes []config.Route, reg *proxy.Registry) *router {
	return newRouterFor(&config.Config{Routes: routes}, reg)
}

func newRouterFor(cfg *config.Config, reg *proxy.Registry) *router {
	rt := &router{exact: map[string][]*route{}, wildcard: map[string][]*route{}}
	global := newHeaderSet(&cfg.Security.Headers, nil)
	for i := range cfg.Routes {
		c := &cfg.Routes[i]
		r := &route{name: c.Name, prefix: c.Match.PathPrefix, pool: reg.Pool(c.Pool), maxBody: cfg.BodyLimit(c), headers: global}
		if c.Headers != nil {
			r.headers = newHeaderSet(&cfg.Security.Headers, c.Headers)
		}
		if r.prefix == "" {
			r.prefix = "/"
		}
		h := strings.ToLower(c.Match.Host)
		switch {
		case h == "":
			rt.anyHost = append(rt.anyHost, r)
		case strings.HasPrefix(h, "*."):
			rt.wildcard[h[1:]] = append(rt.wildcard[h[1:]], r)
		default:
			rt.exact[h] = append(rt.exact[h], r)
		}
	}
	byLength := func(rs []*route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
	}
	for _, rs := range rt.exact {
		byLength(rs)
	}
	for _, rs := range rt.wildcard {
		byLength(rs)
	}
	byLength(rt.anyHost)
	return rt
}

// match returns the route for a request, or nil.
func (rt *router) match(host, path string) *route {
	host = normalizeHost(host)
	if r := matchPrefix(rt.exact[host], path); r != nil {
		return r
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if r := matchPrefix(rt.wildcard[host[i:]], path); r != nil {
			return r
		}
	}
	return matchPrefix(rt.anyHost, path)
}

func matchPrefix(rs []*route, path string) *route {
	for _, r := range rs {
		if pathHasPrefix(path, r.prefix) {
			return r
		}
	}
	return nil
}

func pathHasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// normalizeHost strips the port and a trailing dot and lower-cases the host.
func normalizeHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}
