package http1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/rampart-proxy/rampart/internal/testcerts"
)

// tlsFixture is a server certificate for localhost and a client config
// that trusts it.
type tlsFixture struct {
	server *tls.Config
	client func() *tls.Config
}

func newTLSFixture(t testing.TB) *tlsFixture {
	t.Helper()
	ca := testcerts.NewCA(t, "http1 test CA")
	certPEM, keyPEM := ca.Server(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := &tls.Config{
		// As tlsterm does it: everything through GetConfigForClient.
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName != "" && h.ServerName != "localhost" {
				return nil, errors.New("no certificate for this name")
			}
			return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}, nil
		},
	}
	return &tlsFixture{server: srv, client: func() *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	}}
}

// tlsErrors records OnTLSError calls.
type tlsErrors struct {
	mu      sync.Mutex
	reasons []string
}

func (l *tlsErrors) hook(s *Server) {
	s.OnTLSError = func(c net.Conn, reason string, err error) {
		l.mu.Lock()
		l.reasons = append(l.reasons, reason)
		l.mu.Unlock()
	}
}

func (l *tlsErrors) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reasons...)
}

type tlsCtxKey struct{}

// withTLS configures TLS and a ConnContext that keeps what ConnTLS says.
func withTLS(f *tlsFixture) func(*Server) {
	return func(s *Server) {
		s.TLSConfig = f.server
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, tlsCtxKey{}, ConnTLS(c))
		}
	}
}

// tlsEcho answers with what the request knows of its connection's TLS.
func tlsEcho(w http.ResponseWriter, r *http.Request) {
	ti, _ := r.Context().Value(tlsCtxKey{}).(*TLSInfo)
	if ti == nil || ti.Hello == nil {
		http.Error(w, "no TLS info in the connection context", 500)
		return
	}
	w.Header().Set("X-SNI", ti.State.ServerName)
	w.Header().Set("X-ALPN", ti.State.NegotiatedProtocol)
	w.Header().Set("X-Hello-Ciphers", strings.Repeat("c", len(ti.Hello.CipherSuites)))
	w.Header().Set("X-Req-TLS", boolStr(r.TLS != nil))
	io.WriteString(w, r.Proto)
}

