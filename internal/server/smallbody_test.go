package server

// Small request bodies (a Content-Length up to 16 KiB) are read whole and
// sent with the head on the direct backend client: these tests hold that
// path to the engine's framing, limits and deadlines, on HTTP/1.1 and h2c.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/rampart-proxy/rampart/internal/testnet"
)

// seenReq is one request as a raw backend parsed it.
type seenReq struct {
	method, path string
	head         string
	body         []byte
	bodyErr      error
}

// recordingBackend parses requests with net/http's parser (which a real Go
// backend uses) on keep-alive connections, records them, and answers with
// answer (default: 200 "ok" keep-alive).
type recordingBackend struct {
	mu   sync.Mutex
	reqs []seenReq
	// after, when set, runs after a request was read; returning false
	// closes the connection without an answer.
	after atomic.Pointer[func(n int, r seenReq) bool]
}

func (rb *recordingBackend) list() []seenReq {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return append([]seenReq(nil), rb.reqs...)
}

func newRecordingBackend(t *testing.T) (*recordingBackend, string) {
	rb := &recordingBackend{}
	addr := testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			c.SetReadDeadline(time.Now().Add(testTimeout))
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			var head bytes.Buffer
			req.Header.Write(&head)
			fmt.Fprintf(&head, "TE=%v CL=%d", req.TransferEncoding, req.ContentLength)
			body, berr := io.ReadAll(req.Body)
			s := seenReq{method: req.Method, path: req.URL.Path, head: head.String(), body: body, bodyErr: berr}
			rb.mu.Lock()
			rb.reqs = append(rb.reqs, s)
			n := len(rb.reqs)
			rb.mu.Unlock()
			if f := rb.after.Load(); f != nil && !(*f)(n, s) {
				return
			}
			answer := fmt.Sprintf("got %s %s %d", req.Method, req.URL.Path, len(body))
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
		}
	})
	return rb, addr
}

func dialWeb(t *testing.T, e *testEnv) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", e.srv.Addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(b)
}

// Bodies at and around maxBufferedBody reach the backend intact, with one
// Content-Length and no Transfer-Encoding, whichever path they take.
func TestSmallBodyBoundary(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, rawPool(addr))
	c, br := dialWeb(t, e)
	for i, n := range []int{1, 4000, 4096, 16383, 16384, 16385, 40000} {
		body := bytes.Repeat([]byte{byte('a' + i)}, n)
		fmt.Fprintf(c, "POST /b%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n, n)
		c.Write(body)
		st, got := readAnswer(t, br)
		if want := fmt.Sprintf("got POST /b%d %d", n, n); st != 200 || got != want {
			t.Fatalf("n=%d: %d %q, want 200 %q", n, st, got, want)
		}
		reqs := rb.list()
		r := reqs[len(reqs)-1]
		if !bytes.Equal(r.body, body) || r.bodyErr != nil {
			t.Fatalf("n=%d: backend body differs (%d bytes, %v)", n, len(r.body), r.bodyErr)
		}
		if strings.Count(r.head, "Content-Length") != 1 || strings.Contains(r.head, "Transfer-Encoding") {
			t.Fatalf("n=%d: backend head %q", n, r.head)
		}
	}
}

