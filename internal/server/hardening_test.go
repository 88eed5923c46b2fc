package server

// End-to-end tests of connection and protocol hardening over raw loopback
// sockets: size limits, method allowlist, max_body_bytes (announced and
// chunked) with a recording backend, slowloris, slow POST, slow reader,
// per-IP connection limits, security headers and JSON error pages.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

func hardeningConfig(b *testBackend, security, routeExtra string) string {
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: upload, match: {path_prefix: /upload}, pool: p, max_body_bytes: 4096%s}
  - {name: all, match: {path_prefix: /}, pool: p}
pools: [{name: p, backends: %s}]
logging: {access_log: {path: access.log}}
security:
%s`, routeExtra, backendsYAML(b), security)
}

// rawConn dials the listener from a chosen loopback source address.
func rawConn(t *testing.T, e *testEnv, from string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", e.srv.Addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c, bufio.NewReader(c)
}

func rawExchange(t *testing.T, e *testEnv, raw string) *http.Response {
	t.Helper()
	c, br := rawConn(t, e, "")
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to %.40q: %v", raw, err)
	}
	io.ReadAll(res.Body)
	return res
}

// recordBodies makes b read every body and count the complete ones.
func recordBodies(b *testBackend) *atomic.Int64 {
	var complete atomic.Int64
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			complete.Add(1)
		}
		io.WriteString(w, "stored")
	})
	return &complete
}

func TestHardeningRequestLimits(t *testing.T) {
	b := newTestBackend(t, "a")
	bodies := recordBodies(b)
	e := startEnv(t, hardeningConfig(b, `
  request_limits: {max_request_line_bytes: 256, max_header_bytes: 1024, max_headers: 10, max_body_bytes: 1024}
`, ""))
	cases := []struct {
		name, raw string
		status    int
	}{
		{"request line", "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"header bytes", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 1100) + "\r\n\r\n", 431},
		{"header count", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 11) + "\r\n", 431},
		{"TRACE", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 405},
		{"announced body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n" + strings.Repeat("c", 1025), 413},
		{"announced body, none sent", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n", 413},
		{"chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat("200\r\n"+strings.Repeat("d", 512)+"\r\n", 3) + "0\r\n\r\n", 413},
		{"route limit above the global one", "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n" + strings.Repeat("e", 4097), 413},
	}
	for _, tc := range cases {
		if res := rawExchange(t, e, tc.raw); res.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, res.StatusCode, tc.status)
		}
	}
	if n := b.hits.Load(); n > 1 {
		// Only the chunked body can reach the backend (its size is
		// unknown until it crosses the limit, and it is streamed); it
		// never arrives whole (checked below). Whether its head got
		// there before the cut is a race, so 0 is as right as 1.
		t.Errorf("backend saw %d requests, want at most the chunked one", n)
	}
	if n := bodies.Load(); n != 0 {
		t.Errorf("backend received %d complete bodies over the limit", n)
	}
	// At the limit is fine, on the global and on the route's.
	for _, tc := range []struct {
		path string
		n    int
	}{{"/", 1024}, {"/upload", 4096}} {
		r := e.do(http.MethodPost, e.url("web", tc.path), "", nil, strings.NewReader(strings.Repeat("f", tc.n)))
		if r.status != 200 || r.body != "stored" {
			t.Errorf("POST %s with %d bytes: %d %q", tc.path, tc.n, r.status, r.body)
		}
	}
	if n := bodies.Load(); n != 2 {
		t.Errorf("backend stored %d bodies, want 2", n)
	}
	// Limits change on reload, for new requests.
	if err := e.reload(hardeningConfig(b, `
  request_limits: {max_request_line_bytes: 4096, allowed_methods: [GET, HEAD, POST, TRACE]}
`, "")); err != nil {
		t.Fatal(err)
	}
	if res := rawExchange(t, e, "GET /"+strings.Repeat("a", 300)+" HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 200 {
		t.Errorf("long line after reload: %d", res.StatusCode)
	}
	if res := rawExchange(t, e, "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 200 {
		t.Errorf("TRACE allowed by reload: %d", res.StatusCode)
	}
	if res := rawExchange(t, e, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); res.StatusCode != 405 {
		t.Errorf("PUT left out by reload: %d", res.StatusCode)
	}
}

func TestHardeningSlowloris(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, hardeningConfig(b, `
  slowloris_protection: {header_timeout_seconds: 1, max_connections_per_ip: 1000, max_new_connections_per_ip_per_second: 1000}
