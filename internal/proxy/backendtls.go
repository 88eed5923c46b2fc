package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/evloop"
)

// backendTLS is a pool's compiled backend_tls settings: how a connection to
// one of its backends is encrypted and what the backend must prove. It is
// immutable; a reload that changes any setting or file installs a new one
// (Pool.configure), and connections made under the old one are not reused.
//
// Go's own verification is off (InsecureSkipVerify) only so that
// VerifyConnection can do all of it in one place: the chain against
// ca_certificate, revocation against crl_file, and the name against
// allowed_sans (wildcards) or else the expected host. It runs on every
// handshake, resumed ones included.
type backendTLS struct {
	base        *tls.Config // shared settings; cloned per dial for the server name
	verify      bool
	roots       *x509.CertPool
	allowedSANs []string // lower case
	sni         string
	revoked     map[string]struct{} // revocationKey(issuer, serial)
	fingerprint [32]byte
}

// newBackendTLS compiles validated settings; nil means plaintext.
func newBackendTLS(c *config.BackendTLS) *backendTLS {
	m := c.Material()
	if m == nil {
		return nil
	}
	bt := &backendTLS{
		verify:      c.Verifies(),
		roots:       m.Roots,
		sni:         c.SNIHostname,
		fingerprint: m.Fingerprint,
	}
	for _, s := range c.AllowedSANs {
		bt.allowedSANs = append(bt.allowedSANs, strings.ToLower(s))
	}
	for _, crl := range m.CRLs {
		if bt.revoked == nil {
			bt.revoked = map[string]struct{}{}
		}
		for _, e := range crl.RevokedCertificateEntries {
			bt.revoked[revocationKey(crl.RawIssuer, e.SerialNumber.Bytes())] = struct{}{}
		}
	}
	bt.base = &tls.Config{
		MinVersion:         m.MinVersion,
		InsecureSkipVerify: true, // verification is VerifyConnection's (see above)
		// The direct client speaks HTTP/1.1; announcing it keeps a backend
		// that also speaks h2 from choosing it.
		NextProtos:         []string{"http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	if m.ClientCert != nil {
		cert := m.ClientCert
		// Presented whenever the backend asks, whatever CAs it names: a
		// backend that does not trust it says so, and the refusal is
		// logged, rather than a silent connection without a certificate.
		bt.base.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return bt
}

// matches reports whether bt was compiled from settings and files with
// m's fingerprint (both nil: plaintext).
func (bt *backendTLS) matches(m *config.BackendTLSMaterial) bool {
	if bt == nil || m == nil {
		return bt == nil && m == nil
	}
	return bt.fingerprint == m.Fingerprint
}

func revocationKey(rawIssuer, serial []byte) string {
	return string(rawIssuer) + "\x00" + string(serial)
}

// dialBackend connects to addr, over TLS when bt is not nil. timeout
// bounds the TCP connect and the handshake each.
func dialBackend(ctx context.Context, bt *backendTLS, addr string, timeout time.Duration) (net.Conn, error) {
	if bt == nil {
		// On an event loop, the connect waits by yielding to it.
		if c, ok, err := evloop.Dial(ctx, addr, timeout); ok {
			return c, err
		}
	}
	dl := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil || bt == nil {
		return c, err
	}
	return bt.handshake(ctx, c, addr, timeout)
}

// handshake runs the TLS client handshake on c, closing c on failure.
func (bt *backendTLS) handshake(ctx context.Context, c net.Conn, addr string, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	cfg := bt.base.Clone()
	// The name checked when allowed_sans is not set: the name the backend
	// was asked for, else the address it was reached at.
	name := host
	if bt.sni != "" {
		cfg.ServerName, name = bt.sni, bt.sni
	} else if _, err := netip.ParseAddr(host); err != nil {
		cfg.ServerName = host
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { return bt.verifyPeer(cs, name) }
	// Whether the backend asked for a client certificate: a TLS 1.3
	// backend that refuses ours (or its absence) says so only after the
	// handshake (see certRefusalConn).
	var asked bool
	if get := cfg.GetClientCertificate; get != nil {
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			return get(cri)
		}
	} else {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			return &tls.Certificate{}, nil // none: the backend decides
		}
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		if hctx.Err() != nil && ctx.Err() == nil {
			return nil, &BackendTLSError{Reason: "handshake timed out", err: err}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, tlsFailure(err)
	}
	if asked && tc.ConnectionState().Version >= tls.VersionTLS13 {
		reason := "refused by backend (certificate required)"
		if bt.base.GetClientCertificate != nil {
			reason = "refused by backend (client certificate rejected)"
		}
		return &certRefusalConn{Conn: tc, reason: reason}, nil
	}
	return tc, nil
}

// certRefusalConn is a TLS 1.3 connection to a backend that asked for a
// client certificate. Such a backend checks the certificate (or its
// absence) after the client's handshake has completed and refuses with an
// alert and a close, while the request is already being written. What the
// caller then sees depends on timing: the alert; a reset that discarded
// it; or, when http.Transport's reader got the alert and closed the
// connection, "use of closed network connection" on the writer's side,
// which is the error it returns. Until the first response byte arrives,
// each of these is reported as the one refusal it is.
type certRefusalConn struct {
	net.Conn
	reason  string
	settled atomic.Bool                     // a response byte arrived: the backend accepted us
	refused atomic.Pointer[BackendTLSError] // the refusal seen first
}

// NetConn returns the TLS connection it wraps.
func (c *certRefusalConn) NetConn() net.Conn { return c.Conn }

func (c *certRefusalConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.settled.Store(true)
	}
	return n, c.refusal(err)
}

func (c *certRefusalConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	return n, c.refusal(err)
}

func (c *certRefusalConn) refusal(err error) error {
	if err == nil || c.settled.Load() {
		return err
	}
	if tlsAlert(err) {
		c.refused.CompareAndSwap(nil, tlsFailure(err))
		return err
	}
	if r := c.refused.Load(); r != nil {
		return r
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		c.refused.CompareAndSwap(nil, &BackendTLSError{Reason: c.reason, err: err})
		return c.refused.Load()
	}
	return err
}

// verifyPeer decides whether the backend may be talked to. Its errors
// name the reason the access log shows.
func (bt *backendTLS) verifyPeer(cs tls.ConnectionState, name string) error {
	if !bt.verify {
		return nil
	}
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return &BackendTLSError{Reason: "no certificate"}
	}
	leaf := certs[0]
	opts := x509.VerifyOptions{Roots: bt.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if len(certs) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return &BackendTLSError{Reason: "certificate expired or not yet valid", err: err}
		}
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return &BackendTLSError{Reason: "certificate not issued by ca_certificate", err: err}
		}
		return &BackendTLSError{Reason: "certificate not trusted", err: err}
	}
	if bt.revoked != nil {
		for _, chain := range chains {
			for _, c := range chain {
				if _, r := bt.revoked[revocationKey(c.RawIssuer, c.SerialNumber.Bytes())]; r {
					return &BackendTLSError{Reason: "certificate revoked"}
				}
			}
		}
	}
	if len(bt.allowedSANs) > 0 {
		if !sanAllowed(leaf, bt.allowedSANs) {
			return &BackendTLSError{Reason: "certificate SAN not allowed"}
		}
		return nil
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return &BackendTLSError{Reason: "certificate name mismatch", err: err}
	}
	return nil
}

