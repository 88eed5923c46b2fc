package server

// https listeners end to end (issue 3): certificates are generated in the
// test, clients are Go's own over real loopback sockets, and what is
// checked is what the client, the backend, the access log and the metrics
// see.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
	"github.com/rampart-proxy/rampart/internal/testcerts"
)

// tlsSetup is a CA and certificate files for api.example.com and
// *.example.com, in a directory of their own.
type tlsSetup struct {
	ca  *testcerts.CA
	dir string
}

func newTLSSetup(t *testing.T) *tlsSetup {
	t.Helper()
	s := &tlsSetup{ca: testcerts.NewCA(t, "rampart test CA"), dir: t.TempDir()}
	s.issue(t, "api", "api.example.com")
	s.issue(t, "www", "*.example.com")
	return s
}

// issue writes NAME.pem and NAME-key.pem for the names.
func (s *tlsSetup) issue(t *testing.T, name string, dns ...string) {
	t.Helper()
	c, k := s.ca.Issue(t, testcerts.Leaf{CN: name, DNS: dns})
	testcerts.Write(t, s.dir, name+".pem", c)
	testcerts.Write(t, s.dir, name+"-key.pem", k)
}

func (s *tlsSetup) cert(name string) string { return filepath.Join(s.dir, name+".pem") }
func (s *tlsSetup) key(name string) string  { return filepath.Join(s.dir, name+"-key.pem") }

// config is an https listener "web" with SNI routing (api.example.com →
// certificate api and pool api; *.example.com → certificate www, pools by
// route; others refused) and HSTS, a route for www.example.com and one
// for api.example.com/v2, and an access log.
func (s *tlsSetup) config(api, web *testBackend, extra string) string {
	return fmt.Sprintf(`
listeners:
  - name: web
    listen: "127.0.0.1:0"
    protocol: https
    tls:
      certificates:
        - {name: api, cert_file: %q, key_file: %q}
        - {name: www, cert_file: %q, key_file: %q}
      hsts: {enabled: true, include_subdomains: true}
    sni_routing:
      - {sni: api.example.com, certificate: api, pool: api}
      - {sni: "*.example.com", certificate: www}
      - default: {action: reject}
routes:
  - {name: www, match: {host: www.example.com, path_prefix: /}, pool: web}
  - {name: api-v2, match: {host: api.example.com, path_prefix: /v2}, pool: web}
pools:
  - {name: api, backends: %s}
  - {name: web, backends: %s}
logging:
  access_log: {path: access.log}
%s`, s.cert("api"), s.key("api"), s.cert("www"), s.key("www"), backendsYAML(api), backendsYAML(web), extra)
}

// clientConfig trusts the test CA; the server name comes from the URL.
func (s *tlsSetup) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: s.ca.Pool()}
}

// httpsClient sends every request to addr, whatever the URL's host (which
// still gives the SNI and the Host): h2 negotiates HTTP/2 by ALPN.
func httpsClient(addr string, cfg *tls.Config, h2 bool) (*http.Client, *http.Transport) {
	tr := &http.Transport{
		TLSClientConfig:   cfg,
		ForceAttemptHTTP2: h2,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: testTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, tr
}

func httpsGet(t *testing.T, c *http.Client, url, host string) (resp, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %q): %v", url, host, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, body: string(b), header: res.Header}, res
}

var (
	ja3Re = regexp.MustCompile(`^[0-9a-f]{32}$`)
	ja4Re = regexp.MustCompile(`^t13d[0-9]{4}(h2|h1|00)_[0-9a-f]{12}_[0-9a-f]{12}$`)
)

