package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/testnet"
)

// rawBackend answers every request on a connection with a fixed response
// and then, if closeAfter is set, closes the connection WITHOUT saying
// "Connection: close" — the way a backend's idle timeout does. It records
// each request head it received.
func rawBackend(t *testing.T, closeAfter bool) (addr string, heads chan string, conns *atomic.Int32) {
	t.Helper()
	heads = make(chan string, 100)
	conns = new(atomic.Int32)
	addr = testnet.Serve(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			head, err := testnet.ReadHead(br)
			if err != nil {
				return
			}
			heads <- head
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if closeAfter {
				return
			}
		}
	})
	return addr, heads, conns
}

func testPool(t *testing.T, addrs ...string) *Pool {
	t.Helper()
	reg, err := NewRegistry(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pc := config.Pool{Name: "p", Algorithm: "round_robin", Retries: 1, ConnectTimeout: config.Duration(time.Second), MaxIdleConnsPerBackend: 8}
	for i, a := range addrs {
		pc.Backends = append(pc.Backends, config.Backend{ID: string(rune('a' + i)), Address: a, Weight: 1})
	}
	reg.Apply([]config.Pool{pc})
	t.Cleanup(reg.Close)
	return reg.Pool("p")
}

func get(t *testing.T, p *Pool, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://placeholder/x?q=1", nil)
	if header != nil {
		req.Header = header
	}
	resp, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(req.Context())})
	if err != nil {
		t.Fatalf("forward: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return resp, string(body)
}

// A pooled connection that the backend closed must cost a retry on a fresh
// connection, never an error to the client.
func TestDirectRetriesStaleConnection(t *testing.T) {
	addr, heads, conns := rawBackend(t, true)
	p := testPool(t, addr)
	for i := 0; i < 5; i++ {
		resp, body := get(t, p, nil)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		<-heads
		time.Sleep(20 * time.Millisecond) // let the backend's close arrive
	}
	if n := conns.Load(); n < 5 {
		t.Fatalf("backend saw %d connections, want one per request (it closes each)", n)
	}
}

// Keep-alive: sequential requests reuse one connection.
func TestDirectReusesConnection(t *testing.T) {
	addr, heads, conns := rawBackend(t, false)
	p := testPool(t, addr)
	for i := 0; i < 10; i++ {
		get(t, p, nil)
		<-heads
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("backend saw %d connections for 10 sequential requests, want 1", n)
	}
}

// A header value that could split the request is refused, never sent.
func TestDirectRefusesHeaderInjection(t *testing.T) {
	addr, heads, _ := rawBackend(t, false)
	p := testPool(t, addr)
	req, _ := http.NewRequest(http.MethodGet, "http://placeholder/x", nil)
	req.Header.Set("X-Ok", "1")
	for _, evil := range []string{"a\r\nInjected: yes", "a long value, then\nInjected: yes", "nul\x00byte"} {
		req.Header["X-Evil"] = []string{evil}
		if _, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(req.Context())}); !errors.Is(err, errBadHeader) {
			t.Fatalf("forward with %q in a header: err = %v, want errBadHeader", evil, err)
		}
	}
	select {
	case h := <-heads:
		t.Fatalf("backend received a request: %q", h)
	case <-time.After(100 * time.Millisecond):
	}
}

// The request head is well formed: request-target, Host, no empty
// User-Agent, hop-by-hop headers and the ones named in Connection dropped,
// client X-Forwarded-* replaced.
func TestDirectRequestHead(t *testing.T) {
	addr, heads, _ := rawBackend(t, false)
	p := testPool(t, addr)
	h := http.Header{"User-Agent": {""}, "Connection": {"X-Hop"}, "X-Hop": {"1"}, "Keep-Alive": {"5"},
		"X-Forwarded-For": {"6.6.6.6"}, "Te": {"trailers"}, "X-End": {"kept"}}
	get(t, p, h)
	head := <-heads
	for _, bad := range []string{"X-Hop", "Keep-Alive", "6.6.6.6", "Connection"} {
		if strings.Contains(head, bad) {
			t.Fatalf("%s reached the backend: %q", bad, head)
		}
	}
	for _, want := range []string{"\r\nX-End: kept\r\n", "\r\nTe: trailers\r\n", "\r\nX-Forwarded-Proto: http\r\n"} {
		if !strings.Contains(head, want) {
			t.Fatalf("missing %q in %q", want, head)
		}
	}
	if !strings.HasPrefix(head, "GET /x?q=1 HTTP/1.1\r\n") {
		t.Fatalf("request line: %q", head)
	}
	if !strings.Contains(head, "\r\nHost: placeholder\r\n") { // the client's Host is kept
		t.Fatalf("no Host: %q", head)
	}
	if strings.Contains(head, "User-Agent") {
		t.Fatalf("empty User-Agent was sent: %q", head)
	}
}

