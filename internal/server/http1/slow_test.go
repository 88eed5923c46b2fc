package http1

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// slowLog records OnSlow calls.
type slowLog struct {
	mu  sync.Mutex
	got []string
}

func (l *slowLog) hook(s *Server) {
	s.OnSlow = func(c net.Conn, ind string) {
		l.mu.Lock()
		l.got = append(l.got, ind)
		l.mu.Unlock()
	}
}

func (l *slowLog) has(ind string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, g := range l.got {
		if g == ind {
			return true
		}
	}
	return false
}

func (l *slowLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// The engine's own refusals carry the configured security headers, and
// never a Server header.
func TestRefusalSecurityHeaders(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.srv.Configure(Policy{
		Limits:         Limits{MaxRequestLineBytes: 100, MaxHeaders: 5},
		AllowedMethods: []string{"GET"},
		RefusalHeaders: map[string]string{
			"X-Frame-Options": "DENY", "content-security-policy": "default-src 'none'",
			"X-Content-Type-Options": "nosniff", "Referrer-Policy": "", // "" removed
		},
	})
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{"GARBAGE\r\n\r\n", 400},
		{"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(10) + "\r\n", 431},
	} {
		resp, _ := ts.roundTrip(t, tc.raw, "GET")
		if resp.StatusCode != tc.status {
			t.Fatalf("%q: status %d, want %d", tc.raw[:10], resp.StatusCode, tc.status)
		}
		h := resp.Header
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Content-Security-Policy") != "default-src 'none'" ||
			len(h["X-Content-Type-Options"]) != 1 || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%d: headers %v", tc.status, h)
		}
		if _, ok := h["Server"]; ok {
			t.Fatalf("%d: Server header %v", tc.status, h["Server"])
		}
		if _, ok := h["Referrer-Policy"]; ok {
			t.Fatalf("%d: an empty header value was sent", tc.status)
		}
	}
	// 408 (a head that never completes) too.
	ts.srv.Configure(Policy{ReadHeaderTimeout: 200 * time.Millisecond, RefusalHeaders: map[string]string{"X-Frame-Options": "DENY"}})
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n")
	resp, _ := c.expectStatus("GET", http.StatusRequestTimeout)
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("408 headers %v", resp.Header)
	}
}

// A trickled head and a slow body are reported as slow indicators; a
// connection that stays silent, and a normal request, are not.
func TestSlowIndicatorsReported(t *testing.T) {
	var sl slowLog
	got := make(chan error, 1)
	ts := newTestServer(t, bodyReader(got), sl.hook, func(s *Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
		s.MinBodyRate = 1000
		s.RateWindow = 400 * time.Millisecond
	})
	c := ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	c.expectStatus("POST", 200)
	if err := recv(t, got); err != nil {
		t.Fatal(err)
	}
	silent := ts.dial(t)
	silent.expectClosed()
	if g := sl.list(); len(g) != 0 {
		t.Fatalf("indicators %v for a normal request and a silent connection", g)
	}
	trickle := ts.dial(t)
	trickle.write("GET / HTTP/1.1\r\nHost: a\r\n")
	trickle.expectStatus("GET", http.StatusRequestTimeout)
	waitFor(t, "header_timeout reported", func() bool { return sl.has(SlowHeader) })

	slow := ts.dial(t)
	slow.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nx")
	if err := recv(t, got); err != errBodyTooSlow {
		t.Fatalf("slow body: %v", err)
	}
	waitFor(t, "slow_body reported", func() bool { return sl.has(SlowBody) })
}

// bigAnswer writes n bytes and reports how the writing ended.
func bigAnswer(n int, done chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for left := n; left > 0; left -= len(buf) {
			if _, err := w.Write(buf[:min(left, len(buf))]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	})
}