// Leading zeros in Content-Length (allowed by RFC 9110's 1*DIGIT) are
// rewritten as the length; duplicate equal values collapse; "+5", "-1",
// differing duplicates and CL+TE are refused before the backend.
func TestSmallBodyContentLengthForms(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, rawPool(addr))
	cases := []struct {
		name, raw string
		status    int
		body      string
	}{
		{"leading zeros", "POST /z HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\n\r\nhello", 200, "hello"},
		{"dup equal", "POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 200, "hello"},
		{"dup list", "POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400, ""},
		{"plus", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400, ""},
		{"dup differ", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, ""},
		{"cl+te", "POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, ""},
		{"http10", "POST /h HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello", 200, "hello"},
		{"get body", "GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200, "hello"},
		{"zero", "DELETE /z0 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200, ""},
	}
	for _, tc := range cases {
		before := len(rb.list())
		c, br := dialWeb(t, e)
		io.WriteString(c, tc.raw)
		st, _ := readAnswer(t, br)
		c.Close()
		if st != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, st, tc.status)
			continue
		}
		reqs := rb.list()
		if tc.status != 200 {
			if len(reqs) != before {
				t.Errorf("%s: refused, but the backend saw %d requests", tc.name, len(reqs)-before)
			}
			continue
		}
		r := reqs[len(reqs)-1]
		if string(r.body) != tc.body || strings.Count(r.head, "Content-Length") > 1 {
			t.Errorf("%s: backend got body %q head %q", tc.name, r.body, r.head)
		}
	}
}

// A body sent whole with its head, then more requests pipelined in the
// same packet: each is parsed at the right byte, in order.
func TestSmallBodyPipelinedAfterBufferedBody(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, rawPool(addr))
	c, br := dialWeb(t, e)
	io.WriteString(c, "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
		"PUT /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /three HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /four HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	for _, want := range []string{"got POST /one 5", "got PUT /two 3", "got GET /three 0", "got POST /four 0"} {
		if st, got := readAnswer(t, br); st != 200 || got != want {
			t.Fatalf("%d %q, want 200 %q", st, got, want)
		}
	}
	reqs := rb.list()
	if len(reqs) != 4 || string(reqs[0].body) != "hello" || string(reqs[1].body) != "abc" {
		t.Fatalf("backend saw %+v", reqs)
	}
	// A body longer than announced: the surplus is the next "request".
	io.WriteString(c, "POST /five HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGARBAGE\r\n\r\n")
	if st, got := readAnswer(t, br); st != 200 || got != "got POST /five 2" {
		t.Fatalf("%d %q", st, got)
	}
	if st, _ := readAnswer(t, br); st != 400 {
		t.Fatalf("surplus after the body: %d, want 400", st)
	}
	if reqs := rb.list(); len(reqs) != 5 || string(reqs[4].body) != "hi" {
		t.Fatalf("backend saw %d requests, last body %q", len(reqs), reqs[len(reqs)-1].body)
	}
}

// A client that sends less than it announced and leaves (or half-closes),
// or stalls: the backend never sees the request.
func TestSmallBodyShortNeverForwarded(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, rawPool(addr)+`security:
  slowloris_protection: {body_timeout_seconds: 1}
`)
	// Half-close after 10 of 100 bytes.
	c, br := dialWeb(t, e)
	io.WriteString(c, "POST /short HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	c.(*net.TCPConn).CloseWrite()
	if res, err := http.ReadResponse(br, nil); err == nil && res.StatusCode < 400 {
		t.Errorf("half-closed short body answered %d", res.StatusCode)
	}
	// Stall after 10 of 100 bytes: the body timeout ends it.
	c2, br2 := dialWeb(t, e)
	start := time.Now()
	io.WriteString(c2, "POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	st, _ := readAnswer(t, br2)
	if st != http.StatusRequestTimeout {
		t.Errorf("stalled body: %d, want 408", st)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("stalled body ended after %s (body timeout 1s)", d)
	}
	// Full close after 10 bytes.
	c3, _ := dialWeb(t, e)
	io.WriteString(c3, "POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	time.Sleep(100 * time.Millisecond)
	c3.Close()
	for _, l := range accessLogLines(t, e.dir+"/access.log", 3) {
		if st, _ := l["status_code"].(float64); st < 400 || l["backend_id"] != "" {
			t.Errorf("%v logged %v backend %q, want a 4xx and no backend", l["path"], l["status_code"], l["backend_id"])
		}
	}
	if n := len(rb.list()); n != 0 {
		t.Fatalf("the backend saw %d requests of incomplete bodies", n)
	}
}

// A small body that does not come with its head, trickled in pieces, is
// still held to the body timeout and to the minimum data rate.
func TestSmallBodySlow(t *testing.T) {
	for _, tc := range []struct{ name, sec string }{
		{"body timeout", "{body_timeout_seconds: 1}"},
		{"min rate", "{min_data_rate_bytes_per_second: 1000}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb, addr := newRecordingBackend(t)
			e := startEnv(t, rawPool(addr)+"security:\n  slowloris_protection: "+tc.sec+"\n")
			c, br := dialWeb(t, e)
			io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n")
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 100 { // 10 bytes a second, at most 10 s
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			start := time.Now()
			st, _ := readAnswer(t, br)
			if st != http.StatusRequestTimeout {
				t.Fatalf("slow small body: %d, want 408", st)
			}
			t.Logf("cut after %s", time.Since(start))
			c.Close()
			<-done
			if n := len(rb.list()); n != 0 {
				t.Fatalf("backend saw %d requests", n)
			}
		})
	}
}

// A POST on a pooled connection that the backend closes after reading it,
// without an answer, is sent once; a PUT is retried once, with the same
// body.
func TestSmallBodyRetrySafety(t *testing.T) {
	for _, tc := range []struct {
		method string
		sends  int
	}{{"POST", 1}, {"PATCH", 1}, {"PUT", 2}, {"DELETE", 2}} {
		t.Run(tc.method, func(t *testing.T) {
			rb, addr := newRecordingBackend(t)
			drop := func(n int, r seenReq) bool { return r.path != "/drop" }
			rb.after.Store(&drop)
			e := startEnv(t, rawPool(addr))
			c, br := dialWeb(t, e)
			io.WriteString(c, "GET /warm HTTP/1.1\r\nHost: x\r\n\r\n") // pools a backend connection
			if st, _ := readAnswer(t, br); st != 200 {
				t.Fatal(st)
			}
			fmt.Fprintf(c, "%s /drop HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\npayload", tc.method)
			st, body := readAnswer(t, br)
			t.Logf("%s dropped: %d %q", tc.method, st, body)
			var n int
			for _, r := range rb.list() {
				if r.path == "/drop" {
					n++
					if string(r.body) != "payload" {
						t.Errorf("body %q", r.body)
					}
				}
			}
			if n != tc.sends {
				t.Fatalf("%s sent %d times, want %d", tc.method, n, tc.sends)
			}
		})
	}
}

// After a small body through a TLS-less pooled connection with
// response_header_timeout, a later request on the same backend connection
// is not failed by a deadline left from the send.
func TestSmallBodyNoDeadlineLeftOnPooledConn(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	slow := func(n int, r seenReq) bool {
		if r.path == "/slow" {
			time.Sleep(1500 * time.Millisecond) // longer than the first request's deadline window
		}
		return true
	}
	rb.after.Store(&slow)
	e := startEnv(t, rawPool(addr, "response_header_timeout: 1s"))
	c, br := dialWeb(t, e)
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if st, _ := readAnswer(t, br); st != 200 {
		t.Fatal(st)
	}
	time.Sleep(1200 * time.Millisecond) // past the first request's write deadline
	io.WriteString(c, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if st, got := readAnswer(t, br); st != 200 {
		t.Fatalf("second request on the pooled connection: %d %q", st, got)
	}
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if st, _ := readAnswer(t, br); st != 504 {
		t.Fatalf("slow answer: %d, want 504", st)
	}
}

// h2Post opens an h2c connection and sends one POST on stream 1 with the
// given content-length and DATA frames (the last with END_STREAM unless
// noEnd), optionally resetting the stream after; it returns the status
// (0: none) or the reset code seen for stream 1.
func h2Post(t *testing.T, addr string, cl string, datas []string, noEnd bool, rst bool) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/h2"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if cl != "" {
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: cl})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: buf.Bytes(), EndHeaders: true, EndStream: len(datas) == 0 && !noEnd})
	for i, d := range datas {
		time.Sleep(50 * time.Millisecond)
		fr.WriteData(1, i == len(datas)-1 && !noEnd, []byte(d))
	}
	if rst {
		time.Sleep(100 * time.Millisecond)
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		time.Sleep(300 * time.Millisecond)
		return 0, "reset sent"
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, "read: " + err.Error()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID == 1 {
				hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
				for _, h := range hf {
					if h.Name == ":status" {
						st, _ := strconv.Atoi(h.Value)
						return st, ""
					}
				}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return 0, "RST " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo {
				return 0, "GOAWAY " + f.ErrCode.String()
			}
			t.Logf("GOAWAY NO_ERROR, last stream %d", f.LastStreamID)
		}
	}
}

