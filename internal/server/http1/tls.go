package http1

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"time"
)

// TLS on the engine's connections (Server.TLSConfig). The order on a
// connection is DESIGN §1's: Admit (before any TLS byte is spent), the
// PROXY preface if any (it precedes TLS), the handshake, then HTTP. The
// preface, the handshake and the first request head share the first
// ReadHeaderTimeout, so a client that trickles its ClientHello is cut off
// like one that trickles its request head.
//
// The TLS connection is layered over a transport that is the engine's own
// raw read and write path: the write deadlines and the slow-read meter act
// below TLS, on TCP writes that can resume after a deadline, where a TLS
// record write cannot (crypto/tls fails a connection for good on a write
// timeout). Above it, the request loop, HTTP/2 hand-off and hijacking use
// the TLS connection as they use a plain one.

// TLS handshake failure reasons given to Server.OnTLSError.
const (
	TLSVersion    = "version"     // no protocol version in common (TLS 1.0/1.1 client)
	TLSCipher     = "cipher"      // no cipher suite in common
	TLSUnknownSNI = "unknown_sni" // the config refused the server name
	TLSTimeout    = "timeout"     // not done within the header timeout
	TLSOther      = "other"       // anything else (bad records, plaintext HTTP, ...)
)

// TLSInfo is what a connection's handshake established.
type TLSInfo struct {
	State tls.ConnectionState
	// Hello is the ClientHello the handshake answered (for fingerprints).
	Hello *tls.ClientHelloInfo
}

// ConnTLS returns the TLS facts of a connection that ConnContext is given
// (on the HTTP/1 path or by the HTTP/2 server), or nil for plaintext.
func ConnTLS(c net.Conn) *TLSInfo {
	if h, ok := c.(*h2Conn); ok {
		c = h.Conn
	}
	if t, ok := c.(*tlsConn); ok {
		return &t.info
	}
	return nil
}

// tlsConn is a connection after its handshake.
type tlsConn struct {
	*tls.Conn
	info TLSInfo
}

// tlsTransport is what the TLS connection reads and writes: first the
// bytes the engine had buffered past a PROXY header, then the socket.
// Addresses are those of hc (the client's, after a PROXY header).
type tlsTransport struct {
	net.Conn // hc
	c        *conn
	pending  []byte
	received int64 // bytes read: a failed handshake without any was a probe

	// Set by the config's GetConfigForClient wrapper during the handshake.
	hello     *tls.ClientHelloInfo
	cfg       *tls.Config // what the inner GetConfigForClient returned
	configErr bool        // and whether it refused the hello
}

func (t *tlsTransport) Read(p []byte) (int, error) {
	if len(t.pending) > 0 {
		n := copy(p, t.pending)
		t.pending = t.pending[n:]
		t.received += int64(n)
		return n, nil
	}
	n, err := t.c.sockRead(p)
	t.received += int64(n)
	return n, err
}

func (t *tlsTransport) Write(p []byte) (int, error)        { return t.c.rawWrite(p) }
func (t *tlsTransport) Close() error                       { return t.c.rwc.Close() }
func (t *tlsTransport) SetDeadline(d time.Time) error      { return t.c.rwc.SetDeadline(d) }
func (t *tlsTransport) SetReadDeadline(d time.Time) error  { return t.c.rwc.SetReadDeadline(d) }
func (t *tlsTransport) SetWriteDeadline(d time.Time) error { return t.c.rwc.SetWriteDeadline(d) }

// wrapTLSConfig clones the listener's config once, with a
// GetConfigForClient that records each ClientHello on its connection's
// transport before asking the original. One clone per listener, not per
// connection: session ticket keys live in it, and a fresh config per
// connection would make every resumption fail.
func wrapTLSConfig(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	inner := base.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		t, _ := hello.Conn.(*tlsTransport)
		if t != nil {
			t.hello = hello
		}
		if inner == nil {
			return nil, nil
		}
		rc, err := inner(hello)
		if t != nil {
			t.cfg, t.configErr = rc, err != nil
		}
		return rc, err
	}
	return cfg
}

// handshake runs the TLS handshake within the deadline serve set and
// reports whether the connection goes on.
func (c *conn) handshake() bool {
	t := &tlsTransport{Conn: c.hc, c: c}
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		t.pending = slices.Clone(b)
		c.br.Discard(n)
	}
	tc := tls.Server(t, c.srv.tlsConfig)
	// The server's flight is bounded by the same deadline as the
	// client's.
	c.rwc.SetWriteDeadline(c.readDeadline)
	err := tc.Handshake()
	c.rwc.SetWriteDeadline(time.Time{})
	if err != nil {
		c.handshakeFailed(t, err)
		return false
	}
	c.tc = &tlsConn{Conn: tc, info: TLSInfo{State: tc.ConnectionState(), Hello: t.hello}}
	return true
}

// handshakeFailed reports a failed handshake. A connection that closed
// without sending a byte (a TCP health check, a port scan) is no refusal.
func (c *conn) handshakeFailed(t *tlsTransport, err error) {
	if (t.received == 0 && errors.Is(err, io.EOF)) || c.srv.shuttingDown() {
		return // (Shutdown cuts handshakes in progress: no client's fault)
	}
	reason := handshakeReason(t, err)
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader) {
		// Plain HTTP to an https port: say so, as net/http does, instead
		// of closing in silence.
		c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c.rwc, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
	}
	if reason == TLSTimeout && t.received > 0 {
		c.slow(SlowHeader)
	}
	if c.srv.OnTLSError != nil {
		c.srv.OnTLSError(c.hc, reason, err)
	}
}

// errNoCertificates is the text of crypto/tls's (unexported) error for a
// handshake it found no certificate for.
const errNoCertificates = "tls: no certificates configured"

func handshakeReason(t *tlsTransport, err error) string {
	// The config refused the name: by an error, or by having no
	// certificate for it (a config without certificates, or whose
	// GetCertificate returns none), which crypto/tls answers with
	// unrecognized_name and reports with errNoCertificates.
	if t.configErr || err.Error() == errNoCertificates {
		return TLSUnknownSNI
	}
	if isTimeoutErr(err) {
		return TLSTimeout
	}
	if t.hello != nil && !versionInCommon(t.hello.SupportedVersions, t.cfg) {
		return TLSVersion
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "older than TLS 1.3"):
		return TLSVersion
	case strings.Contains(msg, "no cipher suite supported"):
		return TLSCipher
	}
	return TLSOther
}

// versionInCommon reports whether the client offered a version cfg
// accepts (crypto/tls's server defaults: TLS 1.2 to 1.3).
func versionInCommon(offered []uint16, cfg *tls.Config) bool {
	lo, hi := uint16(tls.VersionTLS12), uint16(tls.VersionTLS13)
	if cfg != nil {
		if cfg.MinVersion != 0 {
			lo = cfg.MinVersion
		}
		if cfg.MaxVersion != 0 {
			hi = cfg.MaxVersion
		}
	}
	for _, v := range offered {
		if v >= lo && v <= hi {
			return true
		}
	}
	return false
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}

// handOffH2TLS passes a connection that negotiated "h2" to the HTTP/2
// server right after its handshake; the client's preface is still to
// come and is read by the HTTP/2 server.
func (c *conn) handOffH2TLS() {
	c.setReadDeadline(time.Time{})
	c.flushOnRead.Store(false)
	h2 := c.srv.h2
	pre := newH2Conn(c.tc, c.hc, c.tc, h2)
	c.hijacked.Store(true)
	c.handedOff = true
	c.srv.untrack(c)
	h2.hand(pre)
}
