package server

// A review of the streamed request body path (internal/proxy/upstreamstream.go),
// by a helper session that attacked it. Tests marked BUG failed on the
// reviewed commit (5d54d54) and were fixed (a47d921 and the commit that
// added this file); tests marked PIN pin a behaviour that held.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/testnet"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// revOKBackend answers every request with 200 "ok" after reading its body
// whole, counting connections and sending each request's body to got (if
// not nil).
func revOKBackend(t *testing.T, got chan<- streamedRequest) (string, *atomic.Int32) {
	var conns atomic.Int32
	addr := testnet.Serve(t, func(c net.Conn) {
		id := conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			if got != nil {
				select {
				case got <- streamedRequest{req.Method, req.URL.Path, req.ContentLength, req.TransferEncoding, body, id}:
				default:
				}
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return addr, &conns
}

// revSlowBody returns a reader that yields n pieces of piece, one every gap.
func revSlowBody(n int, gap time.Duration, piece string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		for range n {
			time.Sleep(gap)
			if _, err := io.WriteString(pw, piece); err != nil {
				return
			}
		}
		pw.Close()
	}()
	return pr
}

const revNoRateLimit = "security: {slowloris_protection: {body_timeout_seconds: 60, min_data_rate_bytes_per_second: 0}}\n"

// BUG: the sender arms the response_header_timeout on the backend socket
// when its body is all sent (sendBody) without recording it in
// uc.readDeadline. A streamed request whose whole answer came with its head
// leaves that deadline on the pooled connection; the next streamed request
// on it (startBody only clears a deadline that uc.readDeadline knows of)
// waits for its answer under the old deadline, and an upload that lasts
// longer than response_header_timeout after the previous one ended is cut
// with a 504 while its body is still being sent.
func TestReviewStreamStaleDeadlineOnPooledConn(t *testing.T) {
	addr, conns := revOKBackend(t, nil)
	e := startEnv(t, rawPool(addr, "response_header_timeout: 1s")+revNoRateLimit)
	if r := e.do(http.MethodPost, e.url("web", "/first"), "", nil, unsized("x")); r.status != 200 {
		t.Fatalf("first upload: %d %q", r.status, r.body)
	}
	// 5 pieces, 500 ms apart: 2.5 s, longer than the timeout, on the
	// connection the first upload left in the pool.
	start := time.Now()
	r := e.do(http.MethodPost, e.url("web", "/second"), "", nil, revSlowBody(5, 500*time.Millisecond, "piece\n"))
	if r.status != 200 {
		l := lastLogLine(t, e, 2)
		t.Fatalf("second (slow) upload on the pooled connection: %d after %v, log error %v; want 200 (the timeout starts when the body is sent)",
			r.status, time.Since(start).Round(10*time.Millisecond), l["error"])
	}
	if n := conns.Load(); n != 1 {
		t.Logf("backend connections: %d", n)
	}
}

// PIN: the same slow upload on a fresh connection is not cut (the timeout
// starts once the body is sent).
func TestReviewStreamSlowUploadFreshConn(t *testing.T) {
	addr, _ := revOKBackend(t, nil)
	e := startEnv(t, rawPool(addr, "response_header_timeout: 1s")+revNoRateLimit)
	if r := e.do(http.MethodPost, e.url("web", "/up"), "", nil, revSlowBody(5, 500*time.Millisecond, "piece\n")); r.status != 200 {
		t.Fatalf("slow upload: %d %q", r.status, r.body)
	}
}

// BUG: an interim answer (100 Continue, 103 Early Hints) that arrives while
// the body is still being sent sets headIn (exchange calls answered() after
// the first byte of any answer), so the sender does not arm the
// response_header_timeout once the body is sent, and nothing else does: a
// backend that sends 100 Continue and then never answers holds the client
// (and the backend connection) forever instead of a 504.
func TestReviewStreamInterimAnswerDisablesHeaderTimeout(t *testing.T) {
	addr := testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		io.Copy(io.Discard, req.Body)
		// No final answer: wait until Rampart gives up (bounded).
		c.SetReadDeadline(time.Now().Add(testTimeout))
		io.Copy(io.Discard, br)
	})
	e := startEnv(t, rawPool(addr, "response_header_timeout: 500ms")+revNoRateLimit)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	start := time.Now()
	_, err := doRequest(c, http.MethodPost, e.url("web", "/up"), "", nil, revSlowBody(2, 300*time.Millisecond, "piece\n"))
	if err != nil {
		t.Fatalf("no answer %v after the request began (body sent after 600 ms; response_header_timeout 500ms): %v", time.Since(start).Round(10*time.Millisecond), err)
	}
	l := lastLogLine(t, e, 1)
	if l["status_code"] != 504.0 || l["error"] != "backend_timeout" {
		t.Fatalf("access log: %v %v, want 504 backend_timeout", l["status_code"], l["error"])
	}
}

