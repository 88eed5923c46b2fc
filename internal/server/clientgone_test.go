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

// A client that closes its connection (or half-closes it, as nginx counts
// too) while its request waits for a slow backend abandons the wait: the
// backend's connection is closed, so the backend sees its request
// cancelled, and the access log says 499 client_closed; on the direct path
// (bodiless requests, small bodies of known length read whole, chunked
// bodies streamed) and on the http.Transport path (Expect). A client that
// stays gets its slow answer, and the pool is not held to blame.
func TestClientGoneAbandonsBackendWait(t *testing.T) {
	b := newTestBackend(t, "b1")
	g := newGate()
	defer g.open()
	started := make(chan string, 4)
	cancelled := make(chan string, 4)
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/slow") {
			io.WriteString(w, "fast")
			return
		}
		io.Copy(io.Discard, r.Body)
		started <- r.URL.Path
		select {
		case <-r.Context().Done(): // Rampart closed the connection
			cancelled <- r.URL.Path
		case <-g.ch:
		case <-time.After(testTimeout):
		}
		io.WriteString(w, "slow answer")
	})
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    backends: %s
    outlier_detection: {consecutive_5xx: 1, ejection_time: 1m}
logging: {access_log: {path: access.log}}
`, backendsYAML(b)))
	addr := strings.TrimPrefix(e.url("web", ""), "http://")

	leave := func(path, req string, halfClose bool) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, req)
		select {
		case p := <-started:
			if p != path {
				t.Fatalf("backend got %s, want %s", p, path)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s never reached the backend", path)
		}
		if halfClose {
			c.(*net.TCPConn).CloseWrite()
		} else {
			c.Close()
		}
		select {
		case p := <-cancelled:
			if p != path {
				t.Fatalf("cancelled %s, want %s", p, path)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s: the backend's request was not cancelled after the client left", path)
		}
	}
	leave("/slow-direct", "GET /slow-direct HTTP/1.1\r\nHost: x\r\n\r\n", false)
	leave("/slow-body", "POST /slow-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", true)
	leave("/slow-small-body", "POST /slow-small-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", true)
	leave("/slow-expect", "POST /slow-expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", true)

	// A client that stays for longer than the watch's interval (it is
	// looked at, and found there) gets its answer.
	time.AfterFunc(2500*time.Millisecond, g.open)
	if r := e.get("/slow-stays"); r.status != 200 || r.body != "slow answer" {
		t.Fatalf("client that stayed: %d %q", r.status, r.body)
	}
	<-started
	if r := e.get("/fast"); r.status != 200 || r.body != "fast" {
		t.Fatalf("after the abandoned waits: %d %q (backend ejected?)", r.status, r.body)
	}

	lines := accessLogLines(t, e.dir+"/access.log", 6)
	for i, want := range []struct {
		path    string
		status  int
		errText string
	}{{"/slow-direct", 499, "client_closed"}, {"/slow-body", 499, "client_closed"}, {"/slow-small-body", 499, "client_closed"},
		{"/slow-expect", 499, "client_closed"}, {"/slow-stays", 200, ""}, {"/fast", 200, ""}} {
		l := lines[i]
		errText, _ := l["error"].(string)
		if l["path"] != want.path || int(l["status_code"].(float64)) != want.status || errText != want.errText {
			t.Errorf("access log line %d: %v %v %q, want %s %d %q", i, l["path"], l["status_code"], errText, want.path, want.status, want.errText)
		}
	}
}
