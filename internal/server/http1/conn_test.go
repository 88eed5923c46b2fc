package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoUpgrade answers 101 and echoes what the client sends over the raw
// connection, as a WebSocket handler would.
func echoUpgrade(hijackErr chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "echo")
		w.Header().Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, _, err := http.NewResponseController(w).Hijack()
		if hijackErr != nil {
			hijackErr <- err
		}
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			io.Copy(conn, conn)
		}()
	}
}

func TestHijack(t *testing.T) {
	ts := newTestServer(t, echoUpgrade(nil))
	c := ts.dial(t)
	// The first bytes of the new protocol come in the same write as the
	// head: the engine has them buffered and must hand them over.
	c.write("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly;")
	head := c.rawHead()
	if !strings.HasPrefix(head, "HTTP/1.1 101 Switching Protocols\r\n") ||
		!strings.Contains(head, "Upgrade: echo\r\n") || !strings.Contains(head, "Connection: Upgrade\r\n") {
		t.Fatalf("head %q", head)
	}
	if got := c.readN(len("early;")); got != "early;" {
		t.Fatalf("echo %q", got)
	}
	c.write("later")
	if got := c.readN(len("later")); got != "later" {
		t.Fatalf("echo %q", got)
	}
	// Writes through the ResponseWriter fail after the hijack; the server
	// keeps serving others, and Shutdown does not wait for the hijacked
	// connection (it is the handler's now).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a hijacked connection: %v", err)
	}
	c.write("still")
	if got := c.readN(len("still")); got != "still" {
		t.Fatalf("echo after Shutdown %q", got)
	}
}

func TestHijackWritesFail(t *testing.T) {
	res := make(chan error, 2)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			res <- err
			return
		}
		_, err = w.Write([]byte("x"))
		res <- err
		_, _, err = w.(http.Hijacker).Hijack()
		res <- err
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nraw")
		brw.Flush()
		conn.Close()
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := c.expectStatus("GET", 200); body != "raw" {
		t.Fatalf("body %q", body)
	}
	if err := recv(t, res); !errors.Is(err, http.ErrHijacked) {
		t.Fatalf("write after hijack: %v", err)
	}
	if err := recv(t, res); !errors.Is(err, http.ErrHijacked) {
		t.Fatalf("second hijack: %v", err)
	}
}

func TestHijackAfterResponse(t *testing.T) {
	res := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "x")
		w.(http.Flusher).Flush()
		_, _, err := w.(http.Hijacker).Hijack()
		res <- err
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
	if err := recv(t, res); err == nil {
		t.Fatal("hijack after the response was sent succeeded")
	}
}

func TestShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	idle := ts.dial(t)
	idle.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	idle.expectStatus("GET", 200)
	fresh := ts.dial(t) // connected, nothing sent yet

	busy := ts.dial(t)
	busy.write("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	start := time.Now()
	go func() { shut <- ts.srv.Shutdown(context.Background()) }()

	// Idle connections are closed at once.
	idle.expectClosed()
	fresh.expectClosed()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("idle connections closed after %v", d)
	}
	// The listener is closed: Serve returns ErrServerClosed.
	select {
	case err := <-ts.served:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
		ts.served <- err // for the cleanup
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Fatal("listener still accepts")
	}
	// The in-flight request holds Shutdown.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, body := busy.expectStatus("GET", 200)
	if body != "ok" || !resp.Close {
		t.Fatalf("in-flight answer %q, close %v", body, resp.Close)
	}
	busy.expectClosed()
	if err := recv(t, shut); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Serve on a shut-down server returns at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownExpiredContextThenClose(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}))
	busy := ts.dial(t)
	busy.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	if err := ts.srv.Close(); err != nil {
		t.Fatal(err)
	}
	busy.expectClosed()
}

func TestReadHeaderTimeout(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
		s.IdleTimeout = 10 * time.Second
	})
	c := ts.dial(t)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		req := "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + strings.Repeat("s", 100) + "\r\n\r\n"
		for i := range len(req) {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.c.Write([]byte{req[i]}); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	c.expectStatus("GET", http.StatusRequestTimeout)
	c.expectClosed()
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
	if ts.calls.Load() != 0 {
		t.Fatal("handler called")
	}
	if r := ts.refusals(); len(r) != 1 || r[0].status != 408 {
		t.Fatalf("refusals %v", r)
	}
}

