package server

import (
	"net/netip"
	"strings"

	"github.com/rampart-proxy/rampart/internal/config"
)

// trustedProxies is a small list of prefixes; listeners rarely trust more
// than a handful of load balancers in front of them, so a linear scan beats
// a tree here.
type trustedProxies []netip.Prefix

func newTrustedProxies(entries []string) trustedProxies {
	return config.ParsePrefixes(entries)
}

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the client address and the X-Forwarded-For value to send
// upstream. The peer is the client unless it is a trusted proxy; then the
// right-most X-Forwarded-For entry that is not itself trusted is. Entries
// left of it were written by parties nobody vouches for, so they are never
// believed, and a header from an untrusted peer is discarded entirely.
func (t trustedProxies) clientIP(peer netip.Addr, xff []string) (client netip.Addr, forwardedFor string) {
	peer = peer.Unmap()
	if len(t) == 0 || !t.contains(peer) || len(xff) == 0 {
		return peer, peer.String()
	}
	chain := strings.Join(xff, ",")
	client = peer
	rest := chain
	for rest != "" {
		i := strings.LastIndexByte(rest, ',')
		entry := strings.TrimSpace(rest[i+1:])
		rest = rest[:max(i, 0)]
		if entry == "" {
			continue // "a, , b" or a trailing comma: an empty element (RFC 9110 §5.6.1)
		}
		a, err := parseForwardedAddr(entry)
		if err != nil {
			break // garbage in the chain: stop at the last address we could verify
		}
		client = a.Unmap()
		if !t.contains(client) {
			break
		}
	}
	return client, chain + ", " + peer.String()
}

// parseForwardedAddr parses an X-Forwarded-For element: an address, or an
// address with a port ("203.0.113.7:1234", "[2001:db8::1]:443"), which
// some load balancers (Azure Application Gateway, IIS ARR) write. Without
// the port form, such a client fell back to the proxy's address, and
// with it the proxy's exemptions.
func parseForwardedAddr(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr(), err
}
