package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/rampart-proxy/rampart/internal/acl"
)

// PROXY protocol (HAProxy's spec, versions 1 and 2): a load balancer in
// front of Rampart opens each connection with a header naming the client.
// It is read only on listeners with proxy_protocol: true and only from
// peers in their trusted_proxies; anyone else's connection is plain HTTP,
// so a PROXY header from them is a malformed request (400), never believed.
//
// The parser is Rampart's own rather than a library's: the header must be
// read on the connection's goroutine (never in the accept loop, where a slow
// peer would stall every other accept), from the engine's buffered reader
// (so the request bytes behind it are neither lost nor copied), under the
// engine's header timeout, and only after the trust decision — hooks a
// listener-wrapping library does not offer.

var (
	ppV1Sig = []byte("PROXY ")
	ppV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

const (
	ppV1Max = 107 // the longest v1 line, CRLF included
	// ppV2Max bounds a v2 header (16 bytes and its addresses and TLVs) by
	// the engine's read buffer.
	ppV2Max = 4096
)

// errPP is a header that is not a valid PROXY v1 or v2 header.
type errPP string

func (e errPP) Error() string { return "invalid PROXY protocol header: " + string(e) }

// readProxyHeader reads a PROXY v1 or v2 header from br and returns the
// client address it names; ok false means the header carries none (v1
// UNKNOWN, v2 LOCAL or UNSPEC): the peer is the client. Only the header's
// bytes are consumed.
func readProxyHeader(br *bufio.Reader) (src netip.AddrPort, ok bool, err error) {
	b, err := br.Peek(1)
	if err != nil {
		return src, false, err
	}
	switch b[0] {
	case 'P':
		return readV1(br)
	case '\r':
		return readV2(br)
	}
	return src, false, errPP("no PROXY signature")
}

// expectSig checks that br starts with sig, failing as soon as a byte that
// has arrived differs.
func expectSig(br *bufio.Reader, sig []byte) error {
	for n := 1; ; {
		b, err := br.Peek(n)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(sig, b) {
			return errPP("no PROXY signature")
		}
		if n == len(sig) {
			return nil
		}
		n = max(n+1, min(br.Buffered(), len(sig)))
	}
}

func readV1(br *bufio.Reader) (netip.AddrPort, bool, error) {
	if err := expectSig(br, ppV1Sig); err != nil {
		return netip.AddrPort{}, false, err
	}
	var line []byte
	for n := len(ppV1Sig) + 1; ; {
		if _, err := br.Peek(n); err != nil {
			return netip.AddrPort{}, false, err
		}
		b, _ := br.Peek(min(br.Buffered(), ppV1Max))
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
			break
		}
		if len(b) >= ppV1Max {
			return netip.AddrPort{}, false, errPP("v1 line too long")
		}
		n = len(b) + 1
	}
	defer br.Discard(len(line))
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return netip.AddrPort{}, false, errPP("v1 line not ended by CRLF")
	}
	f := bytes.Split(line[len(ppV1Sig):len(line)-2], []byte{' '})
	if string(f[0]) == "UNKNOWN" {
		return netip.AddrPort{}, false, nil // the rest is to be ignored
	}
	if len(f) != 5 {
		return netip.AddrPort{}, false, errPP("v1 needs protocol, 2 addresses and 2 ports")
	}
	src, err1 := netip.ParseAddr(string(f[1]))
	dst, err2 := netip.ParseAddr(string(f[2]))
	sp, ok1 := ppPort(f[3])
	_, ok2 := ppPort(f[4])
	if err1 != nil || err2 != nil || !ok1 || !ok2 || src.Zone() != "" || dst.Zone() != "" {
		return netip.AddrPort{}, false, errPP("v1 bad address or port")
	}
	switch string(f[0]) {
	case "TCP4":
		if !src.Is4() || !dst.Is4() {
			return netip.AddrPort{}, false, errPP("v1 TCP4 with a non-IPv4 address")
		}
	case "TCP6":
		if !src.Is6() || !dst.Is6() {
			return netip.AddrPort{}, false, errPP("v1 TCP6 with a non-IPv6 address")
		}
	default:
		return netip.AddrPort{}, false, errPP("v1 unknown protocol")
	}
	return netip.AddrPortFrom(src.Unmap(), sp), true, nil
}

