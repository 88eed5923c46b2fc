package tlsterm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspResponder is an OCSP responder on 127.0.0.1 for a test CA; its
// answers are valid for validity.
type ocspResponder struct {
	ca       *testCA
	srv      *httptest.Server
	validity time.Duration
	requests atomic.Int32

	mu   sync.Mutex
	mode string // good | revoked | badsig | down
}

func newOCSPResponder(t *testing.T, ca *testCA, validity time.Duration) *ocspResponder {
	r := &ocspResponder{ca: ca, validity: validity, mode: "good"}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *ocspResponder) setMode(m string) {
	r.mu.Lock()
	r.mode = m
	r.mu.Unlock()
}

func (r *ocspResponder) serve(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	r.mu.Lock()
	mode := r.mode
	r.mu.Unlock()
	if mode == "down" {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(req.Body)
	q, err := ocsp.ParseRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now().Truncate(time.Second)
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: q.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(r.validity)}
	signer := r.ca.key
	if mode == "revoked" {
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, now.Add(-time.Hour), ocsp.KeyCompromise
	}
	if mode == "badsig" {
		signer, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	der, err := ocsp.CreateResponse(r.ca.cert, r.ca.cert, tmpl, signer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

// ocspFixture serves a certificate naming the responder, with
// ocsp_stapling on.
func ocspFixture(t *testing.T, validity time.Duration, mode string) (*testCA, *ocspResponder, *logBuffer, string, issued) {
	t.Helper()
	dir := t.TempDir()
	ca := newTestCA(t)
	r := newOCSPResponder(t, ca, validity)
	r.setMode(mode)
	c := ca.issue(t, leafSpec{dns: []string{"api.example.com"}, ocsp: r.srv.URL + "/ocsp"})
	c.write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  ocsp_stapling: true\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	logs := &logBuffer{}
	term := newTerminator(t, cfg, l, Options{Log: logs.logger(), PollInterval: 20 * time.Millisecond})
	return ca, r, logs, serve(t, term), c
}

// staple handshakes and returns the stapled response (nil without one).
func staple(t *testing.T, ca *testCA, addr string) []byte {
	t.Helper()
	cs, err := dial(addr, client(ca, "api.example.com"))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return cs.OCSPResponse
}

func TestOCSPStapling(t *testing.T) {
	ca, r, logs, addr, c := ocspFixture(t, 2*time.Second, "good")
	var first []byte
	eventually(t, "a staple", func() bool { first = staple(t, ca, addr); return first != nil })
	resp, err := ocsp.ParseResponseForCert(first, c.leaf, ca.cert)
	if err != nil || resp.Status != ocsp.Good {
		t.Fatalf("staple: %v, status %d", err, resp.Status)
	}
	// Refreshed at half its validity, before it runs out.
	eventually(t, "a refreshed staple", func() bool {
		s := staple(t, ca, addr)
		return s != nil && string(s) != string(first)
	})
	if r.requests.Load() < 2 {
		t.Fatalf("%d requests", r.requests.Load())
	}

	// The responder goes down: handshakes go on, with the staple until it
	// runs out, then without one; the failures are logged.
	r.setMode("down")
	eventually(t, "the staple to run out", func() bool { return staple(t, ca, addr) == nil })
	for range 3 {
		if s := staple(t, ca, addr); s != nil {
			t.Fatal("stale staple served")
		}
	}
	if !strings.Contains(logs.String(), "tls: OCSP fetch failed") || !strings.Contains(logs.String(), "503 Service Unavailable") {
		t.Errorf("failure not logged:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "OCSP staple expired") {
		t.Errorf("staple expiry not logged")
	}
}

// A response that is not good, or not signed by the issuer, is never
// stapled.
func TestOCSPRefusedResponses(t *testing.T) {
	for _, mode := range []string{"revoked", "badsig"} {
		t.Run(mode, func(t *testing.T) {
			ca, r, logs, addr, _ := ocspFixture(t, time.Hour, mode)
			eventually(t, "a fetch", func() bool { return r.requests.Load() >= 1 })
			eventually(t, "the refusal to be logged", func() bool { return strings.Contains(logs.String(), "response refused") })
			if s := staple(t, ca, addr); s != nil {
				t.Fatalf("%s response stapled", mode)
			}
			if mode == "revoked" && !strings.Contains(logs.String(), "status revoked") {
				t.Errorf("reason not logged:\n%s", logs)
			}
		})
	}
}

// Without ocsp_stapling nothing is fetched.
func TestOCSPOff(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	r := newOCSPResponder(t, ca, time.Hour)
	ca.issue(t, leafSpec{dns: []string{"api.example.com"}, ocsp: r.srv.URL}).write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	addr := serve(t, newTerminator(t, cfg, l, Options{}))
	time.Sleep(50 * time.Millisecond)
	if s := staple(t, ca, addr); s != nil || r.requests.Load() != 0 {
		t.Fatalf("staple %d bytes, %d requests", len(s), r.requests.Load())
	}
}

// A reload that leaves the files alone keeps the staple (no refetch);
// new files get a staple of their own.
func TestOCSPStapleSurvivesUpdate(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	r := newOCSPResponder(t, ca, time.Hour)
	ca.issue(t, leafSpec{dns: []string{"api.example.com"}, ocsp: r.srv.URL}).write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  ocsp_stapling: true\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	term := newTerminator(t, cfg, l, Options{})
	addr := serve(t, term)
	eventually(t, "a staple", func() bool { return staple(t, ca, addr) != nil })
	if err := term.Update(cfg, l); err != nil {
		t.Fatal(err)
	}
	if staple(t, ca, addr) == nil || r.requests.Load() != 1 {
		t.Fatalf("after Update: staple lost or refetched (%d requests)", r.requests.Load())
	}
	if !term.Certificates()[0].OCSP {
		t.Error("CertInfo.OCSP false with a staple")
	}
	next := ca.issue(t, leafSpec{dns: []string{"api.example.com"}, ocsp: r.srv.URL})
	next.write(t, dir, "api")
	if err := term.Update(cfg, l); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a staple for the new certificate", func() bool {
		cs, err := dial(addr, client(ca, "api.example.com"))
		if err != nil || cs.OCSPResponse == nil {
			return false
		}
		resp, err := ocsp.ParseResponseForCert(cs.OCSPResponse, next.leaf, ca.cert)
		return err == nil && resp.SerialNumber.Cmp(next.leaf.SerialNumber) == 0
	})
}
