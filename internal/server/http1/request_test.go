package http1

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// refusalCases are requests the engine must refuse before any handler sees
// them. They also seed the fuzzers.
var refusalCases = []struct {
	name   string
	req    string
	status int
}{
	// Framing (issue 4: ambiguous framing → 400, connection closed).
	{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400},
	{"two differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
	{"CL list in one field", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
	{"CL equal numbers spelt differently", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 03\r\n\r\nabc", 400},
	{"non-numeric CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400},
	{"hex CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400},
	{"negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
	{"plus CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", 400},
	{"empty CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400},
	{"huge CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
	{"CL above int64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 400},
	{"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE chunked, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400},
	{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400},
	{"two TE fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE with trailing junk", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", 400},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE declares CL trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", 400},

	// Header syntax.
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400},
	{"obs-fold first line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400},
	{"bare CR as line end", "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", 400},
	{"CR CR LF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n", 400},
	{"ESC in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x1bc\r\n\r\n", 400},
	{"VT in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x0bc\r\n\r\n", 400},
	{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n", 400},
	{"tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n", 400},
	{"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n", 400},
	{"separator in name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400},
	{"non-ASCII in name", "GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: b\r\n\r\n", 400},

	// Host.
	{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
	{"missing Host, absolute form", "GET http://a.example/ HTTP/1.1\r\n\r\n", 400},
	{"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
	{"two Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"two Content-Type", "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: image/png\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\nq=1", 400},
	{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
	{"Host with at", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400},
	{"Host with quote", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400},
	{"Host non-ASCII", "GET / HTTP/1.1\r\nHost: \xc3\xa9.example\r\n\r\n", 400},

	// Request line.
	{"double space after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"double space before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"missing version", "GET /\r\nHost: a\r\n\r\n", 400},
	{"only method", "GET\r\nHost: a\r\n\r\n", 400},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
	{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
	{"HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
	{"HTTP/1.x", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400},
	{"HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
	{"lowercase http", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
	{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"control char in target", "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"DEL in target", "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bad escape in target", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"asterisk outside OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"ftp absolute form", "GET ftp://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"userinfo in absolute form", "GET http://user:pw@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400},
	{"bad method char", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"two empty lines first", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"CONNECT authority", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 405},
	{"CONNECT origin form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 405},
	{"CONNECT asterisk", "CONNECT * HTTP/1.1\r\nHost: a\r\n\r\n", 405},

	// Expectations.
	{"Expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\nx", 417},
	{"two Expect", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", 417},
	{"Expect in HTTP/1.0", "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", 417},

	// Limits (defaults: request line 4096, header block 8192, 100 fields).
	{"request line limit+1", "GET /" + strings.Repeat("a", 4096-14+1) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
	{"header block limit+1", "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("p", 8192-9-9+1) + "\r\n\r\n", 431},
	{"header line over the block limit", "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("p", 9000) + "\r\n\r\n", 431},
	{"101 headers", "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(100) + "\r\n", 431},
}

// manyHeaders returns n distinct header lines.
func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: %d\r\n", i, i)
	}
	return b.String()
}

func TestRefusals(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range refusalCases {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.calls.Load()
			c := ts.dial(t)
			c.write(tc.req)
			resp, _ := c.expectStatus("GET", tc.status)
			if !resp.Close {
				t.Errorf("refusal without Connection: close")
			}
			c.expectClosed()
			if n := ts.calls.Load() - before; n != 0 {
				t.Errorf("handler called %d times", n)
			}
		})
	}
	// Each refusal was reported, with its status.
	got := ts.refusals()
	if len(got) != len(refusalCases) {
		t.Fatalf("OnRefused called %d times, want %d", len(got), len(refusalCases))
	}
	for i, r := range got {
		if r.status != refusalCases[i].status || r.reason == "" {
			t.Errorf("refusal %d (%s) reported as %d %q", i, refusalCases[i].name, r.status, r.reason)
		}
	}
}

// Refusals on a keep-alive connection: the answers to earlier pipelined
// requests are not lost, and the connection ends after the refusal.
func TestRefusalAfterPipelinedRequest(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	c.write("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
	c.expectStatus("GET", 200)
	c.expectStatus("GET", 400)
	c.expectClosed()
	if n := ts.calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1", n)
	}
}

// A real HTTP/2 preface on a listener without h2c is not answered with an
// HTTP/1.1 message the HTTP/2 client would read as a garbage frame: the
// connection is closed.
func TestH2PrefaceWithoutH2C(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(t)
	c.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	c.expectClosed()
	if r := ts.refusals(); len(r) != 1 || r[0].status != 505 {
		t.Fatalf("refusals = %v", r)
	}
	// Something that only starts like the preface is an ordinary malformed
	// request, not an HTTP/2 connection.
	c = ts.dial(t)
	c.write("PRI * HTTP/2.0x\r\nHost: a\r\n\r\n")
	c.expectStatus("GET", 400)
	c.expectClosed()
	if ts.calls.Load() != 0 {
		t.Fatal("handler called")
	}
}

func TestLimitsAccepted(t *testing.T) {
	cases := []struct {
		name  string
		req   string
		check func(t *testing.T, s seen)
	}{
		{"request line of exactly the limit", "GET /" + strings.Repeat("a", 4096-14) + " HTTP/1.1\r\nHost: a\r\n\r\n",
			func(t *testing.T, s seen) {
				if len(s.Path) != 4096-13 {
					t.Errorf("path length %d", len(s.Path))
				}
			}},
		{"header block of exactly the limit", "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("p", 8192-9-9) + "\r\n\r\n",
			func(t *testing.T, s seen) {
				if len(s.Header.Get("X-Pad")) != 8192-18 {
					t.Errorf("X-Pad length %d", len(s.Header.Get("X-Pad")))
				}
			}},
		{"100 headers", "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(99) + "\r\n",
			func(t *testing.T, s seen) {
				if len(s.Header) != 99 { // Host is not in the map
					t.Errorf("%d header fields", len(s.Header))
				}
			}},
	}
	ch := make(chan seen, 1)
	ts := newTestServer(t, capture(ch))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t)
			c.write(tc.req)
			c.expectStatus("GET", 200)
			tc.check(t, recv(t, ch))
		})
	}
}

func TestCustomLimits(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) {
		s.Limits = Limits{MaxRequestLineBytes: 32, MaxHeaderBytes: 64, MaxHeaders: 3}
	})
	for _, tc := range []struct {
		req    string
		status int
	}{
		{"GET /" + strings.Repeat("a", 32-14) + " HTTP/1.1\r\nHost: a\r\n\r\n", 200},
		{"GET /" + strings.Repeat("a", 32-13) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", 200},
		{"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 64-9-5) + "\r\n\r\n", 200},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 64-9-5+1) + "\r\n\r\n", 431},
	} {
		c := ts.dial(t)
		c.write(tc.req)
		c.expectStatus("GET", tc.status)
	}
}

func TestAcceptedForms(t *testing.T) {
	ch := make(chan seen, 4)
	ts := newTestServer(t, capture(ch), func(s *Server) {
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, "conn:"+c.RemoteAddr().String())
		}
	})
	cases := []struct {
		name string
		req  string
		want func(t *testing.T, s seen)
	}{
		{"simple", "GET /p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Method", s.Method, "GET")
			eq(t, "Host", s.Host, "a.example:8080")
			eq(t, "Path", s.Path, "/p")
			eq(t, "RawQuery", s.RawQuery, "q=1")
			eq(t, "RequestURI", s.RequestURI, "/p?q=1")
			eq(t, "Proto", s.Proto, "HTTP/1.1")
			eq(t, "Close", s.Close, false)
			eq(t, "ContentLength", s.ContentLength, int64(0))
			if _, ok := s.Header["Host"]; ok {
				t.Error("Host left in the header map (net/http promotes it to r.Host only)")
			}
		}},
		{"escaped path", "GET /a%2Fb/%7Ec%20d?x=%2F HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Path", s.Path, "/a/b/~c d")
			eq(t, "RawPath", s.RawPath, "/a%2Fb/%7Ec%20d")
			eq(t, "RawQuery", s.RawQuery, "x=%2F")
		}},
		{"unescaped marks kept as sent", "GET /!*'()[]?q=!%20 HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			// As url.ParseRequestURI (fuzz finding): RawPath keeps the form
			// the client sent, so EscapedPath does not re-encode "!" etc.
			eq(t, "Path", s.Path, "/!*'()[]")
			eq(t, "RawPath", s.RawPath, "/!*'()[]")
			eq(t, "RawQuery", s.RawQuery, "q=!%20")
			eq(t, "EscapedPath", s.EscapedPath, "/!*'()[]")
		}},
		{"non-ASCII path", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Path", s.Path, "/caf\xc3\xa9")
			eq(t, "RawPath", s.RawPath, "/caf\xc3\xa9")
			eq(t, "EscapedPath", s.EscapedPath, "/caf%C3%A9")
		}},
		{"plain path", "GET /a-b_c.d~e/$&+,;=:@?x HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Path", s.Path, "/a-b_c.d~e/$&+,;=:@")
			eq(t, "RawPath", s.RawPath, "")
			eq(t, "EscapedPath", s.EscapedPath, "/a-b_c.d~e/$&+,;=:@")
		}},
		{"custom method", "PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Method", s.Method, "PURGE")
		}},
		{"absolute form", "GET http://a.example/x?y HTTP/1.1\r\nHost: other.example\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Host", s.Host, "a.example")
			eq(t, "URL.Host", s.URLHost, "a.example")
			eq(t, "Scheme", s.Scheme, "http")
			eq(t, "Path", s.Path, "/x")
			eq(t, "RawQuery", s.RawQuery, "y")
			eq(t, "RequestURI", s.RequestURI, "http://a.example/x?y")
		}},
		{"absolute form without path", "GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Path", s.Path, "/")
		}},
		{"underscore in a field name", "GET / HTTP/1.1\r\nHost: a\r\nX_Real_IP: 6.6.6.6\r\nX-Kept: 1\r\n\r\n", func(t *testing.T, s seen) {
			for k := range s.Header {
				if strings.Contains(k, "_") {
					t.Errorf("field %q with an underscore reached the handler", k)
				}
			}
			eq(t, "X-Kept", s.Header.Get("X-Kept"), "1")
		}},
		{"Upgrade in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Upgrade", s.Header.Get("Upgrade"), "")
		}},
		{"absolute form https with port", "GET https://a.example:8443/x HTTP/1.1\r\nHost: a.example:8443\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Host", s.Host, "a.example:8443")
		}},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Method", s.Method, "OPTIONS")
			eq(t, "RequestURI", s.RequestURI, "*")
			eq(t, "Path", s.Path, "*")
		}},
		{"bare LF", "GET /lf HTTP/1.1\nHost: a\nX-A: b\n\n", func(t *testing.T, s seen) {
			eq(t, "Path", s.Path, "/lf")
			eq(t, "X-A", s.Header.Get("X-A"), "b")
		}},
		{"leading empty line", "\r\nGET /le HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Path", s.Path, "/le")
		}},
		{"leading bare LF", "\nGET /le HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Path", s.Path, "/le")
		}},
		{"duplicate identical CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", func(t *testing.T, s seen) {
			eq(t, "ContentLength", s.ContentLength, int64(3))
			eq(t, "Body", s.Body, "abc")
			eq(t, "Content-Length", fmt.Sprint(s.Header["Content-Length"]), "[3]")
		}},
		{"CL with OWS and leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  003 \t\r\n\r\nabc", func(t *testing.T, s seen) {
			eq(t, "ContentLength", s.ContentLength, int64(3))
			eq(t, "Body", s.Body, "abc")
		}},
		{"OWS trimmed, names canonical, repeats in order", "GET / HTTP/1.1\r\nhost: a\r\nx-multi-word:  v1 \t\r\nX-MULTI-WORD:v2\r\nx-empty:\r\nX-Inner: a  b\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Host", s.Host, "a")
			eq(t, "X-Multi-Word", fmt.Sprintf("%q", s.Header["X-Multi-Word"]), `["v1" "v2"]`)
			eq(t, "X-Empty", fmt.Sprintf("%q", s.Header["X-Empty"]), `[""]`)
			eq(t, "X-Inner", s.Header.Get("X-Inner"), "a  b")
		}},
		{"obs-text in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "X-A", s.Header.Get("X-A"), "caf\xc3\xa9")
		}},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Host", s.Host, "")
		}},
		{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Host", s.Host, "[::1]:80")
		}},
		{"HTTP/1.0 without Host", "GET /old HTTP/1.0\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Proto", s.Proto, "HTTP/1.0")
			eq(t, "ProtoMinor", s.ProtoMinor, 0)
			eq(t, "Close", s.Close, true)
			eq(t, "Host", s.Host, "")
		}},
		{"Connection close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n", func(t *testing.T, s seen) {
			eq(t, "Close", s.Close, true)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial(t)
			c.write(tc.req)
			c.expectStatus("GET", 200)
			s := recv(t, ch)
			eq(t, "RemoteAddr", s.RemoteAddr, c.c.LocalAddr().String())
			eq(t, "ConnContext value", s.CtxValue, any("conn:"+c.c.LocalAddr().String()))
			tc.want(t, s)
		})
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// HTTP/1.0 is persistent only when it asks for keep-alive, and never when
// it also says close.
func TestHTTP10KeepAlive(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		w.Write([]byte("ok"))
	}))

	c := ts.dial(t)
	c.write("GET / HTTP/1.0\r\n\r\n")
	resp, body := c.expectStatus("GET", 200)
	if body != "ok" || !resp.Close {
		t.Fatalf("body %q, close %v", body, resp.Close)
	}
	c.expectClosed()

	c = ts.dial(t)
	for range 2 {
		c.write("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body = c.expectStatus("GET", 200)
		if body != "ok" || resp.Close || resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("body %q, close %v, Connection %q", body, resp.Close, resp.Header.Get("Connection"))
		}
	}

	c = ts.dial(t)
	c.write("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
	if resp, _ = c.expectStatus("GET", 200); !resp.Close {
		t.Fatal("keep-alive, close kept the connection")
	}
	c.expectClosed()
}

