package http1

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
)

// h2Server serves the h2c connections the HTTP/1 loop recognised by their
// preface, with net/http's HTTP/2 implementation (flow control, stream
// limits, rapid-reset mitigation) fed from a channel listener.
type h2Server struct {
	srv *http.Server
	ln  *chanListener
}

func newH2Server(s *Server) *h2Server {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h := &h2Server{
		srv: &http.Server{
			Handler:           s.Handler,
			Protocols:         &protos,
			ConnContext:       s.ConnContext,
			ReadHeaderTimeout: s.pol.Load().ReadHeaderTimeout,
			IdleTimeout:       s.pol.Load().IdleTimeout,
			MaxHeaderBytes:    s.pol.Load().MaxHeaderBytes,
		},
		ln: &chanListener{ch: make(chan net.Conn), done: make(chan struct{})},
	}
	if s.Log != nil {
		h.srv.ErrorLog = slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)
	}
	go h.srv.Serve(h.ln)
	return h
}

// hand gives c to the HTTP/2 server; if it is shutting down, c is closed.
func (h *h2Server) hand(c net.Conn) {
	select {
	case h.ln.ch <- c:
	case <-h.ln.done:
		c.Close()
	}
}

// chanListener is a net.Listener whose connections come from the HTTP/1
// accept loop.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return chanAddr{} }

type chanAddr struct{}

func (chanAddr) Network() string { return "h2c" }
func (chanAddr) String() string  { return "h2c" }
