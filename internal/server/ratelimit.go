package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/ratelimit"
)

// limiters are the rate limiters of the process, kept by name across
// reloads so every client's state survives one (DESIGN §2); a reload only
// changes their parameters.
type limiters struct {
	log      *slog.Logger
	mu       sync.Mutex
	global   *ratelimit.Global
	buckets  map[string]*ratelimit.Bucket
	windows  map[string]*ratelimit.Window
	adaptive *ratelimit.Adaptive
	stop     chan struct{}
	clock    func() time.Time
	events   func(audit.Event) // the audit trail; nil in tests without one

	// The distributed limits (ratelimit_redis.go): the Redis store, its
	// identity (to keep it across reloads that do not change it) and the
	// tiers' distributed limiters by mode and name.
	redis        *ratelimit.Redis
	redisID      string
	redisErrBase uint64        // errors of stores closed by reloads
	redisHealth  time.Duration // ping interval (0: the store's default)
	remotes      map[string]*rlRemote
}

func newLimiters(log *slog.Logger) *limiters {
	return &limiters{log: log, buckets: map[string]*ratelimit.Bucket{}, windows: map[string]*ratelimit.Window{},
		stop: make(chan struct{}), clock: time.Now, remotes: map[string]*rlRemote{}}
}

// rlTable is the compiled rate_limits of one config, part of the table.
type rlTable struct {
	global    *ratelimit.Global
	perIP     *ratelimit.Bucket
	adaptive  *ratelimit.Adaptive
	endpoints []rlEndpoint
	user      *rlUser

	// Distributed limiters of the tiers not local (nil: local).
	globalRemote, perIPRemote *rlRemote
	// Headers: IETF RateLimit fields, X-RateLimit-* on allowed answers.
	ietf, onSuccess           bool
	globalPolicy, perIPPolicy *rlPolicy
}

// rlPolicy names a tier in the IETF fields: RateLimit-Policy's value is
// precomputed, RateLimit's is the name plus the check's numbers.
type rlPolicy struct {
	name   string // an sf-string, quoted
	header string // "name";q=Q;w=W
}

type rlEndpoint struct {
	path    string
	prefix  bool
	methods []string
	byUser  bool
	win     *ratelimit.Window
	msg     string
	remote  *rlRemote
	policy  *rlPolicy
}

type rlUser struct {
	header, claim string
	stableKeys    bool // identities keyed alike on every instance (Redis modes)
	verifier      *ratelimit.Verifier
	users         map[string]*rlTier // identity → tier
	deflt         *rlTier            // verified identities not listed
}

type rlTier struct {
	name   string
	bucket *ratelimit.Bucket
	remote *rlRemote
	policy *rlPolicy
}

func (l *limiters) bucket(name string, r ratelimit.Rate, maxKeys int, keep map[string]bool) *ratelimit.Bucket {
	keep[name] = true
	b := l.buckets[name]
	if b == nil {
		b = ratelimit.NewBucket(r, maxKeys)
		l.buckets[name] = b
	} else {
		b.SetRate(r)
	}
	return b
}

