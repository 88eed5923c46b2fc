package acl

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

// Offence kinds reported to Offense by the stages that detect them.
const (
	OffenceRateLimit = "rate_limit" // a request refused with 429 by a per-IP limit
	OffenceWAF       = "waf"        // a request the WAF scored as an attack
	// OffenceAdminAuth is a failed authentication on the admin API. Its
	// rule is fixed: 20 failures within 10 minutes block for 1h, then 24h.
	OffenceAdminAuth = "admin_auth"
	// OffenceSlowClient is a slow-client indicator (trickled head, slow
	// body, slow read) from a client whose slow-client score is over
	// slowloris_protection.slow_client_score_threshold.
	OffenceSlowClient = "slow_client"
)

// An Offender turns repeated offences of one client into dynamic blocks
// according to the auto_block rules: by default 3 rate-limit violations
// within an hour block for 1h, then 4h, 24h and 7d for each further block
// of the same client; 10 WAF attacks within 5 minutes block for 24h.
//
// IPv6 clients are tracked and blocked by their /64: a single host usually
// owns a whole /64 and can pick a fresh address from it at will.
//
// Memory is bounded: at most max_tracked_ips clients are remembered, the
// least recently seen forgotten first (along with their escalation step).
// Escalation history is kept in memory only; a restart starts every client
// at the first step again, while the blocks themselves persist.
type Offender struct {
	dyn *Dynamic
	now func() time.Time
	log *slog.Logger

	rules  atomic.Pointer[map[string]config.EffectiveRule]
	events func(audit.Event) // nil: automatic blocks are only logged
	// proxies are the trusted_proxies of every listener: an automatic
	// block never covers one (see Offense).
	proxies atomic.Pointer[[]netip.Prefix]

	mu   sync.Mutex // guards seen and the records in it
	seen *simplelru.LRU[netip.Prefix, *offenderRecord]
}

// offenderRecord is what is remembered about one client, per kind.
type offenderRecord struct {
	kinds map[string]*offenceState
}

type offenceState struct {
	times        []time.Time // recent offences, oldest first, at most Count
	strikes      int         // blocks so far: the step on the ladder
	blockedUntil time.Time
}

// newOffender returns an Offender that adds blocks to dyn.
func newOffender(dyn *Dynamic, ab *config.AutoBlock, now func() time.Time, log *slog.Logger) *Offender {
	o := &Offender{dyn: dyn, now: now, log: log}
	o.seen, _ = simplelru.NewLRU[netip.Prefix, *offenderRecord](max(ab.TrackedIPs(), 1), nil)
	o.setRules(ab)
	return o
}

// setProxies sets the trusted proxies of every listener (cfg.Listeners).
func (o *Offender) setProxies(ls []config.Listener) {
	var ps []netip.Prefix
	for _, l := range ls {
		ps = append(ps, config.ParsePrefixes(l.TrustedProxies)...)
	}
	o.proxies.Store(&ps)
}

func overlapsAny(ps []netip.Prefix, q netip.Prefix) bool {
	for _, p := range ps {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// setRules applies changed auto_block rules; what is known about clients
// is kept.
func (o *Offender) setRules(ab *config.AutoBlock) {
	rules := map[string]config.EffectiveRule{
		OffenceRateLimit:  ab.RateLimitRule(),
		OffenceWAF:        ab.WAFRule(),
		OffenceSlowClient: ab.SlowClientRule(),
		OffenceAdminAuth:  {Count: 20, Window: 10 * time.Minute, Ladder: []time.Duration{time.Hour, 24 * time.Hour}},
	}
	o.rules.Store(&rules)
	o.mu.Lock()
	o.seen.Resize(max(ab.TrackedIPs(), 1))
	o.mu.Unlock()
}

// Tracked is the number of clients currently remembered.
func (o *Offender) Tracked() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen.Len()
}

// offenderKey is the unit that is tracked and blocked: the IPv4 address,
// or the /64 of an IPv6 address.
func offenderKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.Prefix{}
}

// Offense records that ip committed an offence of kind (OffenceRateLimit,
// OffenceWAF) and blocks it when that completes a rule. Unknown kinds and
// disabled rules are ignored. Offense returns once a resulting block is
// stored; the caller's request is already being refused, so the wait
// costs nothing but that request's time.
func (o *Offender) Offense(ip netip.Addr, kind string) {
	r, ok := (*o.rules.Load())[kind]
	if !ok || r.Count <= 0 || len(r.Ladder) == 0 {
		return
	}
	key := offenderKey(ip)
	if !key.IsValid() {
		return
	}
	// A trusted proxy is never blocked automatically, whichever listener
	// saw the offence (one that trusts it on another would refuse every
	// client behind it), and neither is the /64 around one: an IPv6
	// offender next to a proxy is blocked alone.
	if p := o.proxies.Load(); p != nil && overlapsAny(*p, key) {
		single := netip.PrefixFrom(ip.Unmap().WithZone(""), ip.Unmap().BitLen())
		if overlapsAny(*p, single) {
			return
		}
		key = single
	}
	now := o.now()
	o.mu.Lock()
	rec, ok := o.seen.Get(key)
	if !ok {
		rec = &offenderRecord{kinds: map[string]*offenceState{}}
		o.seen.Add(key, rec)
	}
	st := rec.kinds[kind]
	if st == nil {
		st = &offenceState{}
		rec.kinds[kind] = st
	}
	if now.Before(st.blockedUntil) {
		// Already blocked by this rule (the offence raced the block).
		o.mu.Unlock()
		return
	}
	// A client that stayed clean for as long as the longest step since
	// its last block ended starts again at the bottom of the ladder.
	if st.strikes > 0 && now.Sub(st.blockedUntil) >= r.Ladder[len(r.Ladder)-1] {
		st.strikes = 0
	}
	cut := 0
	for cut < len(st.times) && now.Sub(st.times[cut]) >= r.Window {
		cut++
	}
	// times never outgrows Count: reaching it blocks and empties it.
	st.times = append(st.times[cut:], now)
	if len(st.times) < r.Count {
		o.mu.Unlock()
		return
	}
	dur := r.Ladder[min(st.strikes, len(r.Ladder)-1)]
	st.strikes++
	st.times = st.times[:0]
	st.blockedUntil = now.Add(dur)
	strike := st.strikes
	o.mu.Unlock()

	sev := "medium"
	if kind == OffenceWAF {
		sev = "high"
	}
	e, added, err := o.dyn.addIfLonger(Blocklist, NewEntry{
		Prefix:   key,
		Reason:   fmt.Sprintf("auto_block: %d %s offences within %s (block %d, %s)", r.Count, kind, r.Window, strike, dur),
		Source:   autoSourcePrefix + kind,
		Severity: sev,
		Expires:  now.Add(dur),
	})
	switch {
	case err != nil:
		// Not blocked after all: let the next offence try again.
		o.mu.Lock()
		st.strikes--
		st.blockedUntil = time.Time{}
		o.mu.Unlock()
		o.log.Error("auto_block: cannot add block", "client", key, "kind", kind, "err", err)
	case added:
		o.log.Warn("auto_block: client blocked", "client", key, "kind", kind, "strike", strike, "duration", dur, "id", e.ID)
		if o.events != nil {
			go o.events(audit.Event{Actor: audit.System("auto_block"), Action: audit.ActionAutoBlock,
				Resource: audit.Resource{Type: "acl_entry", ID: key.String()},
				Details:  map[string]any{"kind": kind, "offences": r.Count, "window": r.Window.String(), "strike": strike, "duration": dur.String()},
				Result:   audit.ResultSuccess, After: e})
		}
	}
}