`, ""))
	const n = 200
	var closedAt sync.Map
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		c, _ := rawConn(t, e, "127.0.0.1")
		io.WriteString(c, "GET / HTTP/1.1\r\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One header byte every 100ms: never a complete head.
			buf := make([]byte, 512)
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			for time.Since(start) < 6*time.Second {
				c.Write([]byte("X"))
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(buf); err != nil && !isTimeoutErr(err) {
					closedAt.Store(i, time.Since(start))
					return
				}
			}
		}()
	}
	// A legitimate client elsewhere keeps being served meanwhile.
	ok := 0
	for time.Since(start) < 1500*time.Millisecond {
		c, br := rawConn(t, e, "127.0.0.2")
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("legit client: %v %v", res, err)
		}
		ok++
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	closed := 0
	closedAt.Range(func(_, v any) bool {
		closed++
		if d := v.(time.Duration); d > 3*time.Second {
			t.Errorf("a slowloris connection was closed only after %s (header timeout 1s)", d)
		}
		return true
	})
	if closed != n {
		t.Fatalf("%d of %d slowloris connections closed", closed, n)
	}
	if ok < 5 {
		t.Fatalf("legit client got only %d answers", ok)
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestHardeningSlowPOST(t *testing.T) {
	b := newTestBackend(t, "a")
	bodies := recordBodies(b)
	e := startEnv(t, hardeningConfig(b, `
  slowloris_protection: {min_data_rate_bytes_per_second: 1000}
`, ""))
	c, br := rawConn(t, e, "")
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 { // 10 bytes a second, at most 20 s
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	start := time.Now()
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("slow POST: no answer: %v", err)
	}
	if res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow POST: status %d, want 408", res.StatusCode)
	}
	if d := time.Since(start); d > 9*time.Second {
		t.Fatalf("slow POST cut after %s (window 5s)", d)
	}
	<-done
	if bodies.Load() != 0 {
		t.Fatal("the backend received the slow body whole")
	}
}

func TestHardeningSlowReader(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for range 1024 { // 64 MiB
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	e := startEnv(t, hardeningConfig(b, `
  slowloris_protection: {write_timeout_seconds: 1}
`, ""))
	c, _ := rawConn(t, e, "")
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// Never read: the connection is cut after the write timeout.
	eventually(t, "slow reader's connection closed", func() bool {
		return e.srv.ActiveConnections()["web"] == 0
	})
}

func TestHardeningPerIPConnectionLimit(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, hardeningConfig(b, `
  slowloris_protection: {max_connections_per_ip: 3, max_new_connections_per_ip_per_second: 100}
`, ""))
	var held []net.Conn
	for range 3 {
		c, _ := rawConn(t, e, "127.0.0.1")
		held = append(held, c)
	}
	eventually(t, "3 counted", func() bool { return e.srv.conns.open(netip.MustParseAddr("127.0.0.1")) == 3 })
	// The fourth is closed at once, before anything is read.
	c, br := rawConn(t, e, "127.0.0.1")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("fourth connection from 127.0.0.1 was served")
	}
	// Another address is not affected.
	c2, br2 := rawConn(t, e, "127.0.0.2")
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(br2, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("127.0.0.2: %v %v", res, err)
	}
	// Closing one frees a slot.
	held[0].Close()
	eventually(t, "slot released", func() bool { return e.srv.conns.open(netip.MustParseAddr("127.0.0.1")) == 2 })
	c3, br3 := rawConn(t, e, "127.0.0.1")
	io.WriteString(c3, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(br3, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("after a close: %v %v", res, err)
	}
	lines := accessLogLines(t, e.dir+"/access.log", 3)
	found := false
	for _, l := range lines {
		if l["error"] == "conn_limit: max_connections_per_ip" && l["client_ip"] == "127.0.0.1" {
			found = true
		}
	}
	if !found {
		t.Errorf("no conn_limit record in the access log: %v", lines)
	}
}

func TestHardeningNewConnectionRate(t *testing.T) {
	l := newConnLimiter()
	a, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	for i := range 5 {
		if r := l.admit(a, 0, 5, now); r != "" {
			t.Fatalf("connection %d refused: %s", i, r)
		}
		l.release(a, now)
	}
	if r := l.admit(a, 0, 5, now); r != "max_new_connections_per_ip_per_second" {
		t.Fatalf("sixth in one second: %q", r)
	}
	if r := l.admit(other, 0, 5, now); r != "" {
		t.Fatalf("other address: %q", r)
	}
	if r := l.admit(a, 0, 5, now.Add(time.Second)); r != "" {
		t.Fatalf("next second: %q", r)
	}
	// Memory: entries of addresses without connections are swept.
	for i := range 100000 {
		x := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.admit(x, 0, 0, now)
		l.release(x, now)
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].m)
	}
	if total > 100003 { // within the second, for the new-connection rate
		t.Fatalf("%d entries kept", total)
	}
	later := now.Add(2 * time.Second)
	for i := range 6400 {
		x := netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)})
		l.admit(x, 0, 0, later)
		l.release(x, later)
	}
	total = 0
	for i := range l.shards {
		total += len(l.shards[i].m)
	}
	if total > 6400+3 {
		t.Fatalf("%d entries kept after sweeps", total)
	}
}

func TestHardeningSecurityHeaders(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "Apache/2.4.1 (Unix)")
		w.Header().Set("X-Frame-Options", "ALLOWALL")
		io.WriteString(w, "hi")
	})
	e := startEnv(t, hardeningConfig(b, `
  headers:
    add: {X-Frame-Options: DENY, X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer}
