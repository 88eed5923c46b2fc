package tlsterm

import (
	"crypto/tls"
	"net"
	"testing"
)

// BenchmarkHandshakeTLS13 is a full TLS 1.3 handshake (ECDSA P-256,
// X25519, no resumption) over an in-memory pipe, both ends in this
// process: through a Terminator's TLSConfig() (GetConfigForClient, SNI
// lookup, certificate selection, session ticket sealing) and through a
// static tls.Config with the same certificate. The difference is the
// Terminator's cost per handshake.
//
//	go test -run '^$' -bench HandshakeTLS13 -benchmem ./internal/tlsterm/
func BenchmarkHandshakeTLS13(b *testing.B) {
	dir := b.TempDir()
	ca := newTestCA(b)
	c := ca.issue(b, leafSpec{dns: []string{"api.example.com"}})
	c.write(b, dir, "api")
	pair, err := tls.X509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	clientCfg := &tls.Config{RootCAs: ca.pool(), ServerName: "api.example.com", MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"h2", "http/1.1"}}

	run := func(b *testing.B, server *tls.Config) {
		b.ReportAllocs()
		for b.Loop() {
			cc, sc := net.Pipe()
			done := make(chan error, 1)
			go func() {
				s := tls.Server(sc, server)
				err := s.Handshake()
				if err == nil {
					// Send the session ticket, as a real server does.
					_, err = s.Write([]byte{1})
				}
				done <- err
				sc.Close()
			}()
			cl := tls.Client(cc, clientCfg)
			if err := cl.Handshake(); err != nil {
				b.Fatal(err)
			}
			var one [1]byte
			if _, err := cl.Read(one[:]); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			cc.Close()
		}
	}
	b.Run("static", func(b *testing.B) {
		run(b, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
	})
	b.Run("terminator", func(b *testing.B) {
		cfg, l := listenerConfig(b, dir, `tls:
  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]
sni_routing:
  - {sni: api.example.com, certificate: api, pool: web}
  - default: {action: reject}`)
		term := newTerminator(b, cfg, l, Options{PollInterval: DefaultPollInterval})
		run(b, term.TLSConfig())
	})
}