// A connection that never sends a byte is bounded by the header timeout,
// not by the (longer) keep-alive idle timeout.
func TestSilentConnection(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 20 * time.Second
	})
	c := ts.dial(t)
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) {
		s.ReadHeaderTimeout = 5 * time.Second
		s.IdleTimeout = 200 * time.Millisecond
	})
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
	// Still open well within the idle timeout...
	time.Sleep(50 * time.Millisecond)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestHandlerPanic(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			io.WriteString(w, "partial")
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/panic-body":
			panic("boom with body")
		}
		io.WriteString(w, "ok")
	}))
	other := ts.dial(t)
	other.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	other.expectStatus("GET", 200)

	c := ts.dial(t)
	c.write("GET /panic HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectClosed()
	waitFor(t, "panic log", func() bool { return strings.Contains(ts.logs.String(), "boom") })
	if !strings.Contains(ts.logs.String(), "level=ERROR") {
		t.Fatalf("panic not logged as an error: %s", ts.logs.String())
	}

	// A panic with an unread body does not wait for the body.
	c = ts.dial(t)
	c.write("POST /panic-body HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
	c.expectClosed()

	before := ts.logs.String()
	c = ts.dial(t)
	c.write("GET /abort HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectClosed()

	// The other connection and new ones are still served.
	other.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	other.expectStatus("GET", 200)
	if _, body := ts.roundTrip(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if after := ts.logs.String(); after != before {
		t.Fatalf("ErrAbortHandler logged: %s", after[len(before):])
	}
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: testTimeout}
}

func TestH2C(t *testing.T) {
	var proto atomic.Value
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		v, _ := r.Context().Value(ctxKey{}).(string)
		w.Header().Set("X-Conn", v)
		io.WriteString(w, "h2:"+r.URL.Path)
	}), func(s *Server) {
		s.H2C = true
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, "peer "+c.RemoteAddr().String())
		}
	})
	cl := h2cClient()
	defer cl.CloseIdleConnections()
	for range 3 {
		resp, err := cl.Get("http://" + ts.addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "h2:/x" || proto.Load() != "HTTP/2.0" {
			t.Fatalf("proto %s / %v, body %q", resp.Proto, proto.Load(), body)
		}
		if !strings.HasPrefix(resp.Header.Get("X-Conn"), "peer 127.0.0.1:") {
			t.Fatalf("ConnContext value %q", resp.Header.Get("X-Conn"))
		}
	}
	// HTTP/1.1 on the same listener still works; an HTTP/1 request line
	// claiming version 2.0 is not the preface and stays refused.
	if _, body := ts.roundTrip(t, "GET /y HTTP/1.1\r\nHost: a\r\n\r\n", "GET"); body != "h2:/y" {
		t.Fatalf("HTTP/1.1 body %q", body)
	}
	if resp, _ := ts.roundTrip(t, "GET /y HTTP/2.0\r\nHost: a\r\n\r\n", "GET"); resp.StatusCode != 505 {
		t.Fatalf("HTTP/2.0 request line: %d", resp.StatusCode)
	}
	// Shutdown also ends the HTTP/2 side.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestH2CDisabled(t *testing.T) {
	ts := newTestServer(t, nil)
	cl := h2cClient()
	defer cl.CloseIdleConnections()
	if resp, err := cl.Get("http://" + ts.addr + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("h2c request succeeded with %s", resp.Proto)
	}
	if ts.calls.Load() != 0 {
		t.Fatal("handler called")
	}
	// The server is healthy.
	resp, err := http.Get("http://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
}

// net/http's client against the engine: keep-alive, bodies both ways.
func TestStdClient(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(b)
	}))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: testTimeout}
	var conns atomic.Int32
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	for i := range 5 {
		body := strings.Repeat("x", i*1000)
		resp, err := cl.Post("http://"+ts.addr+"/", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != body {
			t.Fatalf("echo of %d bytes: %d bytes", len(body), len(got))
		}
	}
	// A chunked upload (unknown length).
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		bw.WriteString(strings.Repeat("y", 5000))
		bw.Flush()
		pw.Close()
	}()
	resp, err := cl.Post("http://"+ts.addr+"/", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 5000 {
		t.Fatalf("chunked echo %d bytes", len(got))
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 6 requests", n)
	}
}

// A client that resets the connection in the middle of a head has left:
// it is not a malformed request to report.
func TestResetMidHead(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\nX-Partial: ")
	time.Sleep(50 * time.Millisecond) // the server is reading the head
	c.c.(*net.TCPConn).SetLinger(0)
	c.c.Close() // RST
	// The server sees the reset at once; give a report time to show up.
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
		if r := ts.refusals(); len(r) != 0 {
			t.Fatalf("reset reported as a refusal: %v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.roundTrip(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET")
}

// A keep-alive client whose next request arrives just after a shutdown
// began is served (with Connection: close) instead of finding its
// connection closed.
func TestShutdownServesRequestAlreadyOnItsWay(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	c.write("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond) // the shutdown has begun
	c.write("GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body := c.expectStatus("GET", 200)
	if body != "ok" || !resp.Close {
		t.Fatalf("request during the shutdown: %q close=%v, want ok and Connection: close", body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// An idle keep-alive connection gives its write buffer back to the pool;
// one whose next request is already there when it reads keeps it (no
// trade through the pool per request). The handler reports the count of
// returns, read on the connection's own goroutine.
func TestWriteBufferReleasedOnlyWhenIdle(t *testing.T) {
	release := make(chan struct{})
	releases := make(chan int, 4)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		releases <- w.(*response).c.writerReleases
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
		if r.URL.Path == "/hold" {
			w.(http.Flusher).Flush()
			<-release // the next request arrives while this one is held
		}
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
	n0 := recv(t, releases)           // 0 or 1: the first read may have waited
	time.Sleep(50 * time.Millisecond) // idle: the read waits
	c.write("GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
	if n := recv(t, releases); n != n0+1 {
		t.Fatalf("after an idle wait: %d releases, want %d", n, n0+1)
	}
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // in the socket, not yet read
	close(release)
	c.expectStatus("GET", 200)
	if n := recv(t, releases); n != n0+1 {
		t.Fatalf("next request already there: %d releases, want still %d", n, n0+1)
	}
}
