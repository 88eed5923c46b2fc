package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// readRaw runs the direct path's response reader over raw bytes.
func readRaw(t *testing.T, method, raw string) (*http.Response, *directBody, error) {
	t.Helper()
	uc := &upstreamConn{br: bufio.NewReader(strings.NewReader(raw)), hop: http.Header{}}
	body := &directBody{uc: uc}
	req, _ := http.NewRequest(method, "http://backend/", nil)
	resp, err := uc.readResponse(req, body, http.Header{})
	return resp, body, err
}

func readAll(t *testing.T, b *directBody) (string, error) {
	t.Helper()
	if b.rc == nil {
		return "", nil
	}
	out, err := io.ReadAll(b.rc)
	return string(out), err
}

func TestReadResponseFraming(t *testing.T) {
	cases := []struct {
		name, method, raw string
		status            int
		body              string
		close             bool
		header            map[string]string
		trailer           map[string]string
	}{
		{name: "content-length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  v  \r\n\r\nhelloNEXT",
			status: 200, body: "hello", header: map[string]string{"X-A": "v", "Content-Length": "5"}},
		{name: "identical duplicate lengths collapse", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
			status: 200, body: "ok", header: map[string]string{"Content-Length": "2"}},
		{name: "chunked with trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Sum: 42\r\n\r\n",
			status: 200, body: "abcde", trailer: map[string]string{"X-Sum": "42"}},
		{name: "close-delimited", raw: "HTTP/1.1 200 OK\r\n\r\nuntil the end", status: 200, body: "until the end", close: true},
		{name: "HTTP/1.0 without keep-alive closes", raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", close: true},
		{name: "connection close", raw: "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status: 503, close: true},
		{name: "HEAD has no body despite its length", method: "HEAD", raw: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
			status: 200, header: map[string]string{"Content-Length": "100"}},
		{name: "204 has no body", raw: "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "304 has no body", raw: "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n", status: 304},
		{name: "bare LF line endings", raw: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", status: 200, body: "ok"},
		{name: "status without reason", raw: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", status: 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = "GET"
			}
			resp, b, err := readRaw(t, method, c.raw)
			if err != nil {
				t.Fatalf("readResponse: %v", err)
			}
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if resp.Close != c.close {
				t.Errorf("Close %v, want %v", resp.Close, c.close)
			}
			for k, v := range c.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if _, ok := resp.Header["Transfer-Encoding"]; ok {
				t.Error("Transfer-Encoding left in the header map; framing is Rampart's")
			}
			body, err := readAll(t, b)
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if body != c.body {
				t.Errorf("body %q, want %q", body, c.body)
			}
			for k, v := range c.trailer {
				if got := resp.Trailer.Get(k); got != v {
					t.Errorf("trailer %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// A backend answer that two parsers could delimit differently, or that
// carries bytes no header may hold, is refused, never relayed.
func TestReadResponseRefuses(t *testing.T) {
	cases := map[string]string{
		"length and chunked":     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"conflicting lengths":    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"signed length":          "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
		"gzip transfer coding":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"two transfer encodings": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"NUL in a value":         "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
		"bare CR":                "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
		"space before colon":     "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
		"obs-fold":               "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"HTTP/2 status line":     "HTTP/2 200\r\n\r\n",
		"two-digit status":       "HTTP/1.1 20 OK\r\n\r\n",
		"status 600":             "HTTP/1.1 600 Nope\r\n\r\n",
		"truncated head":         "HTTP/1.1 200 OK\r\nContent-Le",
		"huge head":              "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", maxResponseHeader) + "\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := readRaw(t, "GET", raw)
			if err == nil {
				t.Fatal("accepted")
			}
			var bad errBadResponse
			if name != "truncated head" && !errors.As(err, &bad) {
				t.Errorf("error %v (%T), want errBadResponse", err, err)
			}
		})
	}
}

// A chunked body with a bad chunk size fails the read; the client then sees
// a broken response, never a short one that looks complete.
func TestReadResponseBadChunk(t *testing.T) {
	_, b, err := readRaw(t, "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, b); err == nil {
		t.Fatal("bad chunk size read without error")
	}
}

// The backend's fields are read straight into the client answer's header
// map, with the rules of copying them there: hop-by-hop fields and those
// named in Connection stay out, a backend field replaces a stage's of the
// same name, and an answer that is refused leaves the map as it was.
func TestReadResponseIntoClientHeader(t *testing.T) {
	read := func(raw string, dst http.Header) (*http.Response, *directBody, error) {
		uc := &upstreamConn{br: bufio.NewReader(strings.NewReader(raw)), hop: http.Header{}}
		body := &directBody{uc: uc}
		req, _ := http.NewRequest("GET", "http://backend/", nil)
		resp, err := uc.readResponse(req, body, dst)
		return resp, body, err
	}
	stage := func() http.Header {
		return http.Header{"Ratelimit-Policy": {"10;w=1"}, "X-Stage": {"kept"}, "X-Both": {"stage"}, "X-Listed": {"stage"}}
	}

	dst := stage()
	resp, b, err := read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Listed, x-gone\r\n"+
		"Keep-Alive: timeout=5\r\nX-Both: backend\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Listed: backend\r\n"+
		"X-Gone: backend\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-T\r\n\r\nok", dst)
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{
		"Ratelimit-Policy": {"10;w=1"}, "X-Stage": {"kept"}, // stages' own
		"X-Both":         {"backend"}, // the backend's replaces the stage's
		"Set-Cookie":     {"a=1", "b=2"},
		"Content-Length": {"2"},
		"X-Listed":       {"stage"}, // named in Connection: the stage's comes back
	}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("client header\n got %v\nwant %v", dst, want)
	}
	if resp.Header == nil || resp.ContentLength != 2 {
		t.Errorf("response: header %v, length %d", resp.Header, resp.ContentLength)
	}
	if body, err := readAll(t, b); body != "ok" || err != nil {
		t.Errorf("body %q, %v", body, err)
	}

	// A Content-Length named in Connection still frames the body; the
	// client's answer does not carry it (the engine chooses its framing).
	dst = http.Header{}
	_, b, err = read("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\nabcNEXT", dst)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := readAll(t, b); body != "abc" {
		t.Errorf("body %q, want the 3 announced bytes", body)
	}
	if _, ok := dst["Content-Length"]; ok {
		t.Errorf("Content-Length named in Connection relayed: %v", dst)
	}

	// A stage's Content-Length never frames the backend's answer.
	dst = http.Header{"Content-Length": {"1"}}
	resp, b, err = read("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close", dst)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := readAll(t, b); body != "until close" || !resp.Close {
		t.Errorf("body %q (close %v), want the close-delimited body", body, resp.Close)
	}

	// Refused answers, in the fields or in the framing: the client's map is
	// as the stages left it, for the 502 that follows.
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nX-Both: backend\r\nX-New: 1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Both: backend\r\nX-New: 1\r\nX-Bad: a\x00b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Both: backend\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	} {
		dst := stage()
		if _, _, err := read(raw, dst); err == nil {
			t.Errorf("accepted %q", raw)
		}
		if !reflect.DeepEqual(dst, stage()) {
			t.Errorf("refused answer %q left the client header as %v", raw, dst)
		}
	}
}

// Answers read one after another on a connection: the strings of an
// earlier answer stay as they were (the read buffer is overwritten by the
// next answer, and a client's header map, a log line or a stage may still
// hold them), and an answer that repeats the previous one's head
// allocates nothing for it.
func TestReadResponseStringsOutliveTheBuffer(t *testing.T) {
	answer := func(v string) string {
		return "HTTP/1.1 200 OK-" + v + "\r\nContent-Type: text/" + v + "\r\nX-Custom-Field: " + v + "\r\nContent-Length: 0\r\n\r\n"
	}
	var raw strings.Builder
	for _, v := range []string{"aaaa", "bbbb", "cccc"} {
		raw.WriteString(answer(v))
	}
	const repeats = 200
	for range repeats + 1 {
		raw.WriteString(answer("same"))
	}
	uc := &upstreamConn{br: bufio.NewReader(strings.NewReader(raw.String())), hop: http.Header{}}
	req, _ := http.NewRequest("GET", "http://backend/", nil)
	read := func() (string, http.Header) {
		t.Helper()
		dst := http.Header{}
		resp, err := uc.readResponse(req, &directBody{uc: uc}, dst)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status, dst
	}
	type kept struct {
		status string
		h      http.Header
	}
	var all []kept
	for range 3 {
		s, h := read()
		all = append(all, kept{s, h})
	}
	for i, v := range []string{"aaaa", "bbbb", "cccc"} {
		k := all[i]
		if k.status != "200 OK-"+v || k.h.Get("Content-Type") != "text/"+v || k.h.Get("X-Custom-Field") != v {
			t.Errorf("answer %d changed after later answers were read: %q %v", i, k.status, k.h)
		}
	}
	read() // the first "same" answer: its strings are made once
	body := &directBody{uc: uc}
	dst := http.Header{}
	if n := testing.AllocsPerRun(repeats-1, func() {
		clear(dst)
		if _, err := uc.readResponse(req, body, dst); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations for an answer whose head repeats the previous one, want 0", n)
	}
	if dst.Get("Content-Type") != "text/same" || dst.Get("X-Custom-Field") != "same" {
		t.Errorf("repeated answer read as %v", dst)
	}
}

// 300 random answers read one after another on one connection (fields
// repeated, in any case, at changing places; some chunked with a trailer)
// each read as they were sent, also after the later ones were read into
// the same buffer.
func TestReadResponseRandomHeads(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"Content-Type", "content-type", "X-A", "x-a", "Server", "X-Long-Field-Name", "Date", "Set-Cookie", "Vary", "x-weird_name", "Cache-Control"}
	vals := []string{"a", "bb", "text/html", "ccc ddd", "", "zzzzzzzzzzzzzzzzzzzzzzz", "1", "2"}
	type exp struct {
		status  string
		h       http.Header
		trailer http.Header
	}
	var raw strings.Builder
	var exps []exp
	for range 300 {
		st := []string{"200 OK", "200 OK", "404 Not Found", "201 Created", "500 Oops"}[rng.IntN(5)]
		fmt.Fprintf(&raw, "HTTP/1.1 %s\r\n", st)
		h := http.Header{}
		nf := rng.IntN(40)
		for range nf {
			n, v := names[rng.IntN(len(names))], vals[rng.IntN(len(vals))]
			fmt.Fprintf(&raw, "%s: %s\r\n", n, v)
			h[textproto.CanonicalMIMEHeaderKey(n)] = append(h[textproto.CanonicalMIMEHeaderKey(n)], v)
		}
		var tr http.Header
		if rng.IntN(3) == 0 {
			tv := vals[rng.IntN(len(vals))]
			fmt.Fprintf(&raw, "Trailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-Sum: %s\r\n\r\n", tv)
			tr = http.Header{"X-Sum": {tv}}
		} else {
			raw.WriteString("Content-Length: 1\r\n\r\nx")
			h["Content-Length"] = []string{"1"}
		}
		exps = append(exps, exp{st, h, tr})
	}
	uc := &upstreamConn{br: bufio.NewReader(strings.NewReader(raw.String())), hop: http.Header{}}
	req, _ := http.NewRequest("GET", "http://backend/", nil)
	var got []exp
	body := &directBody{}
	for i := range exps {
		dst := http.Header{}
		*body = directBody{uc: uc}
		resp, err := uc.readResponse(req, body, dst)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if _, err := io.ReadAll(body.rc); err != nil {
			t.Fatalf("%d body: %v", i, err)
		}
		// keep copies of the slices (valsArr is reused), not of the strings
		h := http.Header{}
		for k, vv := range dst {
			h[k] = append([]string(nil), vv...)
		}
		var tr http.Header
		if resp.Trailer != nil {
			tr = resp.Trailer
		}
		got = append(got, exp{resp.Status, h, tr})
	}
	for i := range exps {
		if got[i].status != exps[i].status || !reflect.DeepEqual(got[i].h, exps[i].h) || (exps[i].trailer != nil && !reflect.DeepEqual(got[i].trailer, exps[i].trailer)) {
			t.Fatalf("answer %d: got %q %v %v\nwant %q %v %v", i, got[i].status, got[i].h, got[i].trailer, exps[i].status, exps[i].h, exps[i].trailer)
		}
	}
}