// build compiles cfg's rate limits, reusing limiters by name and dropping
// those no longer configured. It returns nil when no tier is configured.
func (l *limiters) build(cfg *config.Config) *rlTable {
	l.mu.Lock()
	defer l.mu.Unlock()
	rc := &cfg.Security.RateLimits
	n := rc.Instances()
	maxKeys := rc.MaxTrackedClients
	t := &rlTable{ietf: rc.IETFHeaders, onSuccess: rc.HeadersOnSuccess}
	keepB, keepW, keepR := map[string]bool{}, map[string]bool{}, map[string]bool{}
	// The Redis store, when a tier needs one; limits in a Redis mode are
	// the fleet's, their local fallbacks limit/N.
	var dist config.Distributed
	if rc.Distributed != nil {
		dist = rc.Distributed.Settings()
	}
	var store *ratelimit.Redis
	if dist.Redis != nil && l.usesRedis(rc) {
		store = l.redisStore(cfg, dist)
	} else {
		l.closeRedis()
	}
	failClosed := dist.OnRedisFailure == config.FailClosed
	remote := func(own, name string, rate *ratelimit.Rate, win ratelimit.WindowLimit) *rlRemote {
		return l.remote(store, failClosed, rc.TierMode(own), name, rate, win, keepR)
	}
	if g := rc.Global; g != nil {
		b := config.BucketLimit{RequestsPerSecond: g.RequestsPerSecond, Burst: g.Burst}
		r := b.Rate(n)
		if l.global == nil {
			l.global = ratelimit.NewGlobal(r)
		} else {
			l.global.SetRate(r)
		}
		t.global = l.global
		fleet := b.Rate(1)
		t.globalRemote = remote(g.Distributed, "global", &fleet, ratelimit.WindowLimit{})
		t.globalPolicy = bucketPolicy("global", fleet)
	} else {
		l.global = nil
	}
	if rc.PerIP != nil {
		base := rc.PerIP.Rate(n)
		t.perIP = l.bucket("per_ip", base, maxKeys, keepB)
		fleet := rc.PerIP.Rate(1)
		t.perIPRemote = remote(rc.PerIP.Distributed, "per_ip", &fleet, ratelimit.WindowLimit{})
		t.perIPPolicy = bucketPolicy("per-ip", fleet)
		if a := rc.Adaptive; a != nil && a.Enabled {
			s := a.Settings()
			set := ratelimit.AdaptiveSettings{Multiplier: s.TriggerMultiplier, Trigger: s.TriggerDuration.D(),
				Recovery: s.RecoveryDuration.D(), MinRate: s.MinRate / float64(n),
				UnderAttack: config.BucketLimit{RequestsPerSecond: s.PerIPUnderAttack}.Rate(n)}
			if l.adaptive == nil {
				l.adaptive = ratelimit.NewAdaptive(t.perIP, base, set, l.transition)
				go l.tickLoop(l.adaptive, l.stop)
			} else {
				l.adaptive.Configure(base, set)
			}
			t.adaptive = l.adaptive
		}
	}
	if t.adaptive == nil && l.adaptive != nil {
		l.stopAdaptive()
	}
	if u := rc.PerUser; u != nil {
		ut := &rlUser{header: u.Key.Header, claim: u.Key.JWTClaim, users: map[string]*rlTier{}, stableKeys: store != nil}
		tiers := map[string]*rlTier{}
		for name, b := range u.Tiers {
			fleet := b.Rate(1)
			tiers[name] = &rlTier{name: name, bucket: l.bucket("user:"+name, b.Rate(n), maxKeys, keepB),
				remote: remote(b.Distributed, "user:"+name, &fleet, ratelimit.WindowLimit{}),
				policy: bucketPolicy("per-user-"+name, fleet)}
		}
		for id, tier := range u.Users {
			ut.users[id] = tiers[tier]
		}
		ut.deflt = tiers[u.DefaultTier]
		ok := true
		if u.JWT != nil {
			v, err := ratelimit.NewVerifier(cfg.JWTOptions(u.JWT))
			if err != nil { // validated moments ago; a file changed since
				l.log.Error("rate_limits.per_user: JWT keys unusable, every client is limited per IP", "err", err)
				ok = false
			}
			ut.verifier = v
		}
		if ok {
			t.user = ut
		}
	}
	for _, e := range rc.Endpoints {
		key := "ip"
		if e.KeyIsUser() {
			key = "user"
		}
		name := "endpoint:" + strings.Join(e.Methods, ",") + " " + e.Path + " " + key
		keepW[name] = true
		lim := ratelimit.WindowLimit{Limit: e.Limit / n, Window: e.Window.D()}
		lim.Limit = max(lim.Limit, 1)
		w := l.windows[name]
		if w == nil {
			w = ratelimit.NewWindow(lim, maxKeys)
			l.windows[name] = w
		} else {
			w.SetLimit(lim)
		}
		msg := e.Message
		if msg == "" {
			msg = "rate limit for " + e.Path + ": " + strconv.Itoa(e.Limit) + " requests per " + e.Window.D().String()
		}
		fleet := ratelimit.WindowLimit{Limit: e.Limit, Window: e.Window.D()}
		ep := rlEndpoint{path: strings.TrimSuffix(e.Path, "*"), prefix: strings.HasSuffix(e.Path, "*"),
			methods: e.Methods, byUser: e.KeyIsUser(), win: w, msg: msg,
			remote: remote(e.Distributed, name, nil, fleet), policy: windowPolicy("endpoint "+e.Path, fleet)}
		t.endpoints = append(t.endpoints, ep)
	}
	for name := range l.buckets {
		if !keepB[name] {
			delete(l.buckets, name)
		}
	}
	for name := range l.windows {
		if !keepW[name] {
			delete(l.windows, name)
		}
	}
	var syncs []*ratelimit.SyncWindow
	for name, d := range l.remotes {
		switch {
		case !keepR[name]:
			delete(l.remotes, name)
		case d.sync != nil:
			syncs = append(syncs, d.sync)
		}
	}
	if l.redis != nil {
		l.redis.SetSyncWindows(syncs)
	}
	if t.global == nil && t.perIP == nil && t.user == nil && len(t.endpoints) == 0 {
		return nil
	}
	return t
}

