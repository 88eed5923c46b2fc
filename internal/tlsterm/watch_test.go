package tlsterm

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Certificate files rotated several times (written in place, certificate
// then key, so the pair is caught half-written) while a client handshakes
// continuously: no handshake fails, and the new certificate is served.
func TestRotationWithoutFailedHandshakes(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	ca.issue(t, leafSpec{dns: []string{"api.example.com"}}).write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	term := newTerminator(t, cfg, l, Options{PollInterval: 5 * time.Millisecond})
	addr := serve(t, term)

	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(60 * time.Second)
			for n := 0; n < 100000 && time.Now().Before(deadline); n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := dial(addr, client(ca, "api.example.com")); err != nil {
					failed.Add(1)
					lastErr.Store(err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	certFile, keyFile := filepath.Join(dir, "api.pem"), filepath.Join(dir, "api-key.pem")
	const rotations = 5
	for i := range rotations {
		next := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
		if i%2 == 0 {
			writeFile(t, certFile, next.certPEM)
			time.Sleep(20 * time.Millisecond) // several polls see the half-written pair
			writeFile(t, keyFile, next.keyPEM)
		} else {
			writeFile(t, keyFile, next.keyPEM)
			time.Sleep(20 * time.Millisecond)
			writeFile(t, certFile, next.certPEM)
		}
		eventually(t, "the rotated certificate to be served", func() bool {
			return served(t, addr, client(ca, "api.example.com")).SerialNumber.Cmp(next.leaf.SerialNumber) == 0
		})
		time.Sleep(50 * time.Millisecond) // handshakes with the new pair
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d handshakes failed during %d rotations; last: %v", failed.Load(), failed.Load()+ok.Load(), rotations, lastErr.Load())
	}
	if ok.Load() < rotations {
		t.Fatalf("only %d handshakes ran", ok.Load())
	}
	t.Logf("%d handshakes, %d rotations, 0 failures", ok.Load(), rotations)
}

// A half-written pair is not loaded: the previous pair goes on serving, a
// warning is logged once, and the pair loads once complete.
func TestHalfWrittenPairNotLoaded(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	old := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
	old.write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	logs := &logBuffer{}
	term := newTerminator(t, cfg, l, Options{Log: logs.logger(), PollInterval: 5 * time.Millisecond})
	addr := serve(t, term)

	next := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
	writeFile(t, filepath.Join(dir, "api.pem"), next.certPEM)
	eventually(t, "the refusal to be logged", func() bool {
		return strings.Contains(logs.String(), "certificate files changed but do not load")
	})
	time.Sleep(50 * time.Millisecond) // ten more polls
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Errorf("refusal logged %d times, want once", n)
	}
	if !strings.Contains(logs.String(), `"certificate":"api"`) || !strings.Contains(logs.String(), "private key does not match") {
		t.Errorf("log lacks the certificate or the reason:\n%s", logs)
	}
	if got := served(t, addr, client(ca, "api.example.com")); got.SerialNumber.Cmp(old.leaf.SerialNumber) != 0 {
		t.Fatal("half-written pair was served")
	}
	// A truncated key file is refused too.
	writeFile(t, filepath.Join(dir, "api-key.pem"), next.keyPEM[:40])
	time.Sleep(30 * time.Millisecond)
	if got := served(t, addr, client(ca, "api.example.com")); got.SerialNumber.Cmp(old.leaf.SerialNumber) != 0 {
		t.Fatal("truncated key was served")
	}
	writeFile(t, filepath.Join(dir, "api-key.pem"), next.keyPEM)
	eventually(t, "the completed pair to be served", func() bool {
		return served(t, addr, client(ca, "api.example.com")).SerialNumber.Cmp(next.leaf.SerialNumber) == 0
	})
	if !strings.Contains(logs.String(), "tls: certificate reloaded") {
		t.Error("reload not logged")
	}

	// An expired certificate is not loaded either.
	expired := ca.issue(t, leafSpec{dns: []string{"api.example.com"}, validFor: -30 * time.Minute})
	expired.write(t, dir, "api")
	eventually(t, "the expired certificate to be refused", func() bool {
		return strings.Contains(logs.String(), "certificate expired on")
	})
	if got := served(t, addr, client(ca, "api.example.com")); got.SerialNumber.Cmp(next.leaf.SerialNumber) != 0 {
		t.Fatal("expired certificate was served")
	}
}

// Certificate files that stay unreadable are reported once: the loaded
// certificate goes on serving, but a restart would fail. A file briefly
// gone (a replacement) is not reported.
func TestMissingCertificateFileReported(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	cur := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
	cur.write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	logs := &logBuffer{}
	clk := &clock{}
	term := newTerminator(t, cfg, l, Options{Log: logs.logger(), PollInterval: 5 * time.Millisecond, Now: clk.now})
	addr := serve(t, term)
	certFile := filepath.Join(dir, "api.pem")
	if err := os.Rename(certFile, certFile+".bak"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // polls within the grace period
	if strings.Contains(logs.String(), "cannot be read") {
		t.Fatalf("reported within the grace period:\n%s", logs)
	}
	clk.advance(missingGrace + time.Second)
	eventually(t, "the missing file to be reported", func() bool { return strings.Contains(logs.String(), "cannot be read") })
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(logs.String(), "cannot be read"); n != 1 {
		t.Errorf("reported %d times, want once", n)
	}
	if got := served(t, addr, client(ca, "api.example.com")); got.SerialNumber.Cmp(cur.leaf.SerialNumber) != 0 {
		t.Fatal("the loaded certificate is no longer served")
	}
}

// Close stops the background work: a rotation after it is not loaded,
// and handshakes go on with the last state.
func TestCloseStopsWatching(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	old := ca.issue(t, leafSpec{dns: []string{"api.example.com"}})
	old.write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	term := newTerminator(t, cfg, l, Options{PollInterval: 5 * time.Millisecond})
	addr := serve(t, term)
	term.Close()
	term.Close() // idempotent
	ca.issue(t, leafSpec{dns: []string{"api.example.com"}}).write(t, dir, "api")
	time.Sleep(50 * time.Millisecond)
	c := client(ca, "api.example.com")
	c.MaxVersion = tls.VersionTLS13
	if got := served(t, addr, c); got.SerialNumber.Cmp(old.leaf.SerialNumber) != 0 {
		t.Fatal("files were reloaded after Close")
	}
}
