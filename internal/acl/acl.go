// Package acl decides, from the client's IP address alone, whether a
// connection or request is let through without further checks, refused,
// or left to the later stages of the pipeline.
//
// The sources, in the order of DESIGN §1, are:
//
//  1. the allowlist: static entries from the config and its list files,
//     then dynamic allow entries. A match allows and skips every later
//     check, blocklists included.
//  2. the blocklist: static entries, then threat feeds, then dynamic block
//     entries (added by operators or by auto_block). A match denies.
//  3. GeoIP (geo.go): blocked countries, blocked ASNs, then
//     allow_countries, from MaxMind-format databases. A match denies.
//
// An ACL is long-lived: Reload swaps in new static lists and feed settings
// atomically while dynamic entries, feed data and offender history stay.
// Check takes no locks and does not allocate, so it can run at accept time
// for every connection.
package acl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

// Action is what the IP lists decided.
type Action uint8

const (
	// ActionNone: no list matched; the later checks decide.
	ActionNone Action = iota
	// ActionAllow: allowlisted; skip the remaining checks.
	ActionAllow
	// ActionDeny: blocklisted; refuse.
	ActionDeny
)

func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionDeny:
		return "deny"
	}
	return "none"
}

// Decision is the verdict of Check and why: Source names the list that
// matched ("static:allowlist", "static:blocklist", "feed:<name>",
// "dynamic:<id>") and Prefix the entry in it.
type Decision struct {
	Action Action
	Source string
	Prefix netip.Prefix
}

// Options are the parts of an ACL that do not come from the config.
type Options struct {
	// Now is the clock for expiry, offence windows and feed status.
	// Default time.Now.
	Now func() time.Time
	// Logger receives feed, purge and auto_block events. Default
	// slog.Default().
	Logger *slog.Logger
	// HTTPClient fetches URL feeds. Default: a client with a 60 s timeout
	// that refuses redirects from https to http.
	HTTPClient *http.Client
	// Events, when set, receives every automatic block (auto_block rules)
	// for the audit trail. It is called on a goroutine of its own.
	Events func(audit.Event)
}

// ACL is the assembled IP access control: static lists, feeds, dynamic
// lists and the offender tracker.
type ACL struct {
	now  func() time.Time
	log  *slog.Logger
	http *http.Client

	lists atomic.Pointer[snapshot]
	dyn   *Dynamic
	off   *Offender

	mu        sync.Mutex // serialises Reload and Close
	feeds     map[string]*feed
	storePath string
	cacheDir  string
	closed    bool
}

// snapshot is what one config compiles to. It is immutable once
// published; feeds replace their own tables in place.
type snapshot struct {
	allow, block *Table
	feeds        []*feed // blocklist feeds in config order
	geo          *geoSet // nil without a geoip database
}

