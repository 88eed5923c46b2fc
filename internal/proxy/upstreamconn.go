package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// Rampart's own HTTP/1.1 client for the common case: a request without a
// body and without an upgrade. http.Transport runs two goroutines per
// backend connection and hands every request and response between them over
// channels; on a proxy that is a large share of the CPU per request (see
// docs/decisions/0001-http-engine.md). Here the request goroutine writes the
// request and reads the response itself, on a connection taken from the
// backend's idle list. Requests with a body, upgrades and anything unusual
// still go through http.Transport, which handles full-duplex bodies,
// Expect: 100-continue and protocol switches.

// idleConnTimeout bounds how long an idle connection is trusted; backends
// usually close theirs after 60–120 s, and a reused connection that the
// backend already closed costs a retry.
const idleConnTimeout = 50 * time.Second

type upstreamConn struct {
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	lastUsed time.Time
}

// connPool is a backend's list of idle keep-alive connections, used LIFO so
// the warmest connection is reused and surplus ones age out.
type connPool struct {
	mu   sync.Mutex
	idle []*upstreamConn
}

func (cp *connPool) get() *upstreamConn {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for n := len(cp.idle); n > 0; n = len(cp.idle) {
		uc := cp.idle[n-1]
		cp.idle[n-1] = nil
		cp.idle = cp.idle[:n-1]
		if time.Since(uc.lastUsed) < idleConnTimeout {
			return uc
		}
		uc.c.Close()
	}
	return nil
}

func (cp *connPool) put(uc *upstreamConn, max int) {
	uc.lastUsed = time.Now()
	cp.mu.Lock()
	if len(cp.idle) < max {
		cp.idle = append(cp.idle, uc)
		cp.mu.Unlock()
		return
	}
	cp.mu.Unlock()
	uc.c.Close()
}

// closeIdle closes every idle connection (quarantine, removal, reload).
func (cp *connPool) closeIdle() {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle = nil
	cp.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// directEligible reports whether req can take the synchronous path.
func directEligible(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	if _, up := req.Header["Upgrade"]; up {
		return false
	}
	if _, exp := req.Header["Expect"]; exp {
		return false
	}
	return isIdempotent(req.Method)
}

var errStaleConn = errors.New("reused backend connection was closed by the backend")

// roundTripDirect sends a bodiless request on a pooled connection to b.
func (p *Pool) roundTripDirect(b *Backend, req *http.Request, connectTimeout time.Duration, maxIdle int) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		uc := b.conns.get()
		reused := uc != nil
		if !reused {
			d := net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(req.Context(), "tcp", b.Address)
			if err != nil {
				return nil, err
			}
			uc = &upstreamConn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}
		}
		resp, err := p.exchange(b, uc, req, maxIdle)
		if err == nil {
			return resp, nil
		}
		uc.c.Close()
		// A pooled connection that the backend had closed fails before any
		// byte of an answer arrives; the request is idempotent (see
		// directEligible), so one more try on a fresh connection is safe.
		if reused && errors.Is(err, errStaleConn) && attempt == 0 && req.Context().Err() == nil {
			continue
		}
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
}

func (p *Pool) exchange(b *Backend, uc *upstreamConn, req *http.Request, maxIdle int) (*http.Response, error) {
	// Cancelling the request (client gone, quarantine cut) must unblock the
	// reads below: closing the connection does.
	stop := context.AfterFunc(req.Context(), func() { uc.c.Close() })
	if err := writeRequest(uc.bw, req); err != nil {
		stop()
		return nil, errStaleConn
	}
	if _, err := uc.br.Peek(1); err != nil {
		stop()
		return nil, errStaleConn
	}
	for {
		resp, err := http.ReadResponse(uc.br, req)
		if err != nil {
			stop()
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			// Interim answer (103 Early Hints): pass it on like
			// http.Transport does, then read the final one.
			if t := httptrace.ContextClientTrace(req.Context()); t != nil && t.Got1xxResponse != nil {
				if err := t.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
					stop()
					return nil, err
				}
			}
			continue
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			stop()
			return nil, errors.New("backend switched protocols without an upgrade request")
		}
		release := func(reusable bool) {
			if stop() && reusable && !resp.Close {
				b.conns.put(uc, maxIdle)
				return
			}
			uc.c.Close()
		}
		if resp.Body == http.NoBody {
			release(true)
			return resp, nil
		}
		resp.Body = &directBody{rc: resp.Body, release: release}
		return resp, nil
	}
}

// directBody returns the connection to the pool when the body was read to
// its end, and closes it when the reader gave up early.
type directBody struct {
	rc      io.ReadCloser
	release func(reusable bool)
	done    bool
}

func (d *directBody) Read(p []byte) (int, error) {
	if d.done {
		return 0, io.EOF
	}
	n, err := d.rc.Read(p)
	if err != nil {
		d.done = true
		d.rc.Close()
		d.release(err == io.EOF)
	}
	return n, err
}

func (d *directBody) Close() error {
	if !d.done {
		d.done = true
		d.release(false)
	}
	return nil
}

// writeRequest writes an HTTP/1.1 request head. Header.Write replaces CR and
// LF in values, so a header value can never split the request.
func writeRequest(w *bufio.Writer, req *http.Request) error {
	uri := req.URL.RequestURI()
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if ua := req.Header.Get("User-Agent"); ua != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(headerValueReplacer.Replace(ua))
		w.WriteString("\r\n")
	}
	if err := req.Header.WriteSubset(w, directSkip); err != nil {
		return err
	}
	w.WriteString("\r\n")
	return w.Flush()
}

// directSkip lists headers the client writes itself or that must not be
// forwarded on a bodiless request.
var directSkip = map[string]bool{"Host": true, "User-Agent": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true}

var headerValueReplacer = strings.NewReplacer("\r", " ", "\n", " ")
