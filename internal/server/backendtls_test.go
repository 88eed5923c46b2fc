package server

// Backend re-encryption and mTLS (pools[].backend_tls) over real loopback
// sockets: TLS backends built on testBackend, certificates made in the test
// (a root CA, an intermediate that issues backend certificates, a client
// CA, CRLs), and the access log's error field for refusals.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rampart-proxy/rampart/internal/testcerts"
)

// backendPKI is the internal PKI of the tests: backend certificates are
// issued by an intermediate under the root in ca.pem; client
// certificates (Rampart's, for mTLS) by a separate client CA.
type backendPKI struct {
	dir          string
	root, inter  *testcerts.CA
	clientCA     *testcerts.CA
	caFile       string // the root
	caInterFile  string // the root and the intermediate, for the intermediate's CRLs
	clientCAPool *x509.CertPool
}

func newBackendPKI(t testing.TB) *backendPKI {
	t.Helper()
	k := &backendPKI{dir: t.TempDir()}
	k.root = testcerts.NewCA(t, "internal root CA")
	k.inter = k.root.Intermediate(t, "internal backends CA")
	k.clientCA = testcerts.NewCA(t, "load balancer clients CA")
	k.caFile = testcerts.Write(t, k.dir, "ca.pem", k.root.PEM)
	k.caInterFile = testcerts.Write(t, k.dir, "ca-inter.pem", append(append([]byte{}, k.root.PEM...), k.inter.PEM...))
	k.clientCAPool = k.clientCA.Pool()
	return k
}

// leaf issues a backend certificate from the intermediate, as a chain
// (leaf then intermediate) the backend sends.
func (k *backendPKI) leaf(t testing.TB, dns ...string) tls.Certificate {
	t.Helper()
	return keyPair(t, k.inter, testcerts.Leaf{CN: dns[0], DNS: dns}, k.inter.PEM)
}

func keyPair(t testing.TB, ca *testcerts.CA, l testcerts.Leaf, chain []byte) tls.Certificate {
	t.Helper()
	c, key := ca.Issue(t, l)
	cert, err := tls.X509KeyPair(append(c, chain...), key)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// clientFiles writes Rampart's client certificate and key and returns
// their paths.
func (k *backendPKI) clientFiles(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	c, key := k.clientCA.Issue(t, testcerts.Leaf{CN: "rampart-lb", Client: true})
	return testcerts.Write(t, k.dir, "lb-client.pem", c), testcerts.Write(t, k.dir, "lb-client-key.pem", key)
}

// tlsBackend is a testBackend served over TLS. It counts handshakes
// (resumed ones too) and records the SNI and version of the last one and
// the client certificate's CN of the last request.
type tlsBackend struct {
	*testBackend
	handshakes atomic.Int64
	sni        atomic.Pointer[string]
	version    atomic.Uint32
	clientCN   atomic.Pointer[string]
}

// newTLSBackend starts a TLS backend with cert; adjust, when not nil,
// changes its tls.Config (versions, client authentication).
func newTLSBackend(t testing.TB, id string, cert tls.Certificate, adjust func(*tls.Config)) *tlsBackend {
	t.Helper()
	b := &tlsBackend{testBackend: &testBackend{id: id}}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			b.handshakes.Add(1)
			sni := hello.ServerName
			b.sni.Store(&sni)
			return nil, nil
		},
	}
	if adjust != nil {
		adjust(cfg)
	}
	inner := http.HandlerFunc(b.serve)
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.version.Store(uint32(r.TLS.Version))
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		b.clientCN.Store(&cn)
		inner(w, r)
	}))
	b.srv.TLS = cfg
	// Refused handshakes are the point of several tests: keep them out
	// of the test output.
	b.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *tlsBackend) lastSNI() string {
	if p := b.sni.Load(); p != nil {
		return *p
	}
	return ""
}

// tlsPool is a config with listener "web", pool "p" over bs with the
// given backend_tls block (YAML lines indented for a pool key), and an
// access log.
func tlsPool(backendTLS, extra string, bs ...*testBackend) string {
	return onePool("round_robin", "    backend_tls:\n"+backendTLS+extra, bs...) + "logging: {access_log: {path: access.log}}\n"
}

