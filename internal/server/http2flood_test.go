package server

// HTTP/2 flood tests: net/http's HTTP/2 server is said to mitigate rapid
// reset (CVE-2023-44487) and CONTINUATION floods (CVE-2024-27316/45288);
// these tests check it against Rampart's own h2c listener with a raw
// client (golang.org/x/net/http2's Framer), while a well-behaved client on
// other connections (HTTP/1.1 and h2c) must keep getting 200s.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// floodTimeout bounds every flood: the attacker stops after it whatever
// happened.
const floodTimeout = 10 * time.Second

// rawH2 is a raw h2c client connection. A goroutine reads every frame the
// server sends and records what matters here.
type rawH2 struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	host string
	enc  *hpack.Encoder
	buf  bytes.Buffer

	mu        sync.Mutex
	goAway    *http2.ErrCode // set when a GOAWAY arrived
	resets    map[uint32]http2.ErrCode
	responses int // HEADERS frames received (answers)
	settings  map[http2.SettingID]uint32
	done      chan struct{} // closed when the server closed the connection
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return newRawH2(t, c, addr)
}

// newRawH2 starts an HTTP/2 client on c (a socket, or a TLS connection
// that negotiated h2).
func newRawH2(t *testing.T, c net.Conn, addr string) *rawH2 {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	h := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c), host: addr,
		resets: map[uint32]http2.ErrCode{}, settings: map[http2.SettingID]uint32{}, done: make(chan struct{})}
	h.enc = hpack.NewEncoder(&h.buf)
	c.SetWriteDeadline(time.Now().Add(floodTimeout + testTimeout))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go h.readLoop()
	return h
}

func (h *rawH2) readLoop() {
	defer close(h.done)
	h.c.SetReadDeadline(time.Now().Add(floodTimeout + testTimeout))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return
		}
		h.mu.Lock()
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			code := f.ErrCode
			h.goAway = &code
		case *http2.RSTStreamFrame:
			h.resets[f.StreamID] = f.ErrCode
		case *http2.HeadersFrame:
			h.responses++
		case *http2.SettingsFrame:
			if !f.IsAck() {
				f.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
			}
		}
		h.mu.Unlock()
	}
}

// closed reports whether the server sent GOAWAY or closed the connection.
func (h *rawH2) closed() bool {
	select {
	case <-h.done:
		return true
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.goAway != nil
}

// request returns an HPACK block for a GET of path.
func (h *rawH2) request(path string) []byte {
	h.buf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", h.host}, {":path", path}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return bytes.Clone(h.buf.Bytes())
}

func (h *rawH2) headers(id uint32, path string) error {
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.request(path), EndStream: true, EndHeaders: true})
}

// resetFlood opens and resets streams until the server closes the
// connection, and checks it said why: GOAWAY ENHANCE_YOUR_CALM, counted in
// rampart_blocked_total as max_resets_per_second.
func (h *rawH2) resetFlood(t *testing.T, e *testEnv) {
	t.Helper()
	block := h.request("/flood")
	for id := uint32(1); id < 200 && !h.closed(); id += 2 {
		if h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}) != nil ||
			h.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
	}
	select {
	case <-h.done:
	case <-time.After(testTimeout):
		t.Fatal("flooding connection not closed")
	}
	h.mu.Lock()
	ga := h.goAway
	h.mu.Unlock()
	if ga == nil || *ga != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga)
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="max_resets_per_second",stage="http2"}`); v != "1" {
		t.Errorf("max_resets_per_second counted %q", v)
	}
}

func (h *rawH2) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ga := "none"
	if h.goAway != nil {
		ga = h.goAway.String()
	}
	return fmt.Sprintf("goaway=%s resets=%d responses=%d", ga, len(h.resets), h.responses)
}

// prober is the well-behaved client: it sends GETs over HTTP/1.1 and over
// h2c (each on its own connections) until stopped and counts the answers.
type prober struct {
	ok, bad  atomic.Int64
	firstErr atomic.Pointer[string]
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startProber(t *testing.T, url string) *prober {
	p := &prober{stop: make(chan struct{})}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 := &http.Transport{Protocols: &protos}
	h1 := &http.Transport{}
	for _, tr := range []*http.Transport{h1, h2} {
		c := &http.Client{Transport: tr, Timeout: testTimeout}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-p.stop:
					return
				default:
				}
				r, err := doRequest(c, http.MethodGet, url, "", nil, nil)
				if err == nil && r.status == http.StatusOK {
					p.ok.Add(1)
				} else {
					p.bad.Add(1)
					msg := fmt.Sprintf("%v status %d", err, r.status)
					p.firstErr.CompareAndSwap(nil, &msg)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	t.Cleanup(p.finish)
	return p
}

func (p *prober) finish() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// check stops the prober and requires that every probe got a 200.
func (p *prober) check(t *testing.T) {
	t.Helper()
	p.finish()
	if p.bad.Load() > 0 {
		t.Errorf("well-behaved client: %d failed requests (first: %s), %d ok", p.bad.Load(), *p.firstErr.Load(), p.ok.Load())
	}
	if p.ok.Load() < 2 {
		t.Errorf("well-behaved client got only %d answers during the flood", p.ok.Load())
	}
	t.Logf("well-behaved client: %d requests answered 200 during the flood", p.ok.Load())
}

func h2cEnv(t *testing.T, b *testBackend, security string) *testEnv {
	return startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", h2c: true}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
%s`, backendsYAML(b), security))
}

