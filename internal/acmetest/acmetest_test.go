package acmetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestStartStop checks that pebble serves its directory over HTTPS that
// CAFile verifies, publishes a root, and comes back after a Stop with a
// new root.
func TestStartStop(t *testing.T) {
	p := Start(t, FreePort(t), FreePort(t))
	pem, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	var dir map[string]any
	err = json.NewDecoder(resp.Body).Decode(&dir)
	resp.Body.Close()
	if err != nil || dir["newOrder"] == nil {
		t.Fatalf("directory: %v %v", dir, err)
	}
	r1 := p.Roots()
	p.Stop()
	if _, err := client.Get(p.DirectoryURL); err == nil {
		t.Fatal("directory answers after Stop")
	}
	p.Start()
	if r2 := p.Roots(); r1.Equal(r2) {
		t.Fatal("a restarted pebble kept its root")
	}
}