// tlsBlock renders a backend_tls block's keys.
func tlsBlock(kv ...string) string {
	var sb strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&sb, "      %s: %s\n", kv[i], kv[i+1])
	}
	return sb.String()
}

// lastLogLine waits for n access log lines and returns the last.
func lastLogLine(t *testing.T, e *testEnv, n int) map[string]any {
	t.Helper()
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), n)
	return lines[n-1]
}

const (
	sanPattern = `["*.api.internal.example.com"]`
	sniName    = "backend.internal.example.com"
)

// A verified backend is served over TLS, with the configured SNI, its
// chain checked against the root through the intermediate it sends, and
// its connections reused: one handshake for many requests on the direct
// client (bodiless ones, small bodies and streamed large ones alike);
// requests with Expect go through http.Transport's own pool (the backend,
// a net/http server that does not read the body, closes each of those).
func TestBackendTLSServedAndPooled(t *testing.T) {
	k := newBackendPKI(t)
	b := newTLSBackend(t, "a", k.leaf(t, "b1.api.internal.example.com"), nil)
	body := tlsPool(tlsBlock("ca_certificate", fmt.Sprintf("%q", k.caFile), "sni_hostname", sniName, "allowed_sans", sanPattern), "", b.testBackend)
	e := startEnv(t, body)

	for i := range 5 {
		r := e.get(fmt.Sprintf("/x%d", i))
		if r.status != http.StatusOK || r.body != "a" {
			t.Fatalf("GET %d: status %d body %q", i, r.status, r.body)
		}
	}
	if n := b.handshakes.Load(); n != 1 {
		t.Errorf("5 GETs took %d TLS handshakes on the backend, want 1 (pooled connection reused)", n)
	}
	if got := b.lastSNI(); got != sniName {
		t.Errorf("backend received SNI %q, want %q", got, sniName)
	}
	if v := b.version.Load(); v != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want TLS 1.3", v)
	}
	if l := lastLogLine(t, e, 5); l["error"] != "" || l["status_code"] != float64(200) || l["backend_id"] != "a" {
		t.Errorf("access log line %v", l)
	}
	for i := range 3 {
		r := e.do(http.MethodPost, e.url("web", "/post"), "", nil, strings.NewReader("body"))
		if r.status != http.StatusOK || r.body != "a" {
			t.Fatalf("small POST %d: status %d body %q", i, r.status, r.body)
		}
	}
	if n := b.handshakes.Load(); n != 1 {
		t.Errorf("after 3 small POSTs the backend saw %d handshakes, want 1 (the direct client's connection)", n)
	}
	large := strings.Repeat("b", 20<<10) // more than the direct path buffers: streamed
	for i := range 3 {
		r := e.do(http.MethodPost, e.url("web", "/post"), "", nil, strings.NewReader(large))
		if r.status != http.StatusOK || r.body != "a" {
			t.Fatalf("large POST %d: status %d body %q", i, r.status, r.body)
		}
	}
	if n := b.handshakes.Load(); n != 1 {
		t.Errorf("after 3 large POSTs the backend saw %d handshakes, want 1 (streamed on the direct client's connection)", n)
	}
	for i := range 3 {
		r := e.do(http.MethodPost, e.url("web", "/post"), "", http.Header{"Expect": {"100-continue"}}, strings.NewReader(large))
		if r.status != http.StatusOK || r.body != "a" {
			t.Fatalf("POST %d with Expect: status %d body %q", i, r.status, r.body)
		}
	}
	expectShakes := b.handshakes.Load()
	if expectShakes < 2 {
		t.Errorf("after 3 POSTs with Expect the backend saw %d handshakes, want more than the direct client's 1", expectShakes)
	}
	// A reload that changes nothing about backend TLS keeps the pooled
	// connections.
	if err := e.reload(body); err != nil {
		t.Fatal(err)
	}
	if r := e.get("/after-reload"); r.status != http.StatusOK {
		t.Fatalf("after reload: status %d", r.status)
	}
	if n := b.handshakes.Load(); n != expectShakes {
		t.Errorf("a reload without changes cost a handshake (%d, want %d)", n, expectShakes)
	}
	if got := b.hits.Load(); got != 15 {
		t.Errorf("backend served %d requests, want 15", got)
	}
}

