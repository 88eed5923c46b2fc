package tlsterm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// testCA issues the certificates of one test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "tlsterm test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leafSpec describes a server certificate.
type leafSpec struct {
	dns      []string
	rsa      bool          // RSA 2048 instead of ECDSA P-256
	validFor time.Duration // default 90 days
	ocsp     string        // OCSP responder URL
}

// issued is a certificate and its key as PEM (the chain: leaf, then the CA).
type issued struct {
	certPEM, keyPEM []byte
	leaf            *x509.Certificate
}

func (ca *testCA) issue(t testing.TB, s leafSpec) issued {
	t.Helper()
	var key crypto.Signer
	var err error
	if s.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.validFor == 0 {
		s.validFor = 90 * 24 * time.Hour
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: s.dns[0]}, DNSNames: s.dns,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(s.validFor),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if s.ocsp != "" {
		tmpl.OCSPServer = []string{s.ocsp}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...)
	return issued{chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), leaf}
}

// write puts the pair in dir as name.pem and name-key.pem.
func (c issued) write(t testing.TB, dir, name string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, name+".pem"), c.certPEM)
	writeFile(t, filepath.Join(dir, name+"-key.pem"), c.keyPEM)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randSerial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// listenerConfig parses a config whose first listener is an https
// listener with the given keys (indented under it), in dir.
func listenerConfig(t testing.TB, dir string, keys string) (*config.Config, config.Listener) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("listeners:\n  - name: public\n    listen: \"127.0.0.1:0\"\n    protocol: https\n")
	for _, l := range strings.Split(strings.Trim(keys, "\n"), "\n") {
		sb.WriteString("    " + l + "\n")
	}
	sb.WriteString("routes:\n  - {name: all, match: {path_prefix: /}, pool: web}\npools:\n  - name: web\n    backends: [{id: w1, address: \"127.0.0.1:9001\"}]\n  - name: api\n    backends: [{id: a1, address: \"127.0.0.1:9002\"}]\n")
	cfg, err := config.Parse(filepath.Join(dir, "rampart.yaml"), []byte(sb.String()))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", sb.String(), err)
	}
	return cfg, cfg.Listeners[0]
}

// clock is a movable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// logBuffer collects log records for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTerminator builds a Terminator that Cleanup closes.
func newTerminator(t testing.TB, cfg *config.Config, l config.Listener, opts Options) *Terminator {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = 10 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	term, err := New(cfg, l, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(term.Close)
	return term
}

// serve runs a TLS listener on 127.0.0.1 with the Terminator's config:
// every connection is handshaken and sent one byte (so that a TLS 1.3
// client reads its session tickets), then closed.
func serve(t testing.TB, term *Terminator) string {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(inner, term.TLSConfig())
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				c.Write([]byte{'k'})
				io.Copy(io.Discard, c) // until the client closes
			}()
		}
	}()
	return ln.Addr().String()
}

// dial handshakes with addr as cfg says (ServerName, versions, ...),
// reads the server's byte and returns the connection's state.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// client is a client config trusting ca for serverName.
func client(ca *testCA, serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.pool(), ServerName: serverName}
}

// served returns the leaf a handshake got, or fails the test.
func served(t testing.TB, addr string, cfg *tls.Config) *x509.Certificate {
	t.Helper()
	cs, err := dial(addr, cfg)
	if err != nil {
		t.Fatalf("handshake for %q: %v", cfg.ServerName, err)
	}
	return cs.PeerCertificates[0]
}

// eventually polls cond until it holds or 10 s have passed.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isAlert reports whether err is the TLS alert whose text is alert
// ("unrecognized name", "protocol version", ...).
func isAlert(err error, alert string) bool {
	return err != nil && strings.Contains(err.Error(), alert)
}