// h2cRawPool is rawPool with h2c on its listener.
func h2cRawPool(addr string) string {
	return strings.Replace(rawPool(addr), `listen: "127.0.0.1:0"}`, `listen: "127.0.0.1:0", h2c: true}`, 1)
}

// An HTTP/2 client that resets its stream in the middle of a small body
// (content-length announced) left: the access log says 499 client_closed,
// as it did when such bodies streamed through http.Transport, not a 502
// backend_unreachable for a request no backend ever saw.
func TestSmallBodyH2ResetLogged499(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, h2cRawPool(addr))
	h2Post(t, e.srv.Addr("web"), "10", []string{"hel"}, true, true)
	l := lastLogLine(t, e, 1)
	if l["status_code"] != 499.0 || l["error"] != "client_closed" {
		t.Errorf("stream reset mid-body logged %v %v, want 499 client_closed", l["status_code"], l["error"])
	}
	if n := len(rb.list()); n != 0 {
		t.Errorf("backend saw %d requests", n)
	}
}

// An HTTP/2 body shorter than its content-length (END_STREAM early) is the
// client's fault: 400, not 502 backend_unreachable.
func TestSmallBodyH2Short400(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, h2cRawPool(addr))
	st, why := h2Post(t, e.srv.Addr("web"), "10", []string{"hello"}, false, false)
	l := lastLogLine(t, e, 1)
	if st != 400 {
		t.Errorf("short body: %d %s (logged %v %v), want 400", st, why, l["status_code"], l["error"])
	}
	if n := len(rb.list()); n != 0 {
		t.Errorf("backend saw %d requests", n)
	}
}

