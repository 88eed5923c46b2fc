package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A backend that does not answer within the pool's response_header_timeout
// gets the client a generic 504, on the direct path (bodiless requests,
// also on a reused connection; bodies read whole or streamed) and on the
// http.Transport path (Expect); the timeout starts once the request's body
// is sent (an upload that takes longer is not cut); an answer whose body
// streams for longer than the timeout is not cut either, and the backend
// still serves the next request.
func TestResponseHeaderTimeout(t *testing.T) {
	b := newTestBackend(t, "b1")
	g := newGate()
	defer g.open()
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			io.Copy(io.Discard, r.Body)
			block(r, g.ch)
		case "/upload":
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "uploaded")
			return
		case "/stream":
			// The head at once, the body over three times the timeout.
			w.Header().Set("Content-Type", "text/plain")
			for i := range 6 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
			}
			return
		}
		io.WriteString(w, "fast")
	})
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    backends: %s
    response_header_timeout: 200ms
logging: {access_log: {path: access.log}}
`, backendsYAML(b)))

	if r := e.get("/fast"); r.status != 200 || r.body != "fast" {
		t.Fatalf("fast: %d %q", r.status, r.body)
	}
	// The pooled connection from /fast carries this one (direct path).
	assertGeneric(t, e.get("/slow"), http.StatusGatewayTimeout, b)
	// A chunked body is streamed, one of a small known length read whole,
	// both on the direct client; with Expect, http.Transport.
	assertGeneric(t, e.do(http.MethodPost, e.url("web", "/slow"), "", nil, unsized("x")), http.StatusGatewayTimeout, b)
	assertGeneric(t, e.do(http.MethodPost, e.url("web", "/slow"), "", nil, strings.NewReader("x")), http.StatusGatewayTimeout, b)
	assertGeneric(t, e.do(http.MethodPost, e.url("web", "/slow"), "", http.Header{"Expect": {"100-continue"}}, unsized("x")), http.StatusGatewayTimeout, b)
	// An upload that takes three times the timeout, to a backend that
	// answers once it has read it.
	pr, pw := io.Pipe()
	go func() {
		for i := range 3 {
			time.Sleep(200 * time.Millisecond)
			fmt.Fprintf(pw, "part %d\n", i)
		}
		pw.Close()
	}()
	if r := e.do(http.MethodPost, e.url("web", "/upload"), "", nil, pr); r.status != 200 || r.body != "uploaded" {
		t.Fatalf("slow upload: %d %q, want 200 (the timeout starts when the body is sent)", r.status, r.body)
	}
	if r := e.get("/stream"); r.status != 200 || r.body != "part 0\npart 1\npart 2\npart 3\npart 4\npart 5\n" {
		t.Fatalf("stream: %d %q", r.status, r.body)
	}
	if r := e.get("/fast"); r.status != 200 || r.body != "fast" {
		t.Fatalf("fast after the timeouts: %d %q", r.status, r.body)
	}
	lines := accessLogLines(t, e.dir+"/access.log", 8)
	for i, want := range []struct {
		status  int
		errText string
	}{{200, ""}, {504, "backend_timeout"}, {504, "backend_timeout"}, {504, "backend_timeout"}, {504, "backend_timeout"}, {200, ""}, {200, ""}, {200, ""}} {
		l := lines[i]
		if int(l["status_code"].(float64)) != want.status || fmt.Sprint(l["error"]) != want.errText && want.errText != "" {
			t.Errorf("access log line %d: status %v error %v, want %d %q", i, l["status_code"], l["error"], want.status, want.errText)
		}
	}
}

// trickleBackend answers every request with a response head written in
// pieces (separate writes, so separate packets), pause apart.
func trickleBackend(t *testing.T, pieces []string, pause time.Duration) string {
	return serveRaw(t, func(c net.Conn) error {
		for _, p := range pieces {
			if _, err := io.WriteString(c, p); err != nil {
				return err
			}
			time.Sleep(pause)
		}
		return nil
	})
}

// A head that arrives in pieces is read whole when it completes within the
// timeout, and is answered with a 504 when it does not, however steadily
// its bytes keep coming (the bound is on the whole head).
func TestResponseHeadInPieces(t *testing.T) {
	pieces := []string{"HTTP/1.1 200 OK\r\n", "Content-Length: 2\r\n", "X-Part: 3\r\n", "\r\nok"}
	quick := trickleBackend(t, pieces, 10*time.Millisecond)
	slow := trickleBackend(t, pieces, 250*time.Millisecond)
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: slow, match: {path_prefix: /slow}, pool: slow}
  - {name: all, match: {path_prefix: /}, pool: quick}
pools:
  - name: quick
    backends: [{id: q, address: %q}]
    response_header_timeout: 500ms
  - name: slow
    backends: [{id: s, address: %q}]
    response_header_timeout: 500ms
`, quick, slow))
	for i := range 3 { // the second and third on the pooled connection
		r := e.get("/")
		if r.status != 200 || r.body != "ok" || r.header.Get("X-Part") != "3" {
			t.Fatalf("request %d: %d %q %v", i, r.status, r.body, r.header)
		}
	}
	assertGeneric(t, e.get("/slow"), http.StatusGatewayTimeout)
}
