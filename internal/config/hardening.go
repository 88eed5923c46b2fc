package config

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// SlowlorisProtection bounds slow clients (DESIGN §3). Timeouts are whole
// seconds; a key written as 0 turns its check off, a missing key takes the
// default.
type SlowlorisProtection struct {
	HeaderTimeoutSeconds int `yaml:"header_timeout_seconds"`
	BodyTimeoutSeconds   int `yaml:"body_timeout_seconds"`
	IdleTimeoutSeconds   int `yaml:"idle_timeout_seconds"`
	// WriteTimeoutSeconds bounds each write of an answer to the client: a
	// client that stops reading is cut off after it.
	WriteTimeoutSeconds        int   `yaml:"write_timeout_seconds"`
	MinDataRateBytesPerSecond  int64 `yaml:"min_data_rate_bytes_per_second"`
	MaxConnectionsPerIP        int   `yaml:"max_connections_per_ip"`
	MaxNewConnectionsPerIPPerS int   `yaml:"max_new_connections_per_ip_per_second"`

	// Behavioural detection (slow_clients.go in internal/server): every
	// slow indicator a client's connection ends with (a trickled head, a
	// slow body, a slow read, a write timeout) adds a point to the
	// client's score, which halves every SlowClientHalfLifeSeconds. While
	// the score is at or above SlowClientScoreThreshold each further
	// indicator is reported to the dynamic blocklist as a slow_client
	// offence (auto_block.slow_clients). Threshold 0: detection off.
	SlowClientScoreThreshold  float64 `yaml:"slow_client_score_threshold"`
	SlowClientHalfLifeSeconds int     `yaml:"slow_client_half_life_seconds"`
	// SlowClientMaxTrackedIPs bounds the memory of scores; the least
	// recently scored clients are forgotten first.
	SlowClientMaxTrackedIPs int `yaml:"slow_client_max_tracked_ips"`
}

// RequestLimits bound what a request may carry before it reaches routing.
type RequestLimits struct {
	MaxRequestLineBytes int   `yaml:"max_request_line_bytes"`
	MaxHeaderBytes      int   `yaml:"max_header_bytes"`
	MaxHeaders          int   `yaml:"max_headers"`
	MaxBodyBytes        int64 `yaml:"max_body_bytes"` // routes[].max_body_bytes overrides it
	// AllowedMethods are served; any other method is answered 405.
	AllowedMethods []string `yaml:"allowed_methods"`
	// AllowEncodedSlashes lets %2F and %5C (an encoded slash or backslash)
	// through in a path; by default such a request is refused with 400,
	// because the backend may decode them into path separators that
	// routing and policy never saw.
	AllowEncodedSlashes bool `yaml:"allow_encoded_slashes"`
}

// HTTP2Limits bound each HTTP/2 (h2c) connection. The header list a
// stream may send is request_limits.max_header_bytes.
type HTTP2Limits struct {
	MaxConcurrentStreams      int `yaml:"max_concurrent_streams"`
	MaxHeaderTableSize        int `yaml:"max_header_table_size"`
	MaxReadFrameSize          int `yaml:"max_read_frame_size"`
	MaxReceiveBufferPerStream int `yaml:"max_receive_buffer_per_stream"`
	// MaxResetsPerSecond: a client resetting more streams within a second
	// gets GOAWAY (ENHANCE_YOUR_CALM) and its connection is closed.
	MaxResetsPerSecond int `yaml:"max_resets_per_second"`
}

// Headers shapes every answer: the backend's Server header is dropped and
// the headers of Add are set (on proxied answers and on Rampart's own
// error pages). A value written as "" removes a default.
type Headers struct {
	RemoveServer *bool             `yaml:"remove_server"`
	Add          map[string]string `yaml:"add"`
}

// RouteHeaders adds to or overrides security.headers.add for one route;
// a value "" removes the global header on this route.
type RouteHeaders struct {
	Add map[string]string `yaml:"add"`
}