// An HTTP/2 small body that stalls is cut at the body timeout (408) and
// never reaches the backend.
func TestSmallBodyH2Stalled408(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, h2cRawPool(addr)+"security:\n  slowloris_protection: {body_timeout_seconds: 1}\n")
	st, why := h2Post(t, e.srv.Addr("web"), "10", []string{"hel"}, true, false)
	if st != 408 {
		t.Errorf("stalled body: %d %s, want 408", st, why)
	}
	if n := len(rb.list()); n != 0 {
		t.Errorf("backend saw %d requests", n)
	}
}

// A backend that refuses a body from its head alone (413) and closes
// without reading it: the client gets the 413, not a 502.
func TestSmallBodyEarlyAnswer(t *testing.T) {
	addr := testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 64)
		testnet.ReadHead(br)
		io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig")
		time.Sleep(50 * time.Millisecond)
	})
	e := startEnv(t, rawPool(addr))
	for _, n := range []int{100, 16384, 100000} {
		c, br := dialWeb(t, e)
		fmt.Fprintf(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("x", n))
		st, _ := readAnswer(t, br)
		if st != 413 {
			t.Errorf("n=%d: %d, want 413", n, st)
		}
		c.Close()
	}
}

// Odd spellings of framing fields: refused, or never passed on as a
// second framing field next to the one Rampart writes.
func TestSmallBodyFramingFieldSpellings(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	e := startEnv(t, rawPool(addr))
	for _, h := range []string{
		"Content-Length : 5\r\n",
		"Content-Length: 5\r\ncontent-length: 5\r\n",
		"Content-Length: 5\r\nContent-Length\t: 5\r\n",
		"Content-Length: 5\r\n Content-Length: 6\r\n",
		"Content-Length: 5\r\nTransfer-Encoding : chunked\r\n",
		"Content-Length: 5\r\nTransfer-Encoding: identity\r\n",
		"Content-Length: 5\r\nConnection: Content-Length\r\n",
		"Content-Length: 5\r\nContent-Length\x00: 5\r\n",
		"Content-Length: 5\r\nX: a\rContent-Length: 6\r\n",
	} {
		before := len(rb.list())
		c, br := dialWeb(t, e)
		io.WriteString(c, "POST /f HTTP/1.1\r\nHost: x\r\n"+h+"\r\nhello")
		readAnswer(t, br)
		c.Close()
		reqs := rb.list()
		if len(reqs) == before {
			continue // refused
		}
		r := reqs[len(reqs)-1]
		if strings.Count(strings.ToLower(r.head), "content-length") != 1 || string(r.body) != "hello" {
			t.Errorf("%q: backend head %q body %q", h, r.head, r.body)
		}
	}
}

// The client connection's deadlines around a body that came whole: a
// slow backend answer after the header deadline passed is still relayed;
// the idle timeout, not the header one, applies until the next request;
// pipelined requests behind it are served.
func TestSmallBodyClientDeadlinesAfterWholeBody(t *testing.T) {
	rb, addr := newRecordingBackend(t)
	slow := func(n int, r seenReq) bool {
		if r.path == "/slow" {
			time.Sleep(1500 * time.Millisecond)
		}
		return true
	}
	rb.after.Store(&slow)
	e := startEnv(t, rawPool(addr)+`security:
  slowloris_protection: {header_timeout_seconds: 1, idle_timeout_seconds: 3, body_timeout_seconds: 1}
`)
	c, br := dialWeb(t, e)
	// The head in two pieces: the header deadline is armed.
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\n")
	time.Sleep(100 * time.Millisecond)
	io.WriteString(c, "Content-Length: 5\r\n\r\nhello")
	if st, got := readAnswer(t, br); st != 200 {
		t.Fatalf("slow answer after the header deadline: %d %q", st, got)
	}
	time.Sleep(2 * time.Second) // more than header and body timeouts, less than idle
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
		"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
		"GET /g HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := range 3 {
		if st, got := readAnswer(t, br); st != 200 {
			t.Fatalf("request %d after an idle wait: %d %q", i, st, got)
		}
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(6 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if d := time.Since(start); err == nil || d < 2500*time.Millisecond || d > 4500*time.Millisecond {
		t.Fatalf("idle connection: read %d, %v after %s, want closed after the 3 s idle timeout", n, err, d)
	}
}