// Backends Rampart must refuse: the client gets a generic 502, the
// backend never sees the request, and the access log says why.
func TestBackendTLSRefused(t *testing.T) {
	k := newBackendPKI(t)
	good := func(t *testing.T) tls.Certificate { return k.leaf(t, "b1.api.internal.example.com") }
	revokedCert := good(t)
	crlFile := testcerts.Write(t, k.dir, "internal.crl", k.inter.CRL(t, revokedCert.Leaf))
	// The root revokes the intermediate: every certificate it issued
	// goes with it.
	rootCRL := testcerts.Write(t, k.dir, "root.crl", k.root.CRL(t, k.inter.Cert))
	ca := fmt.Sprintf("%q", k.caFile)
	cases := []struct {
		name    string
		cert    func(t *testing.T) tls.Certificate
		adjust  func(*tls.Config)
		plain   bool // a backend without TLS
		block   string
		wantErr string
	}{
		{name: "SAN not in allowed_sans",
			cert:    func(t *testing.T) tls.Certificate { return k.leaf(t, "evil.other.example.com") },
			block:   tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern),
			wantErr: "backend_tls: certificate SAN not allowed"},
		{name: "wildcard allows one label only",
			cert:    func(t *testing.T) tls.Certificate { return k.leaf(t, "a.b.api.internal.example.com") },
			block:   tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern),
			wantErr: "backend_tls: certificate SAN not allowed"},
		{name: "revoked in crl_file",
			cert:    func(*testing.T) tls.Certificate { return revokedCert },
			block:   tlsBlock("ca_certificate", fmt.Sprintf("%q", k.caInterFile), "allowed_sans", sanPattern, "crl_file", fmt.Sprintf("%q", crlFile)),
			wantErr: "backend_tls: certificate revoked"},
		{name: "intermediate revoked by the root's CRL",
			cert:    good,
			block:   tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern, "crl_file", fmt.Sprintf("%q", rootCRL)),
			wantErr: "backend_tls: certificate revoked"},
		{name: "issued by another CA",
			cert: func(t *testing.T) tls.Certificate {
				other := testcerts.NewCA(t, "rogue CA")
				return keyPair(t, other, testcerts.Leaf{CN: "b1", DNS: []string{"b1.api.internal.example.com"}}, nil)
			},
			block:   tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern),
			wantErr: "backend_tls: certificate not issued by ca_certificate"},
		{name: "name does not match sni_hostname",
			cert:    good,
			block:   tlsBlock("ca_certificate", ca, "sni_hostname", sniName),
			wantErr: "backend_tls: certificate name mismatch"},
		{name: "name does not match the backend address",
			cert:    good,
			block:   tlsBlock("ca_certificate", ca),
			wantErr: "backend_tls: certificate name mismatch"},
		{name: "below min_version",
			cert:    good,
			adjust:  func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			block:   tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern, "min_version", "TLSv1.3"),
			wantErr: "backend_tls: refused by backend (protocol version not supported)"},
		{name: "mTLS backend without a client certificate",
			cert: good,
			adjust: func(c *tls.Config) {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = k.clientCAPool
			},
			block:   tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern),
			wantErr: "backend_tls: refused by backend (certificate required)"},
		{name: "plaintext backend",
			plain:   true,
			block:   tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern),
			wantErr: "backend_tls: backend does not speak TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b *testBackend
			if tc.plain {
				b = newTestBackend(t, "a")
			} else {
				b = newTLSBackend(t, "a", tc.cert(t), tc.adjust).testBackend
			}
			e := startEnv(t, tlsPool(tc.block, "", b))
			assertGeneric(t, e.get("/x"), http.StatusBadGateway, b)
			l := lastLogLine(t, e, 1)
			if l["error"] != tc.wantErr || l["status_code"] != float64(502) || l["backend_id"] != "a" {
				t.Errorf("access log: error %q status %v backend %v, want %q 502 a", l["error"], l["status_code"], l["backend_id"], tc.wantErr)
			}
			// A request with a body goes through http.Transport: same
			// refusal, same reason.
			assertGeneric(t, e.do(http.MethodPost, e.url("web", "/p"), "", nil, strings.NewReader("x")), http.StatusBadGateway, b)
			if l := lastLogLine(t, e, 2); l["error"] != tc.wantErr {
				t.Errorf("POST: access log error %q, want %q", l["error"], tc.wantErr)
			}
			if n := b.hits.Load(); n != 0 {
				t.Errorf("refused backend served %d requests", n)
			}
		})
	}
}

