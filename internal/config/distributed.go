package config

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

// Distributed shares rate limits across instances (DESIGN §3
// rate_limits.distributed). Mode is the default of every tier; a tier or
// endpoint may choose another with its own distributed key.
type Distributed struct {
	// Mode: local (each of Instances enforces limit/N), redis_sync (local
	// counting, counts exchanged with Redis every SyncInterval) or
	// redis_exact (an atomic Redis script per request).
	Mode      string `yaml:"mode"`
	Instances int    `yaml:"instances"` // local (and the fallback of the Redis modes): N
	Redis     *Redis `yaml:"redis"`
	// SyncInterval is how often redis_sync pushes local counts and reads
	// the fleet's back. Default 250ms.
	SyncInterval Duration `yaml:"sync_interval"`
	// KeyPrefix starts every Redis key. Default "rampart:rl:".
	KeyPrefix string `yaml:"key_prefix"`
	// OnRedisFailure: fail_open (default: local limits while Redis is
	// unreachable) or fail_closed (503).
	OnRedisFailure string `yaml:"on_redis_failure"`
}

// Redis is how Rampart reaches the Redis server of distributed limits.
type Redis struct {
	// Address is host:port, or a unix socket path (absolute, or
	// unix:///path).
	Address      string    `yaml:"address"`
	Username     string    `yaml:"username"`
	PasswordFile string    `yaml:"password_file"` // never the password itself: configs get shared
	DB           int       `yaml:"db"`
	TLS          *RedisTLS `yaml:"tls"` // present: connect with TLS
	DialTimeout  Duration  `yaml:"dial_timeout"`
	Timeout      Duration  `yaml:"timeout"` // read and write, per command
	PoolSize     int       `yaml:"pool_size"`
}

// RedisTLS verifies the Redis server's certificate.
type RedisTLS struct {
	CAFile     string `yaml:"ca_file"`     // default: the system roots
	ServerName string `yaml:"server_name"` // default: the address's host
}

// Distributed modes.
const (
	ModeLocal      = "local"
	ModeRedisSync  = "redis_sync"
	ModeRedisExact = "redis_exact"
)

// Distributed defaults.
const (
	DefaultSyncInterval     = 250 * time.Millisecond
	DefaultRedisKeyPrefix   = "rampart:rl:"
	DefaultRedisDialTimeout = time.Second
	DefaultRedisTimeout     = 250 * time.Millisecond
	FailOpen                = "fail_open"
	FailClosed              = "fail_closed"
)

// TierMode is the distributed mode of a tier whose own key is own: own
// when set, else distributed.mode, else local.
func (r *RateLimits) TierMode(own string) string {
	switch {
	case own != "":
		return own
	case r.Distributed != nil && r.Distributed.Mode != "":
		return r.Distributed.Mode
	}
	return ModeLocal
}

// Settings returns d with defaults filled in.
func (d Distributed) Settings() Distributed {
	if d.SyncInterval == 0 {
		d.SyncInterval = Duration(DefaultSyncInterval)
	}
	zeroDefault(&d.KeyPrefix, DefaultRedisKeyPrefix)
	zeroDefault(&d.OnRedisFailure, FailOpen)
	if d.Redis != nil {
		r := *d.Redis
		if r.DialTimeout == 0 {
			r.DialTimeout = Duration(DefaultRedisDialTimeout)
		}
		if r.Timeout == 0 {
			r.Timeout = Duration(DefaultRedisTimeout)
		}
		d.Redis = &r
	}
	return d
}

// RedisNetwork splits a redis address into a net.Dial network and address.
func RedisNetwork(addr string) (network, address string) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		return "unix", p
	}
	if strings.HasPrefix(addr, "/") {
		return "unix", addr
	}
	return "tcp", addr
}

// tierModes maps the YAML path of every configured tier to its own
// distributed key.
func (v *validator) tierModes(base string, r *RateLimits) (modes map[string]string) {
	modes = map[string]string{}
	if r.Global != nil {
		modes[base+".global"] = r.Global.Distributed
	}
	if r.PerIP != nil {
		modes[base+".per_ip"] = r.PerIP.Distributed
	}
	for i := range r.Endpoints {
		modes[fmt.Sprintf("%s.endpoints[%d]", base, i)] = r.Endpoints[i].Distributed
	}
	if r.PerUser != nil {
		for n, t := range r.PerUser.Tiers {
			modes[base+".per_user.tiers."+n] = t.Distributed
		}
	}
	return modes
}

