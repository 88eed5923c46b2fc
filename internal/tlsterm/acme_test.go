package tlsterm

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/rampart-proxy/rampart/internal/acmetest"
	"github.com/rampart-proxy/rampart/internal/config"
)

// acmeLogs captures the provider's JSON log records.
type acmeLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *acmeLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *acmeLogs) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the records whose msg is msg.
func (l *acmeLogs) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func (l *acmeLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// acmeConfig is a config with one https listener whose certificate
// "cert-www" has the acme block blk.
func acmeConfig(dataDir string, blk config.ACME) *config.Config {
	return &config.Config{DataDir: dataDir, Listeners: []config.Listener{{
		Name: "public", Listen: "127.0.0.1:0", Protocol: "https",
		TLS: &config.ListenerTLS{Certificates: []config.Certificate{{Name: "cert-www", ACME: &blk}}},
	}}}
}

// acmeRig is a pebble CA and the listeners it validates against: an
// https server whose GetCertificate is the current provider's, and,
// with http01, an http server behind its HTTPHandler.
type acmeRig struct {
	t        testing.TB
	pebble   *acmetest.Pebble
	provider atomic.Pointer[ACME]
	tlsAddr  string
	logs     *acmeLogs
}

func newACMERig(t testing.TB, http01, startCA bool) *acmeRig {
	t.Helper()
	r := &acmeRig{t: t, logs: &acmeLogs{}}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.tlsAddr = tlsLn.Addr().String()
	httpPort := acmetest.FreePort(t) // nothing listens there unless http01
	var httpLn net.Listener
	if http01 {
		if httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		httpPort = httpLn.Addr().(*net.TCPAddr).Port
	}
	tlsPort := tlsLn.Addr().(*net.TCPAddr).Port
	if startCA {
		r.pebble = acmetest.Start(t, httpPort, tlsPort)
	} else {
		r.pebble = acmetest.New(t, httpPort, tlsPort)
	}

	app := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { io.WriteString(w, "app "+req.URL.Path) })
	tlsSrv := &http.Server{Handler: app, ErrorLog: discardLog(), TLSConfig: &tls.Config{
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if p := r.provider.Load(); p != nil {
				return p.GetCertificate(h)
			}
			return nil, errors.New("no provider")
		},
		NextProtos: []string{"http/1.1", acme.ALPNProto},
	}}
	go tlsSrv.Serve(tls.NewListener(tlsLn, tlsSrv.TLSConfig))
	t.Cleanup(func() { tlsSrv.Close() })
	if http01 {
		httpSrv := &http.Server{ErrorLog: discardLog(), Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if p := r.provider.Load(); p != nil {
				p.HTTPHandler(app).ServeHTTP(w, req)
				return
			}
			http.NotFound(w, req)
		})}
		go httpSrv.Serve(httpLn)
		t.Cleanup(func() { httpSrv.Close() })
	}
	t.Cleanup(func() {
		if p := r.provider.Load(); p != nil {
			p.Close()
		}
		if t.Failed() || os.Getenv("RAMPART_ACME_TEST_LOG") != "" {
			t.Logf("provider log:\n%s", r.logs)
		}
	})
	return r
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

func (r *acmeRig) block(domains []string, challenges ...string) config.ACME {
	return config.ACME{Domains: domains, Email: "ops@rampart.test", DirectoryURL: r.pebble.DirectoryURL,
		CACertificate: r.pebble.CAFile, Challenges: challenges}
}

func (r *acmeRig) start(cfg *config.Config, opts ACMEOptions) *ACME {
	r.t.Helper()
	opts.Log = r.logs.logger()
	a, err := NewACME(cfg, opts)
	if err != nil || a == nil {
		r.t.Fatalf("NewACME: %v, %v", a, err)
	}
	if old := r.provider.Swap(a); old != nil {
		old.Close()
	}
	a.Start()
	return a
}

