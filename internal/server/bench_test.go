package server

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rampart-proxy/rampart/internal/config"
)

// benchRoutes is a routing table of a realistic size: a few exact hosts,
// wildcards and catch-alls with several prefixes each.
func benchRoutes() []config.Route {
	var rs []config.Route
	for i := range 8 {
		rs = append(rs,
			rt(fmt.Sprintf("exact-%d", i), fmt.Sprintf("svc%d.example.com", i), fmt.Sprintf("/v%d/", i)),
			rt(fmt.Sprintf("any-%d", i), "", fmt.Sprintf("/p%d", i)),
		)
	}
	rs = append(rs,
		rt("api-v1", "api.example.com", "/v1"),
		rt("api", "api.example.com", "/"),
		rt("wild", "*.example.com", "/assets"),
		rt("wild-root", "*.example.com", "/"),
		rt("any-root", "", "/"),
	)
	return rs
}

// BenchmarkRouterMatch measures stage 6 alone; it must not allocate.
func BenchmarkRouterMatch(b *testing.B) {
	r := testRouter(b, benchRoutes())
	cases := []struct{ name, host, path string }{
		{"exact", "api.example.com:8443", "/v1/users/42"},
		{"wildcard", "www.example.com", "/assets/app.js"},
		{"any-host", "unknown.test", "/p3/x"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r.match(c.host, c.path) == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}

// BenchmarkPipeline measures the per-request cost of Rampart's handler
// chain (entry: record, client IP, request id; router; proxy handler;
// balancing; pooled keep-alive connection to a real loopback backend).
//
//   - handler: the listener's entry handler called in-process, so only
//     Rampart's chain and the backend round trip are measured;
//   - loopback: a keep-alive client through Rampart's listener socket;
//   - direct: the same client straight to the backend, the baseline that
//     the loopback numbers are to be compared with.
func BenchmarkPipeline(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	}))
	b.Cleanup(backend.Close)
	e := startEnv(b, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    backends: [{id: a, address: %q}]
`, backend.Listener.Addr().String()))

	b.Run("handler", func(b *testing.B) {
		var l *listener
		e.srv.mu.Lock()
		for _, x := range e.srv.listeners {
			l = x
		}
		e.srv.mu.Unlock()
		h := &entry{srv: e.srv, l: l}
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodGet, "http://bench.test/x", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})

	roundTrips := func(b *testing.B, url string) {
		client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}
		defer client.CloseIdleConnections()
		b.ReportAllocs()
		for b.Loop() {
			res, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	}
	b.Run("loopback", func(b *testing.B) { roundTrips(b, e.url("web", "/x")) })
	b.Run("direct", func(b *testing.B) { roundTrips(b, backend.URL+"/x") })
}
