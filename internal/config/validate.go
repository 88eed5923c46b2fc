package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Validate checks everything that can be checked without opening sockets
// and returns every problem found, ordered by line.
func (c *Config) Validate() Problems {
	v := &validator{cfg: c}
	v.dataDir()
	v.admin()
	v.listeners()
	pools := v.pools()
	v.routes(pools)
	v.ipLists()
	v.hardening()
	v.rateLimits()
	v.waf()
	v.logging()
	sortProblems(v.ps)
	return v.ps
}

type validator struct {
	cfg *Config
	ps  Problems
}

// dataDir refuses a data_dir that exists as something other than a
// directory; one that does not exist yet is created at start.
func (v *validator) dataDir() {
	if st, err := os.Stat(v.cfg.Resolve(v.cfg.DataDir)); err == nil && !st.IsDir() {
		v.add("data_dir", "data_dir %q is a file, not a directory", v.cfg.DataDir)
	}
}

func (v *validator) add(path, format string, args ...any) {
	v.ps = append(v.ps, Problem{v.cfg.File, v.cfg.Line(path), fmt.Sprintf(format, args...)})
}

func (v *validator) listeners() {
	if len(v.cfg.Listeners) == 0 {
		v.add("listeners", "at least one listener is required (e.g. listeners: [{name: public, listen: \":8080\"}])")
	}
	names := map[string]bool{}
	addrs := map[string]string{}
	for i, l := range v.cfg.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		switch {
		case l.Name == "":
			v.add(p, "listener has no name")
		case names[l.Name]:
			v.add(p+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		if _, err := checkHostPort(l.Listen, false, true); err != nil {
			v.add(p+".listen", "listener %q: listen %q: %v", l.Name, l.Listen, err)
		} else if other, dup := addrs[l.Listen]; dup {
			v.add(p+".listen", "listener %q: listen %q is already used by listener %q", l.Name, l.Listen, other)
		} else if l.Listen == v.cfg.Admin.Listen && !strings.HasSuffix(l.Listen, ":0") { // :0, any free port, is never shared
			v.add(p+".listen", "listener %q: listen %q is also admin.listen; the admin API needs an address of its own", l.Name, l.Listen)
		}
		addrs[l.Listen] = l.Name
		switch l.Protocol {
		case "http":
			v.httpListenerTLS(i)
		case "https":
			v.listenerTLS(i)
		default:
			v.add(p+".protocol", "listener %q: unknown protocol %q (http or https)", l.Name, l.Protocol)
		}
		for j, tp := range l.TrustedProxies {
			if _, err := ParsePrefix(tp); err != nil {
				v.add(fmt.Sprintf("%s.trusted_proxies[%d]", p, j), "listener %q: trusted proxy %q is not an IP address or CIDR", l.Name, tp)
			}
		}
		if l.ProxyProtocol && len(l.TrustedProxies) == 0 {
			v.add(p+".proxy_protocol", "listener %q: proxy_protocol needs trusted_proxies (the PROXY header is read only from those peers)", l.Name)
		}
		switch l.Engine {
		case "", EngineGoroutines:
		case EngineEventLoop:
			if l.Protocol == "https" {
				v.add(p+".engine", "listener %q: engine eventloop serves plaintext (http) listeners only; https connections run as goroutines", l.Name)
			}
		default:
			v.add(p+".engine", "listener %q: unknown engine %q (eventloop or goroutines)", l.Name, l.Engine)
		}
	}
}

func (v *validator) pools() map[string]bool {
	names := map[string]bool{}
	for i := range v.cfg.Pools {
		pl := &v.cfg.Pools[i]
		p := fmt.Sprintf("pools[%d]", i)
		switch {
		case pl.Name == "":
			v.add(p, "pool has no name")
		case names[pl.Name]:
			v.add(p+".name", "duplicate pool name %q", pl.Name)
		}
		names[pl.Name] = true
		if !slices.Contains(Algorithms, pl.Algorithm) {
			v.add(p+".algorithm", "pool %q: unknown algorithm %q (one of %s)", pl.Name, pl.Algorithm, strings.Join(Algorithms, ", "))
		}
		if pl.HashKey != "" {
			if pl.Algorithm != "consistent_hash" {
				v.add(p+".hash_key", "pool %q: hash_key only applies to algorithm consistent_hash", pl.Name)
			} else if _, err := ParseHashKey(pl.HashKey); err != nil {
				v.add(p+".hash_key", "pool %q: %v", pl.Name, err)
			}
		}
		if pl.Retries < 0 {
			v.add(p+".retries", "pool %q: retries must be 0 or more", pl.Name)
		}
		if pl.MaxIdleConnsPerBackend < 0 {
			v.add(p+".max_idle_conns_per_backend", "pool %q: max_idle_conns_per_backend must be 0 or more", pl.Name)
		}
		if len(pl.Backends) == 0 {
			v.add(p, "pool %q has no backends (backends can also be registered at run time, but a pool needs one to start)", pl.Name)
		}
		ids := map[string]bool{}
		for j, b := range pl.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", p, j)
			if field, err := checkBackend(b); err != nil {
				// Point at the offending key (address:, weight:) when the
				// backend is written one key per line.
				v.add(bp+field, "pool %q: %v", pl.Name, err)
			}
			if b.Weight == 0 { // written as 0: a missing weight is 1 by now
				v.add(bp+".weight", "pool %q: backend %q: weight 0 must be between 1 and 1000 (to send a backend no traffic, drain or deregister it)", pl.Name, b.ID)
			}
			if ids[b.ID] {
				v.add(bp+".id", "pool %q: duplicate backend id %q", pl.Name, b.ID)
			}
			ids[b.ID] = true
		}
		if h := pl.HealthCheck; h != nil {
			hp := p + ".health_check"
			if !strings.HasPrefix(h.Path, "/") {
				v.add(hp+".path", "pool %q: health_check.path %q must start with /", pl.Name, h.Path)
			}
			if h.Timeout.D() >= h.Interval.D() {
				v.add(hp+".timeout", "pool %q: health_check.timeout (%s) must be shorter than interval (%s)", pl.Name, h.Timeout.D(), h.Interval.D())
			}
			if h.HealthyThreshold < 1 {
				v.add(hp+".healthy_threshold", "pool %q: health_check thresholds must be 1 or more", pl.Name)
			}
			if h.UnhealthyThreshold < 1 {
				v.add(hp+".unhealthy_threshold", "pool %q: health_check thresholds must be 1 or more", pl.Name)
			}
		}
		if o := pl.OutlierDetection; o != nil {
			op := p + ".outlier_detection"
			if o.Consecutive5xx < 0 || o.ConsecutiveConnectFailure < 0 {
				v.add(op, "pool %q: outlier_detection counts must be 0 or more", pl.Name)
			} else if o.Consecutive5xx == 0 && o.ConsecutiveConnectFailure == 0 {
				v.add(op, "pool %q: outlier_detection needs consecutive_5xx or consecutive_connect_failures", pl.Name)
			}
		}
		v.backendTLS(i)
	}
	return names
}