// writeTarget writes what the direct path always wrote: the plain path as
// it is, and otherwise url.URL.RequestURI.
func TestWriteTarget(t *testing.T) {
	for _, target := range []string{
		"/", "/a/b", "/a?x=1", "/a?", "/?x", "/a b?x=1", "/caf%C3%A9?q=1", "/%2F?x=1", "/a!b?x=1", "/a!b",
		"/a*b?c", "/a(b)'c?d", "/$&+,;=:@?x=%20", "/~u/-._?a=b&c=d", "/ä?x", "*", "http://h/abs?q",
		"/a%20b", "/a%zz", "/a;b?c#", "//double?q",
	} {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			continue
		}
		want := u.RequestURI()
		if u.RawQuery == "" && u.RawPath == "" && u.Opaque == "" && plainPath(u.Path) {
			want = u.Path
		}
		var buf strings.Builder
		bw := bufio.NewWriter(&buf)
		writeTarget(bw, u)
		bw.Flush()
		if buf.String() != want {
			t.Errorf("target %q: wrote %q, want %q", target, buf.String(), want)
		}
	}
}

// The active list stays consistent whatever order connections leave it
// in, and a cut forgets them all (their untrack is then a no-op).
func TestBackendActiveList(t *testing.T) {
	b := NewBackend("a", "127.0.0.1:1", 1)
	var ucs []*upstreamConn
	for range 6 {
		c1, c2 := net.Pipe()
		t.Cleanup(func() { c1.Close(); c2.Close() })
		uc := newUpstreamConn(c1, nil)
		if !b.track(uc, b.generation()) {
			t.Fatal("track refused")
		}
		ucs = append(ucs, uc)
	}
	check := func(want ...*upstreamConn) {
		t.Helper()
		if len(b.active) != len(want) {
			t.Fatalf("%d active, want %d", len(b.active), len(want))
		}
		for i, uc := range b.active {
			if uc.activeIdx != i {
				t.Fatalf("active[%d] has index %d", i, uc.activeIdx)
			}
		}
		for _, uc := range want {
			if uc.activeIdx < 0 || b.active[uc.activeIdx] != uc {
				t.Fatalf("connection missing from the active list")
			}
		}
	}
	b.untrack(ucs[1])
	b.untrack(ucs[5])
	b.untrack(ucs[1]) // twice: no effect
	check(ucs[0], ucs[2], ucs[3], ucs[4])
	b.untrack(ucs[0])
	check(ucs[2], ucs[3], ucs[4])
	b.cutInFlight()
	check()
	for _, uc := range ucs[2:5] {
		if !uc.cut.Load() {
			t.Error("a connection in flight was not cut")
		}
		b.untrack(uc)
	}
	check()
	if b.track(ucs[0], 0) {
		t.Error("track with a generation from before the cut accepted")
	}
}

// sendPair connects an upstream connection to a loopback backend whose
// connection serve handles.
func sendPair(t *testing.T, serve func(c net.Conn)) *upstreamConn {
	t.Helper()
	uc := newUpstreamConn(loopbackPair(t, net.ListenConfig{}, net.Dialer{}, serve), nil)
	if uc.raw == nil {
		t.Fatal("a plaintext TCP connection has no raw access")
	}
	return uc
}

const sendAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// send returns only once the backend's answer can be read, so the first
// read of it does not fail with EAGAIN (one system call per request).
func TestSendWaitsForAnswer(t *testing.T) {
	var answered atomic.Bool
	uc := sendPair(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			if _, err := testnet.ReadHead(br); err != nil {
				return
			}
			if i == 0 {
				time.Sleep(20 * time.Millisecond) // the backend works
				answered.Store(true)
			}
			io.WriteString(c, sendAnswer)
		}
	})
	for i := range 3 { // also on a reused connection
		uc.wire.writes = 0
		uc.bw.WriteString("GET / HTTP/1.1\r\nHost: b\r\n\r\n")
		if err := uc.send(); err != nil {
			t.Fatal(err)
		}
		if i == 0 && !answered.Load() {
			t.Fatal("send returned before the backend answered")
		}
		if uc.wire.writes != 1 {
			t.Fatalf("head left in %d writes, want 1", uc.wire.writes)
		}
		resp, err := http.ReadResponse(uc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
		// From now on the backend answers at once: the answer may arrive
		// before send starts waiting, and must not be missed.
	}
}

// A head larger than the write buffer leaves in several writes; a backend
// may answer after the first, before send could start waiting, and send
// must then not wait for an answer that already came (the poller would
// not report it again).
func TestSendLargeHeadEarlyAnswer(t *testing.T) {
	answered := make(chan struct{})
	uc := sendPair(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := br.Peek(1); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n")
		close(answered)
		io.Copy(io.Discard, br)
	})
	uc.wire.writes = 0
	// 4,096 bytes leave while the head is buffered, the rest in send.
	uc.bw.WriteString("GET / HTTP/1.1\r\nHost: b\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n")
	<-answered
	// Let the network poller see the answer arrive before send runs:
	// this goroutine sleeping leaves the poller to an idle thread.
	time.Sleep(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- uc.send() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("send still waits for an answer the backend sent before the head was complete")
	}
	resp, err := http.ReadResponse(uc.br, nil)
	if err != nil || resp.StatusCode != 431 {
		t.Fatalf("answer %v, %v", resp, err)
	}
}

// Closing the connection (a quarantine's cut, a cancelled HTTP/2 stream)
// ends send's wait for an answer.
func TestSendCutWhileWaiting(t *testing.T) {
	got := make(chan struct{})
	uc := sendPair(t, func(c net.Conn) {
		if _, err := testnet.ReadHead(bufio.NewReader(c)); err == nil {
			close(got)
		}
		io.Copy(io.Discard, c) // never answers
	})
	uc.bw.WriteString("GET / HTTP/1.1\r\nHost: b\r\n\r\n")
	done := make(chan error, 1)
	go func() { done <- uc.send() }()
	<-got
	uc.c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("send after a cut: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("send still waits after the connection was closed")
	}
}

// The head deadline follows the pool's response_header_timeout, also when
// a reload shortened it on a pooled connection whose deadline lies further.
func TestArmHeadDeadline(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	uc := newUpstreamConn(c1, nil)
	now := time.Now()
	uc.armReadDeadline(now, 60*time.Second)
	if want := now.Add(60 * time.Second); !uc.readDeadline.Equal(want) {
		t.Fatalf("deadline %v, want %v", uc.readDeadline, want)
	}
	uc.armReadDeadline(now.Add(time.Millisecond), 60*time.Second) // a busy connection: not moved
	if want := now.Add(60 * time.Second); !uc.readDeadline.Equal(want) {
		t.Fatalf("deadline moved to %v on the next request", uc.readDeadline)
	}
	later := now.Add(time.Second)
	uc.armReadDeadline(later, 5*time.Second)
	if want := later.Add(5 * time.Second); !uc.readDeadline.Equal(want) {
		t.Fatalf("after the timeout was shortened: deadline %v, want %v", uc.readDeadline, want)
	}
}

// scriptedBackend answers each request with answers[path] (written in one
// piece), or with a fresh "HTTP/1.1 200 ... path" otherwise; late[path],
// when set, follows 50 ms after the answer.
func scriptedBackend(t *testing.T, answers map[string]string, late map[string]string) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			head, err := testnet.ReadHead(br)
			if err != nil {
				return
			}
			path := strings.Fields(head)[1]
			answer, ok := answers[path]
			if !ok {
				answer = "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(path)) + "\r\n\r\n" + path
			}
			io.WriteString(c, answer)
			if rest, ok := late[path]; ok {
				time.Sleep(50 * time.Millisecond)
				io.WriteString(c, rest)
			}
		}
	})
}