func validMode(m string) bool {
	return m == ModeLocal || m == ModeRedisSync || m == ModeRedisExact
}

func (v *validator) distributed(base string, r *RateLimits) {
	p := base + ".distributed"
	d := r.Distributed
	if d != nil {
		if d.Mode != "" && !validMode(d.Mode) {
			v.add(p+".mode", "unknown distributed mode %q (local, redis_sync or redis_exact)", d.Mode)
		}
		if d.Instances < 0 {
			v.add(p+".instances", "distributed.instances must be 1 or more")
		}
		if _, set := v.cfg.lines[p+".sync_interval"]; d.SyncInterval < 0 || (set && d.SyncInterval == 0) {
			v.add(p+".sync_interval", "distributed.sync_interval must be longer than 0s (e.g. 250ms)")
		}
		switch d.OnRedisFailure {
		case "", FailOpen, FailClosed:
		default:
			v.add(p+".on_redis_failure", "unknown on_redis_failure %q (fail_open or fail_closed)", d.OnRedisFailure)
		}
		if d.Redis != nil {
			v.redis(p+".redis", d.Redis)
		}
	}
	// Every tier's mode, in file order for stable messages.
	modes := v.tierModes(base, r)
	paths := make([]string, 0, len(modes))
	for k := range modes {
		paths = append(paths, k)
	}
	sort.Slice(paths, func(i, j int) bool { return v.cfg.Line(paths[i]) < v.cfg.Line(paths[j]) })
	for _, tp := range paths {
		own := modes[tp]
		where := tp + ".distributed"
		if own == "" {
			where = p + ".mode"
		}
		if own != "" && !validMode(own) {
			v.add(where, "unknown distributed mode %q (local, redis_sync or redis_exact)", own)
			continue
		}
		m := r.TierMode(own)
		if m == ModeLocal || !validMode(m) {
			continue
		}
		name := strings.TrimPrefix(tp, base+".")
		if d == nil || d.Redis == nil {
			v.add(where, "%s: mode %s needs distributed.redis (e.g. redis: {address: 127.0.0.1:6379})", name, m)
		}
		switch {
		case m == ModeRedisExact && name == "global":
			v.add(where, "global cannot use redis_exact: every request would wait on one Redis key; use redis_sync (or set global.distributed: redis_sync)")
		case name == "per_ip" && r.Adaptive != nil && r.Adaptive.Enabled:
			v.add(where, "per_ip cannot use %s with adaptive mode: adaptive tightens the local per-IP bucket; use local for per_ip (per_ip.distributed: local) or disable adaptive", m)
		}
	}
}

func (v *validator) redis(p string, rc *Redis) {
	network, addr := RedisNetwork(rc.Address)
	switch {
	case rc.Address == "":
		v.add(p+".address", "distributed.redis.address is required (host:port or a unix socket path)")
	case network == "unix":
		if !strings.HasPrefix(addr, "/") {
			v.add(p+".address", "redis unix socket %q must be an absolute path", addr)
		}
	default:
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			v.add(p+".address", "redis address %q must be host:port (e.g. 127.0.0.1:6379) or a unix socket path", rc.Address)
		}
	}
	if rc.PasswordFile != "" {
		if b, err := os.ReadFile(v.cfg.Resolve(rc.PasswordFile)); err != nil {
			v.add(p+".password_file", "redis password_file: %v", err)
		} else if strings.TrimSpace(string(b)) == "" {
			v.add(p+".password_file", "redis password_file %s is empty", rc.PasswordFile)
		}
	}
	if rc.DB < 0 {
		v.add(p+".db", "redis db must be 0 or more")
	}
	if rc.DialTimeout < 0 {
		v.add(p+".dial_timeout", "redis dial_timeout must be longer than 0s")
	}
	if rc.Timeout < 0 {
		v.add(p+".timeout", "redis timeout must be longer than 0s")
	}
	if rc.PoolSize < 0 {
		v.add(p+".pool_size", "redis pool_size must be 1 or more")
	}
	if t := rc.TLS; t != nil && t.CAFile != "" {
		if _, err := os.ReadFile(v.cfg.Resolve(t.CAFile)); err != nil {
			v.add(p+".tls.ca_file", "redis tls.ca_file: %v", err)
		}
	}
}

// RedisPassword reads the password file of rc ("" without one).
func (c *Config) RedisPassword(rc *Redis) (string, error) {
	if rc.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.Resolve(rc.PasswordFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