// CheckBackend validates one backend; the admin API uses it for runtime
// registrations so that both paths refuse the same mistakes.
func CheckBackend(b Backend) error {
	_, err := checkBackend(b)
	return err
}

// checkBackend is CheckBackend that also names the faulty key as a path
// suffix (".address"), or "" when the backend as a whole is at fault.
func checkBackend(b Backend) (string, error) {
	if b.ID == "" {
		return "", fmt.Errorf("backend has no id")
	}
	if strings.ContainsAny(b.ID, "/ \t") {
		return ".id", fmt.Errorf("backend id %q must not contain spaces or slashes", b.ID)
	}
	if _, err := checkHostPort(b.Address, true, false); err != nil {
		return ".address", fmt.Errorf("backend %q: address %q: %v", b.ID, b.Address, err)
	}
	if b.Weight < 0 || b.Weight > 1000 {
		return ".weight", fmt.Errorf("backend %q: weight %d must be between 1 and 1000", b.ID, b.Weight)
	}
	return "", nil
}

func (v *validator) routes(pools map[string]bool) {
	if len(v.cfg.Routes) == 0 {
		v.add("routes", "at least one route is required (e.g. routes: [{name: all, match: {path_prefix: /}, pool: web}])")
	}
	names := map[string]bool{}
	matches := map[string]string{} // host and prefix as the router compares them → route
	for i, r := range v.cfg.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		switch {
		case r.Name == "":
			v.add(p, "route has no name")
		case names[r.Name]:
			v.add(p+".name", "duplicate route name %q", r.Name)
		}
		names[r.Name] = true
		prefix := r.Match.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		key := strings.ToLower(r.Match.Host) + " " + prefix
		if first, dup := matches[key]; dup {
			v.add(p+".match", "route %q matches what route %q matches (host %q, path_prefix %q); the first in the file would take all its requests", r.Name, first, r.Match.Host, prefix)
		} else {
			matches[key] = r.Name
		}
		if r.Pool == "" {
			v.add(p, "route %q has no pool", r.Name)
		} else if !pools[r.Pool] {
			v.add(p+".pool", "route %q points at pool %q, which is not defined under pools", r.Name, r.Pool)
		}
		if err := checkHostPattern(r.Match.Host); err != nil {
			v.add(p+".match.host", "route %q: %v", r.Name, err)
		}
		if r.Match.PathPrefix != "" && !strings.HasPrefix(r.Match.PathPrefix, "/") {
			v.add(p+".match.path_prefix", "route %q: path_prefix %q must start with /", r.Name, r.Match.PathPrefix)
		}
	}
}

