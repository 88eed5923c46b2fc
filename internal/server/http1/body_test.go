package http1

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestContentLengthBody(t *testing.T) {
	ch := make(chan seen, 2)
	ts := newTestServer(t, capture(ch))
	c := ts.dial(t)
	// The body is followed at once by the next request: it must be read
	// exactly, not a byte more.
	c.write("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello worldGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("POST", 200)
	c.expectStatus("GET", 200)
	a, b := recv(t, ch), recv(t, ch)
	eq(t, "body", a.Body, "hello world")
	eq(t, "ContentLength", a.ContentLength, int64(11))
	if a.BodyErr != nil {
		t.Fatal(a.BodyErr)
	}
	eq(t, "second path", b.Path, "/b")
}

func TestContentLengthBodyArrivingSlowly(t *testing.T) {
	ch := make(chan seen, 1)
	ts := newTestServer(t, capture(ch))
	c := ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nab")
	time.Sleep(20 * time.Millisecond)
	c.write("cd")
	time.Sleep(20 * time.Millisecond)
	c.write("ef")
	c.expectStatus("POST", 200)
	eq(t, "body", recv(t, ch).Body, "abcdef")
}

func TestTruncatedBody(t *testing.T) {
	ch := make(chan seen, 1)
	ts := newTestServer(t, capture(ch))
	c := ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	c.c.(interface{ CloseWrite() error }).CloseWrite()
	s := recv(t, ch)
	if !errors.Is(s.BodyErr, io.ErrUnexpectedEOF) {
		t.Fatalf("body error = %v, want unexpected EOF", s.BodyErr)
	}
}

func TestChunkedBody(t *testing.T) {
	ch := make(chan seen, 2)
	ts := newTestServer(t, capture(ch))
	c := ts.dial(t)
	c.write("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n" +
		"5;ext=1\r\nhello\r\n" +
		"6;a;b=\"c d\"\r\n world\r\n" +
		"0;last\r\nX-Trailer: t\r\nY: u\r\n\r\n" +
		"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("POST", 200)
	c.expectStatus("GET", 200)
	a, b := recv(t, ch), recv(t, ch)
	if a.BodyErr != nil {
		t.Fatal(a.BodyErr)
	}
	eq(t, "body", a.Body, "hello world")
	eq(t, "ContentLength", a.ContentLength, int64(-1))
	eq(t, "TransferEncoding", fmt.Sprint(a.TransferEncoding), "[chunked]")
	if _, ok := a.Header["Transfer-Encoding"]; ok {
		t.Error("Transfer-Encoding left in the header map")
	}
	eq(t, "next path", b.Path, "/next")
}

// A malformed chunked body never becomes a request: when the bad bytes
// come with the head (as a smuggling attempt does), the request is refused
// with 400 before any handler sees it; when they come later, the handler's
// read fails with a 400 bodyError (a proxy answers 400, not 502). Either
// way the connection ends and whatever follows the garbage is never served.
func TestInvalidChunkedBody(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"non-hex size", "zz\r\nhello\r\n0\r\n\r\n"},
		{"size with space", " 5\r\nhello\r\n0\r\n\r\n"},
		{"size too large", "1ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		{"bare LF after size", "5\nhello\r\n0\r\n\r\n"},
		{"missing CRLF after data", "5\r\nhelloXX0\r\n\r\n"},
		{"data longer than size", "3\r\nhello\r\n0\r\n\r\n"},
		{"bare CR in trailer", "0\r\nX: a\rb\r\n\r\n"},
		{"obs-fold in trailer", "0\r\nX: a\r\n b\r\n\r\n"},
		{"no colon in trailer", "0\r\nGET /smuggled HTTP/1.1\r\n\r\n"},
		{"bare LF ends trailers", "0\r\n\n"},
		{"bare LF after trailer", "0\r\nX: a\n\r\n"},
		{"trailer line too long", "0\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n"},
		{"trailer section too large", "0\r\n" + strings.Repeat("X: "+strings.Repeat("a", 1000)+"\r\n", 9) + "\r\n"},
	} {
		const head = "POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
		const smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
		t.Run(tc.name+"/with the head", func(t *testing.T) {
			if len(tc.body) > 4096 {
				// More than comes with a head (the reader's buffer): it
				// is found while the body streams, as below.
				t.Skip("larger than the connection's read buffer")
			}
			ts := newTestServer(t, nil)
			c := ts.dial(t)
			c.write(head + tc.body + smuggled)
			c.expectStatus("POST", 400)
			c.expectClosed()
			if n := ts.calls.Load(); n != 0 {
				t.Fatalf("handler called %d times", n)
			}
			if rs := ts.refusals(); len(rs) != 1 || rs[0].status != 400 {
				t.Fatalf("refusals %v, want one 400", rs)
			}
		})
		t.Run(tc.name+"/after the head", func(t *testing.T) {
			var paths []string
			reading := make(chan struct{})
			readErr := make(chan error, 4)
			ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				paths = append(paths, r.URL.Path)
				var first [5]byte
				_, err := io.ReadFull(r.Body, first[:])
				close(reading)
				if err == nil {
					_, err = io.ReadAll(r.Body)
				}
				readErr <- err
				var hs interface{ HTTPStatus() int }
				if errors.As(err, &hs) {
					w.WriteHeader(hs.HTTPStatus())
				}
				io.WriteString(w, "done")
			}))
			c := ts.dial(t)
			c.write(head + "5\r\nhello\r\n")
			<-reading
			c.write(tc.body + smuggled)
			if err := recv(t, readErr); err == nil {
				t.Fatal("handler read the body without an error")
			}
			c.expectStatus("POST", 400)
			c.expectClosed()
			if fmt.Sprint(paths) != "[/first]" {
				t.Fatalf("handler saw %v", paths)
			}
		})
	}
}