// The request a handler receives is a fresh view for every request on a
// connection: nothing of the previous one leaks into it.
func TestRequestReuseDoesNotLeak(t *testing.T) {
	ch := make(chan seen, 2)
	ts := newTestServer(t, capture(ch))
	c := ts.dial(t)
	c.write("POST /first?a=1 HTTP/1.1\r\nHost: one\r\nX-Only-First: 1\r\nContent-Length: 1\r\n\r\nx" +
		"GET /second HTTP/1.1\r\nHost: two\r\n\r\n")
	c.expectStatus("POST", 200)
	c.expectStatus("GET", 200)
	first, second := recv(t, ch), recv(t, ch)
	eq(t, "first body", first.Body, "x")
	want := seen{Method: "GET", Host: "two", RequestURI: "/second", Proto: "HTTP/1.1", ProtoMinor: 1,
		Path: "/second", EscapedPath: "/second", Header: http.Header{}, RemoteAddr: second.RemoteAddr}
	second.TransferEncoding = nil
	if !reflect.DeepEqual(second, want) {
		t.Fatalf("second request = %+v\nwant %+v", second, want)
	}
}

// Request lines and heads arriving in small pieces are assembled.
func TestFragmentedHead(t *testing.T) {
	ch := make(chan seen, 1)
	ts := newTestServer(t, capture(ch))
	c := ts.dial(t)
	req := "GET /frag HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n"
	for i := 0; i < len(req); i += 3 {
		c.write(req[i:min(i+3, len(req))])
		time.Sleep(time.Millisecond)
	}
	c.expectStatus("GET", 200)
	eq(t, "Path", recv(t, ch).Path, "/frag")
}

