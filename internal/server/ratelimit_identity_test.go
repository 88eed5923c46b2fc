package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func writePublicPEM(t *testing.T, dir, name string, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func signWith(t *testing.T, m jwt.SigningMethod, key crypto.PrivateKey, kid, sub string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// RS256 and ES256 (PEM public keys) and a JWKS file with both kinds:
// a token signed by the configured key is its sub's identity (alice, pro
// tier, burst 3, from any IP); a token signed by another key of the same
// kind is anonymous and limited per IP (burst 1).
func TestRateLimitJWTPublicKeys(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaOther, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecOther, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub := ecKey.PublicKey
	ecBytes, _ := ecPub.Bytes() // 0x04 || X || Y
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "n": b64(rsaKey.N.Bytes()), "e": b64([]byte{1, 0, 1})},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecBytes[1:33]), "y": b64(ecBytes[33:])},
	}})
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, jwt   string
		good, other string // tokens for alice
	}{
		{"RS256", fmt.Sprintf("{algorithms: [RS256], public_key_file: %q}", writePublicPEM(t, dir, "rsa.pem", &rsaKey.PublicKey)),
			signWith(t, jwt.SigningMethodRS256, rsaKey, "", "alice"), signWith(t, jwt.SigningMethodRS256, rsaOther, "", "alice")},
		{"ES256", fmt.Sprintf("{algorithms: [ES256], public_key_file: %q}", writePublicPEM(t, dir, "ec.pem", &ecKey.PublicKey)),
			signWith(t, jwt.SigningMethodES256, ecKey, "", "alice"), signWith(t, jwt.SigningMethodES256, ecOther, "", "alice")},
		{"JWKS RSA", fmt.Sprintf("{algorithms: [RS256, ES256], jwks_file: %q}", jwksFile),
			signWith(t, jwt.SigningMethodRS256, rsaKey, "r1", "alice"), signWith(t, jwt.SigningMethodRS256, rsaOther, "r1", "alice")},
		{"JWKS EC", fmt.Sprintf("{algorithms: [RS256, ES256], jwks_file: %q}", jwksFile),
			signWith(t, jwt.SigningMethodES256, ecKey, "e1", "alice"), signWith(t, jwt.SigningMethodES256, ecOther, "", "alice")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newTestBackend(t, "a")
			e := startEnv(t, rlConfig(b, fmt.Sprintf(`    per_ip: {requests_per_second: 0.001, burst: 1}
    per_user:
      key: {jwt_claim: sub}
      jwt: %s
      tiers: {pro: {requests_per_second: 0.001, burst: 3}}
      users: {alice: pro}
`, c.jwt)))
			bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
			for i := range 3 {
				if r := e.reqFrom("GET", "/", fmt.Sprintf("198.51.100.%d", i+1), bearer(c.good)); r.status != 200 {
					t.Fatalf("alice %d: %d", i, r.status)
				}
			}
			if r := e.reqFrom("GET", "/", "198.51.100.9", bearer(c.good)); r.status != 429 || r.header.Get("X-RateLimit-Limit") != "3" {
				t.Fatalf("alice's 4th: %d limit %q, want her tier's 429 (limit 3)", r.status, r.header.Get("X-RateLimit-Limit"))
			}
			// Signed by another key: anonymous, limited per IP.
			if r := e.reqFrom("GET", "/", "198.51.100.20", bearer(c.other)); r.status != 200 {
				t.Fatalf("other key, first: %d", r.status)
			}
			if r := e.reqFrom("GET", "/", "198.51.100.20", bearer(c.other)); r.status != 429 || r.header.Get("X-RateLimit-Limit") != "1" {
				t.Fatalf("other key, second: %d limit %q, want the per-IP 429 (limit 1)", r.status, r.header.Get("X-RateLimit-Limit"))
			}
		})
	}
}