// A handler that does not read the body: a small remainder is drained and
// the connection carries the next request; more than 256 KiB closes it.
func TestUnreadBody(t *testing.T) {
	const maxDrain = 256 << 10
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		keep    bool
	}{
		{"small", 100, false, true},
		{"small chunked", 100, true, true},
		{"exactly 256 KiB", maxDrain, false, true},
		{"exactly 256 KiB chunked", maxDrain, true, true},
		{"256 KiB + 1", maxDrain + 1, false, false},
		{"256 KiB + 1 chunked", maxDrain + 1, true, false},
		{"1 MiB", 1 << 20, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "2")
				io.WriteString(w, "no")
			}))
			c := ts.dial(t)
			head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", tc.size)
			body := strings.Repeat("b", tc.size)
			if tc.chunked {
				head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
				var sb strings.Builder
				for rest := tc.size; rest > 0; rest -= min(rest, 1000) {
					fmt.Fprintf(&sb, "%x\r\n%s\r\n", min(rest, 1000), strings.Repeat("b", min(rest, 1000)))
				}
				sb.WriteString("0\r\n\r\n")
				body = sb.String()
			}
			// The client writes while it reads: the server answers before
			// it drains.
			go io.WriteString(c.c, head+body+"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
			c.expectStatus("POST", 200)
			if tc.keep {
				c.expectStatus("GET", 200)
				if n := ts.calls.Load(); n != 2 {
					t.Fatalf("handler called %d times", n)
				}
				return
			}
			c.expectClosed()
			if n := ts.calls.Load(); n != 1 {
				t.Fatalf("handler called %d times", n)
			}
		})
	}
}

// A client announcing a body it never sends gets its answer at once, and the
// connection is closed within the server's header timeout instead of
// waiting for the body forever.
func TestUnreadBodyNeverSent(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}), func(s *Server) { s.ReadHeaderTimeout = 300 * time.Millisecond })
	c := ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nabc")
	c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	c.expectStatus("POST", 403)
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestExpectContinue(t *testing.T) {
	t.Run("handler reads", func(t *testing.T) {
		ch := make(chan seen, 1)
		ts := newTestServer(t, capture(ch))
		c := ts.dial(t)
		c.write("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n")
		if l := c.line(); l != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("got %q", l)
		}
		if l := c.line(); l != "\r\n" {
			t.Fatalf("got %q", l)
		}
		c.write("hello")
		c.expectStatus("POST", 200)
		eq(t, "body", recv(t, ch).Body, "hello")
		// Keep-alive goes on.
		c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		c.expectStatus("GET", 200)
	})
	t.Run("handler answers first", func(t *testing.T) {
		ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}))
		c := ts.dial(t)
		c.write("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		// The final answer comes first, no 100 Continue before it.
		c.expectStatus("POST", 413)
		c.expectClosed()
	})
	t.Run("status chosen but not sent yet", func(t *testing.T) {
		// WriteHeader without a length only decides the status; the
		// client still waits for 100 Continue when the body is read.
		ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		}))
		c := ts.dial(t)
		c.postAfterContinue("hello")
		if _, body := c.expectStatus("POST", 201); body != "hello" {
			t.Fatalf("body %q", body)
		}
	})
}

