package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// ppConfig: "pp" reads PROXY headers from loopback; "ppu" does too, but
// trusts only 10.0.0.0/8, so loopback is an untrusted peer there.
func ppConfig(t *testing.T, b *testBackend, slowloris ...string) string {
	sl := "{header_timeout_seconds: 1}"
	if len(slowloris) > 0 {
		sl = slowloris[0]
	}
	return fmt.Sprintf(`
listeners:
  - {name: pp, listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1/32], proxy_protocol: true}
  - {name: ppu, listen: %q, trusted_proxies: [10.0.0.0/8], proxy_protocol: true}
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools: [{name: p, backends: %s}]
logging: {access_log: {path: access.log}}
security:
  slowloris_protection: %s
  ip_lists:
    blocklist: [203.0.113.0/24, "2001:db8:bad::/48"]
`, freeAddr(t), backendsYAML(b), sl)
}

func ppV1(proto, src, dst string, sport, dport int) []byte {
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, src, dst, sport, dport)
}

// ppV2 builds a v2 PROXY (cmd 1) or LOCAL (cmd 0) header for TCP over the
// family of src.
func ppV2(cmd byte, src, dst netip.AddrPort) []byte {
	b := append([]byte(nil), ppV2Sig...)
	var addrs []byte
	fam := byte(0x11)
	if src.Addr().Is4() {
		s, d := src.Addr().As4(), dst.Addr().As4()
		addrs = append(append(addrs, s[:]...), d[:]...)
	} else {
		fam = 0x21
		s, d := src.Addr().As16(), dst.Addr().As16()
		addrs = append(append(addrs, s[:]...), d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)))
	return append(b, addrs...)
}

const ppRequest = "GET /pp HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"

// ppSend dials addr, writes pre and a request, and returns the answer; a
// nil response means the connection was closed without one.
func ppSend(t *testing.T, addr string, pre []byte) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append(append([]byte(nil), pre...), ppRequest...)); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
			return nil
		}
		t.Fatalf("reading the answer: %v", err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	return r
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

func addrOf(t *testing.T, e *testEnv, l string) string {
	t.Helper()
	a := e.srv.Addr(l)
	if a == "" {
		t.Fatalf("listener %s not bound", l)
	}
	return a
}

func TestProxyProtocolTrusted(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, ppConfig(t, b))
	addr := addrOf(t, e, "pp")
	dst := netip.MustParseAddrPort(addr)
	cases := []struct {
		name   string
		header []byte
		ip     string
		port   int
	}{
		{"v1 TCP4", ppV1("TCP4", "198.51.100.10", "127.0.0.1", 40001, 80), "198.51.100.10", 40001},
		{"v1 TCP6", ppV1("TCP6", "2001:db8::10", "2001:db8::1", 40002, 80), "2001:db8::10", 40002},
		{"v2 TCP4", ppV2(1, netip.MustParseAddrPort("198.51.100.20:40003"), dst), "198.51.100.20", 40003},
		{"v2 TCP6", ppV2(1, netip.MustParseAddrPort("[2001:db8::20]:40004"), netip.MustParseAddrPort("[2001:db8::1]:80")), "2001:db8::20", 40004},
		// LOCAL (the balancer's own health check) and UNKNOWN: the peer is the client.
		{"v2 LOCAL", ppV2(0, netip.MustParseAddrPort("198.51.100.30:1"), dst), "127.0.0.1", -1},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "127.0.0.1", -1},
	}
	for i, tc := range cases {
		r := ppSend(t, addr, tc.header)
		if r == nil || r.StatusCode != 200 {
			t.Fatalf("%s: answer %v, want 200", tc.name, r)
		}
		if got := b.header().Get("X-Forwarded-For"); got != tc.ip {
			t.Errorf("%s: backend saw X-Forwarded-For %q, want %q", tc.name, got, tc.ip)
		}
		l := accessLogLines(t, e.dir+"/access.log", i+1)[i]
		if l["client_ip"] != tc.ip {
			t.Errorf("%s: access log client_ip %v, want %s", tc.name, l["client_ip"], tc.ip)
		}
		if tc.port >= 0 && l["client_port"] != float64(tc.port) {
			t.Errorf("%s: access log client_port %v, want %d", tc.name, l["client_port"], tc.port)
		}
	}
}

// The header's client counts for the per-IP connection limit, not the
// balancer all clients come through.
func TestProxyProtocolConnLimitPerClient(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, ppConfig(t, b, "{header_timeout_seconds: 2, max_connections_per_ip: 1}"))
	addr := addrOf(t, e, "pp")
	hold := func(src string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(ppV1("TCP4", src, "127.0.0.1", 1000, 80))
		return c
	}
	hold("198.51.100.1")
	eventually(t, "198.51.100.1 counted", func() bool { return e.srv.conns.open(netip.MustParseAddr("198.51.100.1")) == 1 })
	if n := e.srv.conns.open(netip.MustParseAddr("127.0.0.1")); n != 0 {
		t.Errorf("the balancer has %d connections counted, want 0", n)
	}
	// Another client through the same balancer is let in; a second
	// connection of the first client is not.
	if r := ppSend(t, addr, ppV1("TCP4", "198.51.100.2", "127.0.0.1", 1000, 80)); r == nil || r.StatusCode != 200 {
		t.Fatalf("second client: %v, want 200", r)
	}
	if r := ppSend(t, addr, ppV1("TCP4", "198.51.100.1", "127.0.0.1", 1001, 80)); r != nil {
		t.Fatalf("client over its limit: %d, want the connection closed", r.StatusCode)
	}
	eventually(t, "198.51.100.2 released", func() bool { return e.srv.conns.open(netip.MustParseAddr("198.51.100.2")) == 0 })
}