// SynFloodProtection states the host posture Rampart expects; the kernel
// does the work (SYN cookies, the SYN backlog). Rampart checks it at start.
type SynFloodProtection struct {
	Enabled       *bool `yaml:"enabled"`
	SynCookies    *bool `yaml:"syn_cookies"`
	MaxSynBacklog int   `yaml:"max_syn_backlog"`
	// OnMismatch is what start does when the kernel contradicts
	// syn_cookies: warn (default) or refuse.
	OnMismatch string `yaml:"on_mismatch"`
	// ApplySysctls makes start write the posture into /proc/sys when it
	// may (root, writable): tcp_syncookies=1 (with syn_cookies: true),
	// tcp_max_syn_backlog and somaxconn raised to max_syn_backlog. When it
	// may not, start warns, or refuses with on_mismatch: refuse.
	ApplySysctls bool `yaml:"apply_sysctls"`
}

// Defaults of the hardening sections (DESIGN §3).
const (
	DefaultHeaderTimeout       = 10
	DefaultBodyTimeout         = 30
	DefaultIdleTimeout         = 60
	DefaultWriteTimeout        = 30
	DefaultMinDataRate         = 100
	DefaultMaxConnsPerIP       = 100
	DefaultMaxNewConnsPerIPSec = 20
	DefaultMaxRequestLineBytes = 4096
	DefaultMaxHeaderBytes      = 8192
	DefaultMaxHeaders          = 100
	DefaultMaxBodyBytes        = 10 << 20
	DefaultMaxSynBacklog       = 65536

	DefaultSlowClientScoreThreshold = 5
	DefaultSlowClientHalfLife       = 600
	DefaultSlowClientMaxTrackedIPs  = 100_000

	DefaultH2MaxConcurrentStreams = 100
	DefaultH2MaxHeaderTableSize   = 4096
	DefaultH2MaxReadFrameSize     = 16384
	DefaultH2MaxReceiveBuffer     = 1 << 20
	DefaultH2MaxResetsPerSecond   = 200
)

// DefaultAllowedMethods: TRACE (reflects requests, cross-site tracing) and
// CONNECT (tunnels) are not among them.
var DefaultAllowedMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// DefaultSecurityHeaders are set on every answer unless headers.add says
// otherwise.
var DefaultSecurityHeaders = map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}

// defaultInt sets *v to def when the key is missing (an explicit 0 stays).
func defaultInt[T int | int64](c *Config, key string, v *T, def T) {
	if _, set := c.lines[key]; *v == 0 && !set {
		*v = def
	}
}

func (c *Config) applyHardeningDefaults() {
	const sp = "security.slowloris_protection."
	s := &c.Security.SlowlorisProtection
	defaultInt(c, sp+"header_timeout_seconds", &s.HeaderTimeoutSeconds, DefaultHeaderTimeout)
	defaultInt(c, sp+"body_timeout_seconds", &s.BodyTimeoutSeconds, DefaultBodyTimeout)
	defaultInt(c, sp+"idle_timeout_seconds", &s.IdleTimeoutSeconds, DefaultIdleTimeout)
	defaultInt(c, sp+"write_timeout_seconds", &s.WriteTimeoutSeconds, DefaultWriteTimeout)
	defaultInt(c, sp+"min_data_rate_bytes_per_second", &s.MinDataRateBytesPerSecond, DefaultMinDataRate)
	defaultInt(c, sp+"max_connections_per_ip", &s.MaxConnectionsPerIP, DefaultMaxConnsPerIP)
	defaultInt(c, sp+"max_new_connections_per_ip_per_second", &s.MaxNewConnectionsPerIPPerS, DefaultMaxNewConnsPerIPSec)
	if _, set := c.lines[sp+"slow_client_score_threshold"]; !set {
		s.SlowClientScoreThreshold = DefaultSlowClientScoreThreshold
	}
	defaultInt(c, sp+"slow_client_half_life_seconds", &s.SlowClientHalfLifeSeconds, DefaultSlowClientHalfLife)
	defaultInt(c, sp+"slow_client_max_tracked_ips", &s.SlowClientMaxTrackedIPs, DefaultSlowClientMaxTrackedIPs)
	// Request limits are never "off": a missing or 0 value is the default.
	r := &c.Security.RequestLimits
	zeroDefault(&r.MaxRequestLineBytes, DefaultMaxRequestLineBytes)
	zeroDefault(&r.MaxHeaderBytes, DefaultMaxHeaderBytes)
	zeroDefault(&r.MaxHeaders, DefaultMaxHeaders)
	zeroDefault(&r.MaxBodyBytes, DefaultMaxBodyBytes)
	if r.AllowedMethods == nil {
		r.AllowedMethods = slices.Clone(DefaultAllowedMethods)
	}
	// HTTP/2 limits are never off either.
	h2 := &c.Security.HTTP2
	zeroDefault(&h2.MaxConcurrentStreams, DefaultH2MaxConcurrentStreams)
	zeroDefault(&h2.MaxHeaderTableSize, DefaultH2MaxHeaderTableSize)
	zeroDefault(&h2.MaxReadFrameSize, DefaultH2MaxReadFrameSize)
	zeroDefault(&h2.MaxReceiveBufferPerStream, DefaultH2MaxReceiveBuffer)
	zeroDefault(&h2.MaxResetsPerSecond, DefaultH2MaxResetsPerSecond)
	h := &c.Security.Headers
	if h.RemoveServer == nil {
		t := true
		h.RemoveServer = &t
	}
	if h.Add == nil {
		h.Add = map[string]string{}
		for k, v := range DefaultSecurityHeaders {
			h.Add[k] = v
		}
	}
	f := &c.Security.SynFloodProtection
	zeroDefault(&f.MaxSynBacklog, DefaultMaxSynBacklog)
	if f.OnMismatch == "" {
		f.OnMismatch = "warn"
	}
}