// Rapid reset: thousands of HEADERS each followed at once by RST_STREAM.
// The backend is slow (it holds a request until it is cancelled or 200 ms
// pass), as a real backend under load would be. net/http runs at most
// max_concurrent_streams handlers per connection and drops streams reset
// while queued; it closes the connection (GOAWAY ENHANCE_YOUR_CALM,
// too_many_early_resets) only when the queue outgrows the open streams.
// So: the backend never sees more than 100 flood requests at once, not
// every reset stream reaches it, and the other clients are served
// throughout.
func TestHTTP2RapidResetFlood(t *testing.T) {
	b := newTestBackend(t, "a")
	var flood, inFlight, peak atomic.Int64
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flood" {
			flood.Add(1)
			n := inFlight.Add(1)
			for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
			}
			select {
			case <-r.Context().Done():
			case <-time.After(200 * time.Millisecond):
			}
			inFlight.Add(-1)
		}
		io.WriteString(w, "a")
	})
	e := h2cEnv(t, b, "")
	p := startProber(t, e.url("web", "/ok"))
	time.Sleep(50 * time.Millisecond)

	const pairs = 5000
	h := dialRawH2(t, e.srv.Addr("web"))
	block := h.request("/flood")
	deadline := time.Now().Add(floodTimeout)
	sent := 0
	var werr error
	for id := uint32(1); sent < pairs && time.Now().Before(deadline) && !h.closed(); id += 2 {
		if werr = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); werr != nil {
			break
		}
		if werr = h.fr.WriteRSTStream(id, http2.ErrCodeCancel); werr != nil {
			break
		}
		sent++
	}
	// Give the server a moment to react to the last frames.
	select {
	case <-h.done:
	case <-time.After(time.Second):
	}
	t.Logf("rapid reset: %d HEADERS+RST_STREAM pairs written (write error %v); server: %s; backend saw %d flood requests, at most %d at once",
		sent, werr, h, flood.Load(), peak.Load())
	h.mu.Lock()
	if h.goAway != nil && *h.goAway != http2.ErrCodeEnhanceYourCalm && *h.goAway != http2.ErrCodeProtocol {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", *h.goAway)
	}
	h.mu.Unlock()
	// Limited: never more handlers (backend requests) at once than
	// max_concurrent_streams (default 100), whatever the reset rate; a
	// stream reset while queued never reaches the backend.
	if n := peak.Load(); n > 100 {
		t.Errorf("%d flood requests at the backend at once, want <= max_concurrent_streams (100)", n)
	}
	if !h.closed() && flood.Load() >= int64(sent) {
		t.Errorf("connection open and every one of %d reset streams reached the backend", sent)
	}
	p.check(t)
}