// ppPort parses a v1 port: decimal, 0 to 65535, no leading zero.
func ppPort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(n), err == nil
}

func readV2(br *bufio.Reader) (netip.AddrPort, bool, error) {
	if err := expectSig(br, ppV2Sig); err != nil {
		return netip.AddrPort{}, false, err
	}
	h, err := br.Peek(16)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	verCmd, fam := h[12], h[13]
	total := 16 + int(binary.BigEndian.Uint16(h[14:16]))
	if verCmd>>4 != 2 {
		return netip.AddrPort{}, false, errPP("v2 bad version")
	}
	if total > ppV2Max {
		return netip.AddrPort{}, false, errPP("v2 header too long")
	}
	h, err = br.Peek(total)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	defer br.Discard(total)
	body := h[16:]
	switch verCmd & 0xF {
	case 0x0: // LOCAL: the proxy's own connection (health check)
		return netip.AddrPort{}, false, nil
	case 0x1: // PROXY
	default:
		return netip.AddrPort{}, false, errPP("v2 bad command")
	}
	switch fam {
	case 0x00: // UNSPEC: the receiver uses the real addresses
		return netip.AddrPort{}, false, nil
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return netip.AddrPort{}, false, errPP("v2 TCP4 addresses truncated")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		return netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10])), true, nil
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return netip.AddrPort{}, false, errPP("v2 TCP6 addresses truncated")
		}
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34])), true, nil
	}
	return netip.AddrPort{}, false, errPP("v2 unsupported address family")
}

// ppConn is a connection of a proxy_protocol listener as the rest of
// Rampart sees it: RemoteAddr is the client (the header's source, or the
// peer), and counted says the connection guard counted it for client.
type ppConn struct {
	net.Conn
	client  netip.AddrPort
	counted bool
}

func (c *ppConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.client) }

// preface is the engine's Preface on proxy_protocol listeners. admit has
// checked the peer against the IP lists but counted nothing: the per-IP
// limits apply to the client, known only now.
func (e *entry) preface(c net.Conn, br *bufio.Reader) (net.Conn, bool) {
	peer, ok := addrPort(c.RemoteAddr())
	if !ok {
		return nil, false
	}
	pc := &ppConn{Conn: c, client: peer}
	t := e.srv.table.Load()
	lt := t.listeners[*e.l.name.Load()]
	if lt != nil && lt.trusted.contains(peer.Addr()) {
		src, ok, err := readProxyHeader(br)
		if err != nil {
			reason := "invalid_header"
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				reason = "timeout"
			case errors.Is(err, io.EOF) && br.Buffered() == 0:
				// Connected and left without a byte (a TCP health check):
				// nothing was refused.
				return pc, false
			case !errors.As(err, new(errPP)):
				reason = "read_error"
			}
			e.srv.metrics.Blocked("proxy_protocol", reason)
			e.logAccept(peer, "", "", "proxy_protocol: "+reason)
			e.srv.log.Debug("PROXY protocol header refused", "listener", *e.l.name.Load(), "peer", peer.String(), "error", err.Error())
			return pc, false
		}
		if ok {
			pc.client = src
		}
	}
	client := pc.client.Addr()
	d := e.srv.acl.Check(client)
	if d.Action == acl.ActionDeny { // the client's, or the peer's again
		e.srv.metrics.Blocked("acl_accept", sourceKind(d.Source))
		e.logAccept(pc.client, "deny", d.Source, "blocked_at_accept")
		return pc, false
	}
	maxOpen, maxNew := t.maxConnsPerIP, t.maxNewPerIP
	if d.Action == acl.ActionAllow {
		maxOpen, maxNew = 0, 0
	}
	if reason := e.srv.conns.admit(client, maxOpen, maxNew, time.Now()); reason != "" {
		e.srv.metrics.Blocked("conn_limit", reason)
		e.logAccept(pc.client, "", "", "conn_limit: "+reason)
		return pc, false
	}
	pc.counted = true
	return pc, true
}
