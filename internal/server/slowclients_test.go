package server

// Behavioural slow-client detection end to end, security headers on the
// engine's refusals, h2c in the per-IP connection count, and
// apply_sysctls against a temporary /proc/sys.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/config"
	"golang.org/x/net/http2"
)

// A client trickling several slowloris connections from 127.0.0.3 gets a
// score (in the record, the access log and the metrics), is reported as a
// slow_client offender and then blocked at accept, while 127.0.0.2 keeps
// getting 200s throughout.
func TestSlowClientScoredReportedBlocked(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, hardeningConfig(b, `
  slowloris_protection: {header_timeout_seconds: 1, slow_client_score_threshold: 2, max_new_connections_per_ip_per_second: 1000}
  dynamic_blocklist:
    auto_block:
      slow_clients: {count: 2, window: 10m, duration: 1h}
`, ""))
	// The well-behaved client on 127.0.0.2, until the end of the test.
	var ok, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 2000 {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			c, br := rawConn(t, e, "127.0.0.2")
			io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if res, err := http.ReadResponse(br, nil); err == nil && res.StatusCode == 200 {
				ok.Add(1)
			} else {
				bad.Add(1)
			}
			c.Close()
		}
	}()

	// Four slowloris connections from 127.0.0.3: each starts a head and
	// trickles header bytes, never finishing it.
	const slow = 4
	var swg sync.WaitGroup
	statuses := make(chan int, slow)
	for range slow {
		swg.Add(1)
		go func() {
			defer swg.Done()
			c, br := rawConn(t, e, "127.0.0.3")
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
			done := make(chan struct{})
			go func() {
				for range 50 {
					select {
					case <-done:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := io.WriteString(c, "a"); err != nil {
						return
					}
				}
			}()
			res, err := http.ReadResponse(br, nil)
			close(done)
			if err == nil {
				statuses <- res.StatusCode
			} else {
				statuses <- 0
			}
		}()
	}
	swg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusRequestTimeout {
			t.Errorf("slowloris connection answered %d, want 408", s)
		}
	}
	slowIP := netip.MustParseAddr("127.0.0.3")
	if sc := e.srv.slow.score(slowIP, time.Now()); sc < 3 {
		t.Errorf("127.0.0.3 scored %v after %d slow connections", sc, slow)
	}
	// Reported, then blocked: the next connection is closed at accept.
	eventually(t, "127.0.0.3 on the dynamic blocklist", func() bool {
		return e.srv.acl.Check(slowIP).Action == acl.ActionDeny
	})
	c, br := rawConn(t, e, "127.0.0.3")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("127.0.0.3 served after the block")
	}
	entries := e.srv.acl.Dynamic().List(acl.Blocklist, acl.Filter{}).Entries
	if len(entries) != 1 || entries[0].Source != "auto:"+acl.OffenceSlowClient || entries[0].Prefix.String() != "127.0.0.3/32" {
		t.Fatalf("dynamic blocklist %+v", entries)
	}
	if e.srv.slow.score(netip.MustParseAddr("127.0.0.2"), time.Now()) != 0 {
		t.Error("the well-behaved client has a score")
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if bad.Load() != 0 || ok.Load() < 5 {
		t.Errorf("127.0.0.2: %d answered 200, %d failed", ok.Load(), bad.Load())
	}

	// Metrics: indicators by kind, clients over the threshold.
	m := e.scrape("/metrics")
	if v, _ := metricValue(m, `rampart_slow_client_indicators_total{indicator="header_timeout"}`); v != strconv.Itoa(slow) {
		t.Errorf("header_timeout indicators %q, want %d", v, slow)
	}
	if v, _ := metricValue(m, `rampart_slow_clients_over_threshold`); v != "1" {
		t.Errorf("clients over threshold %q, want 1", v)
	}
	// Access log: the 408 records of 127.0.0.3 carry its score, the 200s of
	// 127.0.0.2 a zero.
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), slow+5)
	var maxSlow float64
	for _, l := range lines {
		sc, has := l["slow_client_score"].(float64)
		if !has {
			t.Fatalf("no slow_client_score in %v", l)
		}
		switch l["client_ip"] {
		case "127.0.0.3":
			maxSlow = max(maxSlow, sc)
		case "127.0.0.2":
			if sc != 0 {
				t.Fatalf("127.0.0.2 logged with score %v", sc)
			}
		}
	}
	if maxSlow < 2 {
		t.Errorf("127.0.0.3's records: highest slow_client_score %v", maxSlow)
	}
}

