package http1

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestResponseFraming(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"/length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		},
		"/stream": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hel")
			io.WriteString(w, "lo")
		},
		"/empty": func(w http.ResponseWriter, r *http.Request) {},
		"/status-only": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		},
		"/nocontent": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusNoContent)
			io.WriteString(w, "hello")
		},
		"/notmodified": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusNotModified)
			io.WriteString(w, "hello")
		},
		"/bad-length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "five")
			io.WriteString(w, "hello")
		},
		"/handler-te": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Transfer-Encoding", "gzip")
			io.WriteString(w, "hello")
		},
	}
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers[r.URL.Path](w, r)
	}))
	type want struct {
		status  int
		body    string
		cl      string // raw Content-Length header, "" if absent
		chunked bool
	}
	for _, tc := range []struct {
		path string
		want want
	}{
		{"/length", want{200, "hello", "5", false}},
		{"/stream", want{200, "hello", "", true}},
		{"/empty", want{200, "", "0", false}},
		{"/status-only", want{202, "", "0", false}},
		{"/nocontent", want{204, "", "", false}},
		{"/notmodified", want{304, "", "", false}},
		{"/bad-length", want{200, "hello", "", true}},
		{"/handler-te", want{200, "hello", "5", false}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := ts.dial(t)
			// A second request follows on the same connection: the first
			// answer must be framed exactly for it to parse.
			c.write("GET " + tc.path + " HTTP/1.1\r\nHost: a\r\n\r\nGET /length HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, body := c.expectStatus("GET", tc.want.status)
			if body != tc.want.body {
				t.Errorf("body %q", body)
			}
			if got := strings.Join(resp.Header["Content-Length"], ","); got != tc.want.cl {
				t.Errorf("Content-Length %q, want %q", got, tc.want.cl)
			}
			if chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"; chunked != tc.want.chunked {
				t.Errorf("chunked = %v (%v)", chunked, resp.TransferEncoding)
			}
			if resp.Close {
				t.Error("connection closed")
			}
			if _, body := c.expectStatus("GET", 200); body != "hello" {
				t.Errorf("next body %q", body)
			}
		})
	}
}

func TestResponseHTTP10(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hel")
		io.WriteString(w, "lo")
	}))
	for _, ka := range []string{"", "Connection: keep-alive\r\n"} {
		c := ts.dial(t)
		c.write("GET / HTTP/1.0\r\n" + ka + "\r\n")
		// Raw, to see that nothing frames the body but the close.
		head := c.rawHead()
		if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || !strings.Contains(head, "\r\nConnection: close\r\n") ||
			strings.Contains(head, "Content-Length") || strings.Contains(head, "Transfer-Encoding") {
			t.Fatalf("head %q", head)
		}
		c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		rest, err := io.ReadAll(c.br)
		if err != nil || string(rest) != "hello" {
			t.Fatalf("body %q, %v", rest, err)
		}
	}
}

func TestHEAD(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/declared":
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		case "/undeclared":
			io.WriteString(w, "hello world")
		default:
			w.Header().Set("Content-Length", "4")
			io.WriteString(w, "next")
		}
	}))
	c := ts.dial(t)
	c.write("HEAD /declared HTTP/1.1\r\nHost: a\r\n\r\nHEAD /undeclared HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	head := c.rawHead()
	if !strings.Contains(head, "\r\nContent-Length: 11\r\n") {
		t.Fatalf("HEAD lost the handler's Content-Length: %q", head)
	}
	head = c.rawHead()
	if strings.Contains(head, "Transfer-Encoding") || strings.Contains(head, "Content-Length: 0") {
		t.Fatalf("HEAD answer claims a framing: %q", head)
	}
	// No body bytes after either head: the next answer follows at once.
	if _, body := c.expectStatus("GET", 200); body != "next" {
		t.Fatalf("next body %q", body)
	}
}

func TestShortAndLongWrites(t *testing.T) {
	werr := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "hello")
		case "/long":
			w.Header().Set("Content-Length", "5")
			_, err := io.WriteString(w, "hello world")
			werr <- err
			io.WriteString(w, "hello")
		}
	}))

	c := ts.dial(t)
	c.write("GET /short HTTP/1.1\r\nHost: a\r\n\r\n")
	head := c.rawHead()
	if !strings.Contains(head, "Content-Length: 10\r\n") {
		t.Fatalf("head %q", head)
	}
	c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	rest, err := io.ReadAll(c.br)
	if string(rest) != "hello" || err != nil {
		t.Fatalf("short body %q, %v (want hello, then close)", rest, err)
	}

	c = ts.dial(t)
	c.write("GET /long HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := c.expectStatus("GET", 200); body != "hello" {
		t.Fatalf("body %q", body)
	}
	if err := recv(t, werr); !errors.Is(err, http.ErrContentLength) {
		t.Fatalf("long write error = %v", err)
	}
}

