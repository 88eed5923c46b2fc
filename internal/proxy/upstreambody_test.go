package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/testnet"
)

// received is one request as a raw backend read it: its head and the body
// its Content-Length announced.
type received struct {
	head, body string
	conn       int32 // which of the backend's connections carried it
}

// bodyBackend reads each request's head and Content-Length body and answers
// "ok". With dropSecond, the second request on a connection is read and the
// connection closed without an answer, as a backend that crashed (or closed
// an idle connection as the request arrived) does.
func bodyBackend(t *testing.T, dropSecond bool) (string, chan received) {
	t.Helper()
	got := make(chan received, 16)
	var conns atomic.Int32
	addr := testnet.Serve(t, func(c net.Conn) {
		id := conns.Add(1)
		br := bufio.NewReader(c)
		for n := 1; ; n++ {
			head, err := testnet.ReadHead(br)
			if err != nil {
				return
			}
			length := 0
			for _, line := range strings.Split(head, "\r\n") {
				if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
					length, _ = strconv.Atoi(v)
				}
			}
			body := make([]byte, length)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			got <- received{head, string(body), id}
			if dropSecond && n == 2 {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return addr, got
}

// send forwards a request of method with body (nil: none) on the direct
// path, its body read whole as serveDirect reads it.
func send(p *Pool, method string, body []byte) (*http.Response, error) {
	req, _ := http.NewRequest(method, "http://placeholder/up", nil)
	req.ContentLength = int64(len(body))
	resp, err := p.forward(req, &directRequest{req: req, rec: pipeline.FromContext(req.Context()), reqBody: body})
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// A small body goes with its head, announced by its exact length; a POST
// without one says Content-Length: 0 (as http.Transport does; servers
// answer 411 to a POST without a length), a GET says nothing.
func TestDirectRequestBody(t *testing.T) {
	addr, got := bodyBackend(t, false)
	p := testPool(t, addr)
	payload := []byte(strings.Repeat("0123456789", 1000)) // 10,000 bytes: more than the 4 KiB write buffer
	for _, c := range []struct {
		method string
		body   []byte
		length string // the Content-Length line the backend must see, "" for none
	}{
		{http.MethodPost, payload, "Content-Length: 10000\r\n"},
		{http.MethodPut, []byte("x"), "Content-Length: 1\r\n"},
		{http.MethodPost, nil, "Content-Length: 0\r\n"},
		{http.MethodGet, nil, ""},
	} {
		resp, err := send(p, c.method, c.body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v", c.method, err)
		}
		r := <-got
		if !strings.HasPrefix(r.head, c.method+" /up HTTP/1.1\r\n") || r.body != string(c.body) {
			t.Fatalf("%s: backend got head %q and %d body bytes, want %d", c.method, r.head, len(r.body), len(c.body))
		}
		if n := strings.Count(r.head, "Content-Length"); (c.length == "" && n != 0) || (c.length != "" && (n != 1 || !strings.Contains(r.head, "\r\n"+c.length))) {
			t.Fatalf("%s: head %q, want one %q", c.method, r.head, c.length)
		}
		if r.conn != 1 {
			t.Fatalf("%s went on connection %d: the direct client's one connection was not reused", c.method, r.conn)
		}
	}
}

// A request whose pooled connection fails before any answer is sent again
// on a fresh connection only if it is idempotent: the backend may have
// acted on a POST before the connection went.
func TestDirectBodyRetryOnlyIfIdempotent(t *testing.T) {
	for _, method := range []string{http.MethodPut, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			addr, got := bodyBackend(t, true)
			p := testPool(t, addr)
			if _, err := send(p, http.MethodGet, nil); err != nil { // opens the connection the next request reuses
				t.Fatal(err)
			}
			<-got
			resp, err := send(p, method, []byte("payload"))
			first := <-got
			if first.conn != 1 || first.body != "payload" {
				t.Fatalf("first try: connection %d, body %q", first.conn, first.body)
			}
			if method == http.MethodPost {
				if !errors.Is(err, errStaleConn) {
					t.Fatalf("POST on a connection that failed: %v, want errStaleConn (not sent twice)", err)
				}
				select {
				case r := <-got:
					t.Fatalf("the POST was sent again: %q", r.head)
				default:
				}
				return
			}
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("PUT: %v", err)
			}
			if again := <-got; again.conn != 2 || again.body != "payload" {
				t.Fatalf("PUT retry: connection %d, body %q; want a fresh connection with the same body", again.conn, again.body)
			}
		})
	}
}

// Bodies go to the direct path unless their head asks for what only
// http.Transport does (Expect, trailers, an upgrade).
func TestDirectEligibleBodies(t *testing.T) {
	for _, c := range []struct {
		length int64
		body   io.Reader
		header string
		want   bool
	}{
		{0, nil, "", true},
		{1, strings.NewReader("x"), "", true},
		{maxBufferedBody, strings.NewReader("x"), "", true},
		{maxBufferedBody + 1, strings.NewReader("x"), "", true}, // streamed
		{1, nil, "", false},                                     // a length without a body
		{0, strings.NewReader("x"), "", false},                  // a body that announces none
		{-1, strings.NewReader("chunked"), "", true},            // streamed, chunked
		{1, strings.NewReader("x"), "Expect", false},
		{1, strings.NewReader("x"), "Trailer", false}, // announced trailers
		{0, nil, "Upgrade", false},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://placeholder/", c.body)
		req.ContentLength = c.length
		if c.header == "Trailer" {
			req.Trailer = http.Header{"X-Checksum": nil}
		} else if c.header != "" {
			req.Header.Set(c.header, "x")
		}
		if got := directEligible(req); got != c.want {
			t.Errorf("length %d, header %q: eligible %v, want %v", c.length, c.header, got, c.want)
		}
	}
}

// A body the backend does not read, on a connection whose socket buffers
// are small enough for the send to wait: the send ends at the
// response_header_timeout (a timeout error), and the write deadline is
// cleared afterwards.
func TestBodySendWaitBounded(t *testing.T) {
	p, b, uc, cfg := stuckBackend(t, 2*time.Second, 5*time.Second)
	calls := 0
	uc.sock.BeforeWriteWait = func() { calls++; uc.armWriteDeadline() }

	req, _ := http.NewRequest("POST", "http://placeholder/up", nil)
	body := []byte(strings.Repeat("x", maxBufferedBody))
	req.ContentLength = int64(len(body))
	dr := &directRequest{req: req, rec: pipeline.FromContext(req.Context()), reqBody: body}
	start := time.Now()
	_, err := p.exchange(context.Background(), b, uc, dr, start, cfg)
	el := time.Since(start)
	t.Logf("exchange: %v after %s; BeforeWriteWait called %d times", err, el, calls)
	if calls == 0 {
		t.Skip("the send never waited")
	}
	if !isResponseTimeout(err) || el > 3500*time.Millisecond || el < 1500*time.Millisecond {
		t.Fatalf("exchange: %v after %s, want a timeout after 2s", err, el)
	}
	if uc.writeArmed || !uc.writeBy.IsZero() {
		t.Fatal("write deadline state left set")
	}
}

// stuckBackend is a pool of one backend that reads a request's head and
// then nothing for hold, and a connection to it whose socket buffers are
// small enough for a body's send to wait; the pool's
// response_header_timeout is timeout.
func stuckBackend(t *testing.T, timeout, hold time.Duration) (*Pool, *Backend, *upstreamConn, *config.Pool) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
	}}
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 1024) })
	}}
	c := loopbackPair(t, lc, d, func(c net.Conn) { // reads the head, never the body
		testnet.ReadHead(bufio.NewReaderSize(c, 16))
		time.Sleep(hold)
	})
	reg, err := NewRegistry(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	cfg := &config.Pool{Name: "p", Algorithm: "round_robin", ConnectTimeout: config.Duration(time.Second),
		ResponseHeaderTimeout: config.Duration(timeout), MaxIdleConnsPerBackend: 8,
		Backends: []config.Backend{{ID: "a", Address: c.RemoteAddr().String(), Weight: 1}}}
	reg.Apply([]config.Pool{*cfg})
	p := reg.Pool("p")
	return p, p.Backends()[0], newUpstreamConn(c, nil), cfg
}