// A proxy reads the body from its transport's goroutine while the handler
// goroutine relays interim answers: the automatic 100 Continue and the
// handler's writes must not interleave (run with -race).
func TestExpectContinueConcurrentRead(t *testing.T) {
	for range 20 {
		ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			done := make(chan string)
			go func() {
				b, _ := io.ReadAll(r.Body)
				done <- string(b)
			}()
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			b := <-done
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			io.WriteString(w, b)
		}))
		c := ts.dial(t)
		c.write("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		// 100 and 103 in either order, each complete.
		got := map[int]bool{}
		for !got[100] {
			resp, _ := c.response("POST")
			if resp.StatusCode != 100 && resp.StatusCode != 103 {
				t.Fatalf("status %d before the body was sent", resp.StatusCode)
			}
			got[resp.StatusCode] = true
		}
		c.write("hello")
		for {
			resp, body := c.response("POST")
			if resp.StatusCode == 103 && !got[103] {
				got[103] = true
				continue
			}
			if resp.StatusCode != 200 || body != "hello" {
				t.Fatalf("final %d %q", resp.StatusCode, body)
			}
			break
		}
	}
}

// A goroutine that outlives the handler cannot read the connection's bytes
// through the request body.
func TestBodyReadAfterHandlerReturned(t *testing.T) {
	var late atomic.Value
	release := make(chan struct{})
	done := make(chan struct{})
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hold" {
			io.WriteString(w, "next")
			return
		}
		body := r.Body
		go func() {
			defer close(done)
			<-release
			buf := make([]byte, 100)
			n, err := body.Read(buf)
			late.Store(fmt.Sprintf("%d %v", n, err))
		}()
		io.WriteString(w, "held")
	}))
	c := ts.dial(t)
	c.write("POST /hold HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	c.expectStatus("POST", 200)
	close(release)
	<-done
	if s := late.Load().(string); !strings.HasPrefix(s, "0 ") || strings.HasSuffix(s, "<nil>") {
		t.Fatalf("late read = %s", s)
	}
	// The connection's next request is intact.
	c.write("GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := c.expectStatus("GET", 200); body != "next" {
		t.Fatalf("body %q", body)
	}
}

// A handler that closes the body while another goroutine's read of it
// waits for the client (a proxy whose backend answered before the body was
// all sent) stops that read: the answer reaches the client at once, not
// when the client sends more, and the connection then closes, the rest of
// the body unread.
func TestBodyCloseStopsWaitingRead(t *testing.T) {
	readErr := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := make(chan struct{})
		go func() {
			buf := make([]byte, 100)
			n, err := r.Body.Read(buf) // the part that came
			close(started)
			for err == nil && n > 0 {
				n, err = r.Body.Read(buf) // waits: the client pauses
			}
			readErr <- err
		}()
		<-started
		time.Sleep(50 * time.Millisecond) // the second read is waiting by now
		io.WriteString(w, "early")
		r.Body.Close()
	}), func(s *Server) { s.BodyTimeout = time.Minute; s.MinBodyRate = 0 })
	c := ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
	if _, body := c.expectStatus("POST", 200); body != "early" {
		t.Fatalf("body %q", body)
	}
	if err := recv(t, readErr); err == nil || err == io.EOF {
		t.Fatalf("the stopped read returned %v, want an error", err)
	}
	c.expectClosed()
}

// Closing a body between reads stops the next read as well (a proxy's
// sender that was between a read and a write when the answer came), and
// the connection closes after the answer; closing a body read to its end
// changes nothing: the connection carries the next request.
func TestBodyCloseBetweenReads(t *testing.T) {
	lateRead := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 100)
		if r.URL.Path == "/whole" {
			io.ReadAll(r.Body)
			r.Body.Close()
			io.WriteString(w, "whole")
			return
		}
		r.Body.Read(buf) // the part that came
		r.Body.Close()   // no read in progress
		go func() {
			_, err := r.Body.Read(buf) // would wait for the client
			lateRead <- err
		}()
		if err := recv(t, lateRead); err == nil {
			t.Error("a read after Close returned data")
		}
		io.WriteString(w, "early")
	}), func(s *Server) { s.BodyTimeout = time.Minute; s.MinBodyRate = 0 })
	c := ts.dial(t)
	c.write("POST /whole HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	if _, body := c.expectStatus("POST", 200); body != "whole" {
		t.Fatalf("body %q", body)
	}
	c.write("POST /part HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
	resp, body := c.expectStatus("POST", 200)
	if body != "early" || !resp.Close {
		t.Fatalf("body %q, Connection: close %v; want the close announced (a client would send its next request on it)", body, resp.Close)
	}
	c.expectClosed()
}