// Seconds turns a *_seconds value into a duration.
func Seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// SYNFloodEnabled and SYNCookies read the optional booleans (default true).
func (f *SynFloodProtection) SYNFloodEnabled() bool { return f.Enabled == nil || *f.Enabled }

// SYNCookies: see SYNFloodEnabled.
func (f *SynFloodProtection) SYNCookies() bool { return f.SynCookies == nil || *f.SynCookies }

// BodyLimit is the route's max_body_bytes or the global one.
func (c *Config) BodyLimit(r *Route) int64 {
	if r != nil && r.MaxBodyBytes > 0 {
		return r.MaxBodyBytes
	}
	return c.Security.RequestLimits.MaxBodyBytes
}

// framingHeaders may not be set by headers.add: they decide how the answer
// is delimited, and Rampart alone decides that.
var framingHeaders = []string{"Content-Length", "Transfer-Encoding", "Connection", "Trailer", "Upgrade", "Keep-Alive", "Te", "Content-Type", "Set-Cookie", "X-Request-Id", "Date"}

func (v *validator) hardening() {
	const sp = "security.slowloris_protection"
	s := &v.cfg.Security.SlowlorisProtection
	for _, f := range []struct {
		key string
		val int64
		max int64
	}{
		{"header_timeout_seconds", int64(s.HeaderTimeoutSeconds), 3600},
		{"body_timeout_seconds", int64(s.BodyTimeoutSeconds), 86400},
		{"idle_timeout_seconds", int64(s.IdleTimeoutSeconds), 86400},
		{"write_timeout_seconds", int64(s.WriteTimeoutSeconds), 86400},
		{"min_data_rate_bytes_per_second", s.MinDataRateBytesPerSecond, 1 << 30},
		{"max_connections_per_ip", int64(s.MaxConnectionsPerIP), 1 << 20},
		{"max_new_connections_per_ip_per_second", int64(s.MaxNewConnectionsPerIPPerS), 1 << 20},
	} {
		if f.val < 0 || f.val > f.max {
			v.add(sp+"."+f.key, "%s must be between 0 (off) and %d", f.key, f.max)
		}
	}
	if s.HeaderTimeoutSeconds == 0 {
		v.add(sp+".header_timeout_seconds", "header_timeout_seconds cannot be 0: without it one slow client per socket holds a connection forever (slowloris)")
	}
	if s.IdleTimeoutSeconds == 0 {
		v.add(sp+".idle_timeout_seconds", "idle_timeout_seconds cannot be 0: idle keep-alive connections would never be closed")
	}
	if t := s.SlowClientScoreThreshold; t < 0 || t > 1000 || t != t {
		v.add(sp+".slow_client_score_threshold", "slow_client_score_threshold must be between 0 (off) and 1000")
	}
	if h := s.SlowClientHalfLifeSeconds; h < 1 || h > 86400 {
		v.add(sp+".slow_client_half_life_seconds", "slow_client_half_life_seconds %d must be between 1 and 86400", h)
	}
	if n := s.SlowClientMaxTrackedIPs; n < 1 || n > 10_000_000 {
		v.add(sp+".slow_client_max_tracked_ips", "slow_client_max_tracked_ips %d must be between 1 and 10000000", n)
	}
	const rl = "security.request_limits"
	r := &v.cfg.Security.RequestLimits
	for _, f := range []struct {
		key      string
		val      int64
		min, max int64
	}{
		{"max_request_line_bytes", int64(r.MaxRequestLineBytes), 64, 1 << 20},
		{"max_header_bytes", int64(r.MaxHeaderBytes), 256, 1 << 20},
		{"max_headers", int64(r.MaxHeaders), 4, 10000},
		{"max_body_bytes", r.MaxBodyBytes, 1, 1 << 40},
	} {
		if f.val < f.min || f.val > f.max {
			v.add(rl+"."+f.key, "%s %d must be between %d and %d", f.key, f.val, f.min, f.max)
		}
	}
	if len(r.AllowedMethods) == 0 {
		v.add(rl+".allowed_methods", "allowed_methods is empty: no request could be served (omit it for %s)", strings.Join(DefaultAllowedMethods, " "))
	}
	for i, m := range r.AllowedMethods {
		p := fmt.Sprintf("%s.allowed_methods[%d]", rl, i)
		switch {
		case m == http.MethodConnect:
			v.add(p, "CONNECT cannot be allowed: Rampart opens no tunnels")
		case m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t:/()<>@,;\"[]?={}"):
			v.add(p, "method %q is not an upper-case HTTP method token", m)
		}
	}
	h2 := &v.cfg.Security.HTTP2
	for _, f := range []struct {
		key      string
		val      int
		min, max int
	}{
		{"max_concurrent_streams", h2.MaxConcurrentStreams, 1, 1000},
		{"max_header_table_size", h2.MaxHeaderTableSize, 1, 65536},
		{"max_read_frame_size", h2.MaxReadFrameSize, 16384, 1 << 24},
		{"max_receive_buffer_per_stream", h2.MaxReceiveBufferPerStream, 65535, 4<<20 - 1},
		{"max_resets_per_second", h2.MaxResetsPerSecond, 1, 100000},
	} {
		if f.val < f.min || f.val > f.max {
			v.add("security.http2."+f.key, "%s %d must be between %d and %d", f.key, f.val, f.min, f.max)
		}
	}
	v.headerMap("security.headers.add", v.cfg.Security.Headers.Add)
	for i := range v.cfg.Routes {
		rt := &v.cfg.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		if rt.MaxBodyBytes < 0 || rt.MaxBodyBytes > 1<<40 {
			v.add(p+".max_body_bytes", "route %q: max_body_bytes must be between 1 and %d (omit it for security.request_limits.max_body_bytes)", rt.Name, int64(1)<<40)
		}
		if rt.Headers != nil {
			v.headerMap(p+".headers.add", rt.Headers.Add)
		}
	}
	f := &v.cfg.Security.SynFloodProtection
	if f.MaxSynBacklog < 1 || f.MaxSynBacklog > 1<<20 {
		v.add("security.syn_flood_protection.max_syn_backlog", "max_syn_backlog must be between 1 and %d", 1<<20)
	}
	if f.OnMismatch != "warn" && f.OnMismatch != "refuse" {
		v.add("security.syn_flood_protection.on_mismatch", "on_mismatch %q: use warn or refuse", f.OnMismatch)
	}
}

func (v *validator) headerMap(path string, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := path + "." + k
		switch {
		case !validToken(k):
			v.add(p, "header name %q is not a valid token", k)
		case slices.ContainsFunc(framingHeaders, func(f string) bool { return strings.EqualFold(f, k) }):
			v.add(p, "header %q cannot be set here: Rampart sets it itself", k)
		case strings.ContainsAny(m[k], "\r\n\x00"):
			v.add(p, "header %q: the value must not contain CR, LF or NUL", k)
		}
	}
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// zeroDefault sets *p to d when it holds the zero value (the key was
// missing or 0, which for these limits means "the default").
func zeroDefault[T comparable](p *T, d T) {
	var zero T
	if *p == zero {
		*p = d
	}
}
