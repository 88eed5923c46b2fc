package acl

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/gaissmai/bart"
)

// List selects the dynamic blocklist or the dynamic allowlist.
type List uint8

const (
	Blocklist List = iota // entries deny
	Allowlist             // entries allow and skip every later check
)

func (l List) String() string {
	if l == Allowlist {
		return "allowlist"
	}
	return "blocklist"
}

// Entry is one dynamic allow or block entry. Every entry expires: a block
// nobody remembers adding outlives its reason.
type Entry struct {
	ID        string       `json:"id"`
	Prefix    netip.Prefix `json:"cidr"`
	Reason    string       `json:"reason"`
	Source    string       `json:"source"`   // who added it: "manual", "api:ops", "auto:waf", ...
	Severity  string       `json:"severity"` // low, medium, high, critical
	CreatedAt time.Time    `json:"created_at"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// DecisionSource is what Check reports for a match on e: "dynamic:<id>".
func (e *Entry) DecisionSource() string { return "dynamic:" + e.ID }

// NewEntry is what callers supply to Add; the rest of an Entry is filled in.
type NewEntry struct {
	Prefix   netip.Prefix
	Reason   string
	Source   string    // default "manual"
	Severity string    // default "medium"
	Expires  time.Time // zero: now + manual_default_ttl
	// AllowBroad permits an entry broader than /8 or /16.
	AllowBroad bool
}

type invalidError struct{ msg string }

func (e invalidError) Error() string        { return e.msg }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return invalidError{msg: fmt.Sprintf(format, args...)}
}

// Severities are the accepted Entry.Severity values.
var Severities = []string{"low", "medium", "high", "critical"}

// Errors returned by Dynamic.
var (
	ErrNotFound = errors.New("no such entry")
	ErrFull     = errors.New("dynamic list is full")
	ErrClosed   = errors.New("dynamic lists are closed")
	// ErrInvalid matches (errors.Is) an entry refused for what it says,
	// as opposed to a storage failure.
	ErrInvalid = errors.New("invalid entry")
)

// Limits on dynamic entries. MaxDynamicEntries bounds memory and store size
// when an attack from many addresses drives auto_block.
const (
	MaxDynamicEntries = 1_000_000
	maxReasonLen      = 1024
	maxSourceLen      = 64
	purgeInterval     = time.Minute
)

// dynamicCap is MaxDynamicEntries; tests lower it.
var dynamicCap = MaxDynamicEntries

// Dynamic holds the dynamic blocklist and allowlist: entries added at run
// time by operators (through the admin API) and by auto_block rules. It is
// long-lived: a config reload changes its default TTL but keeps its entries.
//
// Writes go to the store first and return once they are on disk; only then
// is the in-memory table replaced, copy-on-write, so lookups never take a
// lock and never see a list that the store does not hold.
type Dynamic struct {
	st  *store
	now func() time.Time
	log *slog.Logger
	ttl atomic.Int64 // time.Duration

	tables [2]atomic.Pointer[bart.Table[dynRef]]

	mu      sync.Mutex // serialises writers; guards entries and closed
	entries [2]map[netip.Prefix]*Entry
	closed  bool

	stop chan struct{}
	done chan struct{}
}

// dynRef is what the lookup table keeps per prefix: enough to answer Check
// without touching the entries map.
type dynRef struct {
	source  string // "dynamic:<id>"
	expires int64  // unix nanoseconds
}

// unixNanos is t in Unix nanoseconds for dynRef.expires, clamped: past
// 2262 UnixNano wraps to the past, and an entry acknowledged as expiring
// in 9999 was treated as expired from the start (never enforced).
func unixNanos(t time.Time) int64 {
	if t.After(maxUnixNano) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

var maxUnixNano = time.Unix(0, math.MaxInt64)

// DynamicOptions configure OpenDynamic.
type DynamicOptions struct {
	// DefaultTTL applies to entries added without an expiry (default 720h).
	DefaultTTL time.Duration
	// Now is the clock; tests inject one. Default time.Now.
	Now func() time.Time
	// Logger receives purge and store errors. Default slog.Default().
	Logger *slog.Logger
}

// OpenDynamic opens (or creates) the store at path, loads its entries,
// drops those that expired while Rampart was down, and starts purging
// expired entries once a minute until Close.
func OpenDynamic(path string, o DynamicOptions) (*Dynamic, error) {
	st, err := openStore(path)
	if err != nil {
		return nil, err
	}
	d := &Dynamic{st: st, now: o.Now, log: o.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.SetDefaultTTL(o.DefaultTTL)
	for _, l := range []List{Blocklist, Allowlist} {
		es, err := st.load(l)
		if err != nil {
			st.close()
			return nil, err
		}
		d.entries[l] = make(map[netip.Prefix]*Entry, len(es))
		for i := range es {
			d.entries[l][es[i].Prefix] = &es[i]
		}
		d.rebuild(l)
	}
	if _, err := d.Purge(); err != nil {
		st.close()
		return nil, err
	}
	go d.purgeLoop()
	return d, nil
}

// SetDefaultTTL changes the TTL of entries added without an expiry; zero
// means the 720h default.
func (d *Dynamic) SetDefaultTTL(ttl time.Duration) {
	if ttl <= 0 {
		ttl = 720 * time.Hour
	}
	d.ttl.Store(int64(ttl))
}

// Close stops purging and closes the store. Entries already added are on
// disk; Close is not needed for them to survive.
func (d *Dynamic) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	<-d.done
	return d.st.close()
}

// Lookup reports the live entry of list l with the longest prefix
// containing a, as the decision source "dynamic:<id>" and the prefix. It
// takes no lock and does not allocate.
func (d *Dynamic) Lookup(l List, a netip.Addr) (source string, p netip.Prefix, ok bool) {
	t := d.tables[l].Load()
	if t == nil || t.Size() == 0 { // the usual case: no tree walk
		return "", netip.Prefix{}, false
	}
	a = a.Unmap().WithZone("")
	if !t.Contains(a) {
		return "", netip.Prefix{}, false
	}
	now := d.now().UnixNano()
	p, ref, ok := t.LookupPrefixLPM(netip.PrefixFrom(a, a.BitLen()))
	// An entry past its expiry no longer counts even before the purge
	// removes it: an expired allow must not keep letting traffic in. A
	// shorter live entry around it still does (an expired /32 hid the
	// /24 block it sits in until the purge).
	for ok && ref.expires <= now {
		if p.Bits() == 0 {
			return "", netip.Prefix{}, false
		}
		p, ref, ok = t.LookupPrefixLPM(netip.PrefixFrom(a, p.Bits()-1).Masked())
	}
	if !ok {
		return "", netip.Prefix{}, false
	}
	return ref.source, p, true
}

// Add adds an entry to list l, or replaces the entry for the same prefix,
// and returns it once it is durable on disk.
func (d *Dynamic) Add(l List, n NewEntry) (Entry, error) {
	e, _, err := d.add(l, n, false)
	return e, err
}

// addIfLonger is Add for auto_block: it leaves an existing live entry alone
// when that one lasts at least as long, so that an automatic block never
// shortens one an operator set. It reports whether it added.
func (d *Dynamic) addIfLonger(l List, n NewEntry) (Entry, bool, error) {
	return d.add(l, n, true)
}

func (d *Dynamic) add(l List, n NewEntry, onlyIfLonger bool) (Entry, bool, error) {
	now := d.now()
	e, err := d.newEntry(l, n, now)
	if err != nil {
		return Entry{}, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Entry{}, false, ErrClosed
	}
	old, exists := d.entries[l][e.Prefix]
	if onlyIfLonger && exists && old.ExpiresAt.After(now) && !old.ExpiresAt.Before(e.ExpiresAt) {
		return *old, false, nil
	}
	if !exists && len(d.entries[l]) >= dynamicCap {
		// An operator's entry makes room by evicting the automatic one
		// that expires soonest: auto_block filling the list during an
		// attack must not lock the operators out of it (507).
		victim := d.soonestAuto(l)
		if strings.HasPrefix(e.Source, autoSourcePrefix) || victim == nil {
			return Entry{}, false, fmt.Errorf("%s: %w (%d entries)", l, ErrFull, dynamicCap)
		}
		if err := d.st.delete(l, victim.Prefix); err != nil {
			return Entry{}, false, fmt.Errorf("dynamic %s: evicting %s: %w", l, victim.Prefix, err)
		}
		delete(d.entries[l], victim.Prefix)
		d.tables[l].Store(d.tables[l].Load().DeletePersist(victim.Prefix))
		d.log.Warn("dynamic list full: automatic entry evicted for an operator's", "list", l.String(),
			"evicted", victim.Prefix.String(), "source", victim.Source, "added", e.Prefix.String())
	}
	if err := d.st.put(l, e); err != nil {
		return Entry{}, false, fmt.Errorf("dynamic %s: storing %s: %w", l, e.Prefix, err)
	}
	d.entries[l][e.Prefix] = &e
	d.tables[l].Store(d.tables[l].Load().InsertPersist(e.Prefix, dynRef{e.DecisionSource(), unixNanos(e.ExpiresAt)}))
	return e, true, nil
}

// autoSourcePrefix starts the source of the entries auto_block adds.
const autoSourcePrefix = "auto:"

// soonestAuto returns the automatic entry of l that expires first, or
// nil. It scans the list: only a full list calls it.
func (d *Dynamic) soonestAuto(l List) *Entry {
	var v *Entry
	for _, e := range d.entries[l] {
		if strings.HasPrefix(e.Source, autoSourcePrefix) && (v == nil || e.ExpiresAt.Before(v.ExpiresAt)) {
			v = e
		}
	}
	return v
}

func (d *Dynamic) newEntry(l List, n NewEntry, now time.Time) (Entry, error) {
	p, err := canonical(n.Prefix)
	if err != nil {
		return Entry{}, err
	}
	if IsBroad(p) && !n.AllowBroad {
		// Blocked, a broad range locks many out; allowlisted, it skips the
		// lists, the rate limits and the WAF: neither by a slip of one call.
		what := "blocking it"
		if l == Allowlist {
			what = "allowlisting it skips every check for that range and"
		}
		return Entry{}, invalidf("%s is broader than /8 (IPv4) or /16 (IPv6); %s needs allow_broad", p, what)
	}
	if len(n.Reason) > maxReasonLen || strings.IndexFunc(n.Reason, unicode.IsControl) >= 0 {
		return Entry{}, invalidf("reason must be at most %d characters without control characters", maxReasonLen)
	}
	src := cmp.Or(n.Source, "manual")
	if len(src) > maxSourceLen || strings.IndexFunc(src, badSourceRune) >= 0 {
		return Entry{}, invalidf("source %q must be at most %d letters, digits or . _ - : @ /", src, maxSourceLen)
	}
	sev := cmp.Or(n.Severity, "medium")
	if !slices.Contains(Severities, sev) {
		return Entry{}, invalidf("severity %q is not one of %s", sev, strings.Join(Severities, ", "))
	}
	exp := n.Expires
	if exp.IsZero() {
		exp = now.Add(time.Duration(d.ttl.Load()))
	}
	if !exp.After(now) {
		return Entry{}, invalidf("expires_at %s is not in the future", exp.UTC().Format(time.RFC3339))
	}
	return Entry{
		ID:        newID(now),
		Prefix:    p,
		Reason:    n.Reason,
		Source:    src,
		Severity:  sev,
		CreatedAt: now.UTC(),
		ExpiresAt: exp.UTC(),
	}, nil
}

func badSourceRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:@/", r))
}

// canonical checks a prefix given through the API the way list entries are
// checked: host bits beyond the mask are an error, IPv4-mapped becomes IPv4.
func canonical(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, invalidf("missing or invalid ip/cidr")
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, invalidf("%s: zoned addresses cannot be listed", p)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, invalidf("%s has bits set beyond its /%d mask (did you mean %s?)", p, p.Bits(), m)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// newID returns a 20-character id that sorts by creation time: 12 hex
// digits of milliseconds and 8 random ones.
func newID(now time.Time) string {
	var b [10]byte
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// Get returns the entry for exactly prefix p, expired or not.
func (d *Dynamic) Get(l List, p netip.Prefix) (Entry, bool) {
	p, err := canonical(p)
	if err != nil {
		return Entry{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[l][p]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Remove deletes the entry for exactly prefix p (an address is its /32 or
// /128) and returns it. Entries of other prefixes that contain p stay.
func (d *Dynamic) Remove(l List, p netip.Prefix) (Entry, error) {
	p, err := canonical(p)
	if err != nil {
		return Entry{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Entry{}, ErrClosed
	}
	e, ok := d.entries[l][p]
	if !ok {
		return Entry{}, fmt.Errorf("%s %s: %w", l, p, ErrNotFound)
	}
	if err := d.st.delete(l, p); err != nil {
		return Entry{}, fmt.Errorf("dynamic %s: removing %s: %w", l, p, err)
	}
	delete(d.entries[l], p)
	d.tables[l].Store(d.tables[l].Load().DeletePersist(p))
	return *e, nil
}

// Purge deletes expired entries from the store and the tables and returns
// how many it deleted.
func (d *Dynamic) Purge() (int, error) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	n := 0
	for _, l := range []List{Blocklist, Allowlist} {
		var expired []netip.Prefix
		for p, e := range d.entries[l] {
			if !e.ExpiresAt.After(now) {
				expired = append(expired, p)
			}
		}
		if len(expired) == 0 {
			continue
		}
		if err := d.st.delete(l, expired...); err != nil {
			return n, fmt.Errorf("dynamic %s: purging expired entries: %w", l, err)
		}
		for _, p := range expired {
			delete(d.entries[l], p)
		}
		d.rebuild(l)
		n += len(expired)
	}
	return n, nil
}

// rebuild replaces the lookup table of l from the entries map; d.mu held
// (or d not yet shared).
func (d *Dynamic) rebuild(l List) {
	t := new(bart.Table[dynRef])
	for p, e := range d.entries[l] {
		t.Insert(p, dynRef{e.DecisionSource(), unixNanos(e.ExpiresAt)})
	}
	d.tables[l].Store(t)
}

func (d *Dynamic) purgeLoop() {
	defer close(d.done)
	tick := time.NewTicker(purgeInterval)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-tick.C:
			if n, err := d.Purge(); errors.Is(err, ErrClosed) {
				return
			} else if err != nil {
				d.log.Error("dynamic lists: purge failed", "err", err)
			} else if n > 0 {
				d.log.Info("dynamic lists: expired entries purged", "count", n)
			}
		}
	}
}

// Filter selects entries for List. Zero fields do not filter.
type Filter struct {
	Source   string     // exact source, e.g. "auto:waf"
	Reason   string     // case-insensitive substring of the reason
	Contains netip.Addr // entries whose prefix contains this address
	// Limit is the page size: default 100, at most 1000.
	Limit int
	// Offset skips that many matching entries; Cursor, when set, instead
	// starts after the entry with that id (stable while entries change).
	Offset int
	Cursor string
}

// Page is one page of List results, ordered by id (creation time).
type Page struct {
	Entries    []Entry `json:"entries"`
	Total      int     `json:"total"`                 // matching entries in all pages
	NextCursor string  `json:"next_cursor,omitempty"` // empty on the last page
}

// List returns live (unexpired) entries of l that match f.
func (d *Dynamic) List(l List, f Filter) Page {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	reason := strings.ToLower(f.Reason)
	contains := f.Contains.Unmap()
	now := d.now()
	var match []Entry
	d.mu.Lock()
	for _, e := range d.entries[l] {
		switch {
		case !e.ExpiresAt.After(now):
		case f.Source != "" && e.Source != f.Source:
		case reason != "" && !strings.Contains(strings.ToLower(e.Reason), reason):
		case contains.IsValid() && !e.Prefix.Contains(contains):
		default:
			match = append(match, *e)
		}
	}
	d.mu.Unlock()
	slices.SortFunc(match, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	pg := Page{Total: len(match)}
	start := min(max(f.Offset, 0), len(match))
	if f.Cursor != "" {
		start, _ = slices.BinarySearchFunc(match, f.Cursor, func(e Entry, id string) int { return strings.Compare(e.ID, id) })
		if start < len(match) && match[start].ID == f.Cursor {
			start++
		}
	}
	end := min(start+limit, len(match))
	pg.Entries = match[start:end:end]
	if end < len(match) && end > 0 {
		pg.NextCursor = match[end-1].ID
	}
	if pg.Entries == nil {
		pg.Entries = []Entry{}
	}
	return pg
}

// Len is the number of entries in l, including expired ones not yet purged.
func (d *Dynamic) Len(l List) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.entries[l])
}