// The HTTP/2 preface starts an h2c connection only as its first bytes:
// after a request it is refused (400), not a switch to HTTP/2 that no
// request asked for.
func TestH2PrefaceAfterARequest(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) { s.H2C = true })
	c := ts.dial(t)
	c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	if _, body := c.expectStatus("GET", 200); body != "ok" {
		t.Fatalf("first request: %q", body)
	}
	c.expectStatus("GET", 400)
	c.expectClosed()
}

// A handler may keep a request's strings (a log line written later, a
// rate limit's key): they stay as they were after the connection reads
// its next requests into the same buffer.
func TestRequestStringsOutliveTheConnectionsBuffer(t *testing.T) {
	var mu sync.Mutex
	var kept [][3]string
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		kept = append(kept, [3]string{r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Tag")})
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	c := ts.dial(t)
	want := [][3]string{{"/aaaa", "q=1", "first"}, {"/bbbb", "q=2", "second"}, {"/aaaa", "q=1", "first"}, {"/cc", "", "x"}}
	for _, w := range want {
		target := w[0]
		if w[1] != "" {
			target += "?" + w[1]
		}
		c.write("GET " + target + " HTTP/1.1\r\nHost: a\r\nX-Tag: " + w[2] + "\r\n\r\n")
		c.expectStatus("GET", 200)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(kept) != fmt.Sprint(want) {
		t.Errorf("kept strings %q, want %q", kept, want)
	}
}
