// Package config defines Rampart's YAML configuration, its defaults and its
// validation. Every problem is reported with the YAML line it comes from so
// that an operator can fix a file without guessing; unknown keys are errors
// because a typo in a security setting must never be silently ignored.
package config

import (
	"path/filepath"
	"strconv"
	"time"
)

// Config is the whole file. Only keys that Rampart implements exist here: a
// key that is accepted but does nothing would be a lie to the operator.
type Config struct {
	// DataDir holds state that must survive restarts: backend overrides
	// (quarantine, drain, runtime registrations) and, later, the dynamic
	// blocklist and the audit trail.
	DataDir string `yaml:"data_dir"`
	// InstanceName identifies this instance in logs (lb_instance).
	InstanceName string `yaml:"instance_name"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight requests.
	ShutdownTimeout Duration   `yaml:"shutdown_timeout"`
	Admin           Admin      `yaml:"admin"`
	Listeners       []Listener `yaml:"listeners"`
	Routes          []Route    `yaml:"routes"`
	Pools           []Pool     `yaml:"pools"`
	Security        Security   `yaml:"security"`
	Logging         Logging    `yaml:"logging"`

	// File is the path the config was loaded from; lines maps a dotted key
	// path ("pools[0].backends[1].address") to its line in File.
	File  string         `yaml:"-"`
	lines map[string]int `yaml:"-"`
}

// Admin is the management listener and how its callers are authenticated
// (admin.go has the details and their validation).
type Admin struct {
	// Listen defaults to loopback; a non-loopback address is refused
	// unless callers must authenticate (tls.client_ca_file or tokens).
	Listen string `yaml:"listen"`
	// TLS serves the admin API over TLS 1.2+, with client certificates
	// (mTLS) when ClientCAFile is set.
	TLS *AdminTLS `yaml:"tls"`
	// Tokens are bearer tokens, stored as their SHA-256.
	Tokens []AdminToken `yaml:"tokens"`
	// AuthFailures bounds authentication attempts per client address.
	AuthFailures AuthFailures `yaml:"auth_failures"`
}

// Listener is one client-facing socket.
type Listener struct {
	Name     string `yaml:"name"`
	Listen   string `yaml:"listen"`
	Protocol string `yaml:"protocol"` // http | https
	// RedirectToHTTPS makes an http listener answer every request with a
	// 308 to the same URL on https (ACME HTTP-01 challenges excepted).
	RedirectToHTTPS bool `yaml:"redirect_to_https"`
	// TLS is the termination policy and certificates of an https
	// listener (tls.go).
	TLS *ListenerTLS `yaml:"tls"`
	// SNIRouting selects certificate and pool by the client's SNI (tls.go).
	SNIRouting []SNIRoute `yaml:"sni_routing"`
	// H2C accepts HTTP/2 over cleartext (prior knowledge) beside HTTP/1.1.
	H2C bool `yaml:"h2c"`
	// TrustedProxies are peers (addresses or CIDRs) whose X-Forwarded-For
	// is believed; from anyone else it is replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ProxyProtocol makes every connection from a trusted proxy start with
	// a PROXY protocol v1 or v2 header, whose source address is the client;
	// connections from other peers are plain HTTP. Fixed for the life of the
	// socket (a change applies after a restart).
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// Engine is how an http listener's connections wait: "eventloop" (the
	// default: on Rampart's own event loops, one per core, resumed in the
	// order their sockets become ready; package evloop) or "goroutines"
	// (a goroutine each, waiting in Go's network poller). https listeners
	// always use goroutines (TLS). Fixed for the life of the socket.
	Engine string `yaml:"engine"`
}

// Listener engines (Listener.Engine).
const (
	EngineEventLoop  = "eventloop"
	EngineGoroutines = "goroutines"
)

// EventLoop reports whether the listener's plaintext connections run on
// event loops.
func (l *Listener) EventLoop() bool {
	return l.Protocol == "http" && l.Engine != EngineGoroutines
}

// Route maps host and path to a pool. Routes are tried most specific first
// (exact host before wildcard before any host, then longest path prefix).
type Route struct {
	Name  string     `yaml:"name"`
	Match RouteMatch `yaml:"match"`
	Pool  string     `yaml:"pool"`
	// MaxBodyBytes overrides security.request_limits.max_body_bytes.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Headers adds to or overrides security.headers.add for this route.
	Headers *RouteHeaders `yaml:"headers"`
	// WAF overrides security.waf for this route (waf.go).
	WAF *RouteWAF `yaml:"waf"`
}

// RouteMatch selects requests. Host is exact ("api.example.com"), a one-label
// wildcard ("*.example.com") or empty for any host.
type RouteMatch struct {
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
}

// Pool is a set of backends behind one balancing algorithm.
type Pool struct {
	Name      string    `yaml:"name"`
	Algorithm string    `yaml:"algorithm"`
	HashKey   string    `yaml:"hash_key"` // consistent_hash: "client_ip" or "header:NAME"
	Backends  []Backend `yaml:"backends"`
	// Retries is how many other backends an idempotent request is tried on
	// when connecting to the chosen one fails.
	Retries          int               `yaml:"retries"`
	HealthCheck      *HealthCheck      `yaml:"health_check"`
	OutlierDetection *OutlierDetection `yaml:"outlier_detection"`
	DrainTimeout     Duration          `yaml:"drain_timeout"`
	ConnectTimeout   Duration          `yaml:"connect_timeout"`
	// ResponseHeaderTimeout bounds the wait for a backend's response head
	// once the request is sent (504 after it); a body may stream for longer.
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`
	// ReadTimeout bounds the wait between two reads of a backend's answer
	// body (nginx's proxy_read_timeout): a backend that stops mid-body
	// held the client's and its own connection open for good.
	ReadTimeout Duration `yaml:"read_timeout"`
	// MaxIdleConnsPerBackend sizes the keep-alive pool to each backend.
	MaxIdleConnsPerBackend int `yaml:"max_idle_conns_per_backend"`
	// BackendTLS re-encrypts to the backends, with mTLS (backendtls.go).
	BackendTLS *BackendTLS `yaml:"backend_tls"`
}

