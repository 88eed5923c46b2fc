package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// scrape returns the admin listener's /metrics text.
func (e *testEnv) scrape(path string) string {
	e.t.Helper()
	res, err := e.client.Get("http://" + e.srv.AdminAddr() + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	return string(b)
}

// metricValue finds the sample line "name{labels} value" and returns value.
func metricValue(text, series string) (string, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v, true
		}
	}
	return "", false
}

func TestMetricsEndpoint(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	bs[1].healthFail.Store(true)
	e := startEnv(t, fmt.Sprintf(`
listeners: [{name: web, listen: "127.0.0.1:0"}]
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools:
  - name: p
    backends: %s
    health_check: {path: /healthz, interval: 50ms, timeout: 40ms, healthy_threshold: 1, unhealthy_threshold: 1}
`, backendsYAML(bs...)))
	eventually(t, "backend b marked down", func() bool { return !e.backend("p", "b").Healthy() })
	for range 3 {
		if r := e.get("/x"); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	bs[0].status.Store(500)
	if r := e.get("/x"); r.status != 500 {
		t.Fatalf("status %d, want the backend's 500", r.status)
	}
	// A request the engine refuses: two Host headers.
	c, err := net.Dial("tcp", e.srv.Addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	raw, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(raw), "HTTP/1.1 400 ") {
		t.Fatalf("two Host headers answered %q", raw)
	}

	// Requests are counted when their handler returns, which can be just
	// after the client has read the answer.
	var text string
	eventually(t, "the 500 and the refusal counted", func() bool {
		text = e.scrape("/metrics")
		_, a := metricValue(text, `rampart_requests_total{code="500",listener="web",pool="p"}`)
		_, b := metricValue(text, `rampart_blocked_total{reason="several Host headers",stage="http"}`)
		return a && b
	})
	want := map[string]string{
		`rampart_requests_total{code="200",listener="web",pool="p"}`:        "3",
		`rampart_requests_total{code="500",listener="web",pool="p"}`:        "1",
		`rampart_request_duration_seconds_count{listener="web",pool="p"}`:   "4",
		`rampart_upstream_duration_seconds_count{backend="a",pool="p"}`:     "4",
		`rampart_blocked_total{reason="several Host headers",stage="http"}`: "1",
		`rampart_backend_up{backend="a",pool="p"}`:                          "1",
		`rampart_backend_up{backend="b",pool="p"}`:                          "0",
		`rampart_backend_state{backend="a",pool="p",state="active"}`:        "1",
		`rampart_connections_active{listener="web"}`:                        "",
		`rampart_access_log_dropped_lines_total`:                            "0",
		`rampart_config_reloads_total`:                                      "0",
		`process_resident_memory_bytes`:                                     "",
		`go_goroutines`:                                                     "",
	}
	for series, v := range want {
		got, ok := metricValue(text, series)
		if !ok {
			t.Errorf("no sample %s", series)
			continue
		}
		if v != "" && got != v {
			t.Errorf("%s = %s, want %s", series, got, v)
		}
	}
	// No client addresses or paths as labels.
	if strings.Contains(text, "127.0.0.1") || strings.Contains(text, `"/x"`) {
		t.Error("a client address or a path became a label")
	}
	// The same text under the API prefix.
	if !strings.Contains(e.scrape("/api/v1/metrics"), "rampart_requests_total") {
		t.Error("/api/v1/metrics does not serve the metrics")
	}
}

// A scrape on the admin API is a plain GET; anything else is refused.
func TestMetricsOnlyGET(t *testing.T) {
	e := startEnv(t, `
listeners: [{name: web, listen: "127.0.0.1:0"}]
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools: [{name: p, backends: [{id: a, address: "127.0.0.1:9"}]}]
`)
	res, err := e.client.Post("http://"+e.srv.AdminAddr()+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed && res.StatusCode != http.StatusNotFound {
		t.Errorf("POST /metrics: %d", res.StatusCode)
	}
}

// Requests the HTTP engine refuses (malformed, oversized) are answered
// requests too: rampart_requests_total counts them, under pool "none",
// as the access log logs them.
func TestRefusedRequestsCounted(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, onePool("round_robin", "", b))
	for range 2 {
		c, err := net.Dial("tcp", e.srv.Addr("web"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("malformed request: %v %v, want 400", resp, err)
		}
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_requests_total{code="400",listener="web",pool="none"}`); v != "2" {
		t.Fatalf("rampart_requests_total for 2 refused requests = %q, want 2", v)
	}
}
