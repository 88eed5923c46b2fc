package tlsterm

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// warnings returns the expiry warnings logged so far, as their
// threshold_days values.
func warnings(t *testing.T, logs *logBuffer) []int {
	t.Helper()
	var out []int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			Msg         string `json:"msg"`
			Listener    string `json:"listener"`
			Certificate string `json:"certificate"`
			Threshold   int    `json:"threshold_days"`
			DaysLeft    *int   `json:"days_left"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if !strings.HasPrefix(rec.Msg, "tls: certificate expires soon") && rec.Msg != "tls: certificate has expired" {
			continue
		}
		if rec.Listener != "public" || rec.Certificate != "api" || rec.DaysLeft == nil {
			t.Fatalf("warning lacks fields: %s", line)
		}
		out = append(out, rec.Threshold)
	}
	return out
}

// A certificate with 20 days left warns once at load (30 days), once more
// when it crosses 14 and 7 days, and never twice for one threshold.
func TestExpiryWarnings(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	c := ca.issue(t, leafSpec{dns: []string{"api.example.com"}, validFor: 20*24*time.Hour + time.Hour})
	c.write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	logs := &logBuffer{}
	clk := &clock{}
	term := newTerminator(t, cfg, l, Options{Log: logs.logger(), Now: clk.now})

	if w := warnings(t, logs); len(w) != 1 || w[0] != 30 {
		t.Fatalf("at load: warnings %v, want [30]", w)
	}
	time.Sleep(50 * time.Millisecond) // polls; the hourly check is not due
	if w := warnings(t, logs); len(w) != 1 {
		t.Fatalf("warned again before the hourly check: %v", w)
	}
	clk.advance(7 * 24 * time.Hour) // 13 days left
	eventually(t, "the 14-day warning", func() bool { return len(warnings(t, logs)) == 2 })
	clk.advance(2 * time.Hour)
	time.Sleep(50 * time.Millisecond)
	if w := warnings(t, logs); len(w) != 2 || w[1] != 14 {
		t.Fatalf("warnings %v, want [30 14]", w)
	}
	// From 13 to 2 days left: one warning (7); then 1 day, then expired.
	clk.advance(11 * 24 * time.Hour)
	eventually(t, "the 7-day warning", func() bool { return len(warnings(t, logs)) == 3 })
	clk.advance(24 * time.Hour)
	eventually(t, "the 1-day warning", func() bool { return len(warnings(t, logs)) == 4 })
	clk.advance(2 * 24 * time.Hour)
	eventually(t, "the expired warning", func() bool { return len(warnings(t, logs)) == 5 })
	if w := warnings(t, logs); w[2] != 7 || w[3] != 1 || w[4] != 0 {
		t.Fatalf("warnings %v, want [30 14 7 1 0]", w)
	}
	if !strings.Contains(logs.String(), "tls: certificate has expired") {
		t.Error("expiry not logged as such")
	}
	if s := term.ExpirySeconds()["api"]; s >= 0 {
		t.Errorf("ExpirySeconds of an expired certificate = %v", s)
	}
}

func TestCertificatesInfo(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	ec := ca.issue(t, leafSpec{dns: []string{"api.example.com", "www.example.com"}, validFor: 10*24*time.Hour + time.Hour})
	ec.write(t, dir, "api")
	rc := ca.issue(t, leafSpec{dns: []string{"api.example.com"}, rsa: true})
	rc.write(t, dir, "api-rsa")
	cfg, l := listenerConfig(t, dir, `tls:
  certificates:
    - {name: api, cert_file: api.pem, key_file: api-key.pem}
    - {name: api-rsa, cert_file: api-rsa.pem, key_file: api-rsa-key.pem}`)
	term := newTerminator(t, cfg, l, Options{})
	infos := term.Certificates()
	if len(infos) != 2 {
		t.Fatalf("Certificates: %+v", infos)
	}
	a, r := infos[0], infos[1]
	if a.Listener != "public" || a.Name != "api" || a.Source != "file" || !strings.HasSuffix(a.File, "api.pem") ||
		a.Subject != "CN=api.example.com" || strings.Join(a.SANs, ",") != "api.example.com,www.example.com" ||
		a.Issuer != "CN=tlsterm test CA" || a.KeyType != "ECDSA P-256" || a.DaysLeft != 10 || a.OCSP ||
		!a.NotAfter.Equal(ec.leaf.NotAfter) {
		t.Errorf("ECDSA info %+v", a)
	}
	if r.Name != "api-rsa" || r.KeyType != "RSA 2048" || r.DaysLeft < 89 {
		t.Errorf("RSA info %+v", r)
	}
	s := term.ExpirySeconds()
	if want := time.Until(ec.leaf.NotAfter).Seconds(); s["api"] > want+5 || s["api"] < want-5 {
		t.Errorf("ExpirySeconds[api] = %v, want about %v", s["api"], want)
	}
	if term.Listener() != "public" {
		t.Error("Listener")
	}
}