// Backend is one upstream server.
type Backend struct {
	ID      string `yaml:"id"`
	Address string `yaml:"address"` // host:port
	Weight  int    `yaml:"weight"`
}

// HealthCheck configures active probing.
type HealthCheck struct {
	Path               string   `yaml:"path"`
	Interval           Duration `yaml:"interval"`
	Timeout            Duration `yaml:"timeout"`
	HealthyThreshold   int      `yaml:"healthy_threshold"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"`
}

// OutlierDetection configures passive ejection from observed traffic.
type OutlierDetection struct {
	Consecutive5xx            int      `yaml:"consecutive_5xx"`
	ConsecutiveConnectFailure int      `yaml:"consecutive_connect_failures"`
	EjectionTime              Duration `yaml:"ejection_time"`
}

// Logging configures the access log and the audit trail.
type Logging struct {
	AccessLog AccessLog `yaml:"access_log"`
	AuditLog  AuditLog  `yaml:"audit_log"`
}

// AuditLog is where the tamper-evident audit trail and its signing key
// live. Both default to data_dir/audit/ (audit.log, audit.key); they
// cannot change on reload, since the trail is one chain.
type AuditLog struct {
	Path           string `yaml:"path"`
	SigningKeyFile string `yaml:"signing_key_file"`
}

// AuditPaths returns the audit log and signing key files: the configured
// ones relative to the config file, or the defaults under data_dir.
func (c *Config) AuditPaths() (logPath, keyFile string) {
	logPath = filepath.Join(c.DataDir, "audit", "audit.log")
	keyFile = filepath.Join(c.DataDir, "audit", "audit.key")
	if p := c.Logging.AuditLog.Path; p != "" {
		logPath = c.Resolve(p)
	}
	if p := c.Logging.AuditLog.SigningKeyFile; p != "" {
		keyFile = c.Resolve(p)
	}
	return logPath, keyFile
}

