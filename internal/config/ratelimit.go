package config

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rampart-proxy/rampart/internal/ratelimit"
)

// RateLimits is pipeline stage 3 (DESIGN §1): an instance-wide limit
// (503), per client IP, per endpoint and per user (429). Every tier is off
// unless configured; allowlisted clients are exempt from all of them.
type RateLimits struct {
	Global    *GlobalLimit    `yaml:"global"`
	PerIP     *BucketLimit    `yaml:"per_ip"`
	Endpoints []EndpointLimit `yaml:"endpoints"`
	PerUser   *PerUser        `yaml:"per_user"`
	Adaptive  *Adaptive       `yaml:"adaptive"`
	// Distributed shares the limits across instances (distributed.go).
	Distributed *Distributed `yaml:"distributed"`
	// MaxTrackedClients bounds the clients each limiter remembers.
	MaxTrackedClients int `yaml:"max_tracked_clients"`
	// IETFHeaders adds RateLimit-Policy and RateLimit
	// (draft-ietf-httpapi-ratelimit-headers) to 429s and allowed responses.
	IETFHeaders bool `yaml:"ietf_headers"`
	// HeadersOnSuccess adds X-RateLimit-* to allowed responses too.
	HeadersOnSuccess bool `yaml:"headers_on_success"`
}

// GlobalLimit is the instance's total request rate.
type GlobalLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"` // default: requests_per_second
	// Distributed overrides distributed.mode for this tier.
	Distributed string `yaml:"distributed"`
}

// BucketLimit is a token bucket: requests_per_second, up to burst at once.
type BucketLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"` // default: requests_per_second (at least 1)
	// Distributed overrides distributed.mode for this tier.
	Distributed string `yaml:"distributed"`
}

// EndpointLimit is a sliding window on one path (exact, or a prefix when it
// ends in "*"), optionally for some methods only.
type EndpointLimit struct {
	Path    string   `yaml:"path"`
	Methods []string `yaml:"methods"`
	Limit   int      `yaml:"limit"`
	Window  Duration `yaml:"window"`
	// Key is ip (default) or user (the per_user identity; anonymous
	// clients are counted by IP).
	Key string `yaml:"key"`
	// Message is added to the 429 page; the default names the limit.
	Message string `yaml:"message"`
	// Distributed overrides distributed.mode for this endpoint.
	Distributed string `yaml:"distributed"`
}

// PerUser limits identified users by tier instead of by IP.
type PerUser struct {
	Key UserKey `yaml:"key"`
	JWT *JWT    `yaml:"jwt"`
	// Tiers are named limits; Users maps an identity to a tier.
	Tiers map[string]BucketLimit `yaml:"tiers"`
	Users map[string]string      `yaml:"users"`
	// DefaultTier applies to verified JWT identities not listed in users.
	// Header identities must be listed: anyone can send any header value.
	DefaultTier string `yaml:"default_tier"`
}

// UserKey says where the identity comes from: one of a header or a claim of
// a verified JWT (Authorization: Bearer).
type UserKey struct {
	Header   string `yaml:"header"`
	JWTClaim string `yaml:"jwt_claim"`
}

// JWT says how bearer tokens are verified.
type JWT struct {
	Algorithms    []string `yaml:"algorithms"`      // HS256, RS256, ES256
	SecretFile    string   `yaml:"secret_file"`     // HS256
	PublicKeyFile string   `yaml:"public_key_file"` // RS256 / ES256, PEM
	JWKSFile      string   `yaml:"jwks_file"`
	Issuer        string   `yaml:"issuer"`
	Audience      string   `yaml:"audience"`
}

// Adaptive tightens per-IP limits while the global rate is far above
// normal.
type Adaptive struct {
	Enabled           bool     `yaml:"enabled"`
	TriggerMultiplier float64  `yaml:"trigger_multiplier"` // default 3
	TriggerDuration   Duration `yaml:"trigger_duration"`   // default 60s
	PerIPUnderAttack  float64  `yaml:"per_ip_under_attack"`
	RecoveryDuration  Duration `yaml:"recovery_duration"` // default trigger_duration
	// MinRate: below this many requests/s nothing counts as an attack
	// (a quiet instance's baseline is noise). Default 10.
	MinRate float64 `yaml:"min_rate"`
}

