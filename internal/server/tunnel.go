package server

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/acl"
)

// Hijack hands the client's connection over for a protocol switch
// (WebSocket, any 101 tunnel) and goes on counting on it: the bytes relayed
// from the client are the request's size, those relayed to it the
// response's (the heads are not counted, as for any request). The handler
// returns only when the tunnel closes, so the request's time covers it
// too, as nginx's $bytes_sent and $request_time do.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.tunnel = &tunnelConn{Conn: c, done: make(chan struct{})}
	if client, err := netip.ParseAddr(w.rec.ClientIP); err == nil && w.acl != nil {
		go w.tunnel.guard(w.acl, client)
	}
	return w.tunnel, brw, nil
}

// tunnelConn counts the bytes through an upgraded connection. The proxy
// relays each direction in its own goroutine, and the one still ending
// when the handler returns may add its last bytes then: atomics.
type tunnelConn struct {
	net.Conn
	in, out atomic.Int64
	blocked atomic.Bool // closed by guard: its client was blocked meanwhile
	done    chan struct{}
	once    sync.Once
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *tunnelConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *tunnelConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// tunnelACLCheck is how often an open tunnel's client is checked again.
const tunnelACLCheck = time.Second

// guard closes the tunnel once its client is blocked (a dynamic block, a
// list reload, a feed refresh). Requests are checked one by one, and a
// tunnel has none after its first: a client blocked for exfiltration kept
// its WebSocket relaying.
func (c *tunnelConn) guard(a *acl.ACL, client netip.Addr) {
	t := time.NewTicker(tunnelACLCheck)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if a.Check(client).Action == acl.ActionDeny {
				c.blocked.Store(true)
				c.Close()
				return
			}
		}
	}
}