// HTTPS over HTTP/1.1 and over h2 (ALPN, without h2c) is proxied to the
// backend over HTTP/1.1 with X-Forwarded-Proto https; the answer carries
// HSTS; the access log has the TLS facts; fingerprints are the same on a
// second connection of the same client, and a resumed connection says so.
func TestTLSProxied(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, ""))
	addr := e.srv.Addr("web")

	for i, h2 := range []bool{false, false, true} {
		c, tr := httpsClient(addr, s.clientConfig(), h2)
		r, res := httpsGet(t, c, "https://api.example.com/x", "")
		tr.CloseIdleConnections()
		wantProto := map[bool]int{false: 1, true: 2}[h2]
		if r.status != 200 || r.body != "api" || res.ProtoMajor != wantProto {
			t.Fatalf("request %d: %d %q over %s", i, r.status, r.body, res.Proto)
		}
		if got := r.header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
			t.Errorf("request %d: Strict-Transport-Security %q", i, got)
		}
		if got := api.header().Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("request %d: backend saw X-Forwarded-Proto %q", i, got)
		}
		if res.TLS == nil || res.TLS.PeerCertificates[0].Subject.CommonName != "api" {
			t.Errorf("request %d: certificate %v", i, res.TLS)
		}
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 3)
	for i, l := range lines {
		if l["ssl_protocol"] != "TLSv1.3" || !strings.HasPrefix(l["ssl_cipher"].(string), "TLS_") || l["sni"] != "api.example.com" ||
			l["tls_resumed"] != false || !ja3Re.MatchString(l["ja3"].(string)) || !ja4Re.MatchString(l["ja4"].(string)) {
			t.Errorf("line %d: ssl_protocol %v ssl_cipher %v sni %v tls_resumed %v ja3 %v ja4 %v",
				i, l["ssl_protocol"], l["ssl_cipher"], l["sni"], l["tls_resumed"], l["ja3"], l["ja4"])
		}
	}
	// A line is written after its answer went out, so the next request
	// may be logged first: the lines are told apart by protocol.
	var h1, h2 []map[string]any
	for _, l := range lines[:3] {
		if l["protocol"] == "HTTP/2.0" {
			h2 = append(h2, l)
		} else {
			h1 = append(h1, l)
		}
	}
	if len(h1) != 2 || len(h2) != 1 {
		t.Fatalf("protocols of the three lines: %d HTTP/1.1 and %d HTTP/2.0, want 2 and 1", len(h1), len(h2))
	}
	if h1[0]["ja3"] != h1[1]["ja3"] || h1[0]["ja4"] != h1[1]["ja4"] {
		t.Errorf("the same client twice: ja3 %v / %v, ja4 %v / %v", h1[0]["ja3"], h1[1]["ja3"], h1[0]["ja4"], h1[1]["ja4"])
	}
	if h1[0]["protocol"] != "HTTP/1.1" || h1[0]["ja4"] == h2[0]["ja4"] {
		t.Errorf("protocols %v %v, ja4 of the h1 and h2 clients %v %v", h1[0]["protocol"], h2[0]["protocol"], h1[0]["ja4"], h2[0]["ja4"])
	}

	// Session resumption: a second connection with the ticket of the first.
	cfg := s.clientConfig()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	c, tr := httpsClient(addr, cfg, false)
	for i := range 2 {
		r, res := httpsGet(t, c, "https://api.example.com/r", "")
		tr.CloseIdleConnections()
		if r.status != 200 || res.TLS.DidResume != (i == 1) {
			t.Fatalf("connection %d: %d, resumed %v", i, r.status, res.TLS.DidResume)
		}
	}
	lines = accessLogLines(t, filepath.Join(e.dir, "access.log"), 5)
	// One full handshake and one resumed, in either order (see above).
	full, resumed := lines[3], lines[4]
	if full["tls_resumed"] == true {
		full, resumed = resumed, full
	}
	if full["tls_resumed"] != false || resumed["tls_resumed"] != true || resumed["ja4"] == "" {
		t.Errorf("tls_resumed %v and %v (ja4 of the resumed %v), want one of each", full["tls_resumed"], resumed["tls_resumed"], resumed["ja4"])
	}
}

// handshakeErr dials addr with cfg and returns the handshake's error.
func handshakeErr(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", addr, cfg)
	if err == nil {
		c.Close()
	}
	return err
}