// CONTINUATION flood: a HEADERS frame without END_HEADERS followed by an
// endless run of CONTINUATION frames. Rampart must close the connection
// after a bounded amount (the header list limit is max_header_bytes), not
// buffer or parse forever.
func TestHTTP2ContinuationFlood(t *testing.T) {
	b := newTestBackend(t, "a")
	e := h2cEnv(t, b, "")
	p := startProber(t, e.url("web", "/ok"))
	time.Sleep(50 * time.Millisecond)

	h := dialRawH2(t, e.srv.Addr("web"))
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.request("/cont"), EndHeaders: false}); err != nil {
		t.Fatal(err)
	}
	// One CONTINUATION payload: literal never-indexed fields, each complete,
	// so the server's HPACK decoder accepts every frame.
	var chunk bytes.Buffer
	enc := hpack.NewEncoder(&chunk)
	for chunk.Len() < 15000 {
		enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 1000), Sensitive: true})
	}
	payload := chunk.Bytes()
	const maxBytes = 64 << 20
	deadline := time.Now().Add(floodTimeout)
	sent := 0
	var werr error
	for sent < maxBytes && time.Now().Before(deadline) && !h.closed() {
		if werr = h.fr.WriteContinuation(1, false, payload); werr != nil {
			break
		}
		sent += len(payload)
	}
	select {
	case <-h.done:
	case <-time.After(2 * time.Second):
	}
	t.Logf("CONTINUATION flood: %d KiB written before the server reacted (write error %v); server: %s", sent>>10, werr, h)
	if !h.closed() {
		t.Fatalf("connection still open after %d MiB of CONTINUATION frames", sent>>20)
	}
	// Bounded: far less than the attacker was willing to send.
	if sent >= maxBytes/2 {
		t.Errorf("server read %d MiB before closing", sent>>20)
	}
	if b.hits.Load() > 0 && strings.Contains(fmt.Sprint(b.header()), "X-Flood") {
		t.Error("the flooded request reached the backend")
	}
	p.check(t)
}

// Too many streams: max_concurrent_streams is advertised in SETTINGS and
// enforced: with 10 requests held by the backend, the 11th stream is
// refused (RST_STREAM) and never reaches the backend.
func TestHTTP2MaxConcurrentStreams(t *testing.T) {
	b := newTestBackend(t, "a")
	g := newGate()
	defer g.open()
	var inFlight, peak atomic.Int64
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			n := inFlight.Add(1)
			for {
				m := peak.Load()
				if n <= m || peak.CompareAndSwap(m, n) {
					break
				}
			}
			block(r, g.ch)
			inFlight.Add(-1)
		}
		io.WriteString(w, "a")
	})
	e := h2cEnv(t, b, "security:\n  http2: {max_concurrent_streams: 10}\n")
	p := startProber(t, e.url("web", "/ok"))

	h := dialRawH2(t, e.srv.Addr("web"))
	eventually(t, "server SETTINGS", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		_, ok := h.settings[http2.SettingMaxConcurrentStreams]
		return ok
	})
	h.mu.Lock()
	adv := h.settings[http2.SettingMaxConcurrentStreams]
	frameSize := h.settings[http2.SettingMaxFrameSize]
	h.mu.Unlock()
	if adv != 10 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 10", adv)
	}
	if frameSize != 0 && frameSize != 16384 {
		t.Errorf("SETTINGS_MAX_FRAME_SIZE = %d, want 16384", frameSize)
	}
	for i := range 10 {
		if err := h.headers(uint32(1+2*i), "/hold"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "10 requests held by the backend", func() bool { return inFlight.Load() == 10 })
	// 50 more streams over the limit.
	for i := 10; i < 60; i++ {
		if err := h.headers(uint32(1+2*i), "/hold"); err != nil {
			break // the server may close the connection
		}
	}
	eventually(t, "excess streams refused", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.resets) >= 50 || h.goAway != nil
	})
	time.Sleep(100 * time.Millisecond)
	if n := peak.Load(); n != 10 {
		t.Errorf("backend saw %d concurrent requests from one connection, want 10", n)
	}
	h.mu.Lock()
	for id, code := range h.resets {
		if id <= 19 {
			t.Errorf("stream %d within the limit was reset (%v)", id, code)
		} else if code != http2.ErrCodeRefusedStream && code != http2.ErrCodeProtocol {
			t.Errorf("stream %d reset with %v, want REFUSED_STREAM or PROTOCOL_ERROR", id, code)
		}
	}
	t.Logf("max concurrent streams: %d excess streams reset, goaway=%v", len(h.resets), h.goAway != nil)
	h.mu.Unlock()
	p.check(t)
}
