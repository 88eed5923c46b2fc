package tlsterm

import (
	"crypto/tls"
	"testing"
	"time"
)

// ticketFixture serves api.example.com with the given tls keys and a
// movable clock.
func ticketFixture(t *testing.T, tlsKeys string) (*testCA, *clock, *Terminator, string) {
	t.Helper()
	dir := t.TempDir()
	ca := newTestCA(t)
	ca.issue(t, leafSpec{dns: []string{"api.example.com"}}).write(t, dir, "api")
	cfg, l := listenerConfig(t, dir, "tls:\n"+tlsKeys+"  certificates: [{name: api, cert_file: api.pem, key_file: api-key.pem}]")
	clk := &clock{}
	term := newTerminator(t, cfg, l, Options{Now: clk.now})
	return ca, clk, term, serve(t, term)
}

// resumingClient is a client with its own session cache.
func resumingClient(ca *testCA, version uint16) *tls.Config {
	c := client(ca, "api.example.com")
	c.MinVersion, c.MaxVersion = version, version
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	// The client checks ticket age against its own clock, which the test
	// moves with the server's.
	return c
}

func resumed(t *testing.T, addr string, c *tls.Config) bool {
	t.Helper()
	cs, err := dial(addr, c)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return cs.DidResume
}

func TestSessionResumption(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			ca, clk, _, addr := ticketFixture(t, "  session_timeout: 600\n")
			c := resumingClient(ca, v)
			c.Time = clk.now
			if resumed(t, addr, c) {
				t.Fatal("first connection resumed")
			}
			if !resumed(t, addr, c) {
				t.Fatal("second connection did not resume")
			}
			// Within the timeout (the ticket of the last connection is
			// 9 minutes old), it resumes.
			clk.advance(9 * time.Minute)
			if !resumed(t, addr, c) {
				t.Fatal("ticket 9 minutes old (timeout 10) was not resumed")
			}
			// Past it, a full handshake (which issues a fresh ticket).
			clk.advance(10*time.Minute + time.Second)
			if resumed(t, addr, c) {
				t.Fatal("ticket older than session_timeout was resumed")
			}
			if !resumed(t, addr, c) {
				t.Fatal("the fresh ticket did not resume")
			}
		})
	}
}

// Keys rotate every half timeout; a ticket sealed with the previous key
// still resumes while it is younger than the timeout.
func TestSessionTicketKeyRotation(t *testing.T) {
	ca, clk, term, addr := ticketFixture(t, "  session_timeout: 600\n")
	a := resumingClient(ca, tls.VersionTLS13)
	a.Time = clk.now
	resumed(t, addr, a)
	term.tickets.mu.Lock()
	first := term.tickets.keys[0].id
	term.tickets.mu.Unlock()

	clk.advance(6 * time.Minute)
	b := resumingClient(ca, tls.VersionTLS13)
	b.Time = clk.now
	resumed(t, addr, b) // seals with a new key
	term.tickets.mu.Lock()
	n, newest := len(term.tickets.keys), term.tickets.keys[0].id
	term.tickets.mu.Unlock()
	if n != 2 || newest == first {
		t.Fatalf("after half the timeout: %d keys, rotated %v", n, newest != first)
	}
	if !resumed(t, addr, a) {
		t.Fatal("ticket sealed with the previous key was not resumed")
	}
	// Many rotations later only three keys are kept.
	for range 5 {
		clk.advance(6 * time.Minute)
		resumed(t, addr, resumingClient(ca, tls.VersionTLS13))
	}
	term.tickets.mu.Lock()
	n = len(term.tickets.keys)
	term.tickets.mu.Unlock()
	if n != ticketKeepKeys {
		t.Errorf("%d keys kept, want %d", n, ticketKeepKeys)
	}
}

// A ticket from another Terminator (other keys) is not resumed, and
// session_tickets: false issues none.
func TestSessionTicketsForeignAndDisabled(t *testing.T) {
	ca, _, _, addr1 := ticketFixture(t, "")
	_, _, _, addr2 := ticketFixture(t, "")
	c := resumingClient(ca, tls.VersionTLS13)
	c.InsecureSkipVerify = true // the second server's CA differs
	resumed(t, addr1, c)
	if resumed(t, addr2, c) {
		t.Error("a ticket of another server was resumed")
	}

	ca, _, _, addr := ticketFixture(t, "  session_tickets: false\n")
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := resumingClient(ca, v)
		resumed(t, addr, c)
		if resumed(t, addr, c) {
			t.Errorf("%s: resumed with session_tickets: false", tls.VersionName(v))
		}
	}
}

// oneSessionCache hands every connection the session of the last one,
// whatever name it dials: a client replaying a ticket under another SNI.
type oneSessionCache struct{ cs *tls.ClientSessionState }

func (c *oneSessionCache) Get(string) (*tls.ClientSessionState, bool) { return c.cs, c.cs != nil }
func (c *oneSessionCache) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.cs = cs
	}
}

// A session resumes only under the name it was established for (RFC 6066
// §3): under another SNI it would skip that name's certificate and route.
func TestSessionTicketBoundToServerName(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			dir := t.TempDir()
			ca := newTestCA(t)
			ca.issue(t, leafSpec{dns: []string{"api.example.com", "www.example.com"}}).write(t, dir, "both")
			cfg, l := listenerConfig(t, dir, "tls:\n  certificates: [{name: both, cert_file: both.pem, key_file: both-key.pem}]")
			addr := serve(t, newTerminator(t, cfg, l, Options{}))
			cache := &oneSessionCache{}
			dialAs := func(name string) bool {
				c := client(ca, name)
				c.MinVersion, c.MaxVersion = v, v
				c.ClientSessionCache = cache
				cs, err := dial(addr, c)
				if err != nil {
					t.Fatalf("handshake as %s: %v", name, err)
				}
				return cs.DidResume
			}
			dialAs("api.example.com")
			if !dialAs("api.example.com") {
				t.Fatal("the same name did not resume")
			}
			if dialAs("www.example.com") {
				t.Fatal("a ticket of api.example.com resumed under www.example.com")
			}
			if !dialAs("WWW.example.com") {
				t.Fatal("the fresh ticket of www.example.com did not resume (names compare without case)")
			}
		})
	}
}
