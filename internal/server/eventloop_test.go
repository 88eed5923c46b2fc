package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/evloop"
)

// An http listener runs on event loops by default, `engine: goroutines`
// opts out, and both proxy the same way: keep-alive GETs, a streamed upload
// (which leaves the loop for its request) and the GETs after it on the same
// connection (back on the loop).
func TestListenerEngines(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, n)
	})
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: loop, listen: "%s"}
  - {name: gor, listen: "%s", engine: goroutines}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
`, freeAddr(t), freeAddr(t), backendsYAML(b)))
	engines := map[string]string{}
	for _, l := range e.srv.Status().Listeners {
		engines[l.Name] = l.Engine
	}
	if engines["loop"] != "eventloop" || engines["gor"] != "goroutines" {
		t.Fatalf("status engines %v, want loop: eventloop, gor: goroutines", engines)
	}
	upload := strings.Repeat("u", 100<<10) // over 16 KiB: streamed
	for _, l := range []string{"loop", "gor"} {
		c, err := net.Dial("tcp", e.srv.Addr(l))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		for i := range 6 {
			method, body, want := "GET", "", fmt.Sprintf("GET /r%d 0", i)
			if i == 2 {
				method, body, want = "POST", upload, fmt.Sprintf("POST /r%d %d", i, len(upload))
			}
			fmt.Fprintf(c, "%s /r%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", method, i, len(body), body)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: request %d: %v", l, i, err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(got) != want || res.Close {
				t.Fatalf("%s: request %d: %d %q (close %v), want 200 %q on a kept connection", l, i, res.StatusCode, got, res.Close, want)
			}
		}
	}
}

// A request waiting for its backend does not hold up the other connections
// of its loop: its wait yields to the loop. The slow backend answers only
// once the other connections have been served, so a loop held by the wait
// would never get there.
func TestEventLoopWaitsDoNotBlock(t *testing.T) {
	b := newTestBackend(t, "a")
	release := make(chan struct{})
	var once sync.Once
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-time.After(testTimeout):
			}
		}
		io.WriteString(w, r.URL.Path)
	})
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
`, backendsYAML(b)))
	handovers := evloop.Handovers()
	slow := make(chan resp, 1)
	go func() {
		slow <- e.get("/slow")
	}()
	eventually(t, "the slow request reaches the backend", func() bool { return b.hits.Load() >= 1 })
	// More connections than loops (one per P): some share the slow one's.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{}, Timeout: testTimeout}
			for j := range 5 {
				path := fmt.Sprintf("/fast-%d-%d", i, j)
				r, err := doRequest(c, "GET", e.url("web", path), "", nil, nil)
				if err != nil || r.status != 200 || r.body != path {
					t.Errorf("%s while a request waits for its backend: %v %d %q", path, err, r.status, r.body)
					return
				}
			}
		}()
	}
	wg.Wait()
	once.Do(func() { close(release) })
	if r := <-slow; r.status != 200 || r.body != "/slow" {
		t.Fatalf("slow request: %d %q", r.status, r.body)
	}
	// Served by the loop, not rescued by its watchdog.
	if n := evloop.Handovers() - handovers; n != 0 {
		t.Errorf("%d loop handovers: a wait held its loop", n)
	}
}