func (v *validator) logging() {
	if a := v.cfg.Logging.AuditLog; a.Path == "-" {
		v.add("logging.audit_log.path", "logging.audit_log.path cannot be \"-\": the audit trail must be a file (omit it for data_dir/audit/audit.log)")
	} else if a.Path != "" && a.Path == a.SigningKeyFile {
		v.add("logging.audit_log.signing_key_file", "logging.audit_log.signing_key_file must not be the audit log itself")
	}
	v.accessLog()
	p := v.cfg.Logging.AccessLog.Path
	if p == "" || p == "-" {
		return
	}
	dir := filepath.Dir(v.cfg.Resolve(p))
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		v.add("logging.access_log.path", "access log directory %q does not exist", dir)
	}
}

// Resolve makes a path from the config relative to the config file's directory.
func (c *Config) Resolve(p string) string {
	if p == "" || p == "-" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// checkHostPort validates "host:port". Listen addresses may use port 0 (an
// ephemeral port, for tests); backend addresses may not.
func checkHostPort(s string, needHost, listen bool) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("not host:port")
	}
	n, err := strconv.Atoi(port)
	if listen && err == nil && n == 0 {
		return host, nil
	}
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number between 1 and 65535", port)
	}
	if needHost && host == "" {
		return "", fmt.Errorf("missing host")
	}
	if host != "" && strings.ContainsAny(host, " /") {
		return "", fmt.Errorf("invalid host %q", host)
	}
	if looksNumeric(host) {
		// "256.0.0.1" or "10.0.1": meant as an address, but a resolver
		// would take it for a name and fail only at serve time.
		if _, err := netip.ParseAddr(host); err != nil {
			return "", fmt.Errorf("%q is not a valid IP address", host)
		}
	}
	return host, nil
}

// looksNumeric reports whether host is made of digits and dots only, as an
// IPv4 address is: no host name is.
func looksNumeric(host string) bool {
	return host != "" && strings.Trim(host, "0123456789.") == ""
}

func checkHostPattern(h string) error {
	if h == "" {
		return nil
	}
	rest := h
	if strings.HasPrefix(h, "*.") {
		rest = h[2:]
	}
	if rest == "" || strings.ContainsAny(rest, "*/: ") || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") {
		return fmt.Errorf("host %q is not a host name or a one-label wildcard such as *.example.com", h)
	}
	return nil
}

// ParsePrefix accepts "10.0.0.0/8", "192.0.2.1" or "::1" and returns a prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if a := p.Addr(); err == nil && a.Is4In6() && p.Bits() >= 96 {
			// "::ffff:10.0.0.0/104" is 10.0.0.0/8: peers are matched
			// unmapped, and would never be inside the mapped form.
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePrefixes parses addresses and CIDRs (trusted_proxies) with
// ParsePrefix, leaving out what does not parse (validate refuses it).
func ParsePrefixes(entries []string) []netip.Prefix {
	var ps []netip.Prefix
	for _, e := range entries {
		if p, err := ParsePrefix(e); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// HashKey says what consistent_hash hashes.
type HashKey struct {
	Header string // empty: client IP
}

// ParseHashKey parses "client_ip" or "header:NAME".
func ParseHashKey(s string) (HashKey, error) {
	if s == "client_ip" {
		return HashKey{}, nil
	}
	if h, ok := strings.CutPrefix(s, "header:"); ok && h != "" {
		return HashKey{Header: h}, nil
	}
	return HashKey{}, fmt.Errorf("hash_key %q: use client_ip or header:NAME", s)
}