// AccessLog is where per-request JSON lines go; an empty path disables it.
type AccessLog struct {
	Path     string            `yaml:"path"` // file path, "-" for stdout, "" for off
	Sanitize AccessLogSanitize `yaml:"sanitize"`
	Rotation AccessLogRotation `yaml:"rotation"`
}

// Algorithms lists the balancing algorithms Rampart implements.
var Algorithms = []string{"round_robin", "weighted_round_robin", "least_connections", "power_of_two", "consistent_hash"}

// Defaults applied by Load.
const (
	DefaultAdminListen    = "127.0.0.1:9090"
	DefaultDataDir        = "data"
	DefaultDrainTimeout   = 300 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	// DefaultResponseHeaderTimeout is nginx's proxy_read_timeout default.
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultReadTimeout           = 60 * time.Second // nginx's proxy_read_timeout
	DefaultShutdownTimeout       = 30 * time.Second
	DefaultMaxIdlePerBE          = 256
)

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	c.Admin.applyDefaults()
	c.applyHardeningDefaults()
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	c.accessLogDefaults()
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Protocol == "" {
			l.Protocol = "http"
		}
		c.listenerTLSDefaults(i)
	}
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.Algorithm == "" {
			p.Algorithm = "round_robin"
		}
		if p.Algorithm == "consistent_hash" && p.HashKey == "" {
			p.HashKey = "client_ip"
		}
		if p.DrainTimeout == 0 {
			p.DrainTimeout = Duration(DefaultDrainTimeout)
		}
		if p.ConnectTimeout == 0 {
			p.ConnectTimeout = Duration(DefaultConnectTimeout)
		}
		if p.ResponseHeaderTimeout == 0 {
			p.ResponseHeaderTimeout = Duration(DefaultResponseHeaderTimeout)
		}
		if p.ReadTimeout == 0 {
			p.ReadTimeout = Duration(DefaultReadTimeout)
		}
		zeroDefault(&p.MaxIdleConnsPerBackend, DefaultMaxIdlePerBE)
		// An explicit "retries: 0" turns retries off; only a missing key
		// takes the default.
		if _, set := c.lines["pools["+strconv.Itoa(i)+"].retries"]; p.Retries == 0 && !set {
			p.Retries = 1
		}
		for j := range p.Backends {
			// Only a missing weight is 1: a written 0 is refused.
			_, set := c.lines["pools["+strconv.Itoa(i)+"].backends["+strconv.Itoa(j)+"].weight"]
			if p.Backends[j].Weight == 0 && !set {
				p.Backends[j].Weight = 1
			}
		}
		if h := p.HealthCheck; h != nil {
			if h.Path == "" {
				h.Path = "/healthz"
			}
			if h.Interval == 0 {
				h.Interval = Duration(5 * time.Second)
			}
			if h.Timeout == 0 {
				h.Timeout = Duration(2 * time.Second)
			}
			if h.HealthyThreshold == 0 {
				h.HealthyThreshold = 2
			}
			if h.UnhealthyThreshold == 0 {
				h.UnhealthyThreshold = 3
			}
		}
		if o := p.OutlierDetection; o != nil {
			if o.EjectionTime == 0 {
				o.EjectionTime = Duration(30 * time.Second)
			}
		}
		c.backendTLSDefaults(i)
	}
}

// Line returns the line of a dotted key path, falling back to the closest
// enclosing key that has one, so every problem points somewhere useful.
func (c *Config) Line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := lastSep(path)
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 1
}

func lastSep(p string) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '.' || p[i] == '[' {
			return i
		}
	}
	return -1
}

// Pool returns the pool named name, or nil.
func (c *Config) Pool(name string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}
