package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestSANAllowed(t *testing.T) {
	cases := []struct {
		dns      []string
		ips      []string
		patterns []string
		want     bool
	}{
		{dns: []string{"b1.api.internal.example.com"}, patterns: []string{"*.api.internal.example.com"}, want: true},
		{dns: []string{"B1.API.Internal.Example.com"}, patterns: []string{"*.api.internal.example.com"}, want: true},
		{dns: []string{"api.internal.example.com"}, patterns: []string{"*.api.internal.example.com"}, want: false},
		{dns: []string{"a.b1.api.internal.example.com"}, patterns: []string{"*.api.internal.example.com"}, want: false},
		{dns: []string{"b1.api.internal.example.com.evil.net"}, patterns: []string{"*.api.internal.example.com"}, want: false},
		{dns: []string{"xapi.internal.example.com"}, patterns: []string{"*.api.internal.example.com"}, want: false},
		{dns: []string{"evil.net", "b2.api.internal.example.com"}, patterns: []string{"*.api.internal.example.com"}, want: true},
		{dns: []string{"db.internal.example.com"}, patterns: []string{"api.internal.example.com", "db.internal.example.com"}, want: true},
		// A wildcard certificate claims every name under it: only an
		// identical wildcard pattern allows it.
		{dns: []string{"*.api.internal.example.com"}, patterns: []string{"b1.api.internal.example.com"}, want: false},
		{dns: []string{"*.api.internal.example.com"}, patterns: []string{"*.api.internal.example.com"}, want: true},
		{ips: []string{"10.0.0.7"}, patterns: []string{"10.0.0.7"}, want: true},
		{ips: []string{"10.0.0.8"}, patterns: []string{"10.0.0.7"}, want: false},
		{ips: []string{"::1"}, patterns: []string{"::1"}, want: true},
		{dns: []string{"10.0.0.7"}, patterns: []string{"*.example.com"}, want: false},
		{patterns: []string{"*.example.com"}, want: false},
	}
	for _, tc := range cases {
		c := &x509.Certificate{DNSNames: tc.dns}
		for _, ip := range tc.ips {
			c.IPAddresses = append(c.IPAddresses, net.ParseIP(ip))
		}
		if got := sanAllowed(c, tc.patterns); got != tc.want {
			t.Errorf("SANs %v %v, allowed %v: got %v, want %v", tc.dns, tc.ips, tc.patterns, got, tc.want)
		}
	}
}

// Every refusal reason is short and fixed: no Go error text or address
// ends up in the access log's error field.
func TestTLSFailureReasons(t *testing.T) {
	remote := &net.OpError{Op: "remote error", Err: tls.AlertError(116)} // certificate_required
	cases := []struct {
		err  error
		want string
	}{
		{&BackendTLSError{Reason: "certificate revoked"}, "backend_tls: certificate revoked"},
		{fmt.Errorf("wrapped: %w", &BackendTLSError{Reason: "certificate SAN not allowed"}), "backend_tls: certificate SAN not allowed"},
		{remote, "backend_tls: refused by backend (certificate required)"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "backend_tls: backend does not speak TLS"},
		{io.EOF, "backend_tls: handshake failed"},
	}
	for _, tc := range cases {
		if got := tlsFailure(tc.err).Error(); got != tc.want {
			t.Errorf("tlsFailure(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if r := tlsReason(&net.OpError{Op: "dial", Err: errors.New("connection refused")}); r != "" {
		t.Errorf("dial error given a TLS reason %q", r)
	}
	if r := tlsReason(remote); r != "backend_tls: refused by backend (certificate required)" {
		t.Errorf("tlsReason(alert) = %q", r)
	}
}

// scriptedConn returns the scripted errors from Read and Write.
type scriptedConn struct {
	net.Conn
	reads, writes []error
	data          []byte // returned by a Read whose scripted error is nil
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	err := c.reads[0]
	c.reads = c.reads[1:]
	if err == nil {
		return copy(p, c.data), nil
	}
	return 0, err
}

func (c *scriptedConn) Write(p []byte) (int, error) {
	err := c.writes[0]
	c.writes = c.writes[1:]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// A TLS 1.3 backend's refusal of the client certificate reaches the
// caller as a refusal whichever side of the connection fails first.
func TestCertRefusalConn(t *testing.T) {
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}
	closed := &net.OpError{Op: "write", Err: net.ErrClosed}
	reset := &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.ECONNRESET)}
	const want = "backend_tls: refused by backend (certificate required)"
	buf := make([]byte, 8)

	// The reader gets the alert and closes; the writer then fails on
	// the closed connection: its error names the refusal.
	c := &certRefusalConn{Conn: &scriptedConn{reads: []error{alert}, writes: []error{closed}}, reason: "refused by backend (certificate required)"}
	if _, err := c.Read(buf); tlsReason(err) != want {
		t.Errorf("read: %q, want %q", tlsReason(err), want)
	}
	if _, err := c.Write(buf); tlsReason(err) != want {
		t.Errorf("write after the alert: %v (reason %q), want %q", err, tlsReason(err), want)
	}

	// The alert was discarded by a reset.
	c = &certRefusalConn{Conn: &scriptedConn{writes: []error{reset}}, reason: "refused by backend (certificate required)"}
	if _, err := c.Write(buf); tlsReason(err) != want || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reset: %v (reason %q), want %q wrapping ECONNRESET", err, tlsReason(err), want)
	}

	// Once the backend answered, a reset is a reset, not a refusal.
	c = &certRefusalConn{Conn: &scriptedConn{reads: []error{nil}, writes: []error{reset}, data: []byte("HTTP/1.1")}, reason: "refused by backend (certificate required)"}
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf); tlsReason(err) != "" || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reset after a response: %v (reason %q), want the plain reset", err, tlsReason(err))
	}
}