// handshake connects to the https listener for name and returns the
// leaf it was served after verifying it against roots for name.
func (r *acmeRig) handshake(name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", r.tlsAddr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitFor polls cond every 50ms for at most 30s (loopback, bounded).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitServed waits until name's handshake verifies against roots and
// (when not "") the serial differs from notSerial; it returns the leaf.
func (r *acmeRig) waitServed(name string, roots *x509.CertPool, notSerial string) *x509.Certificate {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaf, err := r.handshake(name, roots)
		if err == nil && acmeSerial(leaf) != notSerial {
			return leaf
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s not served by a new certificate from pebble: last handshake: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestACMENoBlockNoProvider(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir(), Listeners: []config.Listener{{Name: "public", Protocol: "https",
		TLS: &config.ListenerTLS{Certificates: []config.Certificate{{Name: "c", CertFile: "c.pem", KeyFile: "k.pem"}}}}}}
	a, err := NewACME(cfg, ACMEOptions{})
	if a != nil || err != nil {
		t.Fatalf("NewACME without acme blocks = %v, %v; want nil, nil", a, err)
	}
}

func TestACMEConfigErrors(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, []byte("not a certificate"), 0o600)
	ok := config.ACME{Domains: []string{"www.rampart.test"}, DirectoryURL: "https://127.0.0.1:1/dir"}
	for _, tc := range []struct {
		name string
		mod  func(*config.ACME)
		want string
	}{
		{"no domains", func(b *config.ACME) { b.Domains = nil }, "no domains"},
		{"wildcard", func(b *config.ACME) { b.Domains = []string{"*.rampart.test"} }, "dns-01"},
		{"ip", func(b *config.ACME) { b.Domains = []string{"127.0.0.1"} }, "IP address"},
		{"bad name", func(b *config.ACME) { b.Domains = []string{"www_x.rampart.test"} }, "not a valid DNS name"},
		{"challenge", func(b *config.ACME) { b.Challenges = []string{"dns-01"} }, `challenge "dns-01" is not supported`},
		{"http directory", func(b *config.ACME) { b.DirectoryURL = "http://127.0.0.1:1/dir" }, "not an https URL"},
		{"missing ca", func(b *config.ACME) { b.CACertificate = "/nonexistent/ca.pem" }, "ca_certificate"},
		{"bad ca", func(b *config.ACME) { b.CACertificate = caFile }, "no PEM certificate"},
		{"negative renew", func(b *config.ACME) { b.RenewBefore = config.Duration(-time.Hour) }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blk := ok
			tc.mod(&blk)
			_, err := NewACME(acmeConfig(t.TempDir(), blk), ACMEOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `certificate "cert-www"`) {
				t.Fatalf("err = %v, want it to name the certificate and say %q", err, tc.want)
			}
		})
	}
	t.Run("domain in two certificates", func(t *testing.T) {
		cfg := acmeConfig(t.TempDir(), ok)
		other := ok
		other.Domains = []string{"www.rampart.test", "api.rampart.test"}
		cfg.Listeners[0].TLS.Certificates = append(cfg.Listeners[0].TLS.Certificates, config.Certificate{Name: "cert-2", ACME: &other})
		if _, err := NewACME(cfg, ACMEOptions{}); err == nil || !strings.Contains(err.Error(), `domain "www.rampart.test" is also in`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("same block on two listeners", func(t *testing.T) {
		cfg := acmeConfig(t.TempDir(), ok)
		cfg.Listeners = append(cfg.Listeners, cfg.Listeners[0])
		cfg.Listeners[1].Name = "second"
		a, err := NewACME(cfg, ACMEOptions{})
		if err != nil || len(a.certs) != 1 {
			t.Fatalf("NewACME = %v, %v; want one certificate for both listeners", a, err)
		}
		a.Close()
	})
}

func TestACMEHTTPHandler(t *testing.T) {
	a, err := NewACME(acmeConfig(t.TempDir(), config.ACME{Domains: []string{"www.rampart.test"}, DirectoryURL: "https://127.0.0.1:1/dir"}), ACMEOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.chal.putHTTP("tok-1", "tok-1.thumbprint")
	h := a.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "next "+r.URL.Path) }))
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/.well-known/acme-challenge/tok-1", 200, "tok-1.thumbprint"},
		{"GET", "/.well-known/acme-challenge/other", 404, "no such challenge\n"},
		{"POST", "/.well-known/acme-challenge/tok-1", 405, "method not allowed\n"},
		{"GET", "/index.html", 200, "next /index.html"},
		{"GET", "/.well-known/other", 200, "next /.well-known/other"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, "http://www.rampart.test"+tc.path, nil))
		if rec.Code != tc.code || rec.Body.String() != tc.body {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
	if !IsACMEChallenge(&tls.ClientHelloInfo{SupportedProtos: []string{acme.ALPNProto}}) ||
		IsACMEChallenge(&tls.ClientHelloInfo{SupportedProtos: []string{"h2", acme.ALPNProto}}) ||
		IsACMEChallenge(&tls.ClientHelloInfo{}) {
		t.Error("IsACMEChallenge: only a hello offering acme-tls/1 alone is a challenge")
	}
	// No challenge pending: a CA's acme-tls/1 hello gets no certificate.
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "www.rampart.test", SupportedProtos: []string{acme.ALPNProto}}); err == nil {
		t.Error("acme-tls/1 hello without a pending challenge got a certificate")
	}
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.rampart.test"}); err == nil {
		t.Error("a name outside the config got a certificate")
	}
}