// A backend that sends more than its answer's framing allows (a body on a
// HEAD or a 204, bytes past Content-Length) must not get its connection
// back in the pool: the surplus would be read as the next request's answer,
// and every later client on that connection would get the previous one's.
func TestDirectSurplusBytesNeverAnswerTheNextRequest(t *testing.T) {
	const poison = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED"
	addr := scriptedBackend(t, map[string]string{
		"/extra":     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + poison,
		"/head":      "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(poison)) + "\r\n\r\n" + poison,
		"/nobody":    "HTTP/1.1 204 No Content\r\n\r\n" + poison,
		"/late":      "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(poison)) + "\r\n\r\n",
		"/chunk":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + poison,
		"/extralate": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	}, map[string]string{"/late": poison, "/extralate": poison})
	p := testPool(t, addr)
	do := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://placeholder"+path, nil)
		resp, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(req.Context())})
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/extra"},
		{http.MethodHead, "/head"},
		{http.MethodGet, "/nobody"},
		{http.MethodHead, "/late"}, // the body comes 50 ms after the head
		{http.MethodGet, "/chunk"},
		{http.MethodGet, "/extralate"}, // a whole answer, 50 ms after the right one
	} {
		do(tc.method, tc.path)
		if tc.path == "/late" || tc.path == "/extralate" {
			time.Sleep(150 * time.Millisecond) // the late bytes have arrived
		}
		for i := range 3 {
			next := "/next-" + strconv.Itoa(i)
			if code, body := do(http.MethodGet, next); code != 200 || body != next {
				t.Fatalf("after %s %s: GET %s answered %d %q, want 200 %q", tc.method, tc.path, next, code, body, next)
			}
		}
	}
}

// A connection that carried a request to a backend that left its pool
// meanwhile (a reload) is closed when the request ends, not kept idle for
// a backend no request will choose again.
func TestRemovedBackendKeepsNoIdleConnection(t *testing.T) {
	addr := scriptedBackend(t, nil, nil)
	p := testPool(t, addr)
	a := p.Backend("a")
	req, _ := http.NewRequest(http.MethodGet, "http://placeholder/x", nil)
	resp, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(req.Context())})
	if err != nil {
		t.Fatal(err)
	}
	p.setMembers(nil) // the reload's removal, while the answer is unread
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "/x" {
		t.Fatalf("answer of the removed backend: %q %v", body, err)
	}
	resp.Body.Close()
	a.conns.mu.Lock()
	idle := len(a.conns.idle)
	a.conns.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d idle connections kept for a backend that left its pool", idle)
	}
}