// Threshold 0 turns scoring off: indicators are counted, nobody is scored.
func TestSlowClientDetectionOff(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, hardeningConfig(b, `
  slowloris_protection: {header_timeout_seconds: 1, slow_client_score_threshold: 0}
`, ""))
	c, br := rawConn(t, e, "127.0.0.3")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 408 {
		t.Fatalf("%v %v", res, err)
	}
	eventually(t, "indicator counted", func() bool {
		v, _ := metricValue(e.scrape("/metrics"), `rampart_slow_client_indicators_total{indicator="header_timeout"}`)
		return v == "1"
	})
	if sc := e.srv.slow.score(netip.MustParseAddr("127.0.0.3"), time.Now()); sc != 0 {
		t.Fatalf("scored %v with detection off", sc)
	}
}

// Scores decay by half-life and memory is bounded by max tracked IPs.
func TestSlowClientScoreDecayAndBound(t *testing.T) {
	cfg := &config.Config{}
	cfg.Security.SlowlorisProtection = config.SlowlorisProtection{SlowClientScoreThreshold: 3, SlowClientHalfLifeSeconds: 10, SlowClientMaxTrackedIPs: 100}
	sc := newSlowClients(cfg)
	now := time.Unix(1000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	for i, want := range []bool{false, false, true, true} {
		if _, over := sc.add(a, now); over != want {
			t.Fatalf("indicator %d: over %v", i+1, over)
		}
	}
	if s := sc.score(a, now.Add(10*time.Second)); s != 2 {
		t.Fatalf("after one half-life: %v, want 2", s)
	}
	if n := sc.overThreshold(now); n != 1 {
		t.Fatalf("over threshold: %d", n)
	}
	if n := sc.overThreshold(now.Add(10 * time.Second)); n != 0 {
		t.Fatalf("over threshold after decay: %d", n)
	}
	// IPv6 by /64.
	sc.add(netip.MustParseAddr("2001:db8::1"), now)
	if s := sc.score(netip.MustParseAddr("2001:db8::ffff"), now); s != 1 {
		t.Fatalf("same /64: %v", s)
	}
	for i := range 1000 {
		sc.add(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
	}
	if n := sc.size.Load(); n != 100 {
		t.Fatalf("%d clients tracked, bound 100", n)
	}
}

// The engine's own refusals (here 414, 431 and 400) carry security.headers
// and no Server header.
func TestRefusalsCarrySecurityHeaders(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, hardeningConfig(b, `
  request_limits: {max_request_line_bytes: 256, max_headers: 10}
  headers: {add: {X-Frame-Options: SAMEORIGIN, Content-Security-Policy: "default-src 'none'", X-Content-Type-Options: nosniff}}
`, ""))
	for _, raw := range []string{
		"GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 11) + "\r\n",
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
	} {
		res := rawExchange(t, e, raw)
		if res.StatusCode < 400 || res.Header.Get("X-Frame-Options") != "SAMEORIGIN" ||
			res.Header.Get("Content-Security-Policy") != "default-src 'none'" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%d: headers %v", res.StatusCode, res.Header)
		}
		if _, has := res.Header["Server"]; has {
			t.Errorf("%d: Server header", res.StatusCode)
		}
	}
}