// New builds the ACL for cfg: it reads the static lists and list files
// (failing on any bad entry), opens the dynamic store, loads file feeds and
// local copies of URL feeds, and starts refreshing feeds in the background.
func New(cfg *config.Config, o Options) (*ACL, error) {
	a := &ACL{now: o.Now, log: o.Logger, http: o.HTTPClient, feeds: map[string]*feed{}}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.http == nil {
		a.http = newFeedClient()
	}
	static, err := buildStatic(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkFeeds(cfg); err != nil {
		return nil, err
	}
	if static.geo, err = buildGeo(cfg, nil); err != nil {
		return nil, err
	}
	a.storePath = cfg.DynamicStorePath()
	a.cacheDir = filepath.Join(cfg.DataDir, "feeds")
	db := &cfg.Security.DynamicBlocklist
	a.dyn, err = OpenDynamic(a.storePath, DynamicOptions{DefaultTTL: db.TTL(), Now: a.now, Logger: a.log})
	if err != nil {
		return nil, err
	}
	a.off = newOffender(a.dyn, &db.AutoBlock, a.now, a.log)
	a.off.events = o.Events
	a.mu.Lock()
	defer a.mu.Unlock()
	a.apply(cfg, static)
	return a, nil
}

// CheckLists reads the static lists and list files of cfg and checks its
// feed settings the way New and Reload do, without opening the store or
// fetching anything: for "rampart validate", which the config package
// cannot do because it does not read list files.
func CheckLists(cfg *config.Config) error {
	if _, err := buildStatic(cfg); err != nil {
		return err
	}
	if err := checkFeeds(cfg); err != nil {
		return err
	}
	_, err := buildGeo(cfg, nil)
	return err
}

// checkFeeds refuses feed settings the config validator would refuse, for
// configs that did not come through config.Parse.
func checkFeeds(cfg *config.Config) error {
	var errs []error
	seen := map[string]bool{}
	for _, fc := range cfg.Security.IPLists.Feeds {
		switch {
		case fc.Name == "" || seen[fc.Name]:
			errs = append(errs, fmt.Errorf("feed %q: missing or duplicate name", fc.Name))
		case (fc.URL == "") == (fc.File == ""):
			errs = append(errs, fmt.Errorf("feed %q: needs exactly one of file and url", fc.Name))
		}
		seen[fc.Name] = true
		if _, err := ParseFormat(fc.Format); err != nil {
			errs = append(errs, fmt.Errorf("feed %q: %v", fc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// apply publishes a compiled config; a.mu held. Feeds that are new are
// loaded (file feeds read, URL feeds from their local copy) before the
// swap, so that the new snapshot never lacks data the old one had.
func (a *ACL) apply(cfg *config.Config, static staticLists) {
	next := &snapshot{allow: static.allow, block: static.block, geo: static.geo}
	keep := map[string]bool{}
	var started []*feed
	for _, fc := range cfg.Security.IPLists.Feeds {
		if fc.File != "" {
			fc.File = cfg.Resolve(fc.File)
		}
		keep[fc.Name] = true
		f, ok := a.feeds[fc.Name]
		if ok {
			f.setConfig(fc)
		} else {
			f = newFeed(fc, a.http, a.now, a.log, a.cacheDir)
			if fc.File != "" {
				// Errors are recorded in the feed's status and logged; a
				// file that is missing or bad now leaves the last good
				// version in use (as a URL that does not answer).
				if f.refresh(context.Background()) != nil {
					f.loadCache()
				}
			} else {
				f.loadCache()
			}
			a.feeds[fc.Name] = f
			started = append(started, f)
		}
		next.feeds = append(next.feeds, f)
	}
	a.lists.Store(next)
	for _, f := range started {
		f.start(f.cfg.URL != "")
	}
	for name, f := range a.feeds {
		if !keep[name] {
			f.stop()
			delete(a.feeds, name)
		}
	}
	db := &cfg.Security.DynamicBlocklist
	a.dyn.SetDefaultTTL(db.TTL())
	a.off.setRules(&db.AutoBlock)
	a.off.setProxies(cfg.Listeners)
}

// Check decides for addr; IPv4-mapped IPv6 addresses are checked as IPv4.
// It takes no locks and does not allocate. The GeoIP databases are
// consulted only when a geoip rule is set and no list decided.
func (a *ACL) Check(addr netip.Addr) Decision {
	d, _ := a.check(addr, false)
	return d
}

// CheckGeo is Check that also returns what the GeoIP databases say about
// addr, for the access log: one lookup per configured database, whatever
// the decision. Without a database it is Check and a zero Geo.
func (a *ACL) CheckGeo(addr netip.Addr) (Decision, Geo) {
	return a.check(addr, true)
}

func (a *ACL) check(addr netip.Addr, wantGeo bool) (Decision, Geo) {
	addr = addr.Unmap()
	s := a.lists.Load()
	var geo Geo
	looked := false
	if wantGeo && s.geo != nil {
		geo, looked = s.geo.lookup(addr), true
	}
	if src, p, ok := s.allow.Lookup(addr); ok {
		return Decision{ActionAllow, src, p}, geo
	}
	if src, p, ok := a.dyn.Lookup(Allowlist, addr); ok {
		return Decision{ActionAllow, src, p}, geo
	}
	if src, p, ok := s.block.Lookup(addr); ok {
		return Decision{ActionDeny, src, p}, geo
	}
	for _, f := range s.feeds {
		if src, p, ok := f.table.Load().Lookup(addr); ok {
			return Decision{ActionDeny, src, p}, geo
		}
	}
	if src, p, ok := a.dyn.Lookup(Blocklist, addr); ok {
		return Decision{ActionDeny, src, p}, geo
	}
	if s.geo != nil && s.geo.rules {
		if !looked {
			geo = s.geo.lookup(addr)
		}
		if d, ok := s.geo.decide(geo); ok {
			return d, geo
		}
	}
	return Decision{}, geo
}

// Geo looks addr up in the GeoIP databases (a zero Geo without them).
func (a *ACL) Geo(addr netip.Addr) Geo {
	s := a.lists.Load()
	if s.geo == nil {
		return Geo{}
	}
	return s.geo.lookup(addr.Unmap())
}

// GeoEnabled reports whether a GeoIP database is configured.
func (a *ACL) GeoEnabled() bool { return a.lists.Load().geo != nil }

// Reload applies a new config. The static lists and list files are read
// completely first, and GeoIP databases whose path or file changed are
// opened; on any error nothing changes (the running databases stay) and
// the error is returned. Dynamic entries, the data of feeds that remain and what is
// known about offenders are kept. The dynamic store cannot move while
// running: a changed store path is refused.
func (a *ACL) Reload(cfg *config.Config) error {
	static, err := buildStatic(cfg)
	if err != nil {
		return err
	}
	if err := checkFeeds(cfg); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if p := cfg.DynamicStorePath(); p != a.storePath {
		return fmt.Errorf("dynamic_blocklist store moved from %s to %s; that takes a restart", a.storePath, p)
	}
	if static.geo, err = buildGeo(cfg, a.lists.Load().geo); err != nil {
		return err
	}
	a.apply(cfg, static)
	return nil
}

// Close stops the feeds and closes the dynamic store.
func (a *ACL) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	for _, f := range a.feeds {
		f.stop()
	}
	return a.dyn.Close()
}

// Dynamic returns the dynamic allow and block lists, for the admin API.
func (a *ACL) Dynamic() *Dynamic { return a.dyn }

// Offense reports an offence by ip for the auto_block rules (see
// Offender). Allowlisted clients are never auto-blocked.
func (a *ACL) Offense(ip netip.Addr, kind string) {
	if a.Check(ip).Action == ActionAllow {
		return
	}
	a.off.Offense(ip, kind)
}

// Offender returns the auto_block tracker.
func (a *ACL) Offender() *Offender { return a.off }

// Feeds returns the status of every feed in config order.
func (a *ACL) Feeds() []FeedStatus {
	s := a.lists.Load()
	out := make([]FeedStatus, len(s.feeds))
	for i, f := range s.feeds {
		out[i] = f.Status()
	}
	return out
}

// RefreshFeed refreshes one feed now and returns its status; the error is
// the refresh's, and the previous data stays in use when it is not nil.
func (a *ACL) RefreshFeed(ctx context.Context, name string) (FeedStatus, error) {
	for _, f := range a.lists.Load().feeds {
		if f.name == name {
			err := f.refresh(ctx)
			return f.Status(), err
		}
	}
	return FeedStatus{}, fmt.Errorf("feed %q: %w", name, ErrNotFound)
}