// Refused handshakes: a TLS 1.1 client, an unknown server name (default
// reject), plain HTTP. None reaches a backend; each is counted by reason.
func TestTLSRefusedHandshakes(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, ""))
	addr := e.srv.Addr("web")

	old := s.clientConfig()
	old.ServerName = "api.example.com"
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := handshakeErr(addr, old); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
	unknown := s.clientConfig()
	unknown.ServerName = "api.other.test"
	unknown.InsecureSkipVerify = true // refused by Rampart, not by the client
	if err := handshakeErr(addr, unknown); err == nil {
		t.Fatal("an unknown server name was served (default: reject)")
	}
	noSNI := s.clientConfig()
	noSNI.InsecureSkipVerify = true
	if err := handshakeErr(addr, noSNI); err == nil {
		t.Fatal("a client without SNI was served (default: reject)")
	}
	plain := e.do(http.MethodGet, "http://"+addr+"/", "api.example.com", nil, nil)
	if plain.status != http.StatusBadRequest || !strings.Contains(plain.body, "HTTPS") {
		t.Errorf("plain HTTP to the https port: %d %q", plain.status, plain.body)
	}
	// The server reports a failure after the client has seen it: wait.
	for reason, want := range map[string]string{"version": "1", "unknown_sni": "2", "other": "1"} {
		series := `rampart_blocked_total{reason="` + reason + `",stage="tls"}`
		eventually(t, series+" = "+want, func() bool {
			v, _ := metricValue(e.scrape("/metrics"), series)
			return v == want
		})
	}
	if api.hits.Load()+web.hits.Load() != 0 {
		t.Fatal("a refused handshake reached a backend")
	}
}

