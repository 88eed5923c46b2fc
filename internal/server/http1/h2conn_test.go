package http1

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// recordConn is a net.Conn whose writes are recorded and whose reads
// come from a fixed byte stream.
type recordConn struct {
	net.Conn
	in     *bytes.Reader
	out    syncBuffer
	closed atomic.Bool
}

func (c *recordConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *recordConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *recordConn) Close() error                     { c.closed.Store(true); return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recordConn) written() ([]byte, bool) { return []byte(c.out.String()), c.closed.Load() }

// h2Frame returns a frame of the given type and payload length.
func h2Frame(typ byte, id uint32, n int) []byte {
	f := make([]byte, 9+n)
	f[0], f[1], f[2] = byte(n>>16), byte(n>>8), byte(n)
	f[3] = typ
	binary.BigEndian.PutUint32(f[5:], id)
	return f
}

// A reset flood's GOAWAY goes out between two of the server's frames: when
// the server's last write ended inside a frame, it waits for the rest.
func TestH2ConnGoAwayAfterPartialFrame(t *testing.T) {
	for _, finish := range []bool{true, false} {
		var flood []byte
		flood = append(flood, make([]byte, h2PrefaceLen)...)
		for id := uint32(1); id < 10; id += 2 {
			flood = append(flood, h2Frame(frameHeaders, id, 6)...)
			flood = append(flood, h2Frame(frameRSTStream, id, 4)...)
		}
		rc := &recordConn{in: bytes.NewReader(flood)}
		c := newH2Conn(rc, rc, rc, nil)
		c.maxResets = 2
		data := h2Frame(0x0, 1, 100) // a DATA frame the server writes in two parts
		if _, err := c.Write(data[:50]); err != nil {
			t.Fatal(err)
		}
		if finish {
			go func() {
				time.Sleep(50 * time.Millisecond)
				c.Write(data[50:])
			}()
		}
		start := time.Now()
		buf := make([]byte, len(flood))
		var err error
		for err == nil {
			_, err = c.Read(buf)
		}
		if err != errResetFlood {
			t.Fatalf("finish %v: read error %v, want errResetFlood", finish, err)
		}
		out, closed := rc.written()
		if !closed {
			t.Errorf("finish %v: connection not closed", finish)
		}
		if !finish {
			if !bytes.Equal(out, data[:50]) {
				t.Errorf("unfinished frame: wrote %d bytes, want the 50 of the partial frame and no GOAWAY", len(out))
			}
			if d := time.Since(start); d < 900*time.Millisecond {
				t.Errorf("unfinished frame: closed after %v, want about a second of waiting", d)
			}
			continue
		}
		want := append(bytes.Clone(data), h2Frame(frameGoAway, 0, 8)...)
		binary.BigEndian.PutUint32(want[len(data)+9:], 9) // last stream id
		binary.BigEndian.PutUint32(want[len(data)+13:], errCodeCalm)
		if !bytes.Equal(out, want) {
			t.Errorf("finished frame: wrote\n%x\nwant the whole DATA frame, then GOAWAY:\n%x", out, want)
		}
	}
}