// BUG: a streamed PUT whose reused backend connection turns out closed
// before any of its body was taken from the client is retried (PUT is
// idempotent, streamStarted is false), but the failed exchange stopped
// the sender's read of the client's body with body.Close, which leaves
// the HTTP/1 body with a sticky timeout error: the retry's sender fails
// at once, and the client is answered 400 request_body_400 for a body it
// had not even started to send (and the retried backend sees a truncated
// request).
func TestReviewStreamStaleRetryPoisonedBody(t *testing.T) {
	var conns atomic.Int32
	got := make(chan streamedRequest, 4)
	addr := testnet.Serve(t, func(c net.Conn) {
		id := conns.Add(1)
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if id == 1 && n == 1 {
				return // the pooled connection: closed on the second request's head
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			got <- streamedRequest{req.Method, req.URL.Path, req.ContentLength, req.TransferEncoding, body, id}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	if r := e.get("/warm"); r.status != 200 {
		t.Fatalf("warm: %d", r.status)
	}
	<-got
	c, err := net.DialTimeout("tcp", e.srv.Addr("web"), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	body := strings.Repeat("b", 20000)
	fmt.Fprintf(c, "PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
	time.Sleep(300 * time.Millisecond) // the body follows the head a little later
	io.WriteString(c, body)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	rb, _ := io.ReadAll(res.Body)
	l := lastLogLine(t, e, 2)
	t.Logf("answer %d %q; log error %v; backend connections %d", res.StatusCode, rb, l["error"], conns.Load())
	if res.StatusCode/100 == 4 {
		t.Fatalf("PUT answered %d (%v) although the client sent its whole body correctly; want 200 (retried) or a 502", res.StatusCode, l["error"])
	}
}

// revSeen is what a raw backend read of one request: its head, how many
// body bytes came, and how the body read ended.
type revSeen struct {
	head   string
	n      int64
	err    error
	conn   int32
	ok     bool // the body was complete (a chunked one with its last chunk)
	framed string
}

// revRecordingBackend reads requests with http.ReadRequest; for each, reports
// what it saw on seen and, if the body was complete, answers 200 "ok".
func revRecordingBackend(t *testing.T, seen chan<- revSeen) (string, *atomic.Int32) {
	var conns atomic.Int32
	addr := testnet.Serve(t, func(c net.Conn) {
		id := conns.Add(1)
		c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			n, err := io.Copy(io.Discard, req.Body)
			framed := fmt.Sprintf("cl=%d te=%v", req.ContentLength, req.TransferEncoding)
			seen <- revSeen{head: req.Method + " " + req.URL.Path, n: n, err: err, conn: id, ok: err == nil, framed: framed}
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return addr, &conns
}

func revRecv(t *testing.T, ch <-chan revSeen, what string) revSeen {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for: %s", what)
	}
	return revSeen{}
}

// revRawClient opens a connection to the web listener with a bounded deadline.
func revRawClient(t *testing.T, e *testEnv) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.Addr("web"), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c, bufio.NewReader(c)
}

// PIN: a client that leaves mid-upload (known length and chunked) gets a
// 499 client_closed in the log; the backend sees its request cut short
// (connection closed before the announced end, no last chunk), never a
// complete request, and the connection is not reused.
func TestReviewStreamClientLeavesMidUpload(t *testing.T) {
	seen := make(chan revSeen, 8)
	addr, conns := revRecordingBackend(t, seen)
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	for i, c := range []struct{ name, head, part string }{
		{"known length", "POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", strings.Repeat("a", 30000)},
		{"chunked", "POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "7530\r\n" + strings.Repeat("a", 30000) + "\r\n"},
	} {
		conn, _ := revRawClient(t, e)
		io.WriteString(conn, c.head+c.part)
		time.Sleep(200 * time.Millisecond)
		conn.Close()
		s := revRecv(t, seen, c.name+": backend's view")
		if s.ok {
			t.Fatalf("%s: the backend read a complete request (%d bytes) from a client that left mid-body", c.name, s.n)
		}
		l := lastLogLine(t, e, i+1)
		if l["status_code"] != 499.0 || l["error"] != "client_closed" {
			t.Errorf("%s: access log %v %v, want 499 client_closed", c.name, l["status_code"], l["error"])
		}
	}
	if r := e.get("/after"); r.status != 200 {
		t.Fatalf("after: %d", r.status)
	}
	revRecv(t, seen, "after")
	if n := conns.Load(); n != 3 {
		t.Fatalf("backend connections %d, want 3", n)
	}
}

// PIN: a chunked body whose data holds what looks like the end of the body
// and a second request, with chunk extensions and trailers, reaches the
// backend as one request whose body is that data, re-chunked; the next
// pipelined request on the client's connection is a request of its own.
func TestReviewStreamChunkedNoSmuggling(t *testing.T) {
	seen := make(chan streamedRequest, 8)
	addr, _ := revOKBackend(t, seen)
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	conn, br := revRawClient(t, e)
	evil := "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	req := "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" +
		fmt.Sprintf("%x;name=\"v\";x=y\r\n%s\r\n", len(evil), evil) +
		"3;q\r\nabc\r\n0;ext=1\r\nX-T: 1\r\n\r\n" +
		"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	io.WriteString(conn, req)
	for _, want := range []string{"/a", "/b"} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer for %s: %v", want, err)
		}
		io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", want, res.StatusCode)
		}
	}
	a, b := <-seen, <-seen
	if a.path != "/a" || string(a.body) != evil+"abc" || a.length != -1 {
		t.Fatalf("first request at the backend: %s %q (length %d)", a.path, a.body, a.length)
	}
	if b.path != "/b" || len(b.body) != 0 {
		t.Fatalf("second request at the backend: %s %q", b.path, b.body)
	}
	select {
	case x := <-seen:
		t.Fatalf("a third request reached the backend: %s", x.path)
	case <-time.After(200 * time.Millisecond):
	}
}

// PIN: a chunked body that crosses max_body_bytes while streaming gets the
// client a 413 (request_body_413); the backend never sees its last chunk
// (its connection is closed), and the next request gets a new connection.
func TestReviewStreamChunkedOverMaxBody(t *testing.T) {
	seen := make(chan revSeen, 8)
	addr, conns := revRecordingBackend(t, seen)
	e := startEnv(t, rawPool(addr)+"security: {request_limits: {max_body_bytes: 50000}, slowloris_protection: {body_timeout_seconds: 60, min_data_rate_bytes_per_second: 0}}\n")
	r := e.do(http.MethodPost, e.url("web", "/big"), "", nil, revSlowBody(4, 50*time.Millisecond, strings.Repeat("z", 20000)))
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d %q, want 413", r.status, r.body)
	}
	s := revRecv(t, seen, "backend's view")
	if s.ok || s.n > 50000 {
		t.Fatalf("backend read %d bytes, complete %v", s.n, s.ok)
	}
	l := lastLogLine(t, e, 1)
	if l["status_code"] != 413.0 || l["error"] != "request_body_413" {
		t.Errorf("access log %v %v", l["status_code"], l["error"])
	}
	if r := e.get("/after"); r.status != 200 {
		t.Fatalf("after: %d", r.status)
	}
	revRecv(t, seen, "after")
	if n := conns.Load(); n != 2 {
		t.Fatalf("backend connections %d, want 2", n)
	}
}

// PIN: a streamed body of known length followed by a pipelined request on
// the client's connection: two requests at the backend, on one connection,
// each with its own body.
func TestReviewStreamKnownLengthPipelined(t *testing.T) {
	seen := make(chan streamedRequest, 8)
	addr, conns := revOKBackend(t, seen)
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	conn, br := revRawClient(t, e)
	body := strings.Repeat("q", 20000)
	io.WriteString(conn, fmt.Sprintf("PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%sGET /b HTTP/1.1\r\nHost: x\r\n\r\n", len(body), body))
	for _, want := range []string{"/a", "/b"} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer for %s: %v", want, err)
		}
		io.ReadAll(res.Body)
	}
	a, b := <-seen, <-seen
	if a.path != "/a" || string(a.body) != body || b.path != "/b" || len(b.body) != 0 || conns.Load() != 1 {
		t.Fatalf("backend saw %s (%d bytes) then %s (%d bytes) on %d connections", a.path, len(a.body), b.path, len(b.body), conns.Load())
	}
}