// usesRedis reports whether a tier of rc runs in a Redis mode.
func (l *limiters) usesRedis(rc *config.RateLimits) bool {
	redis := func(own string) bool { return rc.TierMode(own) != config.ModeLocal }
	if (rc.Global != nil && redis(rc.Global.Distributed)) || (rc.PerIP != nil && redis(rc.PerIP.Distributed)) {
		return true
	}
	for _, e := range rc.Endpoints {
		if redis(e.Distributed) {
			return true
		}
	}
	if rc.PerUser != nil {
		for _, b := range rc.PerUser.Tiers {
			if redis(b.Distributed) {
				return true
			}
		}
	}
	return false
}

func (l *limiters) stopAdaptive() {
	close(l.stop)
	l.stop = make(chan struct{})
	l.adaptive = nil
}

func (l *limiters) tickLoop(a *ratelimit.Adaptive, stop <-chan struct{}) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			a.Tick(l.clock())
		}
	}
}

func (l *limiters) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.adaptive != nil {
		l.stopAdaptive()
	}
	l.closeRedis()
}

func (l *limiters) transition(from, to string, st ratelimit.AdaptiveStatus) {
	lv := slog.LevelWarn
	if to == ratelimit.StateNormal {
		lv = slog.LevelInfo
	}
	l.log.Log(context.Background(), lv, "rate_limits.adaptive: state change", "from", from, "to", to,
		"normal_rate", st.NormalRate, "current_rate", st.CurrentRate, "per_ip_requests_per_second", st.PerIPRate)
	if l.events != nil {
		go l.events(audit.Event{Actor: audit.System("adaptive_rate_limit"), Action: audit.ActionAdaptiveTransition,
			Resource: audit.Resource{Type: "rate_limits", ID: "adaptive"},
			Details:  map[string]any{"normal_rate": st.NormalRate, "current_rate": st.CurrentRate},
			Result:   audit.ResultSuccess,
			Before:   map[string]any{"state": from}, After: map[string]any{"state": to, "per_ip_requests_per_second": st.PerIPRate}})
	}
}

// adaptiveStatus is nil unless adaptive mode runs.
func (l *limiters) adaptiveStatus() *ratelimit.AdaptiveStatus {
	l.mu.Lock()
	a := l.adaptive
	l.mu.Unlock()
	if a == nil {
		return nil
	}
	st := a.Status()
	return &st
}

// adaptiveCollector exports the adaptive state at scrape time.
type adaptiveCollector struct{ l *limiters }

var (
	adaptiveStateDesc = prometheus.NewDesc("rampart_ratelimit_adaptive_state",
		"1 for the adaptive rate limiter's current state (normal, under_attack, recovering).", []string{"state"}, nil)
	adaptivePerIPDesc = prometheus.NewDesc("rampart_ratelimit_per_ip_requests_per_second",
		"The per-IP rate limit in force (tightened by adaptive mode under attack).", nil, nil)
	adaptiveTransDesc = prometheus.NewDesc("rampart_ratelimit_adaptive_transitions_total",
		"State changes of the adaptive rate limiter.", nil, nil)
)

