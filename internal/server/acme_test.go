package server

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/acmetest"
)

// ACME end to end through Rampart's own listeners, against a real CA
// (Debian's pebble, on loopback; skipped when it is not installed): the
// certificate is obtained at start by HTTP-01 (answered by the http
// listener before its redirect) or by TLS-ALPN-01 (answered through the
// https listener's handshake), then served to clients, and listed by the
// certificates API as source acme. A hello without SNI, for which the
// listener has no certificate, is refused with unrecognized_name.
func TestACMEThroughListeners(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			httpPort, tlsPort := acmetest.FreePort(t), acmetest.FreePort(t)
			p := acmetest.Start(t, httpPort, tlsPort)
			b := newTestBackend(t, "b")
			const name = "www.rampart.test"
			e := startEnv(t, fmt.Sprintf(`
listeners:
  - name: web
    listen: "127.0.0.1:%d"
    protocol: https
    tls:
      certificates:
        - name: auto
          acme: {domains: [%s], email: ops@rampart.test, directory_url: %q, ca_certificate: %q, challenges: [%s]}
  - {name: plain, listen: "127.0.0.1:%d", redirect_to_https: true}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
pools:
  - {name: p, backends: %s}
`, tlsPort, name, p.DirectoryURL, p.CAFile, challenge, httpPort, backendsYAML(b)))
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
			roots := p.Roots()
			deadline := time.Now().Add(60 * time.Second)
			for {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
				if err == nil {
					c.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no certificate from pebble for %s: %v", name, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// A hello without SNI: no certificate on this ACME-only
			// listener, so unrecognized_name (not internal_error),
			// counted as a refused name.
			if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				if c != nil {
					c.Close()
				}
				t.Fatalf("a hello without SNI: %v, want an unrecognized_name alert", err)
			}
			eventually(t, "unknown_sni counted", func() bool {
				v, _ := metricValue(e.scrape("/metrics"), `rampart_blocked_total{reason="unknown_sni",stage="tls"}`)
				return v == "1"
			})
			cl, _ := httpsClient(addr, &tls.Config{RootCAs: roots}, true)
			if r, res := httpsGet(t, cl, "https://"+name+"/x", ""); r.status != 200 || r.body != "b" || res.ProtoMajor != 2 {
				t.Fatalf("through the ACME certificate: %d %q %s", r.status, r.body, res.Proto)
			}
			noFollow := &http.Client{Timeout: testTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			r, err := doRequest(noFollow, http.MethodGet, e.url("plain", "/y"), name, nil, nil)
			if err != nil || r.status != http.StatusPermanentRedirect || r.header.Get("Location") != "https://"+name+":"+strconv.Itoa(tlsPort)+"/y" {
				t.Fatalf("http listener: %v %d %q", err, r.status, r.header.Get("Location"))
			}
			res, err := e.client.Get("http://" + e.srv.AdminAddr() + "/api/v1/certificates")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var got struct {
				Certificates []struct{ Listener, Name, Source string }
			}
			json.NewDecoder(res.Body).Decode(&got)
			if len(got.Certificates) != 1 || got.Certificates[0].Source != "acme" || got.Certificates[0].Name != "auto" {
				t.Fatalf("certificates: %+v", got.Certificates)
			}
		})
	}
}