// TestACMETLSALPN01 obtains a certificate by TLS-ALPN-01 only, checks
// what is served and stored, then serves it again from data_dir with the
// CA stopped.
func TestACMETLSALPN01(t *testing.T) {
	r := newACMERig(t, false, true)
	const name = "www.rampart.test"
	dataDir := t.TempDir()
	cfg := acmeConfig(dataDir, r.block([]string{name}, "tls-alpn-01"))
	a := r.start(cfg, ACMEOptions{})
	roots := r.pebble.Roots()
	leaf := r.waitServed(name, roots, "")
	if !slices.Equal(leaf.DNSNames, []string{name}) {
		t.Errorf("SANs = %v", leaf.DNSNames)
	}

	got := r.logs.records("acme certificate obtained")
	if len(got) != 1 || got[0]["serial"] != acmeSerial(leaf) || !slices.Equal(anyStrings(got[0]["challenges"]), []string{"tls-alpn-01"}) {
		t.Fatalf("obtained records = %v", got)
	}
	if n := len(r.logs.records("acme account registered")); n != 1 {
		t.Errorf("%d account registrations logged, want 1", n)
	}
	infos := a.Certificates()
	if len(infos) != 1 {
		t.Fatalf("Certificates() = %+v", infos)
	}
	ci := infos[0]
	if ci.Listener != "public" || ci.Name != "cert-www" || ci.Source != "acme" || ci.KeyType != "ECDSA P-256" ||
		!slices.Equal(ci.SANs, []string{name}) || !ci.NotAfter.Equal(leaf.NotAfter) || ci.DaysLeft < 60 ||
		!strings.HasPrefix(ci.File, filepath.Join(dataDir, "acme")) {
		t.Errorf("CertInfo = %+v", ci)
	}

	// Private state: directories 0700, files 0600, and nothing left over.
	var files []string
	filepath.WalkDir(filepath.Join(dataDir, "acme"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files = append(files, filepath.Base(p))
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if len(files) != 2 || !strings.HasPrefix(files[0], "account-ops_rampart.test") && !strings.HasPrefix(files[1], "account-ops_rampart.test") {
		t.Errorf("files in data_dir/acme: %v, want the account key and the certificate", files)
	}

	// A restart with the CA down serves the stored certificate and has no
	// reason to contact the CA.
	a.Close()
	r.pebble.Stop()
	a2 := r.start(cfg, ACMEOptions{})
	again, err := r.handshake(name, roots)
	if err != nil || acmeSerial(again) != acmeSerial(leaf) {
		t.Fatalf("after restart: %v, %v; want the stored certificate %s", again, err, acmeSerial(leaf))
	}
	if n := len(r.logs.records("acme certificate loaded")); n != 1 {
		t.Errorf("%d 'loaded' records, want 1", n)
	}
	m := a2.certs[a2.byNameFor(name)]
	if at, renewal, _ := a2.renewTime(m.spec.Load(), m.current.Load()); !renewal || at.Before(time.Now().Add(365*24*time.Hour)) {
		t.Errorf("stored certificate due at %v (renewal %v); want in more than a year", at, renewal)
	}
	a2.Close()
	if n := len(r.logs.records("acme obtain failed")); n != 0 {
		t.Errorf("the restarted provider tried the CA: %d failures logged", n)
	}
}

// byNameFor returns the id of the certificate serving name (tests).
func (a *ACME) byNameFor(name string) string {
	if m := (*a.byName.Load())[name]; m != nil {
		return m.spec.Load().id
	}
	return ""
}

func anyStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestACMEHTTP01 obtains a certificate by HTTP-01 only, then follows
// reloads: a domain added (the old certificate keeps serving the name it
// covers until the new one arrives), then the block removed.
func TestACMEHTTP01(t *testing.T) {
	r := newACMERig(t, true, true)
	const www, api = "www.rampart.test", "api.rampart.test"
	dataDir := t.TempDir()
	a := r.start(acmeConfig(dataDir, r.block([]string{www}, "http-01")), ACMEOptions{})
	roots := r.pebble.Roots()
	leaf := r.waitServed(www, roots, "")
	got := r.logs.records("acme certificate obtained")
	if len(got) != 1 || !slices.Equal(anyStrings(got[0]["challenges"]), []string{"http-01"}) {
		t.Fatalf("obtained records = %v", got)
	}
	if _, err := r.handshake(api, roots); err == nil {
		t.Fatal("a name outside the config was served")
	}

	if err := a.Update(acmeConfig(dataDir, r.block([]string{www, api}, "http-01"))); err != nil {
		t.Fatal(err)
	}
	// Right after the reload www is still served (by the old certificate
	// or, if the CA was quick, the new one).
	if _, err := r.handshake(www, roots); err != nil {
		t.Fatalf("www during the reload: %v", err)
	}
	both := r.waitServed(api, roots, "")
	if !slices.Equal(both.DNSNames, []string{www, api}) && !slices.Equal(both.DNSNames, []string{api, www}) {
		t.Errorf("SANs = %v, want both names", both.DNSNames)
	}
	if w, err := r.handshake(www, roots); err != nil || acmeSerial(w) != acmeSerial(both) || acmeSerial(w) == acmeSerial(leaf) {
		t.Errorf("www after the reload: %v, %v", w, err)
	}

	if err := a.Update(&config.Config{DataDir: dataDir}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.handshake(www, roots); err == nil {
		t.Error("a certificate removed from the config is still served")
	}
	if len(a.Certificates()) != 0 {
		t.Errorf("Certificates() after removal = %+v", a.Certificates())
	}
	if n := len(r.logs.records("acme certificate replaced: its domains or CA changed")); n != 1 {
		t.Errorf("%d replacement records, want 1 (the first reload)", n)
	}
	if n := len(r.logs.records("acme certificate removed from the config")); n != 1 {
		t.Errorf("%d removal records, want 1 (the second reload)", n)
	}
}

// TestACMETwoCertificatesOneAccount: two acme blocks for the same CA
// share one account and are both obtained at start, without a handshake
// asking for them first.
func TestACMETwoCertificatesOneAccount(t *testing.T) {
	r := newACMERig(t, false, true)
	cfg := acmeConfig(t.TempDir(), r.block([]string{"www.rampart.test"}))
	api := r.block([]string{"api.rampart.test"})
	cfg.Listeners[0].TLS.Certificates = append(cfg.Listeners[0].TLS.Certificates, config.Certificate{Name: "cert-api", ACME: &api})
	a := r.start(cfg, ACMEOptions{})
	waitFor(t, "both certificates", func() bool { return len(r.logs.records("acme certificate obtained")) == 2 })
	roots := r.pebble.Roots()
	for _, name := range []string{"www.rampart.test", "api.rampart.test"} {
		if _, err := r.handshake(name, roots); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := len(r.logs.records("acme account registered")); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
	var names []string
	for _, ci := range a.Certificates() {
		names = append(names, ci.Name)
	}
	if !slices.Equal(names, []string{"cert-api", "cert-www"}) {
		t.Errorf("Certificates() names = %v", names)
	}
}

// TestACMERenewal: with renew_before longer than pebble's certificates
// live, a new certificate (another serial) is served without a restart,
// and the short lifetime is logged.
func TestACMERenewal(t *testing.T) {
	r := newACMERig(t, false, true)
	const name = "www.rampart.test"
	blk := r.block([]string{name})
	blk.RenewBefore = config.Duration(10 * 365 * 24 * time.Hour)
	r.start(acmeConfig(t.TempDir(), blk), ACMEOptions{MinCertAge: 2 * time.Second})
	roots := r.pebble.Roots()
	first := r.waitServed(name, roots, "")
	second := r.waitServed(name, roots, acmeSerial(first))
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("same serial")
	}
	waitFor(t, "the renewal record", func() bool { return len(r.logs.records("acme certificate renewed")) > 0 })
	rec := r.logs.records("acme certificate renewed")[0]
	if rec["old_serial"] != acmeSerial(first) {
		t.Errorf("renewed record %v, want old_serial %s", rec, acmeSerial(first))
	}
	if len(r.logs.records("acme renew_before is longer than the certificate allows; renewing when it is older")) == 0 {
		t.Error("no warning about renew_before exceeding the lifetime")
	}
	if len(r.logs.records("acme certificate renewal due")) == 0 {
		t.Error("no renewal-due record")
	}
}

// TestACMECADown: a CA that does not answer is retried with a growing
// wait and logged with its error; once it is up the certificate arrives.
// A renewal that fails keeps the old certificate served, and a CA that
// lost the account (pebble restarted) gets it registered again.
func TestACMECADown(t *testing.T) {
	r := newACMERig(t, false, false)
	const name = "www.rampart.test"
	dataDir := t.TempDir()
	a := r.start(acmeConfig(dataDir, r.block([]string{name})),
		ACMEOptions{RetryMin: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond, MinCertAge: 3 * time.Second})
	waitFor(t, "two failed attempts", func() bool { return len(r.logs.records("acme obtain failed")) >= 2 })
	for i, rec := range r.logs.records("acme obtain failed")[:2] {
		if e, _ := rec["error"].(string); !strings.Contains(e, "connection refused") || rec["attempt"] != float64(i+1) || rec["retry_in"] == "" {
			t.Errorf("failure record %d = %v", i, rec)
		}
	}
	if _, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: name}); err == nil || !strings.Contains(err.Error(), "not obtained yet") {
		t.Errorf("GetCertificate before any certificate: %v", err)
	}

	r.pebble.Start()
	roots := r.pebble.Roots()
	leaf := r.waitServed(name, roots, "")

	// Renewal due (renew_before now longer than the lifetime) while the
	// CA is down: logged, and the old certificate keeps being served.
	r.pebble.Stop()
	failed := len(r.logs.records("acme obtain failed"))
	blk := r.block([]string{name})
	blk.RenewBefore = config.Duration(10 * 365 * 24 * time.Hour)
	if err := a.Update(acmeConfig(dataDir, blk)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed renewal", func() bool { return len(r.logs.records("acme obtain failed")) > failed })
	rec := r.logs.records("acme obtain failed")[failed]
	if rec["serving_not_after"] == nil {
		t.Errorf("failed renewal record does not say what is still served: %v", rec)
	}
	if l, err := r.handshake(name, roots); err != nil || acmeSerial(l) != acmeSerial(leaf) {
		t.Fatalf("during the failed renewal: %v, %v; want the old certificate", l, err)
	}

	// Back up, with no memory of the account: registered again, renewed.
	r.pebble.Start()
	r.waitServed(name, r.pebble.Roots(), acmeSerial(leaf))
	if n := len(r.logs.records("acme account registered")); n != 2 {
		t.Errorf("%d registrations, want 2 (the restarted CA forgot the first)", n)
	}
}

func TestACMERetryDelay(t *testing.T) {
	a := &ACME{opts: ACMEOptions{RetryMin: time.Minute, RetryMax: 6 * time.Hour}}
	prev := time.Duration(0)
	for n := 1; n <= 12; n++ {
		d := a.retryDelay(n, errors.New("connection refused"))
		base := min(time.Minute<<(n-1), 6*time.Hour)
		if d < base || d > base+base/10+1 {
			t.Fatalf("failure %d: wait %v, want %v plus at most a tenth", n, d, base)
		}
		if d+base/10 < prev {
			t.Fatalf("failure %d: wait %v shrank from %v", n, d, prev)
		}
		prev = d
	}
	// A CA rate limit with a Retry-After longer than the backoff wins.
	rl := &acme.Error{StatusCode: 429, ProblemType: "urn:ietf:params:acme:error:rateLimited",
		Header: http.Header{"Retry-After": []string{"86400"}}}
	if d := a.retryDelay(1, fmt.Errorf("new order: %w", rl)); d != 24*time.Hour {
		t.Errorf("rate limited with Retry-After 86400: wait %v, want 24h", d)
	}
}

func TestACMERequestBackoff(t *testing.T) {
	resp := func(code int, retryAfter string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		if retryAfter != "" {
			r.Header.Set("Retry-After", retryAfter)
		}
		return r
	}
	for _, tc := range []struct {
		n    int
		resp *http.Response
		want time.Duration
	}{
		{1, resp(500, ""), 250 * time.Millisecond},
		{3, resp(503, ""), 750 * time.Millisecond},
		{4, resp(503, ""), 0},                      // gives up: the renewal loop waits longer
		{1, resp(429, "1"), 0},                     // rate limit: the renewal loop honours it
		{1, resp(503, "2"), 2 * time.Second},       // a short Retry-After is waited
		{1, resp(503, "3600"), 0},                  // a long one ends the attempt
		{1, resp(400, ""), 250 * time.Millisecond}, // badNonce (only those reach here)
	} {
		if got := acmeRequestBackoff(tc.n, nil, tc.resp); got != tc.want {
			t.Errorf("n=%d status %d Retry-After %q: %v, want %v", tc.n, tc.resp.StatusCode, tc.resp.Header.Get("Retry-After"), got, tc.want)
		}
	}
}

// BenchmarkACMEObtain measures one certificate obtained from pebble by
// TLS-ALPN-01, from Start to the first verified handshake (a new account
// and data_dir each time). Most of it is the ACME library polling the
// authorization and the order once a second, as CAs ask.
func BenchmarkACMEObtain(b *testing.B) {
	r := newACMERig(b, false, true)
	roots := r.pebble.Roots()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("www%d.rampart.test", i)
		r.start(acmeConfig(b.TempDir(), r.block([]string{name}, "tls-alpn-01")), ACMEOptions{})
		r.waitServed(name, roots, "")
	}
}