func TestDateHeader(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/own":
			w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
		case "/none":
			w.Header()["Date"] = nil
		}
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, _ := c.expectStatus("GET", 200)
	d, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil || time.Since(d).Abs() > 5*time.Second || len(resp.Header["Date"]) != 1 {
		t.Fatalf("Date %q: %v", resp.Header["Date"], err)
	}
	c.write("GET /own HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ = c.expectStatus("GET", 200); fmt.Sprint(resp.Header["Date"]) != "[Mon, 02 Jan 2006 15:04:05 GMT]" {
		t.Fatalf("Date %q", resp.Header["Date"])
	}
	c.write("GET /none HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ = c.expectStatus("GET", 200); resp.Header["Date"] != nil {
		t.Fatalf("Date %q", resp.Header["Date"])
	}
}

func TestHandlerConnectionClose(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body := c.expectStatus("GET", 200)
	if !resp.Close || body != "bye" {
		t.Fatalf("close %v body %q", resp.Close, body)
	}
	c.expectClosed()
	if ts.calls.Load() != 1 {
		t.Fatalf("handler called %d times", ts.calls.Load())
	}
}

// No handler-supplied header name or value can end the head early or add a
// line of its own.
func TestResponseSplitting(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Value", "a\r\nSet-Cookie: value=1")
		h.Set("X-Lf", "a\nSet-Cookie: lf=1\n\nbody")
		h["X-Name\r\nSet-Cookie: name=1\r\nX"] = []string{"v"}
		h["X-Space Name"] = []string{"v"}
		h["Trailer:Early"] = []string{"v"}
		h["X-Colon:Name"] = []string{"v"}
		h.Set("X-Fine", "yes")
		h.Set("Content-Length", "2")
		io.WriteString(w, "ok")
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body := c.expectStatus("GET", 200)
	if body != "ok" {
		t.Fatalf("body %q", body)
	}
	if sc := resp.Header["Set-Cookie"]; sc != nil {
		t.Fatalf("injected Set-Cookie: %q (header %v)", sc, resp.Header)
	}
	if v := resp.Header.Get("X-Value"); v != "a  Set-Cookie: value=1" {
		t.Errorf("X-Value %q", v)
	}
	if v := resp.Header.Get("X-Fine"); v != "yes" {
		t.Errorf("X-Fine %q", v)
	}
	for k := range resp.Header {
		if strings.ContainsAny(k, " :\r\n") {
			t.Errorf("invalid header name sent: %q", k)
		}
	}
}

func TestInterimResponses(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Link", "</a.css>; rel=preload")
		w.Header().Add("Link", "</b.js>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Length", "4") // not for the second 103
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "done")
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for range 2 {
		resp, _ := c.expectStatus("GET", 103)
		if l := resp.Header["Link"]; len(l) != 2 || l[0] != "</a.css>; rel=preload" {
			t.Fatalf("103 Link %q", l)
		}
		if cl := resp.Header["Content-Length"]; cl != nil {
			t.Fatalf("Content-Length %q in a 103 (RFC 9110 §8.6)", cl)
		}
	}
	resp, body := c.expectStatus("GET", 200)
	if body != "done" || len(resp.Header["Link"]) != 2 {
		t.Fatalf("final %q %v", body, resp.Header)
	}

	// RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
	c = ts.dial(t)
	c.write("GET / HTTP/1.0\r\n\r\n")
	if _, body = c.expectStatus("GET", 200); body != "done" {
		t.Fatalf("final %q", body)
	}
}

func TestTrailers(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/declared":
			w.Header().Set("Trailer", "X-Sum, X-Count")
			w.Header().Set("Content-Length", "5") // trailers need chunked
			io.WriteString(w, "hello")
			w.Header().Set("X-Sum", "abc")
			w.Header().Set("X-Count", "1")
		case "/prefix":
			io.WriteString(w, "hello")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		}
	}))
	c := ts.dial(t)
	c.write("GET /declared HTTP/1.1\r\nHost: a\r\n\r\nGET /prefix HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body := c.expectStatus("GET", 200)
	if body != "hello" || resp.Trailer.Get("X-Sum") != "abc" || resp.Trailer.Get("X-Count") != "1" {
		t.Fatalf("body %q trailer %v", body, resp.Trailer)
	}
	if resp.ContentLength != -1 {
		t.Fatalf("declared trailers with Content-Length framing")
	}
	resp, body = c.expectStatus("GET", 200)
	if body != "hello" || resp.Trailer.Get("X-Late") != "late" {
		t.Fatalf("body %q trailer %v", body, resp.Trailer)
	}
}

// Flush sends what the handler wrote before it returns.
func TestFlush(t *testing.T) {
	release := make(chan struct{})
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second")
		if err := http.NewResponseController(w).Flush(); err != nil {
			panic(err)
		}
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	head := c.rawHead()
	if !strings.Contains(head, "Transfer-Encoding: chunked\r\n") {
		t.Fatalf("head %q", head)
	}
	if got := c.readN(len("5\r\nfirst\r\n")); got != "5\r\nfirst\r\n" {
		t.Fatalf("first chunk %q", got)
	}
	close(release)
	if got := c.readN(len("6\r\nsecond\r\n0\r\n\r\n")); got != "6\r\nsecond\r\n0\r\n\r\n" {
		t.Fatalf("rest %q", got)
	}
}