// An h2c connection stays in the per-IP count after its hand-off to the
// HTTP/2 server, and leaves it when it closes.
func TestH2CConnectionCountedPerIP(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", h2c: true}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
security:
  slowloris_protection: {max_connections_per_ip: 1, max_new_connections_per_ip_per_second: 100}
`, backendsYAML(b)))
	h := dialRawH2(t, e.srv.Addr("web"))
	if err := h.headers(1, "/"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "h2c answer", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.responses == 1 })
	lo := netip.MustParseAddr("127.0.0.1")
	if n := e.srv.conns.open(lo); n != 1 {
		t.Fatalf("open h2c connection counted %d", n)
	}
	// The limit holds against a second connection while it is open.
	c, br := rawConn(t, e, "127.0.0.1")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("second connection served beside an open h2c one with max_connections_per_ip 1")
	}
	h.c.Close()
	eventually(t, "h2c connection released", func() bool { return e.srv.conns.open(lo) == 0 })
	c2, br2 := rawConn(t, e, "127.0.0.1")
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(br2, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("after the h2c close: %v %v", res, err)
	}
}

// fakeProcSys makes a /proc/sys with the three SYN-flood settings.
func fakeProcSys(t *testing.T, cookies, backlog, somaxconn int) string {
	root := t.TempDir()
	for p, v := range map[string]int{"net/ipv4/tcp_syncookies": cookies, "net/ipv4/tcp_max_syn_backlog": backlog, "net/core/somaxconn": somaxconn} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(strconv.Itoa(v)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func synConfig(extra string) string {
	return `
listeners: [{name: web, listen: "127.0.0.1:0"}]
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools: [{name: p, backends: [{id: a, address: "127.0.0.1:1"}]}]
security:
  syn_flood_protection: {max_syn_backlog: 8192, ` + extra + `}
`
}

func TestApplySysctls(t *testing.T) {
	// Permitted: the settings are written, nothing is lowered.
	e := newEnv(t, synConfig("apply_sysctls: true"))
	e.srv.procSys = fakeProcSys(t, 0, 1024, 16384)
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	if p := ReadSYNPosture(e.srv.procSys); p != (SYNPosture{SynCookies: 1, MaxSynBacklog: 8192, Somaxconn: 16384}) {
		t.Fatalf("after apply: %+v", p)
	}
	// Without apply_sysctls nothing is written.
	e2 := newEnv(t, synConfig("apply_sysctls: false"))
	e2.srv.procSys = fakeProcSys(t, 0, 1024, 1024)
	if err := e2.srv.Start(); err != nil {
		t.Fatal(err)
	}
	if p := ReadSYNPosture(e2.srv.procSys); p != (SYNPosture{0, 1024, 1024}) {
		t.Fatalf("written without apply_sysctls: %+v", p)
	}
	// Not permitted (here: the settings do not exist to be written):
	// warn and start, or refuse with on_mismatch: refuse.
	e3 := newEnv(t, synConfig("apply_sysctls: true"))
	e3.srv.procSys = t.TempDir()
	if err := e3.srv.Start(); err != nil {
		t.Fatalf("warn: %v", err)
	}
	e4 := newEnv(t, synConfig("apply_sysctls: true, on_mismatch: refuse"))
	e4.srv.procSys = t.TempDir()
	err := e4.srv.Start()
	if err == nil || !strings.Contains(err.Error(), "rampart.yaml:9: apply_sysctls is true but not permitted to write kernel settings: net.ipv4.tcp_syncookies") {
		t.Fatalf("refuse: %v", err)
	}
}

func TestPlanSysctls(t *testing.T) {
	f := &config.SynFloodProtection{MaxSynBacklog: 4096}
	plan := SYNPosture{SynCookies: 1, MaxSynBacklog: 8192, Somaxconn: 128}.PlanSysctls(f)
	if len(plan) != 1 || plan[0].Key != "net.core.somaxconn" || plan[0].From != 128 || plan[0].To != 4096 {
		t.Fatalf("plan %+v", plan)
	}
	off := false
	f.SynCookies = &off
	if plan := (SYNPosture{0, 4096, 4096}).PlanSysctls(f); len(plan) != 0 {
		t.Fatalf("syn_cookies false: plan %+v", plan)
	}
	f.Enabled = &off
	if plan := (SYNPosture{0, 1, 1}).PlanSysctls(f); plan != nil {
		t.Fatalf("disabled: plan %+v", plan)
	}
}

// Slow read through the proxy: a raw socket reading a large answer below
// min_data_rate_bytes_per_second is cut off (the rate window is 5 s) and
// counted as slow_read, though no single write waits the write timeout.
func TestSlowReadThroughProxy(t *testing.T) {
	b := newTestBackend(t, "a")
	const size = 32 << 20
	b.setHandler(bigAnswer(size))
	e := startEnv(t, hardeningConfig(b, `
  slowloris_protection: {min_data_rate_bytes_per_second: 50000, write_timeout_seconds: 60}
`, ""))
	c, _ := rawConn(t, e, "127.0.0.3")
	c.(*net.TCPConn).SetReadBuffer(4096)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// About 10 KB/s, a fifth of the minimum.
	buf := make([]byte, 512)
	var got int
	var err error
	for range 400 { // at most 20 s
		time.Sleep(50 * time.Millisecond)
		var n int
		n, err = c.Read(buf)
		got += n
		if err != nil {
			break
		}
	}
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("slow reader still connected after reading %d bytes (%v)", got, err)
	}
	if got >= size {
		t.Fatalf("slow reader got the whole answer")
	}
	eventually(t, "slow_read counted", func() bool {
		v, _ := metricValue(e.scrape("/metrics"), `rampart_slow_client_indicators_total{indicator="slow_read"}`)
		return v == "1"
	})
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_slow_client_indicators_total{indicator="write_timeout"}`); v != "0" {
		t.Errorf("write_timeout indicators %q", v)
	}
	// The log says the answer was cut, not that it succeeded.
	if l := lastLogLine(t, e, 1); l["path"] != "/big" || l["error"] != "slow_read" || l["response_size_bytes"].(float64) >= size {
		t.Errorf("access log of the cut answer: %v %v %v bytes, want /big slow_read and less than the whole", l["path"], l["error"], l["response_size_bytes"])
	}
}

