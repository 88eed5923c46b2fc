package http1

// Shared helpers: a Server on a real 127.0.0.1 listener that counts handler
// calls and records refusals and logs, and a raw client that writes bytes
// and reads answers with net/http's response parser. Every wait is bounded.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/evloop"
)

// testTimeout bounds every single wait.
const testTimeout = 10 * time.Second

type testServer struct {
	srv    *Server
	addr   string
	calls  atomic.Int64 // handler invocations
	served chan error   // Serve's result

	mu      sync.Mutex
	refused []refusal
	logs    syncBuffer
}

type refusal struct {
	status int
	reason string
}

// syncBuffer is a bytes.Buffer for a logger written by server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestServer serves h (nil: answer 200 "ok") on 127.0.0.1:0. The options
// run before the handler is wrapped for counting, so they may set Handler
// fields other than Handler itself.
func newTestServer(t testing.TB, h http.Handler, opts ...func(*Server)) *testServer {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	}
	ts := &testServer{served: make(chan error, 1)}
	ts.srv = &Server{
		OnRefused: func(_ context.Context, status int, reason string, _ *RefusedRequest) {
			ts.mu.Lock()
			ts.refused = append(ts.refused, refusal{status, reason})
			ts.mu.Unlock()
		},
		Log: slog.New(slog.NewTextHandler(&ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	// Plaintext connections run on event loops, as Rampart's http listeners
	// do by default; RAMPART_TEST_ENGINE=goroutines runs the suite on the
	// other engine (scripts/test.sh runs both).
	if os.Getenv("RAMPART_TEST_ENGINE") != "goroutines" {
		loops, err := evloop.Default()
		if err != nil {
			t.Fatal(err)
		}
		ts.srv.Loops = loops
	}
	for _, o := range opts {
		o(ts.srv)
	}
	ts.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.calls.Add(1)
		h.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	go func() { ts.served <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ts.srv.Close()
		select {
		case <-ts.served:
		case <-time.After(testTimeout):
			t.Error("Serve did not return after Close")
		}
	})
	return ts
}

func (ts *testServer) refusals() []refusal {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]refusal(nil), ts.refused...)
}

// client is one raw connection to the test server.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// postAfterContinue sends a POST head with Expect: 100-continue, reads
// the 100 Continue it must get, then sends body.
func (c *client) postAfterContinue(body string) {
	c.t.Helper()
	c.write("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	if l := c.line(); l != "HTTP/1.1 100 Continue\r\n" {
		c.t.Fatalf("first line %q, want the 100 Continue", l)
	}
	if l := c.line(); l != "\r\n" {
		c.t.Fatalf("after the 100 Continue: %q", l)
	}
	c.write(body)
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// response reads one answer to a request with the given method and its
// whole body (net/http's parser: it refuses what a strict client would).
func (c *client) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading response body: %v", err)
	}
	return resp, string(body)
}

// expectStatus reads an answer and checks its status.
func (c *client) expectStatus(method string, status int) (*http.Response, string) {
	c.t.Helper()
	resp, body := c.response(method)
	if resp.StatusCode != status {
		c.t.Fatalf("status = %d (%q), want %d", resp.StatusCode, body, status)
	}
	return resp, body
}

// line reads one raw line, CRLF included.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading line (got %q): %v", l, err)
	}
	return l
}

// rawHead reads raw lines up to and including the empty line.
func (c *client) rawHead() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		b.WriteString(l)
		if l == "\r\n" {
			return b.String()
		}
	}
}

// readN reads exactly n raw bytes.
func (c *client) readN(n int) string {
	c.t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		c.t.Fatalf("reading %d bytes: %v", n, err)
	}
	return string(buf)
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (c *client) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	rest, err := io.ReadAll(c.br)
	if len(rest) > 0 {
		c.t.Fatalf("unexpected bytes before close: %q", rest)
	}
	if err != nil && !isReset(err) {
		c.t.Fatalf("connection not closed by the server: %v", err)
	}
	c.c.SetReadDeadline(time.Now().Add(testTimeout))
}

// expectOpen checks that nothing arrives and the connection stays open for d.
func (c *client) expectOpen(d time.Duration) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(d))
	b, err := c.br.Peek(1)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("expected an open, silent connection; got %q, %v", b, err)
	}
	c.c.SetReadDeadline(time.Now().Add(testTimeout))
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// roundTrip sends one request on a fresh connection and returns the answer.
func (ts *testServer) roundTrip(t testing.TB, raw, method string) (*http.Response, string) {
	t.Helper()
	c := ts.dial(t)
	c.write(raw)
	return c.response(method)
}

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seen is what a handler saw of a request, copied out because the engine
// reuses the request after the handler returns.
type seen struct {
	Method, Host, RequestURI, Proto string
	Path, RawPath, RawQuery         string
	EscapedPath                     string
	URLHost, Scheme                 string
	ProtoMinor                      int
	Header                          http.Header
	ContentLength                   int64
	TransferEncoding                []string
	Close                           bool
	RemoteAddr                      string
	Body                            string
	BodyErr                         error
	CtxValue                        any
}

type ctxKey struct{}

// capture answers 200 "ok" after reading the body and sends what it saw.
func capture(ch chan<- seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		ch <- seen{
			Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, Proto: r.Proto,
			Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery, EscapedPath: r.URL.EscapedPath(),
			URLHost: r.URL.Host, Scheme: r.URL.Scheme, ProtoMinor: r.ProtoMinor,
			Header: r.Header.Clone(), ContentLength: r.ContentLength,
			TransferEncoding: append([]string(nil), r.TransferEncoding...), Close: r.Close,
			RemoteAddr: r.RemoteAddr, Body: string(b), BodyErr: err,
			CtxValue: r.Context().Value(ctxKey{}),
		}
		io.WriteString(w, "ok")
	})
}

func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for the handler")
		panic("unreachable")
	}
}