// Rate limit defaults.
const (
	DefaultTriggerMultiplier = 3
	DefaultTriggerDuration   = 60 * time.Second
	DefaultAdaptiveMinRate   = 10
)

// JWTAlgorithms are the algorithms per_user.jwt accepts.
var JWTAlgorithms = []string{"HS256", "RS256", "ES256"}

// Rate returns b as a token-bucket rate with the burst default applied and
// divided by n instances.
func (b BucketLimit) Rate(n int) ratelimit.Rate {
	burst := b.Burst
	if burst == 0 {
		burst = int(math.Ceil(b.RequestsPerSecond))
	}
	n = max(n, 1)
	return ratelimit.Rate{RPS: b.RequestsPerSecond / float64(n), Burst: max(burst/n, 1)}
}

// Instances is the N that local distributed mode divides limits by.
func (r *RateLimits) Instances() int {
	if r.Distributed != nil && r.Distributed.Instances > 0 {
		return r.Distributed.Instances
	}
	return 1
}

// KeyIsUser reports whether the endpoint counts per user.
func (e *EndpointLimit) KeyIsUser() bool { return e.Key == "user" }

// Settings returns a with defaults filled in.
func (a Adaptive) Settings() Adaptive {
	zeroDefault(&a.TriggerMultiplier, DefaultTriggerMultiplier)
	if a.TriggerDuration == 0 {
		a.TriggerDuration = Duration(DefaultTriggerDuration)
	}
	if a.RecoveryDuration == 0 {
		a.RecoveryDuration = a.TriggerDuration
	}
	zeroDefault(&a.MinRate, DefaultAdaptiveMinRate)
	return a
}

func (v *validator) bucket(p string, b *BucketLimit) {
	if b.RequestsPerSecond <= 0 || math.IsNaN(b.RequestsPerSecond) || math.IsInf(b.RequestsPerSecond, 0) {
		v.add(p+".requests_per_second", "%s: requests_per_second must be more than 0", p)
	}
	if b.Burst < 0 {
		v.add(p+".burst", "%s: burst must be 1 or more (omit it for requests_per_second)", p)
	}
}

func (v *validator) rateLimits() {
	const base = "security.rate_limits"
	r := &v.cfg.Security.RateLimits
	if r.MaxTrackedClients < 0 {
		v.add(base+".max_tracked_clients", "max_tracked_clients must be 1 or more")
	}
	if g := r.Global; g != nil {
		v.bucket(base+".global", &BucketLimit{RequestsPerSecond: g.RequestsPerSecond, Burst: g.Burst})
	}
	if r.PerIP != nil {
		v.bucket(base+".per_ip", r.PerIP)
	}
	for i := range r.Endpoints {
		e := &r.Endpoints[i]
		p := fmt.Sprintf("%s.endpoints[%d]", base, i)
		name := e.Path // what the messages call the endpoint
		if name == "" {
			name = fmt.Sprintf("#%d (no path)", i+1)
		}
		if !strings.HasPrefix(e.Path, "/") {
			v.add(p+".path", "endpoint path %q must start with / (a trailing * matches a prefix)", e.Path)
		} else if strings.Contains(strings.TrimSuffix(e.Path, "*"), "*") {
			v.add(p+".path", "endpoint path %q: * is only allowed at the end", e.Path)
		}
		if e.Limit <= 0 {
			v.add(p+".limit", "endpoint %s: limit must be 1 or more", name)
		}
		if e.Window <= 0 {
			// Also after an unparsable window (reported by the decoder
			// too): the limit must never run without one.
			v.add(p+".window", "endpoint %s: window is required and must be longer than 0s (e.g. 1m)", name)
		}
		switch e.Key {
		case "", "ip":
		case "user":
			if r.PerUser == nil {
				v.add(p+".key", "endpoint %s: key user needs per_user (where the identity comes from)", name)
			}
		default:
			v.add(p+".key", "endpoint %s: unknown key %q (ip or user)", name, e.Key)
		}
		for j, m := range e.Methods {
			if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " /\t") {
				v.add(fmt.Sprintf("%s.methods[%d]", p, j), "endpoint %s: method %q must be an upper-case HTTP method such as %s", name, m, http.MethodPost)
			}
		}
		if strings.ContainsAny(e.Message, "\r\n") {
			v.add(p+".message", "endpoint %s: message must be one line", name)
		}
	}
	if u := r.PerUser; u != nil {
		v.perUser(base+".per_user", u)
	}
	if a := r.Adaptive; a != nil && a.Enabled {
		p := base + ".adaptive"
		if r.PerIP == nil {
			v.add(p, "adaptive needs per_ip: it tightens the per-IP limit")
		}
		if a.PerIPUnderAttack <= 0 {
			v.add(p+".per_ip_under_attack", "adaptive: per_ip_under_attack (requests per second per IP) must be more than 0")
		}
		if a.TriggerMultiplier != 0 && a.TriggerMultiplier <= 1 {
			v.add(p+".trigger_multiplier", "adaptive: trigger_multiplier must be more than 1")
		}
		if a.MinRate < 0 {
			v.add(p+".min_rate", "adaptive: min_rate must not be negative")
		}
	}
	v.distributed(base, r)
}

