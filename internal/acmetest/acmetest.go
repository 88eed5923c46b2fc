// Package acmetest runs a real ACME server for tests: Debian's pebble
// (which scripts/test.sh installs), with pebble-challtestsrv as its DNS
// answering 127.0.0.1 for every name, so that the CA validates challenges
// against the test's own listeners on loopback. Everything listens on
// free 127.0.0.1 ports and is stopped by PID when the test ends. Only
// tests import it.
package acmetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Pebble is one pebble process (and its DNS mock); Stop and Start cycle
// it on the same addresses, as a CA that goes down and comes back.
// Pebble keeps nothing across a restart: accounts, orders and its roots
// are new each time.
type Pebble struct {
	tb testing.TB
	// DirectoryURL is the ACME directory (https://127.0.0.1:PORT/dir).
	DirectoryURL string
	// CAFile is a PEM file with the certificate pebble's HTTPS listeners
	// present: what a client's ca_certificate names to trust the directory.
	CAFile string
	// HTTPPort and TLSPort are where pebble connects to validate HTTP-01
	// and TLS-ALPN-01 challenges (on 127.0.0.1, through the DNS mock).
	HTTPPort, TLSPort int

	dir        string
	mgmtURL    string
	dnsMgmt    string // the DNS mock's management address: open when it is ready
	trust      *x509.CertPool
	pebbleArgs []string
	dnsArgs    []string
	pebble     *proc
	dns        *proc
}

// Start runs pebble and its DNS mock; the CA validates HTTP-01 on
// 127.0.0.1:httpPort and TLS-ALPN-01 on 127.0.0.1:tlsPort. The test is
// skipped, saying so, only when pebble is not installed.
func Start(tb testing.TB, httpPort, tlsPort int) *Pebble {
	tb.Helper()
	p := New(tb, httpPort, tlsPort)
	p.Start()
	return p
}

// New prepares pebble like Start but does not run it: the test of a CA
// that is down starts it later (Start) at the same address.
func New(tb testing.TB, httpPort, tlsPort int) *Pebble {
	tb.Helper()
	pebbleBin, err := exec.LookPath("pebble")
	if err != nil {
		tb.Skip("pebble is not installed (scripts/test.sh installs the Debian package pebble)")
	}
	dnsBin, err := exec.LookPath("pebble-challtestsrv")
	if err != nil {
		tb.Skip("pebble-challtestsrv is not installed (scripts/test.sh installs the Debian package pebble)")
	}
	dir := tb.TempDir()
	p := &Pebble{tb: tb, dir: dir, HTTPPort: httpPort, TLSPort: tlsPort}
	certFile, keyFile := filepath.Join(dir, "pebble-cert.pem"), filepath.Join(dir, "pebble-key.pem")
	p.trust = writeServerCert(tb, certFile, keyFile)
	p.CAFile = certFile

	listen := "127.0.0.1:" + strconv.Itoa(FreePort(tb))
	mgmt := "127.0.0.1:" + strconv.Itoa(FreePort(tb))
	dnsAddr := "127.0.0.1:" + strconv.Itoa(freeUDPPort(tb))
	dnsMgmt := "127.0.0.1:" + strconv.Itoa(FreePort(tb))
	p.DirectoryURL = "https://" + listen + "/dir"
	p.mgmtURL = "https://" + mgmt
	p.dnsMgmt = dnsMgmt

	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	p.pebbleArgs = []string{pebbleBin, "-config", confFile, "-dnsserver", dnsAddr}
	// Only the DNS mock is wanted: its challenge servers are disabled
	// (empty), and AAAA queries get no answer so that pebble connects
	// over IPv4 to the test's 127.0.0.1 listeners.
	p.dnsArgs = []string{dnsBin, "-dns01", dnsAddr, "-management", dnsMgmt,
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""}
	tb.Cleanup(p.stopAll)
	return p
}

// Start (re)starts pebble, and the DNS mock the first time, and waits
// until the directory answers.
func (p *Pebble) Start() {
	p.tb.Helper()
	if p.dns == nil {
		p.dns = startProc(p.tb, p.dnsArgs, filepath.Join(p.dir, "challtestsrv.log"), nil)
		// The DNS mock has no readiness signal of its own; its management
		// port opens last.
		waitTCP(p.tb, p.dnsMgmt, p.dns)
	}
	if p.pebble != nil {
		p.tb.Fatal("acmetest: pebble already running")
	}
	env := append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once, not after a random sleep
		"PEBBLE_WFE_NONCEREJECT=0", // no deliberate badNonce errors
		"PEBBLE_AUTHZREUSE=0",      // every order validates its challenges again
	)
	p.pebble = startProc(p.tb, p.pebbleArgs, filepath.Join(p.dir, "pebble.log"), env)
	client := p.client()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(p.DirectoryURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) || p.pebble.exited() {
			p.tb.Fatalf("pebble at %s did not answer: %v\n%s", p.DirectoryURL, err, p.Log())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Stop kills pebble (by its PID) and waits for it to exit; the DNS mock
// stays up.
func (p *Pebble) Stop() {
	if p.pebble != nil {
		p.pebble.stop(p.tb)
		p.pebble = nil
	}
}

func (p *Pebble) stopAll() {
	if p.tb.Failed() {
		p.tb.Logf("pebble log (tail):\n%s", tail(p.Log(), 4000))
	}
	p.Stop()
	if p.dns != nil {
		p.dns.stop(p.tb)
		p.dns = nil
	}
}

// Log is pebble's output so far, for failure messages.
func (p *Pebble) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "pebble.log"))
	return string(b)
}

// Roots returns the root that signs the certificates this pebble run
// issues (its management endpoint /roots/0); a new run has a new root.
func (p *Pebble) Roots() *x509.CertPool {
	p.tb.Helper()
	resp, err := p.client().Get(p.mgmtURL + "/roots/0")
	if err != nil {
		p.tb.Fatalf("pebble roots: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		p.tb.Fatalf("pebble roots: status %d, %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		p.tb.Fatalf("pebble roots: no PEM certificate in %q", body)
	}
	return pool
}

func (p *Pebble) client() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.trust}},
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(tb testing.TB) int {
	tb.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// writeServerCert writes a self-signed ECDSA certificate for 127.0.0.1
// and localhost, the trust anchor of pebble's HTTPS listeners, and
// returns a pool holding it.
func writeServerCert(tb testing.TB, certFile, keyFile string) *x509.CertPool {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "acmetest pebble"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return pool
}

// proc is one child process, waited for in the background.
type proc struct {
	cmd    *exec.Cmd
	waited chan struct{}
}

func startProc(tb testing.TB, args []string, logPath string, env []string) *proc {
	tb.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		tb.Fatalf("%s: %v", args[0], err)
	}
	p := &proc{cmd: cmd, waited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.waited) }()
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.waited:
		return true
	default:
		return false
	}
}

// stop kills the process by its PID and waits for it.
func (p *proc) stop(tb testing.TB) {
	p.cmd.Process.Kill()
	select {
	case <-p.waited:
	case <-time.After(10 * time.Second):
		tb.Errorf("%s pid %d did not exit", p.cmd.Path, p.cmd.Process.Pid)
	}
}

func waitTCP(tb testing.TB, addr string, p *proc) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) || p.exited() {
			tb.Fatalf("%s did not listen on %s: %v", p.cmd.Path, addr, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
