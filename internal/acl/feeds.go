package acl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// FeedStatus is what is known about one threat feed; the admin API serves
// it as GET /api/v1/acls/feeds.
type FeedStatus struct {
	Name        string    `json:"name"`
	Source      string    `json:"source"` // URL or file
	Format      string    `json:"format"`
	Entries     int       `json:"entries"` // in the version in use
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // of the last attempt; "" if it succeeded
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	// Cached says the version in use was read from the local copy of an
	// earlier download, because none has succeeded since start.
	Cached bool `json:"cached,omitempty"`
}

// Limits on feed downloads.
const (
	maxFeedBytes = 256 << 20 // a feed larger than this is refused, not truncated
	feedTimeout  = 60 * time.Second
	// maxFeedRetry caps the back-off after failures; retries never wait
	// longer than the feed's own interval either.
	maxFeedRetry = 30 * time.Minute
)

// A feed is one threat feed: a blocklist fetched from a URL or re-read from
// a file every refresh interval. Its table is replaced only by a version
// that was read completely and parsed without a single bad line and is not
// empty; a failed refresh keeps the last good version and says why in the
// status and the log. A feed therefore never silently becomes empty.
//
// Downloads are kept in the data directory, so that a restart while the
// feed's server is down starts with the last good version rather than with
// nothing.
type feed struct {
	name     string
	source   string // decision source "feed:<name>"
	client   *http.Client
	now      func() time.Time
	log      *slog.Logger
	cacheDir string // "" disables the local copy

	table atomic.Pointer[Table]

	refreshMu sync.Mutex // one refresh at a time

	mu       sync.Mutex // guards the fields below
	cfg      config.Feed
	status   FeedStatus
	val      validator
	failures int

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// validator is what makes the next refresh conditional: HTTP validators,
// or a file's size and modification time.
type validator struct {
	etag, lastModified string
	size               int64
	modTime            time.Time
}

func newFeed(fc config.Feed, client *http.Client, now func() time.Time, log *slog.Logger, cacheDir string) *feed {
	f := &feed{
		name:     fc.Name,
		source:   "feed:" + fc.Name,
		client:   client,
		now:      now,
		log:      log.With("feed", fc.Name),
		cacheDir: cacheDir,
		cfg:      fc,
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	f.status = FeedStatus{Name: fc.Name, Source: fc.Source(), Format: fc.Format}
	return f
}

// Status returns a copy of the feed's status.
func (f *feed) Status() FeedStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// setConfig applies a reloaded feed config. A changed source or format
// refreshes at once; until that succeeds the previous data stays in use.
func (f *feed) setConfig(fc config.Feed) {
	f.mu.Lock()
	if f.cfg == fc {
		f.mu.Unlock()
		return
	}
	if f.cfg.Source() != fc.Source() || f.cfg.Format != fc.Format || f.cfg.AllowBroad != fc.AllowBroad {
		f.val = validator{}
	}
	f.cfg = fc
	f.status.Source, f.status.Format = fc.Source(), fc.Format
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// start runs the refresh loop until stop; refreshFirst says whether to
// refresh at once or wait one interval first.
func (f *feed) start(refreshFirst bool) {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.run(ctx, refreshFirst)
}

func (f *feed) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
	}
}

func (f *feed) run(ctx context.Context, refresh bool) {
	defer close(f.done)
	for {
		var err error
		if refresh {
			err = f.refresh(ctx)
		}
		refresh = true
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		wait := f.cfg.RefreshInterval()
		if err != nil {
			// Retry sooner than a whole interval, backing off.
			wait = min(wait, maxFeedRetry, time.Minute<<min(f.failures-1, 5))
		}
		f.status.NextRefresh = f.now().Add(wait)
		f.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-f.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// errNotModified says the source has not changed since the last success.
var errNotModified = errors.New("not modified")

// refresh fetches and parses the feed once and, if that fully succeeds,
// puts the new version in use. On failure the previous version stays and
// the error is recorded, logged and returned.
func (f *feed) refresh(ctx context.Context) error {
	f.refreshMu.Lock()
	defer f.refreshMu.Unlock()
	f.mu.Lock()
	fc, val := f.cfg, f.val
	f.mu.Unlock()
	if f.table.Load() == nil {
		val = validator{} // nothing to keep: fetch in full
	}

	start := f.now()
	var t *Table
	format, err := ParseFormat(fc.Format)
	if err == nil {
		if fc.URL != "" {
			t, val, err = f.fetch(ctx, fc, format, val)
		} else {
			t, val, err = f.readFile(fc, format, val)
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg != fc {
		// Reloaded meanwhile; the kick queued by setConfig fetches the
		// new source. Do not put the old source's data in use.
		return nil
	}
	f.status.LastAttempt = start
	switch {
	case errors.Is(err, errNotModified):
		f.status.LastSuccess, f.status.LastError = start, ""
		f.failures = 0
		return nil
	case err != nil:
		f.failures++
		f.status.LastError = err.Error()
		f.log.Error("feed refresh failed; keeping the previous version", "source", fc.Source(), "entries_kept", f.status.Entries, "err", err)
		return err
	}
	f.table.Store(t)
	f.val = val
	f.failures = 0
	f.status.Entries = t.Len()
	f.status.LastSuccess, f.status.LastError = start, ""
	f.status.Cached = false
	f.log.Info("feed refreshed", "source", fc.Source(), "entries", t.Len())
	return nil
}

// fetch downloads a URL feed. The body is parsed while it streams in and,
// when a cache directory is set, copied to a temporary file that replaces
// the local copy only once everything parsed.
func (f *feed) fetch(ctx context.Context, fc config.Feed, format Format, val validator) (*Table, validator, error) {
	ctx, cancel := context.WithTimeout(ctx, feedTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fc.URL, nil)
	if err != nil {
		return nil, val, err
	}
	req.Header.Set("User-Agent", "rampart")
	if val.etag != "" {
		req.Header.Set("If-None-Match", val.etag)
	}
	if val.lastModified != "" {
		req.Header.Set("If-Modified-Since", val.lastModified)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, val, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && (val.etag != "" || val.lastModified != "") {
		return nil, val, errNotModified
	}
	if resp.StatusCode != http.StatusOK {
		return nil, val, fmt.Errorf("download: HTTP %s", resp.Status)
	}
	t, err := f.parseKeeping(resp.Body, fc, format)
	if err != nil {
		return nil, val, err
	}
	return t, validator{etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}, nil
}

// parseKeeping parses a feed while it streams in and, when a cache
// directory is set, copies it to a temporary file that replaces the local
// copy (loadCache) only once everything parsed.
func (f *feed) parseKeeping(r io.Reader, fc config.Feed, format Format) (*Table, error) {
	var body io.Reader = &cappedReader{r: r, left: maxFeedBytes}
	var tmp *os.File
	var copyTo *softWriter
	if f.cacheDir != "" {
		if err := os.MkdirAll(f.cacheDir, 0o750); err == nil {
			tmp, _ = os.CreateTemp(f.cacheDir, ".feed-*")
		}
		if tmp != nil {
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			copyTo = &softWriter{w: tmp}
			body = io.TeeReader(body, copyTo)
		}
	}
	t, err := parseFeed(body, fc, format, f.source)
	if err != nil {
		return nil, err
	}
	if tmp != nil {
		err := copyTo.err
		if err == nil {
			err = fsutil.CommitTemp(tmp, f.cachePath(fc))
		}
		if err != nil {
			// The feed itself is fine; only the restart copy is missing.
			f.log.Warn("feed: cannot keep a local copy", "err", err)
		}
	}
	return t, nil
}

// readFile reads a file feed, skipping the parse when the file's size and
// modification time are unchanged.
func (f *feed) readFile(fc config.Feed, format Format, val validator) (*Table, validator, error) {
	fh, err := os.Open(fc.File)
	if err != nil {
		return nil, val, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, val, err
	}
	if !val.modTime.IsZero() && st.Size() == val.size && st.ModTime().Equal(val.modTime) {
		return nil, val, errNotModified
	}
	t, err := f.parseKeeping(fh, fc, format)
	if err != nil {
		return nil, val, err
	}
	return t, validator{size: st.Size(), modTime: st.ModTime()}, nil
}

// loadCache puts the local copy of an earlier good version in use, if
// there is one, so that a restart does not start with an empty feed: one
// whose URL does not answer, or whose file is missing or bad then.
func (f *feed) loadCache() {
	f.mu.Lock()
	fc := f.cfg
	f.mu.Unlock()
	if f.cacheDir == "" {
		return
	}
	format, err := ParseFormat(fc.Format)
	if err != nil {
		return
	}
	fh, err := os.Open(f.cachePath(fc))
	if err != nil {
		return
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return
	}
	t, err := parseFeed(fh, fc, format, f.source)
	if err != nil {
		f.log.Warn("feed: ignoring unreadable local copy", "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.table.Store(t)
	f.status.Entries = t.Len()
	f.status.LastSuccess = st.ModTime()
	f.status.Cached = true
}

// cachePath names the local copy after the feed and a hash of its URL and
// format, so that a copy of a different source is never mistaken for it.
func (f *feed) cachePath(fc config.Feed) string {
	h := sha256.Sum256([]byte(fc.Source() + "\n" + fc.Format))
	return filepath.Join(f.cacheDir, fc.Name+"-"+hex.EncodeToString(h[:8])+".txt")
}

// parseFeed parses a whole feed into a table. Any bad line fails the whole
// feed, and so does a feed without entries: a truncated download, an HTML
// error page served with 200 or an emptied file are not a new version.
func parseFeed(r io.Reader, fc config.Feed, format Format, source string) (*Table, error) {
	b := NewTableBuilder(source)
	n, err := ReadList(r, fc.Source(), format, fc.AllowBroad, b.Add)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%s has no entries", fc.Source())
	}
	return b.Build(), nil
}

// cappedReader fails, rather than truncates, past its limit.
type cappedReader struct {
	r    io.Reader
	left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, errFeedTooLarge
	}
	// Ask for one byte more than allowed: getting it means too large,
	// getting EOF instead means the feed was exactly at the limit.
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, errFeedTooLarge
	}
	return n, err
}

var errFeedTooLarge = fmt.Errorf("feed is larger than %d MiB", maxFeedBytes>>20)

// softWriter remembers its first write error instead of returning it, so
// that a full disk fails the local copy but not the feed being parsed.
type softWriter struct {
	w   io.Writer
	err error
}

func (s *softWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}

// newFeedClient is the HTTP client for feeds: bounded in time, and never
// following a redirect from https to plain http.
func newFeedClient() *http.Client {
	return &http.Client{
		Timeout: feedTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("refusing redirect from https to %s", req.URL.Scheme)
			}
			return nil
		},
	}
}