// sanAllowed reports whether one of the certificate's DNS or IP SANs
// matches one of the patterns: equal (DNS names without regard to case),
// or "*.rest" matching exactly one label in front of rest. A wildcard in
// the certificate only matches the identical wildcard pattern: it is a
// claim to many names, allowed only if the operator allowed as many.
func sanAllowed(cert *x509.Certificate, patterns []string) bool {
	for _, dns := range cert.DNSNames {
		dns = strings.ToLower(strings.TrimSuffix(dns, "."))
		for _, p := range patterns {
			if dns == p {
				return true
			}
			if rest, ok := strings.CutPrefix(p, "*."); ok && !strings.HasPrefix(dns, "*") {
				if label, tail, found := strings.Cut(dns, "."); found && label != "" && tail == rest {
					return true
				}
			}
		}
	}
	for _, ip := range cert.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		for _, p := range patterns {
			if pa, err := netip.ParseAddr(p); err == nil && pa.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// BackendTLSError is a backend refused, or refusing, at the TLS layer. Its
// Reason is short and fixed (never a Go error string) and goes into the
// access log's error field as "backend_tls: REASON"; the client sees only a
// generic 502.
type BackendTLSError struct {
	Reason string
	err    error
}

func (e *BackendTLSError) Error() string { return "backend_tls: " + e.Reason }

func (e *BackendTLSError) Unwrap() error { return e.err }

// tlsFailure names why a handshake (or the first read after it, where a
// TLS 1.3 server reports a refused client certificate) failed, or returns
// nil when err is not about TLS.
func tlsFailure(err error) *BackendTLSError {
	var bte *BackendTLSError
	if errors.As(err, &bte) {
		return bte
	}
	// The backend's alert: its text comes from crypto/tls's fixed table
	// ("tls: certificate required", "tls: protocol version not supported").
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return &BackendTLSError{Reason: "refused by backend (" + strings.TrimPrefix(op.Err.Error(), "tls: ") + ")", err: err}
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return &BackendTLSError{Reason: "backend does not speak TLS", err: err}
	}
	return &BackendTLSError{Reason: "handshake failed", err: err}
}

// tlsAlert reports whether err is a TLS alert the backend sent.
func tlsAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// tlsReason returns the access-log reason for a request that failed
// because of backend TLS, or "".
func tlsReason(err error) string {
	var bte *BackendTLSError
	if errors.As(err, &bte) || tlsAlert(err) {
		return tlsFailure(err).Error()
	}
	return ""
}
