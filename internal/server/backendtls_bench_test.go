package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkBackendTLS is the cost of re-encrypting to backends: the same
// request through Rampart's handler chain (as BenchmarkPipeline/handler)
// to a plaintext backend and to a TLS 1.3 backend whose certificate is
// verified (chain through an intermediate, allowed_sans), both on pooled
// keep-alive connections, so the difference is record encryption and
// decryption, not handshakes.
func BenchmarkBackendTLS(b *testing.B) {
	k := newBackendPKI(b)
	plain := newTestBackend(b, "a")
	secure := newTLSBackend(b, "a", k.leaf(b, "b1.api.internal.example.com"), nil)
	run := func(b *testing.B, body string) {
		e := startEnv(b, body)
		var l *listener
		e.srv.mu.Lock()
		for _, x := range e.srv.listeners {
			l = x
		}
		e.srv.mu.Unlock()
		h := &entry{srv: e.srv, l: l}
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodGet, "http://bench.test/x", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("plaintext", func(b *testing.B) { run(b, onePool("round_robin", "", plain)) })
	b.Run("tls", func(b *testing.B) {
		run(b, onePool("round_robin", fmt.Sprintf("    backend_tls: {ca_certificate: %q, allowed_sans: [%q]}\n", k.caFile, "*.api.internal.example.com"), secure.testBackend))
	})
}
