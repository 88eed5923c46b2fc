// Command rawclient is the "stdlib-rawclient" engine candidate: a net/http
// server whose handler talks to the backends through a hand-written,
// synchronous HTTP/1.1 client instead of http.Transport.
//
// The client keeps a LIFO pool of persistent net.Conn per backend, each with
// its own bufio reader and writer. For a request the handler takes a
// connection, writes the request line and headers itself, reads the response
// with http.ReadResponse on the same goroutine, streams the body to the
// client, and returns the connection to the pool once the body has been read
// to EOF. There is no per-connection reader/writer goroutine and no channel
// handoff, which is exactly what http.Transport does and what this candidate
// is meant to price.
//
// It is a measuring device, not a production client: no per-request
// deadlines, no Expect: 100-continue, no 1xx handling, no trailers.
package main

import (
	"bufio"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/bench/candidates/internal/cand"
)

const maxIdlePerBackend = 256

type upConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

type backend struct {
	addr   string
	dialer net.Dialer

	mu   sync.Mutex
	idle []*upConn // LIFO: the most recently used connection is the warmest
}

// get returns a pooled connection (reused=true) or dials a new one.
func (b *backend) get() (uc *upConn, reused bool, err error) {
	b.mu.Lock()
	if n := len(b.idle); n > 0 {
		uc = b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		b.mu.Unlock()
		return uc, true, nil
	}
	b.mu.Unlock()
	return b.dial()
}

func (b *backend) dial() (*upConn, bool, error) {
	c, err := b.dialer.Dial("tcp", b.addr)
	if err != nil {
		return nil, false, err
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}, false, nil
}

func (b *backend) put(uc *upConn) {
	b.mu.Lock()
	if len(b.idle) < maxIdlePerBackend {
		b.idle = append(b.idle, uc)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	uc.c.Close()
}

// hop-by-hop headers (RFC 9110 section 7.6.1), in canonical form.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

type proxy struct {
	backends []*backend
	next     atomic.Uint64
	bufs     sync.Pool
}

// writeRequest serialises r onto uc's writer and flushes it.
func writeRequest(uc *upConn, r *http.Request) error {
	w := uc.bw
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(r.Host)
	w.WriteString("\r\n")
	for k, vv := range r.Header {
		if hopHeaders[k] || k == "Content-Length" {
			continue
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	switch {
	case r.ContentLength > 0:
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(r.ContentLength, 10))
		w.WriteString("\r\n\r\n")
		if _, err := io.CopyN(w, r.Body, r.ContentLength); err != nil {
			return err
		}
	case r.ContentLength < 0: // unknown length: re-chunk
		w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(w)
		if _, err := io.Copy(cw, r.Body); err != nil {
			return err
		}
		cw.Close()
		w.WriteString("\r\n")
	default:
		w.WriteString("\r\n")
	}
	return w.Flush()
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	be := p.backends[(p.next.Add(1)-1)%uint64(len(p.backends))]
	retryable := r.ContentLength == 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead)

	var (
		uc   *upConn
		resp *http.Response
	)
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		if attempt == 0 {
			uc, reused, err = be.get()
		} else {
			uc, reused, err = be.dial()
		}
		if err != nil {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		if err = writeRequest(uc, r); err == nil {
			resp, err = http.ReadResponse(uc.br, r)
		}
		if err == nil {
			break
		}
		uc.c.Close()
		// A pooled connection the backend had already closed: retry once on
		// a fresh one, but only if replaying the request is safe.
		if reused && retryable && attempt == 0 {
			continue
		}
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	}

	h := w.Header()
	for k, vv := range resp.Header {
		if hopHeaders[k] {
			continue
		}
		h[k] = vv
	}
	w.WriteHeader(resp.StatusCode)

	bp := p.bufs.Get().(*[]byte)
	_, err := io.CopyBuffer(writerOnly{w}, resp.Body, *bp)
	p.bufs.Put(bp)
	resp.Body.Close()
	// err == nil means the body was read to EOF, so the connection is
	// positioned at the next response and can be reused.
	if err == nil && !resp.Close {
		be.put(uc)
	} else {
		uc.c.Close()
	}
}

// writerOnly hides http.ResponseWriter's ReadFrom so io.CopyBuffer uses our
// pooled buffer.
type writerOnly struct{ io.Writer }

func main() {
	cfg := cand.Parse("stdlib-rawclient")
	p := &proxy{bufs: sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}}
	for _, a := range cfg.Backends {
		p.backends = append(p.backends, &backend{addr: a, dialer: net.Dialer{Timeout: 5 * time.Second}})
	}
	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	err := srv.ListenAndServe()
	if !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
