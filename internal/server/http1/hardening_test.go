package http1

// Tests of the hardening policy: method allowlist, limits swapped at run
// time, body timeout and minimum data rate, write timeout for clients that
// do not read, no drain of a refused body (with a lingering close), and
// the OnClose hook. Raw sockets on 127.0.0.1, bounded in time.

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHardeningMethodAllowlist(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) {
		s.AllowedMethods = []string{"GET", "HEAD", "POST"}
	})
	ts.roundTrip(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET")
	for _, m := range []string{"TRACE", "PUT", "PROPFIND"} {
		c := ts.dial(t)
		c.write(m + " / HTTP/1.1\r\nHost: a\r\n\r\n")
		c.expectStatus(m, http.StatusMethodNotAllowed)
		c.expectClosed()
	}
	if n := ts.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1 (refused methods must not reach it)", n)
	}
	// Without a list every method but CONNECT is served.
	ts2 := newTestServer(t, nil)
	if resp, _ := ts2.roundTrip(t, "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", "TRACE"); resp.StatusCode != 200 {
		t.Fatalf("TRACE without a method list: %d", resp.StatusCode)
	}
}

func TestHardeningConfigureAppliesToNextRequest(t *testing.T) {
	ts := newTestServer(t, nil)
	long := "GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\nHost: a\r\n\r\n"
	c := ts.dial(t)
	c.write(long)
	c.expectStatus("GET", 200)
	ts.srv.Configure(Policy{Limits: Limits{MaxRequestLineBytes: 100, MaxHeaders: 2}, AllowedMethods: []string{"GET"}})
	// The open connection's next request follows the new policy.
	c.write(long)
	c.expectStatus("GET", http.StatusRequestURITooLong)
	c = ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n")
	c.expectStatus("GET", http.StatusRequestHeaderFieldsTooLarge)
	c = ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	c.expectStatus("POST", http.StatusMethodNotAllowed)
}

// bodyReader is a handler that reads the whole body and reports how the
// read ended.
func bodyReader(got chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		got <- err
		if sc, ok := errors.AsType[interface {
			error
			HTTPStatus() int
		}](err); ok {
			w.Header().Set("Connection", "close")
			w.WriteHeader(sc.HTTPStatus())
			return
		}
		io.WriteString(w, "ok")
	})
}

func TestHardeningBodyTimeout(t *testing.T) {
	got := make(chan error, 1)
	ts := newTestServer(t, bodyReader(got), func(s *Server) { s.BodyTimeout = 300 * time.Millisecond })
	c := ts.dial(t)
	start := time.Now()
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
	err := recv(t, got)
	if !errors.Is(err, errBodyTimeout) {
		t.Fatalf("body read ended with %v, want the body timeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("body timeout after %s, want about 300ms", d)
	}
	c.expectStatus("POST", http.StatusRequestTimeout)
	c.expectClosed()

	// The deadline is the whole body's: a complete body in time is fine,
	// and the next request is read as usual.
	c = ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	c.expectStatus("POST", 200)
	if err := recv(t, got); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // past the first body's deadline
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
}

func TestHardeningMinBodyRate(t *testing.T) {
	got := make(chan error, 1)
	ts := newTestServer(t, bodyReader(got), func(s *Server) {
		s.MinBodyRate = 1000
		s.RateWindow = 400 * time.Millisecond
	})
	// Slow POST: one byte every 50ms (20 B/s) against 1000 B/s.
	slow := ts.dial(t)
	slow.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for range 200 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := slow.c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	if err := recv(t, got); !errors.Is(err, errBodyTooSlow) {
		t.Fatalf("slow body ended with %v, want the minimum rate", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slow body cut after %s, want about the window (400ms)", d)
	}
	slow.expectStatus("POST", http.StatusRequestTimeout)

	// A body that arrives at speed, in pieces over several windows, passes.
	c := ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 60000\r\n\r\n")
	for range 6 {
		c.write(strings.Repeat("y", 10000))
		time.Sleep(150 * time.Millisecond)
	}
	if err := recv(t, got); err != nil {
		t.Fatalf("fast body: %v", err)
	}
	c.expectStatus("POST", 200)
	// Chunked too.
	c.write("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 4 {
		c.write("2710\r\n" + strings.Repeat("z", 10000) + "\r\n")
		time.Sleep(150 * time.Millisecond)
	}
	c.write("0\r\n\r\n")
	if err := recv(t, got); err != nil {
		t.Fatalf("fast chunked body: %v", err)
	}
	c.expectStatus("POST", 200)
}

func TestHardeningWriteTimeout(t *testing.T) {
	werr := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for range 1024 { // 64 MiB: more than any socket buffer holds
			if _, err := w.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}), func(s *Server) { s.WriteTimeout = 300 * time.Millisecond })
	c := ts.dial(t)
	c.write("GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	// The client never reads.
	start := time.Now()
	if err := recv(t, werr); err == nil {
		t.Fatal("64 MiB written to a client that reads nothing")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("write timeout after %s", d)
	}
	waitFor(t, "connection closed", func() bool { return ts.srv.ActiveConns() == 0 })
}

func TestHardeningRefusedBodyNotDrained(t *testing.T) {
	var read atomic.Int64
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.CopyN(io.Discard, r.Body, 10)
		read.Add(n)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}))
	c := ts.dial(t)
	// 1 GB announced, a little sent: the answer must come without the rest.
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n" + strings.Repeat("b", 4096))
	c.expectStatus("POST", http.StatusRequestEntityTooLarge)
	// The client may go on sending for a moment: the lingering close eats
	// it, then the connection ends.
	c.write(strings.Repeat("b", 4096))
	c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(c.br); err != nil && !isReset(err) {
		t.Fatalf("connection not closed after the lingering close: %v", err)
	}
	if n := read.Load(); n != 10 {
		t.Fatalf("handler read %d bytes", n)
	}
}

func TestHardeningOnClose(t *testing.T) {
	var closed atomic.Int64
	ts := newTestServer(t, nil, func(s *Server) {
		s.OnClose = func(net.Conn) { closed.Add(1) }
		s.Admit = func(c net.Conn) bool { return true }
	})
	for range 3 {
		c := ts.dial(t)
		c.write("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		c.expectStatus("GET", 200)
	}
	c := ts.dial(t)
	c.write("GARBAGE\r\n\r\n")
	c.expectStatus("GET", 400)
	waitFor(t, "four OnClose calls", func() bool { return closed.Load() == 4 })
	time.Sleep(50 * time.Millisecond)
	if n := closed.Load(); n != 4 {
		t.Fatalf("OnClose called %d times for 4 connections", n)
	}
}

// BenchmarkServeHardened is BenchmarkServe's http1 case with every
// timeout, the rate check and a method list on: keep-alive GETs must cost
// what they cost without them.
func BenchmarkServeHardened(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Handler: http.HandlerFunc(benchHandler), BodyTimeout: 30 * time.Second, MinBodyRate: 100,
		WriteTimeout: 30 * time.Second, MinReadRate: 100, AllowedMethods: []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}}
	go s.Serve(ln)
	defer s.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchKeepAlive(b, c)
}