// Domain fronting: SNI api.example.com with Host www.example.com is
// answered 421 (generic, with HSTS), never proxied, counted and logged.
// The SNI entry's pool serves what no route matches, a matching route
// still wins, and a name whose entry has no pool and no route gets 404
// (with HSTS).
func TestTLSSNIRouting(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, ""))
	c, _ := httpsClient(e.srv.Addr("web"), s.clientConfig(), false)

	r, _ := httpsGet(t, c, "https://api.example.com/", "www.example.com")
	assertGeneric(t, r, http.StatusMisdirectedRequest, api, web)
	if r.header.Get("Strict-Transport-Security") == "" {
		t.Error("421 without Strict-Transport-Security")
	}
	if api.hits.Load()+web.hits.Load() != 0 {
		t.Fatal("a misdirected request reached a backend")
	}
	// The same Host with its port, and upper case, is not fronting.
	if r, _ := httpsGet(t, c, "https://api.example.com/", "API.example.com:443"); r.status != 200 || r.body != "api" {
		t.Errorf("Host with port and upper case: %d %q", r.status, r.body)
	}
	if r, _ := httpsGet(t, c, "https://api.example.com/v2/items", ""); r.status != 200 || r.body != "web" {
		t.Errorf("route api-v2 should win over the SNI pool: %d %q", r.status, r.body)
	}
	if r, _ := httpsGet(t, c, "https://www.example.com/", ""); r.status != 200 || r.body != "web" {
		t.Errorf("www.example.com: %d %q", r.status, r.body)
	}
	r, _ = httpsGet(t, c, "https://shop.example.com/", "")
	assertGeneric(t, r, http.StatusNotFound)
	if r.header.Get("Strict-Transport-Security") == "" {
		t.Error("404 without Strict-Transport-Security")
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 5)
	if l := lines[0]; l["status_code"] != float64(421) || l["error"] != "misdirected" || l["sni"] != "api.example.com" || l["host"] != "www.example.com" {
		t.Errorf("421 line: %v", l)
	}
	if l := lines[1]; l["route"] != "sni:api" || l["pool_id"] != "api" {
		t.Errorf("SNI pool line: route %v pool %v", l["route"], l["pool_id"])
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="sni_host_mismatch",stage="tls"}`); v != "1" {
		t.Errorf("sni_host_mismatch counted %q", v)
	}
}

// The engine's own refusals (a malformed request) carry HSTS too.
func TestTLSHSTSOnEngineRefusal(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, ""))
	cfg := s.clientConfig()
	cfg.ServerName = "api.example.com"
	c, err := tls.Dial("tcp", e.srv.Addr("web"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.example.com\r\nBad Header: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 400") || !strings.Contains(string(b), "Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n") {
		t.Fatalf("engine refusal over TLS:\n%s", b)
	}
}

// An http listener with redirect_to_https answers 308 to the https
// listener's port with path and query; ACME challenge paths are left to
// the ACME handler (404 without one).
func TestTLSRedirectToHTTPS(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	httpsAddr := freeAddr(t)
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	cfg := strings.Replace(s.config(api, web, ""), `listen: "127.0.0.1:0"`, `listen: "`+httpsAddr+`"`, 1)
	cfg = strings.Replace(cfg, "listeners:\n", "listeners:\n  - {name: plain, listen: \"127.0.0.1:0\", redirect_to_https: true}\n", 1)
	e := startEnv(t, cfg)
	noFollow := &http.Client{Timeout: testTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := doRequest(noFollow, http.MethodGet, e.url("plain", "/a/b%20c?x=1&y=2"), "www.example.com:8080", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "https://www.example.com:" + httpsPort + "/a/b%20c?x=1&y=2"
	if r.status != http.StatusPermanentRedirect || r.header.Get("Location") != want || r.header.Get("Strict-Transport-Security") != "" {
		t.Fatalf("redirect: %d Location %q (want %q) STS %q", r.status, r.header.Get("Location"), want, r.header.Get("Strict-Transport-Security"))
	}
	r, _ = doRequest(noFollow, http.MethodGet, e.url("plain", "/.well-known/acme-challenge/tok"), "www.example.com", nil, nil)
	assertGeneric(t, r, http.StatusNotFound)
	e.srv.SetACMEHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "key-authorization-for-"+strings.TrimPrefix(r.URL.Path, acmeChallengePrefix))
	}))
	r, _ = doRequest(noFollow, http.MethodGet, e.url("plain", "/.well-known/acme-challenge/tok"), "www.example.com", nil, nil)
	if r.status != 200 || r.body != "key-authorization-for-tok" {
		t.Fatalf("ACME challenge: %d %q", r.status, r.body)
	}
	if api.hits.Load()+web.hits.Load() != 0 {
		t.Fatal("the redirecting listener proxied a request")
	}
	// The port is left out for 443.
	rt := &redirectTarget{listener: "web", port: ""}
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest(http.MethodGet, "http://x/p", nil)
	req.Host = "www.example.com"
	(&entry{srv: e.srv}).redirectToHTTPS(rec, req, &pipeline.Record{}, rt)
	if got := rec.Header().Get("Location"); got != "https://www.example.com/p" {
		t.Errorf("Location for 443: %q", got)
	}
	// OPTIONS * (asterisk form) goes to the server's root, not "host*".
	rec = httptest.NewRecorder()
	req, _ = http.NewRequest(http.MethodOptions, "http://x/", nil)
	req.URL = &url.URL{Path: "*"} // as the engine parses it
	req.Host = "www.example.com"
	(&entry{srv: e.srv}).redirectToHTTPS(rec, req, &pipeline.Record{}, rt)
	if got := rec.Header().Get("Location"); got != "https://www.example.com/" {
		t.Errorf("Location for OPTIONS *: %q", got)
	}
}

// countingConn counts the bytes a client reads.
type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// A blocklisted client is closed at accept: its ClientHello gets no
// answer at all (no ServerHello, not even an alert).
func TestTLSBlockedBeforeHandshake(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, "security:\n  ip_lists: {blocklist: [127.0.0.2/32]}\n"))
	d := &net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	raw, err := d.Dial("tcp", e.srv.Addr("web"))
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2 here: %v", err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(testTimeout))
	cc := &countingConn{Conn: raw}
	cfg := s.clientConfig()
	cfg.ServerName = "api.example.com"
	err = tls.Client(cc, cfg).Handshake()
	if err == nil || cc.read.Load() != 0 {
		t.Fatalf("blocklisted client: handshake error %v after reading %d bytes; want no byte from the server", err, cc.read.Load())
	}
	var ae tls.AlertError
	if errors.As(err, &ae) {
		t.Fatalf("blocklisted client got a TLS alert %v", ae)
	}
	if v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="static:blocklist",stage="acl_accept"}`); v != "1" {
		t.Errorf("acl_accept counted %q", v)
	}
	// Others are served.
	c, _ := httpsClient(e.srv.Addr("web"), s.clientConfig(), false)
	if r, _ := httpsGet(t, c, "https://api.example.com/", ""); r.status != 200 {
		t.Fatalf("allowed client: %d", r.status)
	}
}