func (v *validator) perUser(p string, u *PerUser) {
	switch {
	case u.Key.Header == "" && u.Key.JWTClaim == "":
		v.add(p+".key", "per_user.key needs header (e.g. X-API-Key) or jwt_claim (e.g. sub)")
	case u.Key.Header != "" && u.Key.JWTClaim != "":
		v.add(p+".key", "per_user.key: use header or jwt_claim, not both")
	case u.Key.JWTClaim != "" && u.JWT == nil:
		v.add(p+".key.jwt_claim", "per_user.key.jwt_claim needs per_user.jwt (the keys that verify tokens): an unverified token is not an identity")
	}
	if j := u.JWT; j != nil {
		jp := p + ".jwt"
		if len(j.Algorithms) == 0 {
			v.add(jp+".algorithms", "per_user.jwt.algorithms is required (%s)", strings.Join(JWTAlgorithms, ", "))
		}
		algsOK := len(j.Algorithms) > 0
		for i, a := range j.Algorithms {
			if !slices.Contains(JWTAlgorithms, a) {
				algsOK = false
				v.add(fmt.Sprintf("%s.algorithms[%d]", jp, i), "per_user.jwt: algorithm %q is not accepted (%s)", a, strings.Join(JWTAlgorithms, ", "))
			}
		}
		if _, err := ratelimit.NewVerifier(v.cfg.JWTOptions(j)); algsOK && err != nil {
			v.add(jp, "per_user.jwt: %v", err)
		}
	}
	if len(u.Tiers) == 0 {
		v.add(p+".tiers", "per_user needs at least one tier (e.g. tiers: {free: {requests_per_second: 10, burst: 20}})")
	}
	names := make([]string, 0, len(u.Tiers))
	for n := range u.Tiers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := u.Tiers[n]
		v.bucket(p+".tiers."+n, &b)
	}
	users := make([]string, 0, len(u.Users))
	for n := range u.Users {
		users = append(users, n)
	}
	sort.Strings(users)
	for _, n := range users {
		if _, ok := u.Tiers[u.Users[n]]; !ok {
			v.add(p+".users."+n, "per_user.users: tier %q of user %q is not defined under tiers", u.Users[n], n)
		}
	}
	if u.DefaultTier != "" {
		if _, ok := u.Tiers[u.DefaultTier]; !ok {
			v.add(p+".default_tier", "per_user.default_tier %q is not defined under tiers", u.DefaultTier)
		}
	}
}

// JWTOptions resolves j's files against the config file.
func (c *Config) JWTOptions(j *JWT) ratelimit.VerifierOptions {
	return ratelimit.VerifierOptions{
		Algorithms:    j.Algorithms,
		SecretFile:    c.Resolve(j.SecretFile),
		PublicKeyFile: c.Resolve(j.PublicKeyFile),
		JWKSFile:      c.Resolve(j.JWKSFile),
		Issuer:        j.Issuer,
		Audience:      j.Audience,
	}
}