// Slow read over HTTP/2 through the proxy: a client that opens its
// stream's flow-control window a little at a time, so that each write of
// the answer finishes within the write timeout but the answer moves at
// half min_data_rate_bytes_per_second, gets the stream reset after about
// the 5 s rate window, counted and logged as slow_read as on HTTP/1.
func TestSlowReadHTTP2ThroughProxy(t *testing.T) {
	b := newTestBackend(t, "a")
	const size = 32 << 20
	b.setHandler(bigAnswer(size))
	e := h2cEnv(t, b, `
logging: {access_log: {path: access.log}}
security:
  slowloris_protection: {min_data_rate_bytes_per_second: 40000, write_timeout_seconds: 4}
`)
	h := dialRawH2(t, e.srv.Addr("web"))
	const credit = 1000 // bytes of window every 50 ms: about 20 KB/s
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: credit}); err != nil {
		t.Fatal(err)
	}
	if err := h.headers(1, "/big"); err != nil {
		t.Fatal(err)
	}
	resetCode := func() (http2.ErrCode, bool) {
		h.mu.Lock()
		defer h.mu.Unlock()
		code, ok := h.resets[1]
		return code, ok
	}
	start := time.Now()
	var reset bool
	for range 300 { // at most 15 s
		if _, reset = resetCode(); reset || h.closed() {
			break
		}
		time.Sleep(50 * time.Millisecond)
		if h.fr.WriteWindowUpdate(1, credit) != nil || h.fr.WriteWindowUpdate(0, credit) != nil {
			break
		}
	}
	if !reset {
		t.Fatalf("slow HTTP/2 reader's stream not reset after %v (connection closed: %v)", time.Since(start), h.closed())
	}
	if d := time.Since(start); d > 12*time.Second {
		t.Errorf("stream reset after %v, want about the 5 s rate window", d)
	}
	eventually(t, "slow_read counted", func() bool {
		v, _ := metricValue(e.scrape("/metrics"), `rampart_slow_client_indicators_total{indicator="slow_read"}`)
		return v == "1"
	})
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_slow_client_indicators_total{indicator="write_timeout"}`); v != "0" {
		t.Errorf("write_timeout indicators %q", v)
	}
	if l := lastLogLine(t, e, 1); l["path"] != "/big" || l["protocol"] != "HTTP/2.0" || l["error"] != "slow_read" || l["response_size_bytes"].(float64) >= size {
		t.Errorf("access log of the cut answer: %v %v %v %v bytes, want HTTP/2.0 /big slow_read and less than the whole",
			l["protocol"], l["path"], l["error"], l["response_size_bytes"])
	}
}

// BenchmarkSlowClientScore is what every request pays for its record's
// slow_client_score: nothing while no client is scored, a locked LRU peek
// while some are.
func BenchmarkSlowClientScore(b *testing.B) {
	cfg := &config.Config{}
	cfg.Security.SlowlorisProtection = config.SlowlorisProtection{SlowClientScoreThreshold: 5, SlowClientHalfLifeSeconds: 600, SlowClientMaxTrackedIPs: 100000}
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	b.Run("none_scored", func(b *testing.B) {
		sc := newSlowClients(cfg)
		b.ReportAllocs()
		for range b.N {
			sc.score(ip, now)
		}
	})
	b.Run("10000_scored", func(b *testing.B) {
		sc := newSlowClients(cfg)
		for i := range 10000 {
			sc.add(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
		}
		b.ReportAllocs()
		for range b.N {
			sc.score(ip, now)
		}
	})
}

// security.http2.max_resets_per_second: a client resetting faster gets
// GOAWAY ENHANCE_YOUR_CALM and is counted; other clients keep getting 200s.
func TestHTTP2MaxResetsPerSecond(t *testing.T) {
	b := newTestBackend(t, "a")
	e := h2cEnv(t, b, `
security:
  http2: {max_resets_per_second: 10}
`)
	p := startProber(t, e.url("web", "/ok"))
	time.Sleep(50 * time.Millisecond)
	h := dialRawH2(t, e.srv.Addr("web"))
	h.resetFlood(t, e)
	p.check(t)
}

// bigAnswer is a handler that answers size bytes.
func bigAnswer(size int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		buf := make([]byte, 64<<10)
		for left := size; left > 0; left -= len(buf) {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}
}