// Slow read: a client that reads a large answer, but below the minimum
// rate, is cut off, although no single write waits long enough for a
// write timeout; a client reading at speed gets the whole answer.
func TestMinReadRate(t *testing.T) {
	var sl slowLog
	done := make(chan error, 1)
	const size = 16 << 20
	ts := newTestServer(t, bigAnswer(size, done), sl.hook, func(s *Server) {
		s.MinReadRate = 20000
		s.RateWindow = 400 * time.Millisecond
		s.WriteTimeout = 30 * time.Second
	})
	c := ts.dial(t)
	c.c.(*net.TCPConn).SetReadBuffer(4096)
	c.write("GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	// 512 bytes every 50 ms: about 10 KB/s, half the minimum.
	stop := make(chan struct{})
	var read atomic.Int64
	go func() {
		buf := make([]byte, 512)
		for range 400 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			n, err := c.c.Read(buf)
			read.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	err := recv(t, done)
	close(stop)
	if err != errSlowRead {
		t.Fatalf("slow reader: the answer ended with %v after the client read %d bytes, want the minimum rate", err, read.Load())
	}
	if !sl.has(SlowRead) || sl.has(WriteTimeout) {
		t.Fatalf("indicators %v, want slow_read", sl.list())
	}
	waitFor(t, "slow reader's connection closed", func() bool { return ts.srv.ActiveConns() == 0 })

	// At speed, with pauses between requests longer than the window, the
	// same answer arrives whole, twice on one connection.
	f := ts.dial(t)
	for range 2 {
		f.write("GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(f.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != size {
			t.Fatalf("fast reader got %d bytes, %v", n, err)
		}
		if err := recv(t, done); err != nil {
			t.Fatalf("fast reader: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if sl.has(WriteTimeout) || len(sl.list()) != 1 {
		t.Fatalf("indicators %v", sl.list())
	}
}

// An h2c connection stays counted (OnClose is not called) while the
// HTTP/2 server serves it, and is released exactly once when it closes.
func TestH2CCountedUntilClosed(t *testing.T) {
	var open, closes atomic.Int64
	ts := newTestServer(t, nil, func(s *Server) {
		s.H2C = true
		s.Admit = func(net.Conn) bool { open.Add(1); return true }
		s.OnClose = func(net.Conn) { open.Add(-1); closes.Add(1) }
	})
	// Exactly one connection, the test's own (http.Client may dial more
	// than one for its pool).
	c, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 a client of exactly one given connection, which net/http's Transport does not offer
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(c)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ts.addr+"/", nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("proto %s", resp.Proto)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if o, n := open.Load(), closes.Load(); o != 1 || n != 0 {
		t.Fatalf("h2c connection open: counted %d, OnClose calls %d; want 1 and 0", o, n)
	}
	cc.Close()
	waitFor(t, "h2c connection released", func() bool { return open.Load() == 0 })
	time.Sleep(50 * time.Millisecond)
	if n := closes.Load(); n != 1 {
		t.Fatalf("OnClose called %d times", n)
	}
}

// Rapid reset above MaxResetsPerSecond: GOAWAY (ENHANCE_YOUR_CALM) and
// the connection closes; a client resetting a few streams is served.
func TestH2CMaxResetsPerSecond(t *testing.T) {
	var floods atomic.Int64
	ts := newTestServer(t, nil, func(s *Server) {
		s.H2C = true
		s.OnHTTP2Error = func(e string) {
			if e == "max_resets_per_second" {
				floods.Add(1)
			}
		}
		// HTTP/2 limits are read when serving starts: set them before.
		s.Configure(Policy{HTTP2: HTTP2Limits{MaxResetsPerSecond: 20}})
	})
	dial := func() (net.Conn, *http2.Framer) { return dialH2(t, ts.addr) }
	hdr := []byte{0x82, 0x86, 0x84, 0x41, 0x01, 'a'} // GET http / host a (HPACK)
	// Polite: 5 reset streams, then a request that is answered.
	_, fr := dial()
	for id := uint32(1); id <= 9; id += 2 {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndStream: true, EndHeaders: true})
		fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 11, BlockFragment: hdr, EndStream: true, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("polite client: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("polite client got GOAWAY %v", g.ErrCode)
		}
		if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == 11 {
			break
		}
	}
	// Flood: 200 pairs at once.
	_, fr = dial()
	for id := uint32(1); id < 400; id += 2 {
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndStream: true, EndHeaders: true}) != nil ||
			fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
	}
	var goAway *http2.GoAwayFrame
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break // closed
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goAway = g
		}
	}
	if goAway == nil || goAway.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("flood: GOAWAY %v, want ENHANCE_YOUR_CALM", goAway)
	}
	if floods.Load() != 1 {
		t.Fatalf("max_resets_per_second reported %d times", floods.Load())
	}
}

// BenchmarkH2ResetCounting is the cost the reset counter adds to every
// read of an h2c connection: following frame boundaries in 16 KiB reads
// of a stream of HEADERS, DATA and RST_STREAM frames.
func BenchmarkH2ResetCounting(b *testing.B) {
	var stream []byte
	frame := func(typ byte, n int) {
		stream = append(stream, byte(n>>16), byte(n>>8), byte(n), typ, 0, 0, 0, 0, 1)
		stream = append(stream, make([]byte, n)...)
	}
	for len(stream) < 1<<20 {
		frame(frameHeaders, 40)
		frame(0x0, 1000)
		frame(frameRSTStream, 4)
	}
	c := &h2Conn{maxResets: 1 << 30}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for p := stream; len(p) > 0; {
			n := min(len(p), 16<<10)
			c.in.feed(p[:n], func(h *[9]byte, _ []byte) {
				if h[3] == frameRSTStream {
					c.resets++
				}
			})
			p = p[n:]
		}
	}
}
