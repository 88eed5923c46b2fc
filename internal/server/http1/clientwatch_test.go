package http1

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// OnClientGone is told, once, about a request whose client closed its
// connection while the handler ran, and never about one whose client is
// still there, however long its handler takes.
func TestOnClientGone(t *testing.T) {
	const interval = 20 * time.Millisecond
	var gone atomic.Int32
	release := make(chan struct{})
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(testTimeout):
		}
		w.Write([]byte("late"))
	}), func(s *Server) {
		s.OnClientGone = func(context.Context) { gone.Add(1) }
		s.ClientWatchInterval = interval
	})

	stays := ts.dial(t)
	stays.write("GET /stays HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(15 * interval) // looked at several times
	if n := gone.Load(); n != 0 {
		t.Fatalf("OnClientGone called %d times for a client that is still there", n)
	}

	leaves := ts.dial(t)
	leaves.write("GET /leaves HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, "both requests in the handler", func() bool { return ts.calls.Load() == 2 })
	leaves.c.Close()
	waitFor(t, "OnClientGone", func() bool { return gone.Load() == 1 })
	time.Sleep(10 * interval)
	if n := gone.Load(); n != 1 {
		t.Fatalf("OnClientGone called %d times for one request, want once", n)
	}
	close(release)
	if _, body := stays.expectStatus(http.MethodGet, 200); body != "late" {
		t.Fatalf("the client that stayed got %q", body)
	}
}