// A backend that requires a client certificate from the client CA is
// served when Rampart presents one (mTLS).
func TestBackendTLSMutual(t *testing.T) {
	k := newBackendPKI(t)
	b := newTLSBackend(t, "a", k.leaf(t, "b1.api.internal.example.com"), func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = k.clientCAPool
	})
	cf, kf := k.clientFiles(t)
	e := startEnv(t, tlsPool(tlsBlock("ca_certificate", fmt.Sprintf("%q", k.caFile), "allowed_sans", sanPattern,
		"client_certificate", fmt.Sprintf("%q", cf), "client_key", fmt.Sprintf("%q", kf)), "", b.testBackend))
	for range 2 {
		if r := e.get("/x"); r.status != http.StatusOK || r.body != "a" {
			t.Fatalf("status %d body %q", r.status, r.body)
		}
	}
	if p := b.clientCN.Load(); p == nil || *p != "rampart-lb" {
		t.Errorf("backend saw client certificate CN %v, want rampart-lb", p)
	}
	if n := b.handshakes.Load(); n != 1 {
		t.Errorf("%d handshakes for 2 requests, want 1", n)
	}
}

// min_version: TLSv1.3 is used when the backend offers it; the default
// (TLSv1.2) still reaches a TLS 1.2-only backend.
func TestBackendTLSMinVersion(t *testing.T) {
	k := newBackendPKI(t)
	ca := fmt.Sprintf("%q", k.caFile)
	b13 := newTLSBackend(t, "a", k.leaf(t, "b1.api.internal.example.com"), nil)
	e := startEnv(t, tlsPool(tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern, "min_version", "TLSv1.3"), "", b13.testBackend))
	if r := e.get("/x"); r.status != http.StatusOK || b13.version.Load() != tls.VersionTLS13 {
		t.Fatalf("TLSv1.3 backend: status %d version %x", r.status, b13.version.Load())
	}
	b12 := newTLSBackend(t, "a", k.leaf(t, "b1.api.internal.example.com"), func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	e = startEnv(t, tlsPool(tlsBlock("ca_certificate", ca, "allowed_sans", sanPattern), "", b12.testBackend))
	if r := e.get("/x"); r.status != http.StatusOK || b12.version.Load() != tls.VersionTLS12 {
		t.Fatalf("TLSv1.2 backend, default min_version: status %d version %x", r.status, b12.version.Load())
	}
}

// A reload re-reads crl_file: a backend revoked after Rampart connected
// to it is refused from the next request, even though a verified
// connection to it was pooled; un-revoking it serves it again.
func TestBackendTLSReloadAppliesNewCRL(t *testing.T) {
	k := newBackendPKI(t)
	cert := k.leaf(t, "b1.api.internal.example.com")
	b := newTLSBackend(t, "a", cert, nil)
	crl := testcerts.Write(t, k.dir, "internal.crl", k.inter.CRL(t))
	body := tlsPool(tlsBlock("ca_certificate", fmt.Sprintf("%q", k.caInterFile), "allowed_sans", sanPattern, "crl_file", fmt.Sprintf("%q", crl)), "", b.testBackend)
	e := startEnv(t, body)
	if r := e.get("/x"); r.status != http.StatusOK {
		t.Fatalf("before revocation: status %d", r.status)
	}

	testcerts.Write(t, k.dir, "internal.crl", k.inter.CRL(t, cert.Leaf))
	if err := e.reload(body); err != nil {
		t.Fatal(err)
	}
	assertGeneric(t, e.get("/x"), http.StatusBadGateway, b.testBackend)
	if l := lastLogLine(t, e, 2); l["error"] != "backend_tls: certificate revoked" {
		t.Errorf("access log error %q", l["error"])
	}

	// A CRL that does not parse is refused by the reload, which keeps
	// the running config (and so the revocation).
	testcerts.Write(t, k.dir, "internal.crl", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	if err := e.reload(body); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("reload with a broken CRL: %v", err)
	}
	assertGeneric(t, e.get("/x"), http.StatusBadGateway, b.testBackend)

	testcerts.Write(t, k.dir, "internal.crl", k.inter.CRL(t))
	if err := e.reload(body); err != nil {
		t.Fatal(err)
	}
	if r := e.get("/x"); r.status != http.StatusOK {
		t.Fatalf("after un-revoking: status %d", r.status)
	}
	if hits := b.hits.Load(); hits != 2 {
		t.Errorf("backend served %d requests, want 2", hits)
	}
}