// A streamed body is not sent twice: a PUT whose pooled connection fails
// after its body left the client fails, where one read whole is retried
// (TestDirectBodyRetryOnlyIfIdempotent).
func TestStreamedBodyNotRetried(t *testing.T) {
	addr, got := bodyBackend(t, true)
	p := testPool(t, addr)
	if _, err := send(p, http.MethodGet, nil); err != nil { // opens the connection the PUT reuses
		t.Fatal(err)
	}
	<-got
	body := strings.Repeat("s", maxBufferedBody+1)
	req, _ := http.NewRequest(http.MethodPut, "http://placeholder/up", nil)
	req.ContentLength = int64(len(body))
	d := &directRequest{req: req, rec: pipeline.FromContext(req.Context()), stream: strings.NewReader(body), streamLen: int64(len(body))}
	_, err := p.forward(req, d)
	if first := <-got; first.body != body {
		t.Fatalf("the backend got %d body bytes, want %d", len(first.body), len(body))
	}
	if !errors.Is(err, errStaleConn) {
		t.Fatalf("streamed PUT on a connection that failed: %v, want errStaleConn (not sent twice)", err)
	}
	select {
	case r := <-got:
		t.Fatalf("the streamed PUT was sent again: %q", r.head)
	default:
	}
}

// The client's own body failing (a 408 says Timeout as well) is nothing the
// backend did: outlier detection does not count it.
func TestClientBodyErrorNotBackendFault(t *testing.T) {
	for _, err := range []error{clientTimeout{}, errShortBody, ErrClientGone, fmt.Errorf("wrapped: %w", clientTimeout{})} {
		if code := backendFault(err); code != 0 {
			t.Errorf("%v: counted as the backend's %d", err, code)
		}
	}
	if code := backendFault(errBadResponse("x")); code != http.StatusBadGateway {
		t.Errorf("a bad answer: %d, want 502", code)
	}
}

