package http1

import "time"

// DefaultClientWatchInterval is Server.ClientWatchInterval's default.
const DefaultClientWatchInterval = time.Second

// watchClients runs while the server has connections: every interval it
// peeks at the sockets of the requests that were already in progress at
// the previous tick (the same request, by its sequence number), and tells
// OnClientGone about those whose client closed or reset its connection,
// once per request. Peeking neither consumes data nor waits, so it never
// disturbs the connection's own goroutine.
func (s *Server) watchClients() {
	interval := s.ClientWatchInterval
	if interval <= 0 {
		interval = DefaultClientWatchInterval
	}
	var suspects []*conn
	for {
		time.Sleep(interval)
		suspects = suspects[:0]
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.watching = false
			s.mu.Unlock()
			return
		}
		for c := range s.conns {
			if c.sock == nil || !c.active.Load() || c.hijacked.Load() {
				continue
			}
			seq := c.reqs.Load()
			if seq != c.watchSeq {
				c.watchSeq = seq // started since the last tick: next time
				continue
			}
			if seq != c.goneSeq {
				suspects = append(suspects, c)
			}
		}
		s.mu.Unlock()
		for _, c := range suspects {
			if c.sock.PeerClosed() {
				c.goneSeq = c.watchSeq
				s.OnClientGone(c.ctx)
			}
		}
		clear(suspects)
	}
}
