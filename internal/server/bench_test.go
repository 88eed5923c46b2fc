package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// BenchmarkProxyRaw measures Rampart alone on the path bench/run.sh loads:
// keep-alive GETs from an allocation-free raw client through the listener
// to an allocation-free raw backend (bench/backend's answer: 64-byte body),
// so allocs/op and the profile are Rampart's own (engine, pipeline, proxy).
// Run it with -cpuprofile, or under callgrind with a fixed -benchtime=Nx
// for repeatable instruction counts:
//
//	go test -run '^$' -bench ProxyRaw -benchmem -count 5 ./internal/server/
func BenchmarkProxyRaw(b *testing.B) {
	benchProxyRaw(b, "", []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"))
}

// BenchmarkProxyRawWAF is BenchmarkProxyRaw with the WAF on (BLOCK, PL1)
// and bench/run.sh's browser request (REQUEST=browser): the whole cost of
// an inspected request in one process, to profile with -cpuprofile.
func BenchmarkProxyRawWAF(b *testing.B) {
	benchProxyRaw(b, "  waf: {enabled: true, mode: BLOCK, paranoia_level: 1, rule_sets: [owasp_crs_v4]}\n",
		[]byte("GET /products/view?id=1234&color=blue&size=42 HTTP/1.1\r\nHost: shop.example\r\n"+
			"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"+
			"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"+
			"Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"+
			"Referer: https://shop.example/products?category=shoes\r\n"+
			"Cookie: session=4f3c2a1b9d8e7f60; theme=dark; consent=yes\r\n\r\n"))
}

// BenchmarkProxyRawNewConn is BenchmarkProxyRaw with a connection per
// request (Connection: close), as a client without keep-alive makes them:
// what accepting, serving and closing a connection costs. Keep b.N under
// ~20,000 per run (-benchtime=Nx): every connection leaves a TIME_WAIT.
func BenchmarkProxyRawNewConn(b *testing.B) {
	addr := rawProxy(b, "")
	req := []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: wrk\r\nConnection: close\r\n\r\n")
	body := make([]byte, 256)
	br := bufio.NewReaderSize(nil, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		br.Reset(c)
		if err := rawRoundTrip(c, br, req, body); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// benchProxyRaw runs keep-alive round trips of req through a listener in
// front of the raw backend; security is appended under security:.
func benchProxyRaw(b *testing.B, security string, req []byte) {
	c, err := net.Dial("tcp", rawProxy(b, security))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	body := make([]byte, 256)
	for range 10 { // warm up: pooled backend connection, buffers
		if err := rawRoundTrip(c, br, req, body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := rawRoundTrip(c, br, req, body); err != nil {
			b.Fatal(err)
		}
	}
}

// rawProxy starts Rampart in front of the raw backend and returns its
// listener's address; security is appended under security:.
func rawProxy(b *testing.B, security string) string {
	backend := startRawBackend(b)
	e := startEnv(b, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - name: p
    backends: [{id: a, address: %q}]
security:
  slowloris_protection: {max_new_connections_per_ip_per_second: 0}
%s`, backend, security))
	return e.srv.Addr("web")
}

// BenchmarkProxyRawBaseline is BenchmarkProxyRaw's client talking to its
// backend directly: the rig's own cost, to subtract from BenchmarkProxyRaw.
func BenchmarkProxyRawBaseline(b *testing.B) {
	c, err := net.Dial("tcp", startRawBackend(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	req := []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
	body := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		if err := rawRoundTrip(c, br, req, body); err != nil {
			b.Fatal(err)
		}
	}
}

// rawBackendResponse is bench/backend's answer.
var rawBackendResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\nX-Backend: b1\r\n\r\n" +
	"rampart bench backend: 64-byte fixed body for the load test ok.\n")

// startRawBackend serves rawBackendResponse to every request head on
// keep-alive connections, without allocating per request, and returns its
// address.
func startRawBackend(b *testing.B) string {
	return serveRaw(b, func(c net.Conn) error {
		_, err := c.Write(rawBackendResponse)
		return err
	})
}

// rawRoundTrip writes req and reads one Content-Length-framed 200 answer.
func rawRoundTrip(c net.Conn, br *bufio.Reader, req, body []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	n := -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return errors.New("unexpected status line " + string(line))
			}
			continue
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return err
			}
		}
	}
	if n < 0 || n > len(body) {
		return errors.New("unexpected framing")
	}
	_, err := io.ReadFull(br, body[:n])
	return err
}

// A proxied keep-alive GET allocates nothing in the steady state: on one
// core, allocation is paid for in the tail (each collection ends with a
// sweep that holds the core; docs/decisions/0001-http-engine.md). The
// request ids' shared slab is the one allocation left, once per many
// requests. (A streamed body's sender once took every request's
// directRequest to the heap, GETs included.)
func TestProxyRawAllocatesNothing(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts: not under the race detector (see race_on_test.go), nor with -short")
	}
	res := testing.Benchmark(func(b *testing.B) {
		benchProxyRaw(b, "", []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"))
	})
	if res.N == 0 {
		t.Fatal("the benchmark did not run")
	}
	if a := res.AllocsPerOp(); a != 0 {
		t.Fatalf("%d allocations per proxied GET (%d B), want 0", a, res.AllocedBytesPerOp())
	}
}