// clientTimeout is the HTTP/1 engine's error for a body that did not come
// in time, as the proxy sees it.
type clientTimeout struct{}

func (clientTimeout) Error() string   { return "request body timeout" }
func (clientTimeout) HTTPStatus() int { return http.StatusRequestTimeout }
func (clientTimeout) Timeout() bool   { return true }

// A streamed body the backend does not read, nor answer: each wait to send
// more of it ends at the response_header_timeout, and with it the
// request's wait for an answer (which has no deadline while the body is
// sent): a timeout error, not a wait without end.
func TestStreamedBodySendWaitBounded(t *testing.T) {
	p, b, uc, cfg := stuckBackend(t, time.Second, 6*time.Second)
	body := strings.Repeat("x", 4<<20)
	req, _ := http.NewRequest(http.MethodPost, "http://placeholder/up", nil)
	req.ContentLength = int64(len(body))
	dr := &directRequest{req: req, rec: pipeline.FromContext(req.Context()), stream: strings.NewReader(body), streamLen: int64(len(body))}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := p.exchange(context.Background(), b, uc, dr, start, cfg)
		done <- err
	}()
	select {
	case err := <-done:
		if !isResponseTimeout(err) {
			t.Fatalf("exchange: %v after %s, want a timeout", err, time.Since(start))
		}
	case <-time.After(5 * time.Second):
		uc.c.Close()
		t.Fatal("the exchange still waits after 5 s (response_header_timeout 1 s)")
	}
}