func (c adaptiveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- adaptiveStateDesc
	ch <- adaptivePerIPDesc
	ch <- adaptiveTransDesc
}

func (c adaptiveCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.adaptiveStatus()
	if st == nil {
		return
	}
	for _, s := range []string{ratelimit.StateNormal, ratelimit.StateUnderAttack, ratelimit.StateRecovering} {
		v := 0.0
		if s == st.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(adaptiveStateDesc, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(adaptivePerIPDesc, prometheus.GaugeValue, st.PerIPRate)
	ch <- prometheus.MustNewConstMetric(adaptiveTransDesc, prometheus.CounterValue, float64(st.Transitions))
}

// Rate-limit tiers, as recorded (rate_limit_tier) and counted
// (rampart_blocked_total{stage="rate_limit",reason=TIER}).
const (
	tierGlobal   = "global"
	tierPerIP    = "per_ip"
	tierEndpoint = "endpoint"
	tierUser     = "per_user"
)

// rateLimit is pipeline stage 3. It returns true when it answered the
// request (503 for the global limit, 429 for the others). Allowlisted
// clients never get here.
func (e *entry) rateLimit(rl *rlTable, w http.ResponseWriter, r *http.Request, rec *pipeline.Record, client netip.Addr, start time.Time) bool {
	now := ratelimit.Mono(start)
	if rl.adaptive != nil {
		rl.adaptive.Hit()
	}
	// The tightest allowed check so far, for headers on allowed answers.
	var shown ratelimit.Result
	var shownPolicy *rlPolicy
	note := func(res *ratelimit.Result, p *rlPolicy) {
		if !rl.ietf && !rl.onSuccess {
			return
		}
		if shownPolicy == nil || res.Remaining() < shown.Remaining() {
			shown, shownPolicy = *res, p
		}
	}
	if rl.global != nil {
		res, st := rl.globalRemote.allow(r.Context(), ratelimit.Key{}, now)
		if st == remoteUseLocal {
			res = rl.global.Allow(now)
		}
		if st == remoteUnavailable {
			e.refuseUnavailable(w, r, rec, tierGlobal)
			return true
		}
		if !res.Allowed {
			e.refuseRate(rl, w, r, rec, client, tierGlobal, "", &res, rl.globalPolicy, http.StatusServiceUnavailable)
			return true
		}
		note(&res, rl.globalPolicy)
	}
	// Who the client is: a user when per_user identifies one, else its IP.
	var userKey ratelimit.Key
	var tier *rlTier
	if rl.user != nil {
		if id, ok := rl.user.identify(r); ok {
			tier = rl.user.users[id]
			if tier == nil && rl.user.verifier != nil {
				tier = rl.user.deflt // a verified identity not listed
			}
			if tier != nil {
				if rl.user.stableKeys {
					userKey = ratelimit.StableKey(id)
				} else {
					userKey = ratelimit.StringKey(id)
				}
			}
		}
	}
	ipOK := client.IsValid()
	ipKey := ratelimit.IPKey(client)
	switch {
	case tier != nil:
		res, st := tier.remote.allow(r.Context(), userKey, now)
		if st == remoteUseLocal {
			res = tier.bucket.Allow(userKey, now)
		}
		if st == remoteUnavailable {
			e.refuseUnavailable(w, r, rec, tierUser)
			return true
		}
		if !res.Allowed {
			e.refuseRate(rl, w, r, rec, client, tierUser, "", &res, tier.policy, http.StatusTooManyRequests)
			return true
		}
		note(&res, tier.policy)
	case rl.perIP != nil && ipOK:
		res, st := rl.perIPRemote.allow(r.Context(), ipKey, now)
		if st == remoteUseLocal {
			res = rl.perIP.Allow(ipKey, now)
		}
		if st == remoteUnavailable {
			e.refuseUnavailable(w, r, rec, tierPerIP)
			return true
		}
		if !res.Allowed {
			e.refuseRate(rl, w, r, rec, client, tierPerIP, "", &res, rl.perIPPolicy, http.StatusTooManyRequests)
			return true
		}
		note(&res, rl.perIPPolicy)
	}
	for i := range rl.endpoints {
		ep := &rl.endpoints[i]
		if !ep.matches(r.Method, r.URL.Path) {
			continue
		}
		k := ipKey
		if ep.byUser && tier != nil {
			k = userKey
		} else if !ipOK {
			continue
		}
		res, st := ep.remote.allow(r.Context(), k, now)
		if st == remoteUseLocal {
			res = ep.win.Allow(k, now)
		}
		if st == remoteUnavailable {
			e.refuseUnavailable(w, r, rec, tierEndpoint)
			return true
		}
		if !res.Allowed {
			e.refuseRate(rl, w, r, rec, client, tierEndpoint, ep.msg, &res, ep.policy, http.StatusTooManyRequests)
			return true
		}
		note(&res, ep.policy)
	}
	if shownPolicy != nil {
		setRateHeaders(w.Header(), rl, &shown, shownPolicy, false)
	}
	return false
}

func (ep *rlEndpoint) matches(method, path string) bool {
	if ep.prefix {
		if !strings.HasPrefix(path, ep.path) {
			return false
		}
	} else if path != ep.path {
		return false
	}
	if len(ep.methods) == 0 {
		return true
	}
	for _, m := range ep.methods {
		// A HEAD runs the backend's GET handler, and its status tells
		// the answer (an OTP or a login check): a GET limit counts it.
		if m == method || (m == http.MethodGet && method == http.MethodHead) {
			return true
		}
	}
	return false
}

// identify returns the request's user identity: the header's value, or
// the claim of a bearer token whose signature verifies. Anything else
// (no token, a malformed, forged, unsigned or expired one) is anonymous.
func (u *rlUser) identify(r *http.Request) (string, bool) {
	if u.header != "" {
		v := r.Header.Get(u.header)
		return v, v != "" && len(v) <= 512
	}
	if u.verifier == nil {
		return "", false
	}
	auth := r.Header.Get("Authorization")
	tok, ok := cutPrefixFold(auth, "Bearer ")
	if !ok || tok == "" {
		return "", false
	}
	return u.verifier.Claim(tok, u.claim)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// refuseRate answers a limited request: Rampart's generic error page, the
// X-RateLimit-* fields and Retry-After (RFC 6585) and, when configured,
// the IETF RateLimit fields; the record's verdict, the metric and, for
// 429s, an offence against the client (repeated offences lead to a
// dynamic block).
func (e *entry) refuseRate(rl *rlTable, w http.ResponseWriter, r *http.Request, rec *pipeline.Record, client netip.Addr, tier, msg string, res *ratelimit.Result, p *rlPolicy, status int) {
	rec.RateLimited, rec.RateLimitTier = true, tier
	rec.Error = "rate_limited"
	e.srv.metrics.Blocked("rate_limit", tier)
	if status == http.StatusTooManyRequests && client.IsValid() {
		e.offense(client, acl.OffenceRateLimit)
	}
	hdr := http.Header{}
	setRateHeaders(hdr, rl, res, p, true)
	pipeline.WriteErrorDetail(w, r, status, msg, hdr)
}

// refuseUnavailable answers while a tier's Redis is unreachable and
// on_redis_failure is fail_closed: 503, not the client's offence.
func (e *entry) refuseUnavailable(w http.ResponseWriter, r *http.Request, rec *pipeline.Record, tier string) {
	rec.RateLimited, rec.RateLimitTier = true, tier
	rec.Error = "rate_limit_unavailable"
	e.srv.metrics.Blocked("rate_limit", "redis_unavailable")
	pipeline.WriteErrorDetail(w, r, http.StatusServiceUnavailable, "", http.Header{"Retry-After": {"1"}})
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