// A client that sends the optional empty line after a POST body (RFC 9112
// §2.2) and then waits gets its answer at once.
func TestCRLFAfterBody(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	c.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\r\n")
	c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	c.expectStatus("POST", 200)
	c.c.SetReadDeadline(time.Now().Add(testTimeout))
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 200)
}

func TestDropH2CUpgrade(t *testing.T) {
	for _, tc := range []struct {
		in       []string
		want     []string // nil: no Upgrade left
		settings bool     // HTTP2-Settings kept
	}{
		{[]string{"h2c"}, nil, false},
		{[]string{"H2C"}, nil, false},
		{[]string{"h2c, websocket"}, []string{"websocket"}, false},
		{[]string{"websocket"}, []string{"websocket"}, true},
		{[]string{"websocket", "h2c"}, []string{"websocket"}, false},
	} {
		h := http.Header{"Upgrade": tc.in, "Http2-Settings": {"x"}}
		dropH2CUpgrade(h, h["Upgrade"])
		if fmt.Sprint(h["Upgrade"]) != fmt.Sprint(tc.want) {
			t.Errorf("Upgrade %q: left %q, want %q", tc.in, h["Upgrade"], tc.want)
		}
		if _, ok := h["Http2-Settings"]; ok != tc.settings {
			t.Errorf("Upgrade %q: HTTP2-Settings kept %v, want %v", tc.in, ok, tc.settings)
		}
	}
}

func TestAnnouncedChunks(t *testing.T) {
	cases := []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"5\r\nhello\r\n0\r\n\r\n", 5},
		{"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", 11},
		{"10;name=value\r\n0123", 16},     // a chunk whose data is still to come counts whole
		{"3\r\nabc\r\n4", 3},              // a size line not all there does not
		{"a \r\n0123456789\r\n0\r\n", 10}, // whitespace before the extension
		{"7fffffffffffffff\r\n", math.MaxInt64},
		{"8000000000000000\r\n", math.MaxInt64},
		{"7fffffffffffffff\r\n" + strings.Repeat("x", 8) + "\r\n", math.MaxInt64},
	}
	for _, c := range cases {
		if got := announcedChunks([]byte(c.in)); got != c.want {
			t.Errorf("announcedChunks(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// The automatic 100 Continue, sent by a goroutine reading the body (a
// proxy's transport write loop), and the final answer, written by the
// handler while that goroutine may still be sending it, never use the
// connection's writer at once (fails under -race; found by a review).
func TestExpectContinueFinalAnswerWhileBodyIsRead(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := make(chan struct{})
		go func() {
			io.ReadAll(r.Body)
			close(done)
		}()
		// The backend answers while its request body is still being sent.
		time.Sleep(200 * time.Millisecond)
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
		<-done
	}))
	c := ts.dial(t)
	c.postAfterContinue("hello")
	if _, body := c.expectStatus("POST", 200); body != "ok" {
		t.Fatalf("final answer body %q", body)
	}
}

// An answer given before the body was read (a refusal of an upload) closes
// the connection; the close lingers over the rest of the announced body and
// what the client pipelined after it, so a client that writes everything
// before it reads still gets the answer, not a reset (8 MiB: far more than
// the allowance of 256 KiB that lingered before).
func TestEarlyAnswerLingersOverAnnouncedBody(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "refused")
	}))
	c := ts.dial(t)
	body := strings.Repeat("b", 8<<20)
	if _, err := io.WriteString(c.c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "+fmt.Sprint(len(body))+"\r\n\r\n"+body+
		"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatalf("writing the upload: %v (the server reset the connection before it was all sent)", err)
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	got, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusForbidden || string(got) != "refused" {
		t.Fatalf("answer %d %q, want 403 refused", res.StatusCode, got)
	}
}