// From an untrusted peer a PROXY header is not believed: it is a malformed
// request.
func TestProxyProtocolUntrustedPeer(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, ppConfig(t, b))
	addr := addrOf(t, e, "ppu")
	for _, h := range [][]byte{
		ppV1("TCP4", "198.51.100.10", "127.0.0.1", 40001, 80),
		ppV2(1, netip.MustParseAddrPort("198.51.100.20:40003"), netip.MustParseAddrPort("127.0.0.1:80")),
	} {
		r := ppSend(t, addr, h)
		if r == nil || r.StatusCode != http.StatusBadRequest {
			t.Fatalf("PROXY header %q from an untrusted peer: %v, want 400", h, r)
		}
	}
	// Plain HTTP from it is served, with its own address as the client.
	if r := ppSend(t, addr, nil); r == nil || r.StatusCode != 200 {
		t.Fatalf("plain request from an untrusted peer: %v, want 200", r)
	}
	if got := b.header().Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want 127.0.0.1", got)
	}
	if n := b.hits.Load(); n != 1 {
		t.Errorf("backend saw %d requests, want 1", n)
	}
	for _, l := range accessLogLines(t, e.dir+"/access.log", 3) {
		if l["client_ip"] != "127.0.0.1" {
			t.Errorf("access log client_ip %v, want 127.0.0.1: %v", l["client_ip"], l)
		}
	}
}

// The ACL connection guard is asked again about the header's client.
func TestProxyProtocolBlocklisted(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, ppConfig(t, b))
	addr := addrOf(t, e, "pp")
	for _, h := range [][]byte{
		ppV1("TCP4", "203.0.113.5", "127.0.0.1", 40001, 80),
		ppV2(1, netip.MustParseAddrPort("[2001:db8:bad::5]:40003"), netip.MustParseAddrPort("[2001:db8::1]:80")),
	} {
		if r := ppSend(t, addr, h); r != nil {
			t.Fatalf("blocklisted client %q: %d, want the connection closed", h, r.StatusCode)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
	lines := accessLogLines(t, e.dir+"/access.log", 2)
	for i, want := range []string{"203.0.113.5", "2001:db8:bad::5"} {
		if lines[i]["client_ip"] != want || lines[i]["acl_action"] != "deny" || lines[i]["error"] != "blocked_at_accept" {
			t.Errorf("access log line %d: %v, want %s denied at accept", i, lines[i], want)
		}
	}
}

// A trusted peer must open with a valid header.
func TestProxyProtocolMalformed(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, ppConfig(t, b))
	addr := addrOf(t, e, "pp")
	bad := [][]byte{
		nil, // no header at all: a plain request
		[]byte("PROXY TCP4 198.51.100.1 127.0.0.1 1 80\n"),                    // LF only
		[]byte("PROXY TCP4 2001:db8::1 127.0.0.1 1 80\r\n"),                   // family mismatch
		[]byte("PROXY TCP4 198.51.100.1 127.0.0.1 01 80\r\n"),                 // leading zero
		[]byte("PROXY TCP4  198.51.100.1 127.0.0.1 1 80\r\n"),                 // double space
		[]byte("PROXY UDP4 198.51.100.1 127.0.0.1 1 80\r\n"),                  // protocol
		[]byte("PROXY TCP4 198.51.100.1 127.0.0.1 1 65536\r\n"),               // port range
		[]byte("PROXY TCP4 198.51.100.1 127.0.0.1 1 80 9\r\n"),                // extra field
		append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 200)...),      // too long
		append(append([]byte(nil), ppV2Sig...), 0x31, 0x11, 0, 12),            // v2 version 3
		append(append([]byte(nil), ppV2Sig...), 0x21, 0x11, 0, 4, 1, 2, 3, 4), // truncated addresses
		append(append([]byte(nil), ppV2Sig...), 0x21, 0x31, 0, 0),             // AF_UNIX
		append(append([]byte(nil), ppV2Sig...), 0x21, 0x11, 0xff, 0xff),       // longer than allowed
		[]byte("\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c"),                      // bad signature
	}
	for _, h := range bad {
		if r := ppSend(t, addr, h); r != nil {
			t.Errorf("malformed header %q: %d, want the connection closed", h, r.StatusCode)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests, want 0", n)
	}
	lines := accessLogLines(t, e.dir+"/access.log", len(bad))
	for _, l := range lines {
		if l["client_ip"] != "127.0.0.1" || !strings.HasPrefix(fmt.Sprint(l["error"]), "proxy_protocol: ") {
			t.Errorf("access log: %v, want a proxy_protocol refusal of 127.0.0.1", l)
		}
	}
}

// A header trickled byte by byte is cut off at the header timeout.
func TestProxyProtocolSlowHeader(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, ppConfig(t, b))
	c, err := net.Dial("tcp", addrOf(t, e, "pp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	h := ppV1("TCP4", "198.51.100.10", "127.0.0.1", 40001, 80)
	closed := make(chan time.Duration, 1)
	go func() {
		var buf [64]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	for i := 0; i < len(h)-1; i++ {
		if _, err := c.Write(h[i : i+1]); err != nil {
			break
		}
		select {
		case d := <-closed:
			if d > 2500*time.Millisecond {
				t.Fatalf("closed after %v, want about the 1s header timeout", d)
			}
			l := accessLogLines(t, e.dir+"/access.log", 1)[0]
			if l["error"] != "proxy_protocol: timeout" {
				t.Errorf("access log: %v, want a proxy_protocol timeout", l)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	select {
	case d := <-closed:
		if d > 2500*time.Millisecond {
			t.Fatalf("closed after %v, want about the 1s header timeout", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a slow PROXY header was not cut off at the header timeout")
	}
}