`, `, headers: {add: {Content-Security-Policy: "default-src 'none'", Referrer-Policy: ""}}`))
	r := e.get("/")
	if xfo := r.header["X-Frame-Options"]; len(xfo) != 1 {
		t.Errorf("X-Frame-Options %q: the backend's must be replaced, not joined", xfo)
	}
	if r.status != 200 || r.header.Get("Server") != "" || r.header.Get("X-Frame-Options") != "DENY" ||
		r.header.Get("Referrer-Policy") != "no-referrer" || r.header.Get("Content-Security-Policy") != "" {
		t.Errorf("proxied answer headers: %d %v", r.status, r.header)
	}
	r = e.get("/upload/x")
	if r.header.Get("Content-Security-Policy") != "default-src 'none'" || r.header.Get("Referrer-Policy") != "" || r.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("route headers: %v", r.header)
	}
	// Rampart's own errors carry them too; JSON when the client prefers it.
	r = e.do(http.MethodPost, e.url("web", "/upload"), "", http.Header{"Accept": {"application/json"}}, strings.NewReader(strings.Repeat("z", 5000)))
	if r.status != 413 || r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(r.body, `{"status":413,"error":"Request Entity Too Large","request_id":"`) {
		t.Errorf("JSON 413: %d %v %q", r.status, r.header, r.body)
	}
	r = e.do(http.MethodPost, e.url("web", "/upload"), "", http.Header{"Accept": {"text/html,application/json;q=0.9,*/*;q=0.8"}}, strings.NewReader(strings.Repeat("z", 5000)))
	if r.status != 413 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || !strings.HasPrefix(r.body, "413 Request Entity Too Large\nrequest_id: ") {
		t.Errorf("text 413: %d %v %q", r.status, r.header, r.body)
	}
}

func TestHardeningSYNPosture(t *testing.T) {
	root := t.TempDir()
	for p, v := range map[string]string{"net/ipv4/tcp_syncookies": "0\n", "net/ipv4/tcp_max_syn_backlog": "128\n", "net/core/somaxconn": "70000\n"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(v), 0o644)
	}
	p := ReadSYNPosture(root)
	if p != (SYNPosture{SynCookies: 0, MaxSynBacklog: 128, Somaxconn: 70000}) {
		t.Fatalf("posture = %+v", p)
	}
	f := &config.SynFloodProtection{MaxSynBacklog: 65536}
	if probs := p.Problems(f); len(probs) != 2 || !strings.Contains(probs[0], "tcp_syncookies is 0") {
		t.Fatalf("problems = %q", probs)
	}
	if u := ReadSYNPosture(t.TempDir()); u.SynCookies != -1 || len(u.Problems(f)) != 0 {
		t.Fatalf("unreadable posture: %+v %q", u, u.Problems(f))
	}
}

// IPv6 clients are counted by their /64, as rate limits and auto-block
// count them: walking through one's own addresses does not reset the
// count.
func TestHardeningConnectionsPerIPv6Prefix(t *testing.T) {
	l := newConnLimiter()
	now := time.Unix(1000, 0)
	for i := range 3 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8:3:3::%x", i+1))
		if r := l.admit(a, 3, 0, now); r != "" {
			t.Fatalf("connection %d refused: %s", i, r)
		}
	}
	if r := l.admit(netip.MustParseAddr("2001:db8:3:3::ffff"), 3, 0, now); r != "max_connections_per_ip" {
		t.Fatalf("fourth from the same /64: %q, want max_connections_per_ip", r)
	}
	if r := l.admit(netip.MustParseAddr("2001:db8:3:4::1"), 3, 0, now); r != "" {
		t.Fatalf("another /64: %q", r)
	}
	l.release(netip.MustParseAddr("2001:db8:3:3::2"), now)
	if r := l.admit(netip.MustParseAddr("2001:db8:3:3::9"), 3, 0, now); r != "" {
		t.Fatalf("after one closed: %q", r)
	}
}
