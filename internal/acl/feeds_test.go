package acl

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// feedServer serves one feed on loopback; the test changes what it says.
type feedServer struct {
	*httptest.Server
	mu          sync.Mutex
	status      int
	body        string
	etag        string
	conditional int // requests that carried If-None-Match
}

func newFeedServer(t *testing.T) *feedServer {
	fs := &feedServer{status: http.StatusOK}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if inm := r.Header.Get("If-None-Match"); inm != "" {
			fs.conditional++
			if inm == fs.etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		if fs.etag != "" {
			w.Header().Set("ETag", fs.etag)
		}
		w.WriteHeader(fs.status)
		w.Write([]byte(fs.body))
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *feedServer) set(status int, body, etag string) {
	fs.mu.Lock()
	fs.status, fs.body, fs.etag = status, body, etag
	fs.mu.Unlock()
}

func testConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	return &config.Config{File: filepath.Join(dir, "rampart.yaml"), DataDir: dir}
}

func newTestACL(t *testing.T, cfg *config.Config, clk *fakeClock) *ACL {
	t.Helper()
	a, err := New(cfg, Options{Now: clk.Now, Logger: quietLog()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func feedStatus(t *testing.T, a *ACL, name string) FeedStatus {
	t.Helper()
	for _, s := range a.Feeds() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no feed %q", name)
	return FeedStatus{}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantDecision(t *testing.T, a *ACL, addr string, action Action, source, prefix string) {
	t.Helper()
	d := a.Check(netip.MustParseAddr(addr))
	if d.Action != action || d.Source != source || (prefix != "" && d.Prefix.String() != prefix) {
		t.Errorf("Check(%s) = %v %q %s; want %v %q %s", addr, d.Action, d.Source, d.Prefix, action, source, prefix)
	}
}

const dropV1 = `; Spamhaus DROP List 2025/03/01 - (c) 2025 The Spamhaus Project SLU
; https://www.spamhaus.org/drop/drop.txt
1.10.16.0/20 ; SBL256894
1.19.0.0/16 ; SBL434604
`

const dropV2 = `; Spamhaus DROP List 2025/03/02
2.56.192.0/22 ; SBL459831
`

func TestFeedURLKeepsLastGoodVersion(t *testing.T) {
	clk := newClock()
	srv := newFeedServer(t)
	srv.set(200, dropV1, "")
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Security.IPLists.Feeds = []config.Feed{{Name: "drop", URL: srv.URL + "/drop.txt", Format: "spamhaus_drop", Refresh: config.Duration(time.Hour)}}
	a := newTestACL(t, cfg, clk)
	waitFor(t, "first download", func() bool { return !feedStatus(t, a, "drop").LastAttempt.IsZero() })

	wantDecision(t, a, "1.10.16.5", ActionDeny, "feed:drop", "1.10.16.0/20")
	wantDecision(t, a, "::ffff:1.19.200.1", ActionDeny, "feed:drop", "1.19.0.0/16")
	wantDecision(t, a, "2.56.192.1", ActionNone, "", "")
	st := feedStatus(t, a, "drop")
	good := st.LastSuccess
	if st.Entries != 2 || st.LastError != "" || good.IsZero() || st.Format != "spamhaus_drop" || st.Source != srv.URL+"/drop.txt" {
		t.Errorf("status after good download = %+v", st)
	}
	waitFor(t, "next refresh to be scheduled", func() bool { return feedStatus(t, a, "drop").NextRefresh.Equal(clk.Now().Add(time.Hour)) })

	bad := []struct {
		name         string
		status       int
		body         string
		wantErr      string
		wantInStatus string
	}{
		{"malformed line", 200, "1.10.16.0/20 ; SBL1\n1.2.3.999/24 ; SBL2\n", `drop.txt:2: "1.2.3.999/24" is not an IP address or CIDR`, "drop.txt:2"},
		{"server error", 500, "oops", "HTTP 500", "HTTP 500"},
		{"empty", 200, "; nothing today\n", "has no entries", "has no entries"},
		{"html error page", 200, "<html><body>Rate limited</body></html>\n", "is not an IP address or CIDR", "html"},
		{"broad entry", 200, "0.0.0.0/0 ; SBL0\n", "needs allow_broad", "allow_broad"},
	}
	for _, c := range bad {
		clk.Advance(time.Minute)
		srv.set(c.status, c.body, "")
		st, err := a.RefreshFeed(context.Background(), "drop")
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: RefreshFeed error = %v, want %q", c.name, err, c.wantErr)
		}
		if st.Entries != 2 || !st.LastSuccess.Equal(good) || !st.LastAttempt.Equal(clk.Now()) || !strings.Contains(st.LastError, c.wantInStatus) {
			t.Errorf("%s: status = %+v", c.name, st)
		}
		wantDecision(t, a, "1.10.16.5", ActionDeny, "feed:drop", "1.10.16.0/20")
	}

	// Unreachable: point the feed at a closed port. The old data stays
	// in use until the new source delivers.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/drop.txt"
	dead.Close()
	cfg2 := testConfig(t, dir)
	cfg2.Security.IPLists.Feeds = []config.Feed{{Name: "drop", URL: deadURL, Format: "spamhaus_drop", Refresh: config.Duration(time.Hour)}}
	if err := a.Reload(cfg2); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	clk.Advance(time.Minute)
	if _, err := a.RefreshFeed(context.Background(), "drop"); err == nil || !strings.Contains(err.Error(), "download") {
		t.Errorf("unreachable: error = %v", err)
	}
	wantDecision(t, a, "1.10.16.5", ActionDeny, "feed:drop", "1.10.16.0/20")
	if st := feedStatus(t, a, "drop"); st.Entries != 2 || st.LastError == "" || st.Source != deadURL {
		t.Errorf("unreachable: status = %+v", st)
	}

	// Good again, with an ETag: replaced, error cleared.
	if err := a.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	srv.set(200, dropV2, `"v2"`)
	clk.Advance(time.Minute)
	if _, err := a.RefreshFeed(context.Background(), "drop"); err != nil {
		t.Fatalf("good again: %v", err)
	}
	wantDecision(t, a, "1.10.16.5", ActionNone, "", "")
	wantDecision(t, a, "2.56.193.1", ActionDeny, "feed:drop", "2.56.192.0/22")
	if st := feedStatus(t, a, "drop"); st.Entries != 1 || st.LastError != "" || !st.LastSuccess.Equal(clk.Now()) {
		t.Errorf("good again: status = %+v", st)
	}
	// Unchanged: a conditional request, answered 304, is a success.
	clk.Advance(time.Minute)
	if _, err := a.RefreshFeed(context.Background(), "drop"); err != nil {
		t.Fatalf("not modified: %v", err)
	}
	srv.mu.Lock()
	cond := srv.conditional
	srv.mu.Unlock()
	if st := feedStatus(t, a, "drop"); cond == 0 || st.Entries != 1 || !st.LastSuccess.Equal(clk.Now()) {
		t.Errorf("not modified: %d conditional requests, status %+v", cond, st)
	}
	wantDecision(t, a, "2.56.193.1", ActionDeny, "feed:drop", "2.56.192.0/22")
}

// A restart while the feed's server is down starts with the last download.
func TestFeedLocalCopySurvivesRestart(t *testing.T) {
	clk := newClock()
	srv := newFeedServer(t)
	srv.set(200, dropV1, "")
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Security.IPLists.Feeds = []config.Feed{{Name: "drop", URL: srv.URL + "/drop.txt", Format: "spamhaus_drop"}}
	a, err := New(cfg, Options{Now: clk.Now, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first download", func() bool { return feedStatus(t, a, "drop").Entries == 2 })
	a.Close()
	srv.Close()

	b := newTestACL(t, cfg, clk)
	if st := feedStatus(t, b, "drop"); !st.Cached || st.Entries != 2 {
		t.Errorf("after restart: status = %+v, want 2 entries from the local copy", st)
	}
	wantDecision(t, b, "1.19.0.1", ActionDeny, "feed:drop", "1.19.0.0/16")
	waitFor(t, "the failed download", func() bool { return feedStatus(t, b, "drop").LastError != "" })
	wantDecision(t, b, "1.19.0.1", ActionDeny, "feed:drop", "1.19.0.0/16")

	// A copy of another URL is not used for this one.
	cfg.Security.IPLists.Feeds[0].URL = srv.URL + "/other.txt"
	c, err := New(cfg, Options{Now: clk.Now, Logger: quietLog()})
	if err == nil {
		// The store is still held by b; New must fail. Close b and retry.
		c.Close()
		t.Fatal("second ACL on the same data_dir opened")
	}
	b.Close()
	c = newTestACL(t, cfg, clk)
	if st := feedStatus(t, c, "drop"); st.Cached || st.Entries != 0 {
		t.Errorf("other URL used the copy: %+v", st)
	}
}

func TestFeedFile(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	path := writeFile(t, dir, "local.txt", "# local feed\n192.0.2.0/24\n2001:db8:bad::/48\n")
	cfg := testConfig(t, dir)
	cfg.Security.IPLists.Feeds = []config.Feed{{Name: "local", File: "local.txt", Format: "plain"}}
	a := newTestACL(t, cfg, clk)
	// File feeds are loaded before New returns.
	wantDecision(t, a, "192.0.2.9", ActionDeny, "feed:local", "192.0.2.0/24")
	wantDecision(t, a, "2001:db8:bad::1", ActionDeny, "feed:local", "2001:db8:bad::/48")

	// Unchanged file: nothing re-read, still a success.
	clk.Advance(time.Minute)
	if st, err := a.RefreshFeed(context.Background(), "local"); err != nil || st.Entries != 2 || !st.LastSuccess.Equal(clk.Now()) {
		t.Errorf("unchanged: %+v, %v", st, err)
	}
	touch := func(text string) {
		t.Helper()
		writeFile(t, dir, "local.txt", text)
		clk.Advance(time.Minute)
		mt := time.Now().Add(time.Duration(len(text)) * time.Second)
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	touch("")
	if _, err := a.RefreshFeed(context.Background(), "local"); err == nil {
		t.Error("emptied file accepted")
	}
	wantDecision(t, a, "192.0.2.9", ActionDeny, "feed:local", "192.0.2.0/24")
	touch("198.51.100.0/24\n")
	if _, err := a.RefreshFeed(context.Background(), "local"); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, a, "192.0.2.9", ActionNone, "", "")
	wantDecision(t, a, "198.51.100.1", ActionDeny, "feed:local", "198.51.100.0/24")
	if _, err := a.RefreshFeed(context.Background(), "nope"); err == nil {
		t.Error("RefreshFeed of an unknown feed succeeded")
	}
}

// A missing feed file does not stop Rampart; the feed reports why it is
// empty.
func TestFeedFileMissingAtStart(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Security.IPLists.Feeds = []config.Feed{{Name: "later", File: "later.txt", Format: "plain"}}
	a := newTestACL(t, cfg, clk)
	if st := feedStatus(t, a, "later"); st.Entries != 0 || !strings.Contains(st.LastError, "no such file") {
		t.Errorf("status = %+v", st)
	}
	writeFile(t, dir, "later.txt", "192.0.2.1\n")
	if _, err := a.RefreshFeed(context.Background(), "later"); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, a, "192.0.2.1", ActionDeny, "feed:later", "192.0.2.1/32")
}

// The refresh loop fetches again on its own every interval.
func TestFeedRefreshesOnInterval(t *testing.T) {
	srv := newFeedServer(t)
	srv.set(200, "192.0.2.1\n", "")
	cfg := testConfig(t, t.TempDir())
	cfg.Security.IPLists.Feeds = []config.Feed{{Name: "fast", URL: srv.URL, Format: "plain", Refresh: config.Duration(20 * time.Millisecond)}}
	a, err := New(cfg, Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	waitFor(t, "first download", func() bool { return a.Check(netip.MustParseAddr("192.0.2.1")).Action == ActionDeny })
	srv.set(200, "192.0.2.2\n", "")
	waitFor(t, "a refresh", func() bool { return a.Check(netip.MustParseAddr("192.0.2.2")).Action == ActionDeny })
	if a.Check(netip.MustParseAddr("192.0.2.1")).Action != ActionNone {
		t.Error("old version still in use")
	}
}

func TestFeedRefusesOversizedDownload(t *testing.T) {
	buf := make([]byte, 64)
	r := &cappedReader{r: strings.NewReader("0123456789"), left: 10}
	if n, err := r.Read(buf); n != 10 || err != nil {
		t.Fatalf("exactly at the limit: %d, %v", n, err)
	}
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("exactly at the limit, then: %d, %v; want EOF", n, err)
	}
	r = &cappedReader{r: strings.NewReader("01234567890"), left: 10}
	if _, err := r.Read(buf); err != errFeedTooLarge {
		t.Errorf("over the limit: %v, want errFeedTooLarge", err)
	}
}

// A file feed keeps its last good version across a restart too: a file
// that is bad or missing when Rampart starts leaves the copy in use (the
// feed started empty, and its addresses passed).
func TestFeedFileLastGoodVersionSurvivesRestart(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	writeFile(t, dir, "local.txt", "192.0.2.0/24\n")
	cfg := testConfig(t, dir)
	cfg.Security.IPLists.Feeds = []config.Feed{{Name: "local", File: "local.txt", Format: "plain"}}
	a := newTestACL(t, cfg, clk)
	wantDecision(t, a, "192.0.2.9", ActionDeny, "feed:local", "192.0.2.0/24")
	a.Close()

	writeFile(t, dir, "local.txt", "192.0.2.0/24\n192.0.2.999\n") // one bad line fails the file
	b := newTestACL(t, cfg, clk)
	if st := feedStatus(t, b, "local"); !st.Cached || st.Entries != 1 || st.LastError == "" {
		t.Errorf("bad file at start: status = %+v, want the last good version's entry and the error", st)
	}
	wantDecision(t, b, "192.0.2.9", ActionDeny, "feed:local", "192.0.2.0/24")
	b.Close()

	os.Remove(filepath.Join(dir, "local.txt"))
	c := newTestACL(t, cfg, clk)
	wantDecision(t, c, "192.0.2.9", ActionDeny, "feed:local", "192.0.2.0/24")
}