func TestPipelining(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	c := ts.dial(t)
	c.write("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, b := c.expectStatus("GET", 200); b != "/1" {
		t.Fatalf("1: %q", b)
	}
	if _, b := c.expectStatus("HEAD", 200); b != "" {
		t.Fatalf("2: %q", b)
	}
	if _, b := c.expectStatus("GET", 200); b != "/3" {
		t.Fatalf("3: %q", b)
	}
	c.expectOpen(100 * time.Millisecond)
}

// A 101 answer the handler does not follow with a hijack cannot leave the
// connection speaking HTTP/1.1: the client believes the protocol changed.
func TestSwitchingProtocolsWithoutHijack(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "x")
		w.Header().Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusSwitchingProtocols)
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
	head := c.rawHead()
	if !strings.HasPrefix(head, "HTTP/1.1 101 Switching Protocols\r\n") || !strings.Contains(head, "Connection: Upgrade\r\n") {
		t.Fatalf("head %q", head)
	}
	c.expectClosed()
}

func TestInvalidStatusPanics(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(1000)
	}))
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.expectClosed()
	waitFor(t, "panic log", func() bool { return strings.Contains(ts.logs.String(), "invalid status code") })
}

// A field block goes out with the final answer's head only, once, after
// the map's fields, and never carries over to the next request; FieldBlock
// applies writeField's rules.
func TestFieldBlock(t *testing.T) {
	block := NewFieldBlock([][2]string{{"X-Frame-Options", "DENY"}, {"Bad Name", "x"}, {"X-Split", "a\r\nInjected: 1"}}, "server")
	if block.String() != "X-Frame-Options: DENY\r\nX-Split: a  Injected: 1\r\n" {
		t.Fatalf("FieldBlock = %q", block.String())
	}
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.(interface{ AddFieldBlock(*FieldBlock) }).AddFieldBlock(block)
			w.Header().Set("X-Own", "1")
		}
		w.Header().Set("X-Frame-Options", "SAMEORIGIN") // the handler's (a backend's): replaced
		w.Header().Set("Server", "backend/1.0")         // dropped with the block
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	}))
	c := ts.dial(t)
	c.write("GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
	interim := c.rawHead()
	if !strings.HasPrefix(interim, "HTTP/1.1 103 ") || strings.Contains(interim, "X-Frame-Options") {
		t.Fatalf("interim answer %q", interim)
	}
	head := c.rawHead()
	if strings.Count(head, "X-Frame-Options") != 1 || strings.Count(head, "X-Frame-Options: DENY\r\n") != 1 ||
		strings.Count(head, "X-Split: a  Injected: 1\r\n") != 1 || strings.Contains(head, "Server:") ||
		strings.Contains(head, "\r\nInjected") || !strings.Contains(head, "X-Own: 1\r\n") {
		t.Fatalf("final head %q", head)
	}
	c.readN(2)
	c.write("GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
	if head := c.rawHead(); !strings.Contains(head, "X-Frame-Options: SAMEORIGIN\r\n") || !strings.Contains(head, "Server: backend/1.0\r\n") {
		t.Fatalf("block carried over to the next request: %q", head)
	}
}

// The scratch slot keeps a handler's value from one request of a
// connection to the next, and each connection has its own.
func TestConnScratch(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slot := w.(interface{ ConnScratch() *any }).ConnScratch()
		n, _ := (*slot).(int)
		*slot = n + 1
		io.WriteString(w, strconv.Itoa(n))
	}))
	for conn, want := range [][]string{{"0", "1", "2"}, {"0", "1"}} {
		c := ts.dial(t)
		for _, w := range want {
			c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if _, body := c.expectStatus("GET", 200); body != w {
				t.Fatalf("connection %d: body %q, want %q", conn, body, w)
			}
		}
	}
}

// Every answer carries the current Date, to the second: the cached field
// follows the clock from one second to the next.
func TestDateFollowsTheClock(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	check := func() time.Time {
		t.Helper()
		before := time.Now().Truncate(time.Second)
		c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, _ := c.expectStatus("GET", 200)
		after := time.Now()
		d, err := http.ParseTime(resp.Header.Get("Date"))
		if err != nil {
			t.Fatalf("Date %q: %v", resp.Header.Get("Date"), err)
		}
		if d.Before(before.Add(-time.Second)) || d.After(after) {
			t.Fatalf("Date %v outside [%v, %v]", d, before, after)
		}
		return d
	}
	first := check()
	time.Sleep(1100 * time.Millisecond)
	if second := check(); !second.After(first) {
		t.Fatalf("Date %v after a second's wait, was %v", second, first)
	}
}