// A 204 or 304 answer that announces a body says its backend will send
// bytes no request asked for: the connection is not reused, or bytes that
// arrive just after the next request went out would be read as its answer.
// A HEAD answer's Content-Length announces nothing, and its connection is
// reused.
func TestDirectNoBodyAnswerAnnouncingOneIsNotReused(t *testing.T) {
	for _, tc := range []struct {
		method, answer string
		conns          int32
	}{
		{http.MethodGet, "HTTP/1.1 204 No Content\r\nContent-Length: 57\r\n\r\n", 2},
		{http.MethodGet, "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 2},
		{http.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 57\r\n\r\n", 1},
		{http.MethodGet, "HTTP/1.1 204 No Content\r\n\r\n", 1},
	} {
		conns := new(atomic.Int32)
		addr := testnet.Serve(t, func(c net.Conn) {
			conns.Add(1)
			br := bufio.NewReader(c)
			for n := 0; ; n++ {
				if _, err := testnet.ReadHead(br); err != nil {
					return
				}
				if n == 0 {
					io.WriteString(c, tc.answer)
				} else {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}
		})
		p := testPool(t, addr)
		for _, m := range []string{tc.method, http.MethodGet} {
			req, _ := http.NewRequest(m, "http://placeholder/", nil)
			resp, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(req.Context())})
			if err != nil {
				t.Fatalf("%q: %s: %v", tc.answer, m, err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if got := conns.Load(); got != tc.conns {
			t.Errorf("%s answered %q: %d backend connections for two requests, want %d", tc.method, tc.answer, got, tc.conns)
		}
	}
}

// scratchWriter stands for the HTTP/1 engine's writer: a header map and a
// slot that lives as long as the client's connection.
type scratchWriter struct {
	*httptest.ResponseRecorder
	slot any
}

func (w *scratchWriter) ConnScratch() *any { return &w.slot }

// unwrapping is a middleware's wrapper around a writer.
type unwrapping struct{ http.ResponseWriter }

func (w unwrapping) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// A client connection with a scratch slot, found behind the pipeline's
// wrappers, reads all its answers into one directBody, without allocating;
// any other writer gets a body of its own each time.
func TestDirectBodyPerConnection(t *testing.T) {
	d := directRequest{w: unwrapping{unwrapping{&scratchWriter{ResponseRecorder: httptest.NewRecorder()}}}}
	first := d.body()
	if d.body() != first {
		t.Fatal("a connection with a slot got a new body for its next answer")
	}
	if n := testing.AllocsPerRun(100, func() { d.body() }); n != 0 {
		t.Errorf("%v allocations per answer, want 0", n)
	}
	other := directRequest{w: unwrapping{httptest.NewRecorder()}}
	if first, second := other.body(), other.body(); first == second {
		t.Fatal("a writer without a slot (an HTTP/2 stream) shares its body between answers")
	}
}

// A closed body lets go of the backend connection it read from: in a
// client connection's slot it outlives its answer.
func TestDirectBodyClosedKeepsNoConnection(t *testing.T) {
	addr, heads, _ := rawBackend(t, false)
	p := testPool(t, addr)
	sw := &scratchWriter{ResponseRecorder: httptest.NewRecorder()}
	req, _ := http.NewRequest(http.MethodGet, "http://placeholder/x", nil)
	for i := range 2 {
		resp, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(req.Context()), w: sw})
		if err != nil {
			t.Fatalf("forward %d: %v", i, err)
		}
		<-heads
		if body, _ := io.ReadAll(resp.Body); string(body) != "ok" {
			t.Fatalf("answer %d: %q", i, body)
		}
		resp.Body.Close()
		db, _ := sw.slot.(*directBody)
		if db == nil || db != resp.Body {
			t.Fatalf("answer %d was not read into the connection's slot", i)
		}
		if db.uc != nil || db.b != nil || db.rc != nil {
			t.Errorf("answer %d: the closed body still holds its backend connection", i)
		}
		if n, err := db.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Errorf("answer %d: read after Close = %d, %v; want 0, EOF", i, n, err)
		}
		db.Close() // twice: no effect
	}
	if n := p.Backends()[0].InFlight(); n != 0 {
		t.Errorf("in flight after the answers closed: %d", n)
	}
}

// An answer without a body (HEAD, 204, 304) returns its connection to the
// pool inside exchange: the client's wait must be over by then, or a
// client seen leaving just after would abandon the request of the next
// client on that connection.
func TestNoBodyAnswerPooledAfterTheWaitEnds(t *testing.T) {
	addr := scriptedBackend(t, map[string]string{"/x": "HTTP/1.1 204 No Content\r\n\r\n"}, nil)
	p := testPool(t, addr)
	ctx, _ := pipeline.Attach(pipeline.WithSlot(context.Background()), pipeline.NewRecord())
	pooled := 0
	beforePool = func(uc *upstreamConn) {
		pooled++
		if pipeline.ClientGone(ctx) {
			t.Error("a connection went back to the pool while the client's wait on it was registered")
		}
	}
	t.Cleanup(func() { beforePool = nil })
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequestWithContext(ctx, method, "http://placeholder/x", nil)
		resp, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(ctx)})
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: status %d", method, resp.StatusCode)
		}
		resp.Body.Close()
	}
	if pooled != 2 {
		t.Errorf("%d connections pooled, want 2", pooled)
	}
}

// loopbackPair dials, with d, one connection to a loopback listener made
// with lc, whose end of it serve handles, and returns the dialled end.
func loopbackPair(t *testing.T, lc net.ListenConfig, d net.Dialer, serve func(c net.Conn)) net.Conn {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