// HTTP/2 streams get the HTTP/1 parser's checks that net/http's HTTP/2
// server does not make: the policy's methods, no CONNECT, and a
// well-formed :authority. A refusal carries the refusal headers and is
// reported like an HTTP/1 one; the connection goes on serving.
func TestH2CRequestChecks(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) {
		s.H2C = true
		s.AllowedMethods = []string{"GET", "HEAD", "POST"}
	})
	ts.srv.Configure(Policy{AllowedMethods: []string{"GET", "HEAD", "POST"}, RefusalHeaders: map[string]string{"X-Frame-Options": "DENY"}})
	cl := h2cClient()
	defer cl.CloseIdleConnections()
	do := func(method, host string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+ts.addr+"/x", nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s with host %q: %v", method, host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s: served over %s, want HTTP/2", method, resp.Proto)
		}
		return resp, string(body)
	}
	for _, tc := range []struct {
		method, host string
		status       int
		reason       string
	}{
		{"TRACE", "app.example", 405, "method not allowed"},
		{"PROPFIND", "app.example", 405, "method not allowed"},
		{"GET", "app.example:abc", 400, "malformed Host header"},
		{"GET", "app.example:123456", 400, "malformed Host header"},
	} {
		before := ts.calls.Load()
		resp, body := do(tc.method, tc.host)
		if resp.StatusCode != tc.status || body != strconv.Itoa(tc.status)+" "+http.StatusText(tc.status)+"\n" {
			t.Errorf("%s host %q: %d %q, want %d", tc.method, tc.host, resp.StatusCode, body, tc.status)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s host %q: refusal headers %v", tc.method, tc.host, resp.Header)
		}
		if ts.calls.Load() != before {
			t.Errorf("%s host %q reached the handler", tc.method, tc.host)
		}
		if rs := ts.refusals(); len(rs) == 0 || rs[len(rs)-1] != (refusal{tc.status, tc.reason}) {
			t.Errorf("%s host %q: refusals %v, want the last to be %d %q", tc.method, tc.host, rs, tc.status, tc.reason)
		}
	}
	for _, host := range []string{"app.example", "app.example:8443", "[::1]:8443", "192.0.2.1"} {
		if resp, body := do("GET", host); resp.StatusCode != 200 || body != "ok" {
			t.Errorf("GET host %q: %d %q, want 200 ok", host, resp.StatusCode, body)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, h := range []string{"app.example", "APP.example.", "app.example:8443", "app.example:", "[::1]", "[2001:db8::1]:443", "192.0.2.1:80", "xn--bcher-kva.example", "a%41b"} {
		if !validHost(h) {
			t.Errorf("validHost(%q) = false, want true", h)
		}
	}
	for _, h := range []string{`evil.com/"><x`, "a b", "evil.com/reset?x=", "app.example:abc", "app.example:123456", "a:1:2", "[::1", "[::g]", "[::1]x", "a@b", "a\\b", "a[b]"} {
		if validHost(h) {
			t.Errorf("validHost(%q) = true, want false", h)
		}
	}
}

// A stream's :path gets the checks of an HTTP/1 request target: a "#"
// (the WAF stops at it, the backend does not), a space or a control
// character, an absolute form (with userinfo) and "*" outside OPTIONS
// are refused before the handler.
func TestH2CPathChecks(t *testing.T) {
	ts := newTestServer(t, nil, func(s *Server) { s.H2C = true })
	_, fr := dialH2(t, ts.addr)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	send := func(id uint32, method, path string, extra ...string) {
		hb.Reset()
		for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "app.example"}, {":path", path}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		for i := 0; i+1 < len(extra); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
	dec := hpack.NewDecoder(4096, nil) // one per connection: the answers share its table
	statusOf := func(id uint32) string {
		t.Helper()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == id {
				fields, _ := dec.DecodeFull(h.HeaderBlockFragment())
				for _, hf := range fields {
					if hf.Name == ":status" {
						return hf.Value
					}
				}
			}
			if r, ok := f.(*http2.RSTStreamFrame); ok && r.StreamID == id {
				return "reset " + r.ErrCode.String()
			}
		}
	}
	id := uint32(1)
	// Two Content-Type fields: the WAF reads the first, a backend may read the last.
	send(id, "GET", "/x", "content-type", "image/png", "content-type", "application/x-www-form-urlencoded")
	if got := statusOf(id); got != "400" {
		t.Errorf("two Content-Type: %s, want 400", got)
	}
	id += 2
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/x?a=1#&q=<script>", "400"},
		{"GET", "/x?a=1 /admin HTTP/1.1", "400"},
		{"GET", "/x?a=\x01", "400"},
		{"GET", "http://user:pw@app.example/x", "400"},
		{"GET", "*", "400"},
		{"GET", "/x?a=1&b=%23", "200"},
		{"OPTIONS", "*", "200"},
	} {
		before := ts.calls.Load()
		send(id, tc.method, tc.path)
		got := statusOf(id)
		if got != tc.want && !(tc.want == "400" && strings.HasPrefix(got, "reset")) {
			t.Errorf("%s %q: %s, want %s", tc.method, tc.path, got, tc.want)
		}
		if reached := ts.calls.Load() != before; reached != (tc.want == "200") && tc.path != "*" { // the engine answers OPTIONS *
			t.Errorf("%s %q: reached the handler: %v", tc.method, tc.path, reached)
		}
		id += 2
	}
}