// PIN: quarantining the backend mid-upload cuts the request: 502
// backend_cut, the backend's request never completes.
func TestReviewStreamQuarantineMidUpload(t *testing.T) {
	seen := make(chan revSeen, 8)
	addr, _ := revRecordingBackend(t, seen)
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	pr, pw := io.Pipe()
	defer pw.Close()
	done := e.goPost("/up", pr)
	io.WriteString(pw, strings.Repeat("u", 40000))
	time.Sleep(200 * time.Millisecond)
	if _, err := e.srv.Registry().Quarantine("p", "raw"); err != nil {
		t.Fatal(err)
	}
	res := waitResult(t, done)
	if res.err != nil || res.r.status != http.StatusBadGateway {
		t.Fatalf("answer %+v %v, want 502", res.r.status, res.err)
	}
	if s := revRecv(t, seen, "backend's view"); s.ok {
		t.Fatal("backend saw a complete request")
	}
	l := lastLogLine(t, e, 1)
	if l["error"] != "backend_cut" {
		t.Errorf("access log %v %v, want backend_cut", l["status_code"], l["error"])
	}
}

// BUG: a backend that never reads the body (and never answers): the
// sender's write does time out after response_header_timeout (writeWait),
// but sendBody only closes the backend connection for a client body error,
// and arms no read deadline after a failed send, so the request goroutine
// waits in Peek with no deadline (startBody cleared it) until the backend
// closes: the client hangs instead of getting a 504.
func TestReviewStreamBackendNeverReads(t *testing.T) {
	addr := testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(testTimeout))
		testnet.ReadHead(bufio.NewReader(c))
		time.Sleep(testTimeout) // never reads, never answers
	})
	e := startEnv(t, rawPool(addr, "response_header_timeout: 500ms")+"security: {request_limits: {max_body_bytes: 1073741824}, slowloris_protection: {body_timeout_seconds: 60, min_data_rate_bytes_per_second: 0}}\n")
	start := time.Now()
	big := bytes.Repeat([]byte("n"), 64<<20)
	c := &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{}}
	r, err := doRequest(c, http.MethodPost, e.url("web", "/up"), "", nil, bytes.NewReader(big))
	// Rampart answers and closes the connection while the client is still
	// sending: Go's client reports either the answer or its failed write.
	if err == nil && r.status != http.StatusGatewayTimeout {
		t.Fatalf("status %d after %v, want 504", r.status, time.Since(start))
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("answered after %v (%v); response_header_timeout is 500ms", time.Since(start), err)
	}
	l := lastLogLine(t, e, 1)
	if l["status_code"] != 504.0 || l["error"] != "backend_timeout" {
		t.Errorf("access log %v %v, want 504 backend_timeout", l["status_code"], l["error"])
	}
}

