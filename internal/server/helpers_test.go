package server

// Shared helpers for the in-process integration tests of this package: real
// loopback backends (httptest) that answer with their own id, a config file
// in a temp directory (so Reload works on it), a started Rampart server on
// 127.0.0.1:0 ports and small HTTP helpers. Every wait is bounded.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/proxy"
	"github.com/rampart-proxy/rampart/internal/testnet"
)

// testTimeout bounds every single wait in these tests.
const testTimeout = 10 * time.Second

// testLogger discards server logs unless RAMPART_TEST_LOG is set (logging
// through t.Log would panic when a server goroutine logs after the test).
// unsized hides a body's length from Go's client, which then sends it
// chunked: Rampart streams such a body through http.Transport, where one
// of known length up to 16 KiB takes the direct client.
func unsized(s string) io.Reader { return struct{ io.Reader }{strings.NewReader(s)} }

func testLogger() *slog.Logger {
	if os.Getenv("RAMPART_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testBackend is a loopback HTTP server that answers with its id. It counts
// the requests it receives, apart from health probes on /healthz, and keeps
// the headers of the last one.
type testBackend struct {
	id  string
	srv *httptest.Server

	hits       atomic.Int64 // requests other than /healthz
	probes     atomic.Int64 // requests on /healthz
	healthFail atomic.Bool  // /healthz answers 503 while set
	status     atomic.Int32 // status of ordinary answers (0: 200)
	lastHeader atomic.Pointer[http.Header]

	// handle, when set, answers ordinary requests instead of the default
	// (which writes the id). It runs after counting.
	handle atomic.Pointer[http.HandlerFunc]
	// onProbe, when set, runs at the start of every health probe.
	onProbe atomic.Pointer[func(n int64, failing bool)]
}

func newTestBackend(t testing.TB, id string) *testBackend {
	t.Helper()
	b := &testBackend{id: id}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

// newTestBackends starts one backend per id.
func newTestBackends(t testing.TB, ids ...string) []*testBackend {
	out := make([]*testBackend, len(ids))
	for i, id := range ids {
		out[i] = newTestBackend(t, id)
	}
	return out
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

func (b *testBackend) setHandler(f http.HandlerFunc) { b.handle.Store(&f) }

func (b *testBackend) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		n := b.probes.Add(1)
		failing := b.healthFail.Load()
		if f := b.onProbe.Load(); f != nil {
			(*f)(n, failing)
		}
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
		return
	}
	b.hits.Add(1)
	h := r.Header.Clone()
	b.lastHeader.Store(&h)
	if f := b.handle.Load(); f != nil {
		(*f)(w, r)
		return
	}
	w.Header().Set("X-Backend-Id", b.id)
	if s := b.status.Load(); s != 0 {
		w.WriteHeader(int(s))
	}
	io.WriteString(w, b.id)
}

// header returns the headers of the last ordinary request.
func (b *testBackend) header() http.Header {
	if h := b.lastHeader.Load(); h != nil {
		return *h
	}
	return nil
}

// deadAddr returns a loopback address on which nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// freeAddr returns a loopback address that was free a moment ago (for
// listeners that need a fixed address in the file, e.g. a second listener).
func freeAddr(t testing.TB) string { return deadAddr(t) }

// serveRaw starts a loopback backend that, on keep-alive connections,
// reads each request head (bodiless requests; without allocating) and
// calls answer, and returns its address. For what httptest cannot do: a
// fixed answer at the least cost, an answer written in separate pieces.
func serveRaw(tb testing.TB, answer func(c net.Conn) error) string {
	tb.Helper()
	return testnet.Serve(tb, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 4096)
		for {
			for { // the head: lines up to an empty one
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if answer(c) != nil {
				return
			}
		}
	})
}

// backendsYAML renders backends as a YAML flow list.
func backendsYAML(bs ...*testBackend) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = fmt.Sprintf("{id: %s, address: %q}", b.id, b.addr())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// testEnv is one Rampart instance under test: its directory (data_dir,
// config file, access log), the config file path and the server.
type testEnv struct {
	t       testing.TB
	dir     string
	cfgPath string
	srv     *Server
	client  *http.Client
}

// configHeader is the part of every test config that points at the temp
// directory: data_dir and a loopback admin API on an ephemeral port.
func configHeader(dir string) string {
	return fmt.Sprintf("data_dir: %q\nadmin: {listen: \"127.0.0.1:0\"}\nshutdown_timeout: 2s\n", filepath.Join(dir, "data"))
}

// newEnv writes body (a config without data_dir and admin, which are
// added) and returns an environment whose server is built but not started.
func newEnv(t testing.TB, body string) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "rampart.yaml")
	e.write(body)
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, e.read())
	}
	srv, err := New(cfg, testLogger())
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e.srv = srv
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}
	e.client = &http.Client{Transport: tr, Timeout: testTimeout}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return e
}