// An endpoint with key: user counts identified users wherever they come
// from, and anonymous clients by IP.
func TestRateLimitEndpointKeyUser(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, `    per_user:
      key: {header: X-API-Key}
      tiers: {pro: {requests_per_second: 1000, burst: 1000}}
      users: {k1: pro, k2: pro}
    endpoints: [{path: "/api/*", limit: 2, window: 1m, key: user}]
`))
	k1, k2 := http.Header{"X-Api-Key": {"k1"}}, http.Header{"X-Api-Key": {"k2"}}
	for i, ip := range []string{"198.51.100.1", "198.51.100.2"} {
		if r := e.reqFrom("GET", "/api/a", ip, k1); r.status != 200 {
			t.Fatalf("k1 %d: %d", i, r.status)
		}
	}
	r := e.reqFrom("GET", "/api/b", "198.51.100.3", k1)
	if r.status != 429 || r.header.Get("X-RateLimit-Limit") != "2" {
		t.Fatalf("k1's 3rd from a third IP: %d limit %q, want the endpoint's 429", r.status, r.header.Get("X-RateLimit-Limit"))
	}
	// k2 from k1's first IP has its own count.
	if r := e.reqFrom("GET", "/api/a", "198.51.100.1", k2); r.status != 200 {
		t.Fatalf("k2: %d", r.status)
	}
	// Anonymous clients are counted by IP.
	for i := range 2 {
		if r := e.reqFrom("GET", "/api/a", "198.51.100.7", nil); r.status != 200 {
			t.Fatalf("anonymous %d: %d", i, r.status)
		}
	}
	if r := e.reqFrom("GET", "/api/a", "198.51.100.7", nil); r.status != 429 {
		t.Fatalf("anonymous 3rd: %d", r.status)
	}
	if r := e.reqFrom("GET", "/api/a", "198.51.100.8", nil); r.status != 200 {
		t.Fatalf("another anonymous IP: %d", r.status)
	}
}

// Adaptive mode's state in GET /api/v1/status and the metrics, and its
// effect: under attack the per-IP limit is per_ip_under_attack. The
// controller is driven with a fake clock (its ticker is stopped).
func TestAdaptiveStatusAndMetrics(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, rlConfig(b, `    per_ip: {requests_per_second: 100, burst: 200}
    adaptive: {enabled: true, trigger_multiplier: 3, trigger_duration: 2s, per_ip_under_attack: 1, min_rate: 1}
`))
	l := e.srv.limits
	l.mu.Lock()
	close(l.stop) // the real-time ticker; this test ticks itself
	l.stop = make(chan struct{})
	a := l.adaptive
	l.mu.Unlock()
	now := time.Now().Add(time.Hour)
	tick := func(hits int) {
		for range hits {
			a.Hit()
		}
		now = now.Add(time.Second)
		a.Tick(now)
	}
	a.Tick(now)
	for range 5 {
		tick(10)
	}
	var st struct {
		RateLimits struct {
			Adaptive struct {
				State       string  `json:"state"`
				PerIP       float64 `json:"per_ip_requests_per_second"`
				Transitions int64   `json:"transitions"`
			} `json:"adaptive"`
		} `json:"rate_limits"`
	}
	status := func() {
		t.Helper()
		if err := json.Unmarshal([]byte(e.scrape("/api/v1/status")), &st); err != nil {
			t.Fatal(err)
		}
	}
	status()
	if st.RateLimits.Adaptive.State != "normal" || st.RateLimits.Adaptive.PerIP != 100 {
		t.Fatalf("status before: %+v", st.RateLimits.Adaptive)
	}
	for i := range 3 {
		if r := e.reqFrom("GET", "/", "198.51.100.1", nil); r.status != 200 {
			t.Fatalf("normal request %d: %d", i, r.status)
		}
	}
	tick(100)
	tick(100)
	status()
	if a := st.RateLimits.Adaptive; a.State != "under_attack" || a.PerIP != 1 || a.Transitions != 1 {
		t.Fatalf("status under attack: %+v", a)
	}
	m := e.scrape("/metrics")
	for series, want := range map[string]string{
		`rampart_ratelimit_adaptive_state{state="under_attack"}`: "1",
		`rampart_ratelimit_adaptive_state{state="normal"}`:       "0",
		`rampart_ratelimit_per_ip_requests_per_second`:           "1",
		`rampart_ratelimit_adaptive_transitions_total`:           "1",
	} {
		if v, _ := metricValue(m, series); v != want {
			t.Errorf("%s = %q, want %s", series, v, want)
		}
	}
	// Under attack a fresh client gets a burst of 1.
	if r := e.reqFrom("GET", "/", "198.51.100.2", nil); r.status != 200 {
		t.Fatalf("under attack, first: %d", r.status)
	}
	if r := e.reqFrom("GET", "/", "198.51.100.2", nil); r.status != 429 || r.header.Get("X-RateLimit-Limit") != "1" {
		t.Fatalf("under attack, second: %d limit %q, want 429 (limit 1)", r.status, r.header.Get("X-RateLimit-Limit"))
	}
}