// served returns the certificate a new connection for name gets.
func served(t *testing.T, addr string, s *tlsSetup, name string) *x509.Certificate {
	t.Helper()
	cfg := s.clientConfig()
	cfg.ServerName = name
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// A reload that points a certificate at another file serves it on new
// connections at once; one whose file does not load is refused, with the
// problem in the answer, and the running certificate stays.
func TestTLSReloadCertificate(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, ""))
	addr := e.srv.Addr("web")
	if cn := served(t, addr, s, "api.example.com").Subject.CommonName; cn != "api" {
		t.Fatalf("before reload: %s", cn)
	}
	s.issue(t, "api2", "api.example.com")
	next := strings.Replace(s.config(api, web, ""), s.cert("api"), s.cert("api2"), 1)
	next = strings.Replace(next, s.key("api"), s.key("api2"), 1)
	if err := e.reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if cn := served(t, addr, s, "api.example.com").Subject.CommonName; cn != "api2" {
		t.Fatalf("after reload: %s, want api2", cn)
	}
	if e.srv.Addr("web") != addr {
		t.Fatal("the listener was rebound")
	}
	bad := strings.Replace(next, s.cert("api2"), filepath.Join(s.dir, "missing.pem"), 1)
	err := e.reload(bad)
	if err == nil || !strings.Contains(err.Error(), "missing.pem") || !strings.Contains(err.Error(), "rampart.yaml:") {
		t.Fatalf("reload with a missing certificate: %v", err)
	}
	if cn := served(t, addr, s, "api.example.com").Subject.CommonName; cn != "api2" {
		t.Fatalf("after a refused reload: %s, want api2", cn)
	}
	// A file that validated but is gone when the Terminator reads it
	// (replaced in between): the reload is refused at the listener's
	// line, and every listener keeps its certificates.
	s.issue(t, "api3", "api.example.com")
	gone := strings.Replace(next, s.cert("api2"), s.cert("api3"), 1)
	gone = strings.Replace(gone, s.key("api2"), s.key("api3"), 1)
	e.write(gone)
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(s.cert("api3"))
	err = e.srv.apply(cfg)
	if err == nil || !strings.Contains(err.Error(), `listener "web": tls:`) || !strings.Contains(err.Error(), "rampart.yaml:") {
		t.Fatalf("apply with a vanished certificate: %v", err)
	}
	if cn := served(t, addr, s, "api.example.com").Subject.CommonName; cn != "api2" {
		t.Fatalf("after a refused apply: %s, want api2", cn)
	}
	// A new https listener is built on reload; removing it closes it.
	extraAddr := freeAddr(t)
	withExtra := strings.Replace(next, "listeners:\n", fmt.Sprintf(`listeners:
  - name: extra
    listen: %q
    protocol: https
    tls: {certificates: [{name: www, cert_file: %q, key_file: %q}]}
`, extraAddr, s.cert("www"), s.key("www")), 1)
	if err := e.reload(withExtra); err != nil {
		t.Fatalf("reload adding a listener: %v", err)
	}
	if cn := served(t, extraAddr, s, "shop.example.com").Subject.CommonName; cn != "www" {
		t.Fatalf("new listener: %s", cn)
	}
	if err := e.reload(next); err != nil {
		t.Fatal(err)
	}
	eventually(t, "removed listener closed", func() bool {
		c, err := net.DialTimeout("tcp", extraAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// A protocol change on a running address waits for a restart: the
// listener keeps serving what it served.
func TestTLSProtocolChangeNeedsRestart(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	addr := freeAddr(t)
	e := startEnv(t, strings.Replace(onePool("round_robin", "", api), `"127.0.0.1:0"`, strconv.Quote(addr), 1))
	cfg := strings.Replace(s.config(api, web, ""), `listen: "127.0.0.1:0"`, "listen: "+strconv.Quote(addr), 1)
	if err := e.reload(cfg); err != nil {
		t.Fatal(err)
	}
	if st := e.srv.Status(); st.Listeners[0].Protocol != "http" {
		t.Fatalf("status: %+v", st.Listeners)
	}
	if r := e.do(http.MethodGet, "http://"+addr+"/", "www.example.com", nil, nil); r.status != 200 {
		t.Fatalf("still http: %d", r.status)
	}
}

// Rapid reset over TLS: security.http2.max_resets_per_second holds for
// h2 negotiated by ALPN.
func TestTLSHTTP2MaxResetsPerSecond(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, "security:\n  http2: {max_resets_per_second: 10}\n"))
	cfg := s.clientConfig()
	cfg.ServerName, cfg.NextProtos = "api.example.com", []string{"h2"}
	c, err := tls.Dial("tcp", e.srv.Addr("web"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := newRawH2(t, c, "api.example.com")
	h.resetFlood(t, e)
	// Another client on h2 is served.
	cl, _ := httpsClient(e.srv.Addr("web"), s.clientConfig(), true)
	if r, res := httpsGet(t, cl, "https://api.example.com/", ""); r.status != 200 || res.ProtoMajor != 2 {
		t.Fatalf("polite h2 client: %d %s", r.status, res.Proto)
	}
}

// GET /api/v1/certificates lists every https listener's certificates, and
// the expiry metric has a series per certificate.
func TestTLSCertificatesAPIAndMetric(t *testing.T) {
	s := newTLSSetup(t)
	api, web := newTestBackend(t, "api"), newTestBackend(t, "web")
	e := startEnv(t, s.config(api, web, ""))
	res, err := e.client.Get("http://" + e.srv.AdminAddr() + "/api/v1/certificates")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		Certificates []struct {
			Listener, Name, Source, File, Issuer string
			SANs                                 []string
			NotAfter                             time.Time `json:"not_after"`
			DaysLeft                             int       `json:"days_left"`
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != 200 {
		t.Fatalf("%d %v", res.StatusCode, err)
	}
	if len(got.Certificates) != 2 {
		t.Fatalf("certificates: %+v", got.Certificates)
	}
	a, w := got.Certificates[0], got.Certificates[1]
	if a.Listener != "web" || a.Name != "api" || a.Source != "file" || a.File != s.cert("api") || len(a.SANs) != 1 || a.SANs[0] != "api.example.com" ||
		!strings.Contains(a.Issuer, "rampart test CA") || a.NotAfter.Before(time.Now()) || a.DaysLeft != 0 {
		t.Errorf("api certificate: %+v", a)
	}
	if w.Name != "www" || w.SANs[0] != "*.example.com" {
		t.Errorf("www certificate: %+v", w)
	}
	m := e.scrape("/metrics")
	for _, name := range []string{"api", "www"} {
		v, ok := metricValue(m, `rampart_certificate_expiry_seconds{certificate="`+name+`",listener="web"}`)
		secs, _ := strconv.ParseFloat(v, 64)
		if !ok || secs <= 0 || secs > 24*3600 {
			t.Errorf("expiry of %s: %q", name, v)
		}
	}
	// The status shows the listener as https.
	if st := e.srv.Status(); st.Listeners[0].Protocol != "https" {
		t.Errorf("status: %+v", st.Listeners)
	}
}