// startEnv is newEnv followed by a successful Start.
func startEnv(t testing.TB, body string) *testEnv {
	t.Helper()
	e := newEnv(t, body)
	if err := e.srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return e
}

// write replaces the config file with the header and body.
func (e *testEnv) write(body string) {
	e.t.Helper()
	if err := os.WriteFile(e.cfgPath, []byte(configHeader(e.dir)+body), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) read() string {
	b, _ := os.ReadFile(e.cfgPath)
	return string(b)
}

// reload rewrites the config file with body and reloads it.
func (e *testEnv) reload(body string) error {
	e.t.Helper()
	e.write(body)
	return e.srv.Reload(e.cfgPath)
}

// url returns the URL of path on the named listener.
func (e *testEnv) url(listener, path string) string {
	e.t.Helper()
	a := e.srv.Addr(listener)
	if a == "" {
		e.t.Fatalf("listener %q is not bound", listener)
	}
	return "http://" + a + path
}

// resp is a fully read response.
type resp struct {
	status int
	body   string
	header http.Header
}

// do sends a request and reads the whole answer. host, when not empty,
// is sent as the Host header.
func (e *testEnv) do(method, url, host string, hdr http.Header, body io.Reader) resp {
	e.t.Helper()
	r, err := doRequest(e.client, method, url, host, hdr, body)
	if err != nil {
		e.t.Fatalf("%s %s (Host %q): %v", method, url, host, err)
	}
	return r
}

// get is do for a GET on the listener "web".
func (e *testEnv) get(path string) resp {
	e.t.Helper()
	return e.do(http.MethodGet, e.url("web", path), "", nil, nil)
}

func doRequest(c *http.Client, method, url, host string, hdr http.Header, body io.Reader) (resp, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return resp{}, err
	}
	if host != "" {
		req.Host = host
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := c.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, body: string(b), header: res.Header}, nil
}

// backend returns the registry's backend (nil if it is not a member).
func (e *testEnv) backend(pool, id string) *proxy.Backend {
	p := e.srv.Registry().Pool(pool)
	if p == nil {
		return nil
	}
	return p.Backend(id)
}

// eventually polls cond every 10ms until it holds or testTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitChan waits for ch to close, bounded.
func waitChan(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for: %s", what)
	}
}

// block waits in a backend handler until ch closes or the request goes
// away, bounded so that a failing test never hangs.
func block(r *http.Request, ch <-chan struct{}) {
	select {
	case <-ch:
	case <-r.Context().Done():
	case <-time.After(testTimeout):
	}
}

// gate is a channel that backend handlers block on (see block) and that a
// test opens once; tests defer open so that blocked handlers are released
// before the cleanups (which wait for them) run.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// accessLogLines reads the access log at path until it has at least n
// lines (it is written asynchronously) and decodes them.
func accessLogLines(t testing.TB, path string, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	eventually(t, fmt.Sprintf("%d access log lines in %s", n, path), func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		lines = lines[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				return false // a line being written
			}
			lines = append(lines, m)
		}
		return len(lines) >= n
	})
	return lines
}

// lineOf returns the 1-based line of the first line of text containing s.
func lineOf(t testing.TB, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not found in config", s)
	return 0
}

// countHits sends n GETs to path and returns how many each backend id
// answered (by X-Backend-Id); every answer must be 200.
func (e *testEnv) countHits(n int, path string, hdr http.Header) map[string]int {
	e.t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		r := e.do(http.MethodGet, e.url("web", path), "", hdr, nil)
		if r.status != http.StatusOK {
			e.t.Fatalf("request %d: status %d, body %q", i, r.status, r.body)
		}
		got[r.header.Get("X-Backend-Id")]++
	}
	return got
}