// PIN: a backend that closes its connection mid-upload (before answering)
// gets the client a 502, and the next request is served.
func TestReviewStreamBackendClosesMidUpload(t *testing.T) {
	var conns atomic.Int32
	addr := testnet.Serve(t, func(c net.Conn) {
		id := conns.Add(1)
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if id == 1 {
			io.CopyN(io.Discard, req.Body, 1000)
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	r := e.do(http.MethodPost, e.url("web", "/up"), "", nil, revSlowBody(3, 100*time.Millisecond, strings.Repeat("c", 10000)))
	if r.status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", r.status)
	}
	l := lastLogLine(t, e, 1)
	t.Logf("log: %v %v", l["status_code"], l["error"])
	if r := e.get("/after"); r.status != 200 {
		t.Fatalf("after: %d", r.status)
	}
}

// h2Post sends one POST on a fresh h2c connection: the given extra header
// fields, then the DATA frames (the last with END_STREAM unless open), and
// returns the answer's :status, or the RST_STREAM code (status 0).
func revH2Post(t *testing.T, e *testEnv, path string, fields [][2]string, data [][]byte, open bool) (status int, rst http2.ErrCode) {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.Addr("web"), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range append([][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}}, fields...) {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	for i, d := range data {
		if err := fr.WriteData(1, i == len(data)-1 && !open, d); err != nil {
			t.Fatalf("DATA %d: %v", i, err)
		}
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
			for _, h := range hf {
				if h.Name == ":status" {
					fmt.Sscan(h.Value, &status)
				}
			}
			if status >= 200 {
				return status, 0
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return 0, f.ErrCode
			}
		case *http2.GoAwayFrame:
			return 0, f.ErrCode
		}
	}
}

func revH2cRawPool(addr string) string {
	return strings.Replace(rawPool(addr), `{name: web, listen: "127.0.0.1:0"}`, `{name: web, listen: "127.0.0.1:0", h2c: true}`, 1)
}

// PIN: h2c bodies: without content-length, streamed chunked, byte for
// byte; with one, framed with it; a content-length that the DATA frames
// overrun resets the stream and no byte past it reaches the backend (no
// second request there); one they fall short of (END_STREAM early) gets a
// 400 and the backend never sees a complete request.
func TestReviewStreamH2C(t *testing.T) {
	seen := make(chan revSeen, 8)
	addr, conns := revRecordingBackend(t, seen)
	e := startEnv(t, revH2cRawPool(addr)+revNoRateLimit)
	part := bytes.Repeat([]byte("h"), 10000)

	st, rst := revH2Post(t, e, "/nolen", nil, [][]byte{part, part, part}, false)
	s := revRecv(t, seen, "nolen")
	if st != 200 || !s.ok || s.n != 30000 || s.framed != "cl=-1 te=[chunked]" {
		t.Fatalf("no content-length: status %d rst %v; backend %+v", st, rst, s)
	}
	st, rst = revH2Post(t, e, "/len", [][2]string{{"content-length", "30000"}}, [][]byte{part, part, part}, false)
	s = revRecv(t, seen, "len")
	if st != 200 || !s.ok || s.n != 30000 || s.framed != "cl=30000 te=[]" {
		t.Fatalf("content-length: status %d rst %v; backend %+v", st, rst, s)
	}
	smuggle := []byte("GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	st, rst = revH2Post(t, e, "/over", [][2]string{{"content-length", "20000"}}, [][]byte{part, part, smuggle}, false)
	t.Logf("DATA over content-length: status %d rst %v", st, rst)
	s = revRecv(t, seen, "over")
	if s.n > 20000 {
		t.Fatalf("backend read %d bytes of a 20000-byte body", s.n)
	}
	st, rst = revH2Post(t, e, "/short", [][2]string{{"content-length", "30000"}}, [][]byte{part, part}, false)
	s = revRecv(t, seen, "short")
	t.Logf("short body: status %d rst %v; backend %+v", st, rst, s)
	if s.ok || st == 200 {
		t.Fatalf("short h2 body: status %d, backend saw a complete request %+v", st, s)
	}
	select {
	case x := <-seen:
		t.Fatalf("another request at the backend: %+v", x)
	case <-time.After(300 * time.Millisecond):
	}
	t.Logf("backend connections: %d", conns.Load())
	l := lastLogLine(t, e, 4)
	t.Logf("short body log: %v %v", l["status_code"], l["error"])
}

// echoEnv is a full-duplex echo backend (it answers at once and echoes
// each line of the body as it comes) behind Rampart with extra config.
func echoEnv(t *testing.T, extra string) *testEnv {
	b := newTestBackend(t, "echo")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				io.WriteString(w, "echo "+line)
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	return startEnv(t, onePool("round_robin", extra, b))
}

// BUG: once the backend's answer head has come (a full-duplex backend, or
// any early answer still streaming), a failure of the client's body
// (crossing max_body_bytes here) is dropped: sendBody neither closes the
// backend connection nor tells the request goroutine, so the backend
// waits for the rest of a body that will never come and the answer stalls
// until read_timeout, then is logged as the backend's timeout
// (backend_timeout) instead of request_body_413.
func TestReviewStreamBodyErrorAfterHead(t *testing.T) {
	e := echoEnv(t, `    read_timeout: 4s
logging: {access_log: {path: access.log}}
security: {request_limits: {max_body_bytes: 1000}, slowloris_protection: {body_timeout_seconds: 60, min_data_rate_bytes_per_second: 0}}
`)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, e.url("web", "/echo"), pr)
	done := make(chan *http.Response, 1)
	go func() {
		res, err := e.client.Do(req)
		if err != nil {
			close(done)
			return
		}
		done <- res
	}()
	io.WriteString(pw, "ping\n")
	var res *http.Response
	select {
	case res = <-done:
	case <-time.After(testTimeout):
		t.Fatal("no head")
	}
	if res == nil {
		t.Fatal("request failed")
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if l, _ := br.ReadString('\n'); l != "echo ping\n" {
		t.Fatalf("first echo %q", l)
	}
	// Over the limit: the sender's read of the body fails with a 413.
	go io.WriteString(pw, strings.Repeat("y", 2000)+"\n")
	start := time.Now()
	rest, err := io.ReadAll(br)
	el := time.Since(start)
	l := lastLogLine(t, e, 1)
	t.Logf("answer ended after %v: %d more bytes, %v; log %v %v", el.Round(10*time.Millisecond), len(rest), err, l["status_code"], l["error"])
	if el > 2*time.Second || l["error"] == "backend_timeout" {
		t.Fatalf("the answer stalled %v after the client's body crossed max_body_bytes, logged %v (want a prompt end, request_body_413)", el.Round(10*time.Millisecond), l["error"])
	}
}

// PIN: a graceful shutdown that begins mid-upload lets the upload finish
// (200, the backend gets the whole body) and then returns.
func TestReviewStreamShutdownMidUpload(t *testing.T) {
	seen := make(chan revSeen, 8)
	addr, _ := revRecordingBackend(t, seen)
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	done := e.goPost("/up", revSlowBody(6, 150*time.Millisecond, strings.Repeat("s", 5000)))
	time.Sleep(300 * time.Millisecond)
	sd := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sd <- e.srv.Shutdown(ctx)
	}()
	if res := waitResult(t, done); res.err != nil || res.r.status != 200 {
		t.Fatalf("upload during shutdown: %d %v", res.r.status, res.err)
	}
	if s := revRecv(t, seen, "backend"); !s.ok || s.n != 30000 {
		t.Fatalf("backend: %+v", s)
	}
	select {
	case err := <-sd:
		t.Logf("shutdown: %v", err)
	case <-time.After(testTimeout):
		t.Fatal("shutdown did not return")
	}
}

// PIN: a backend drained (admin API) while an upload streams to it is cut
// at the pool's drain_timeout: 502 backend_cut, never a complete request
// at the backend, no hang.
func TestReviewStreamDrainTimeoutMidUpload(t *testing.T) {
	seen := make(chan revSeen, 8)
	addr, _ := revRecordingBackend(t, seen)
	e := startEnv(t, rawPool(addr, "drain_timeout: 500ms")+revNoRateLimit)
	start := time.Now()
	done := e.goPost("/up", revSlowBody(20, 150*time.Millisecond, strings.Repeat("d", 5000)))
	time.Sleep(300 * time.Millisecond)
	if _, _, err := e.srv.Registry().Drain("p", "raw"); err != nil {
		t.Fatal(err)
	}
	res := waitResult(t, done)
	t.Logf("answer after %v: %d %v", time.Since(start).Round(10*time.Millisecond), res.r.status, res.err)
	if res.err == nil && res.r.status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", res.r.status)
	}
	if s := revRecv(t, seen, "backend"); s.ok {
		t.Fatalf("backend saw a complete request: %+v", s)
	}
	l := lastLogLine(t, e, 1)
	if l["error"] != "backend_cut" {
		t.Errorf("log %v %v, want backend_cut", l["status_code"], l["error"])
	}
}

// Reuse after a streamed body (found by review: the sender marked its body
// sent only after its last flush, and a backend that answered at once
// could be answered, and the connection released, in between: it was
// closed, 3 to 9 connections for 300 uploads). Now the answer waits for
// the sender's last steps after its last write (or, if that write has to
// wait, hands the connection to the sender to pool): one connection.
func TestReviewStreamReuseLostAfterLastFlush(t *testing.T) {
	var conns, closed atomic.Int32
	addr := testnet.Serve(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				closed.Add(1)
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				closed.Add(1)
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	e := startEnv(t, rawPool(addr)+revNoRateLimit)
	large := strings.Repeat("r", 20<<10)
	const n = 300
	for i := range n {
		var body io.Reader = strings.NewReader(large)
		if i%2 == 1 {
			body = unsized(large)
		}
		if r := e.do(http.MethodPost, e.url("web", "/up"), "", nil, body); r.status != 200 {
			t.Fatalf("upload %d: %d", i, r.status)
		}
	}
	if shut, opened := closed.Load(), conns.Load(); shut != 0 || opened != 1 {
		t.Fatalf("%d sequential streamed uploads: %d backend connections, %d closed by Rampart; want one, kept", n, opened, shut)
	}
}