// Health checks use the pool's backend TLS: a backend whose certificate
// requests would refuse is marked unhealthy (and never gets a probe
// through), while a good one is probed over TLS and stays healthy.
func TestBackendTLSHealthCheck(t *testing.T) {
	k := newBackendPKI(t)
	good := newTLSBackend(t, "good", k.leaf(t, "b1.api.internal.example.com"), nil)
	bad := newTLSBackend(t, "bad", k.leaf(t, "evil.other.example.com"), nil)
	hc := "    health_check: {path: /healthz, interval: 1s, timeout: 900ms, healthy_threshold: 1, unhealthy_threshold: 1}\n"
	e := startEnv(t, tlsPool(tlsBlock("ca_certificate", fmt.Sprintf("%q", k.caFile), "allowed_sans", sanPattern), hc, good.testBackend, bad.testBackend))
	eventually(t, "bad-certificate backend marked unhealthy", func() bool { return !e.backend("p", "bad").Healthy() })
	eventually(t, "good backend probed over TLS", func() bool { return good.probes.Load() > 0 })
	if !e.backend("p", "good").Healthy() {
		t.Error("good backend unhealthy")
	}
	if n := bad.probes.Load(); n != 0 {
		t.Errorf("bad backend answered %d probes: the probe did not check its certificate", n)
	}
	if good.handshakes.Load() == 0 {
		t.Error("good backend saw no TLS handshake")
	}
	// Requests now only go to the healthy backend.
	if got := e.countHits(4, "/x", nil); got["good"] != 4 {
		t.Errorf("hits %v, want all on good", got)
	}
}

// An upgrade (WebSocket) to a TLS backend goes through http.Transport's
// TLS dial and carries bytes both ways.
func TestBackendTLSWebSocket(t *testing.T) {
	k := newBackendPKI(t)
	b := newTLSBackend(t, "a", k.leaf(t, "b1.api.internal.example.com"), nil)
	b.setHandler(wsEcho)
	e := startEnv(t, tlsPool(tlsBlock("ca_certificate", fmt.Sprintf("%q", k.caFile), "allowed_sans", sanPattern), "", b.testBackend))
	conn, br, res := wsDial(t, e.srv.Addr("web"))
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	io.WriteString(conn, "over tls")
	got := make([]byte, 8)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "over tls" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if n := b.handshakes.Load(); n != 1 {
		t.Errorf("%d handshakes, want 1", n)
	}
}

// A backend that accepts the connection but never answers the handshake
// is given up after connect_timeout, with a reason in the log.
func TestBackendTLSHandshakeTimeout(t *testing.T) {
	k := newBackendPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // never read from nor written to
		}
	}()
	defer func() {
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	}()
	silent := &testBackend{id: "a", srv: &httptest.Server{Listener: ln}}
	e := startEnv(t, tlsPool(tlsBlock("ca_certificate", fmt.Sprintf("%q", k.caFile)), "    connect_timeout: 300ms\n", silent))
	assertGeneric(t, e.get("/x"), http.StatusBadGateway)
	if l := lastLogLine(t, e, 1); l["error"] != "backend_tls: handshake timed out" {
		t.Errorf("access log error %q", l["error"])
	}
}