func boolStr(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func tlsClient(cfg *tls.Config, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// HTTPS over HTTP/1.1: requests are served on one kept-alive connection
// after one handshake; the handler sees r.TLS and the connection's TLS
// facts, the ClientHello included.
func TestTLSHTTP1(t *testing.T) {
	f := newTLSFixture(t)
	var conns atomic.Int64
	ts := newTestServer(t, http.HandlerFunc(tlsEcho), withTLS(f), func(s *Server) {
		cc := s.ConnContext
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			conns.Add(1)
			return cc(ctx, c)
		}
	})
	cl := tlsClient(f.client(), false)
	for range 3 {
		resp, err := cl.Get("https://" + ts.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "HTTP/1.1" || resp.Header.Get("X-SNI") != "localhost" ||
			resp.Header.Get("X-Req-TLS") != "yes" || resp.Header.Get("X-Hello-Ciphers") == "" {
			t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 3 kept-alive requests", n)
	}
}

// ALPN "h2" goes to the HTTP/2 server without h2c being enabled; the
// connection is counted until it closes, and OnClose gets it once.
func TestTLSH2WithoutH2C(t *testing.T) {
	f := newTLSFixture(t)
	var open, closes atomic.Int64
	ts := newTestServer(t, http.HandlerFunc(tlsEcho), withTLS(f), func(s *Server) {
		s.Admit = func(net.Conn) bool { open.Add(1); return true }
		s.OnClose = func(net.Conn) { open.Add(-1); closes.Add(1) }
	})
	cl := tlsClient(f.client(), true)
	for range 3 {
		resp, err := cl.Get("https://" + ts.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "HTTP/2.0" || resp.Header.Get("X-ALPN") != "h2" || resp.Header.Get("X-SNI") != "localhost" {
			t.Fatalf("%s %q %v", resp.Proto, body, resp.Header)
		}
	}
	if o, n := open.Load(), closes.Load(); o != 1 || n != 0 {
		t.Fatalf("h2 connection open: counted %d, OnClose calls %d; want 1 and 0", o, n)
	}
	cl.CloseIdleConnections()
	waitFor(t, "h2 connection released", func() bool { return open.Load() == 0 })
	time.Sleep(50 * time.Millisecond)
	if n := closes.Load(); n != 1 {
		t.Fatalf("OnClose called %d times", n)
	}
	// HTTP/2 with prior knowledge over TLS (no ALPN) is refused: closed,
	// without an HTTP/1 answer the client would read as a frame.
	c := f.dialH2Preface(t, ts.addr, "http/1.1")
	if rest, err := io.ReadAll(c); len(rest) != 0 || (err != nil && !isReset(err)) {
		t.Fatalf("prior-knowledge h2 over TLS: read %q, %v; want the connection closed", rest, err)
	}
	if r := ts.refusals(); len(r) != 1 || r[0].status != http.StatusHTTPVersionNotSupported {
		t.Fatalf("refusals = %v", r)
	}
}

// Failed handshakes never reach the handler and are reported with their
// reason; a connection that closes without a byte is not reported.
func TestTLSHandshakeFailures(t *testing.T) {
	f := newTLSFixture(t)
	var errs tlsErrors
	ts := newTestServer(t, nil, withTLS(f), errs.hook, func(s *Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
	})
	expect := func(what, reason string, run func()) {
		t.Helper()
		before := len(errs.list())
		run()
		waitFor(t, what+" reported", func() bool { return len(errs.list()) > before })
		if got := errs.list()[before]; got != reason {
			t.Fatalf("%s: reason %q, want %q", what, got, reason)
		}
	}
	expect("TLS 1.1 client", TLSVersion, func() {
		cc := f.client()
		cc.MinVersion, cc.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if _, err := tls.Dial("tcp", ts.addr, cc); err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	expect("unknown server name", TLSUnknownSNI, func() {
		cc := f.client()
		cc.ServerName = "other.example"
		if _, err := tls.Dial("tcp", ts.addr, cc); err == nil {
			t.Fatal("handshake for an unknown name succeeded")
		}
	})
	expect("TLS 1.2 client without a common cipher", TLSCipher, func() {
		cc := f.client()
		cc.MaxVersion = tls.VersionTLS12
		cc.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA} // not offered by Go's server defaults
		if _, err := tls.Dial("tcp", ts.addr, cc); err == nil {
			t.Fatal("handshake without a common cipher succeeded")
		}
	})
	expect("half a ClientHello", TLSTimeout, func() {
		c := ts.dial(t)
		c.write("\x16\x03\x01\x00")
		c.expectClosed()
	})
	expect("plain HTTP", TLSOther, func() {
		c := ts.dial(t)
		c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		c.expectStatus("GET", http.StatusBadRequest)
	})
	// A probe: connect and leave.
	n := len(errs.list())
	c := ts.dial(t)
	c.c.Close()
	time.Sleep(100 * time.Millisecond)
	if got := errs.list(); len(got) != n {
		t.Fatalf("a connection closed without a byte was reported: %v", got[n:])
	}
	if ts.calls.Load() != 0 {
		t.Fatalf("the handler ran %d times", ts.calls.Load())
	}
}

// prefixConn sends prefix in the same write as the first bytes written
// (so the server reads the preface and the ClientHello in one read).
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Write(p []byte) (int, error) {
	if c.prefix != nil {
		b := append(c.prefix, p...)
		c.prefix = nil
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// A preface (PROXY protocol) comes before the handshake; the TLS bytes
// the engine buffered behind it are not lost.
func TestTLSAfterPreface(t *testing.T) {
	f := newTLSFixture(t)
	ts := newTestServer(t, http.HandlerFunc(tlsEcho), withTLS(f), func(s *Server) {
		s.Preface = func(c net.Conn, r *bufio.Reader) (net.Conn, bool) {
			l, err := r.ReadString('\n')
			return c, err == nil && l == "HELLO\r\n"
		}
	})
	raw, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(testTimeout))
	c := tls.Client(&prefixConn{Conn: raw, prefix: []byte("HELLO\r\n")}, f.client())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-SNI") != "localhost" {
		t.Fatalf("%v %v", resp, err)
	}
}

// A hijacking handler gets the decrypted stream.
func TestTLSHijack(t *testing.T) {
	f := newTLSFixture(t)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		l, _ := brw.ReadString('\n')
		io.WriteString(conn, "echo:"+l)
	}), withTLS(f))
	c, err := tls.Dial("tcp", ts.addr, f.client())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	io.WriteString(c, "ping\n")
	if l, err := br.ReadString('\n'); l != "echo:ping\n" {
		t.Fatalf("after upgrade: %q %v", l, err)
	}
}

// The slow-read meter works below TLS: a TLS client reading below the
// minimum rate is cut off with slow_read (a TLS record write cannot be
// resumed after a timeout, a TCP write can).
func TestTLSMinReadRate(t *testing.T) {
	f := newTLSFixture(t)
	var sl slowLog
	done := make(chan error, 1)
	ts := newTestServer(t, bigAnswer(16<<20, done), withTLS(f), sl.hook, func(s *Server) {
		s.MinReadRate = 20000
		s.RateWindow = 400 * time.Millisecond
		s.WriteTimeout = 30 * time.Second
	})
	raw, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.(*net.TCPConn).SetReadBuffer(4096)
	raw.SetDeadline(time.Now().Add(testTimeout))
	c := tls.Client(raw, f.client())
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
	stop := make(chan struct{})
	go func() {
		buf := make([]byte, 512)
		for range 400 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := raw.Read(buf); err != nil { // raw: slowly, without decrypting
				return
			}
		}
	}()
	err = recv(t, done)
	close(stop)
	if !errors.Is(err, errSlowRead) || !sl.has(SlowRead) {
		t.Fatalf("slow TLS reader: answer ended with %v, indicators %v", err, sl.list())
	}
	waitFor(t, "slow reader's connection closed", func() bool { return ts.srv.ActiveConns() == 0 })
}

// dialH2Preface connects over TLS offering the ALPN protocol proto and
// sends the HTTP/2 client preface; the connection closes with the test.
func (f *tlsFixture) dialH2Preface(t *testing.T, addr, proto string) *tls.Conn {
	t.Helper()
	cc := f.client()
	cc.NextProtos = []string{proto}
	c, err := tls.Dial("tcp", addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, http2.ClientPreface)
	return c
}

// Rapid reset over TLS: the reset limit holds for h2 negotiated by ALPN.
func TestTLSH2MaxResetsPerSecond(t *testing.T) {
	f := newTLSFixture(t)
	var floods atomic.Int64
	ts := newTestServer(t, nil, withTLS(f), func(s *Server) {
		s.OnHTTP2Error = func(e string) {
			if e == "max_resets_per_second" {
				floods.Add(1)
			}
		}
		s.Configure(Policy{HTTP2: HTTP2Limits{MaxResetsPerSecond: 20}})
	})
	c := f.dialH2Preface(t, ts.addr, "h2")
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	hdr := []byte{0x82, 0x87, 0x84, 0x41, 0x01, 'a'} // GET https / host a (HPACK)
	for id := uint32(1); id < 400; id += 2 {
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndStream: true, EndHeaders: true}) != nil ||
			fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
	}
	var goAway *http2.GoAwayFrame
	for {
		fm, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if g, ok := fm.(*http2.GoAwayFrame); ok {
			goAway = g
		}
	}
	if goAway == nil || goAway.ErrCode != http2.ErrCodeEnhanceYourCalm || floods.Load() != 1 {
		t.Fatalf("flood over TLS: GOAWAY %v, reported %d times", goAway, floods.Load())
	}
}
