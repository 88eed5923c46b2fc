package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-proxy/rampart/internal/httpwire"
)

// frame decides how the request's body is delimited (RFC 9112 §6) and
// whether the connection stays open. Anything ambiguous is refused: a
// request that two parsers could split differently is how smuggling works.
func frame(r *http.Request, c *conn) error {
	h := r.Header
	// ParseFields kept the Host fields out of the map: as with net/http,
	// the Host lives in r.Host only, so middlewares that copy r.Header and
	// add r.Host (Coraza's does) see it once.
	hosts := c.head.hosts
	switch {
	case len(hosts) > 1:
		return refuse(http.StatusBadRequest, "several Host headers")
	case len(hosts) == 0 && r.ProtoMinor == 1:
		// Even with an absolute-form target (RFC 9112 §3.2: MUST).
		return refuse(http.StatusBadRequest, "missing Host header")
	case len(hosts) == 1 && !validHost(hosts[0]):
		return refuse(http.StatusBadRequest, "malformed Host header")
	}
	if r.URL.Host != "" { // absolute form: its authority wins (RFC 9112 §3.2.2)
		if !validHost(r.URL.Host) {
			return refuse(http.StatusBadRequest, "malformed host in request target")
		}
		r.Host = r.URL.Host
	} else if len(hosts) == 1 {
		r.Host = hosts[0]
	}

	seen := c.head.seen
	r.Close = shouldClose(r, seen)
	if seen&httpwire.FieldUpgrade != 0 {
		if up, ok := h["Upgrade"]; ok {
			dropH2CUpgrade(h, up)
		}
	}
	var te, cl []string
	if seen&httpwire.FieldTransferEncoding != 0 {
		te = h["Transfer-Encoding"]
	}
	if seen&httpwire.FieldContentLength != 0 {
		cl = h["Content-Length"]
	}
	switch {
	case len(te) > 0:
		if r.ProtoMinor == 0 {
			return refuse(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return refuse(http.StatusBadRequest, "Transfer-Encoding other than chunked")
		}
		if len(cl) > 0 {
			return refuse(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
		}
		if tr := h["Trailer"]; httpwire.HasToken(tr, "Content-Length") || httpwire.HasToken(tr, "Transfer-Encoding") || httpwire.HasToken(tr, "Trailer") {
			// Framing fields announced as trailers (net/http refuses them too).
			return refuse(http.StatusBadRequest, "framing field declared as trailer")
		}
		delete(h, "Transfer-Encoding")
		r.TransferEncoding = chunkedTE
		r.ContentLength = -1
		if err := checkBufferedChunks(c.br); err != nil {
			return err
		}
		b := c.newBody(r, -1)
		buffered, _ := c.br.Peek(c.br.Buffered())
		b.announced = announcedChunks(buffered)
		r.Body = b
	case len(cl) > 0:
		n, ok := httpwire.ParseContentLength(cl[0])
		for _, v := range cl[1:] {
			if v != cl[0] {
				ok = false
			}
		}
		if !ok {
			return refuse(http.StatusBadRequest, "invalid or conflicting Content-Length")
		}
		if len(cl) > 1 {
			h["Content-Length"] = cl[:1]
		}
		r.ContentLength = n
		if n > 0 {
			r.Body = c.newBody(r, n)
		} else {
			r.Body = http.NoBody
		}
	default:
		r.ContentLength = 0
		r.Body = http.NoBody
	}
	if r.Body != http.NoBody && len(h["Content-Type"]) > 1 {
		return refuse(http.StatusBadRequest, severalContentTypes) // checked only where there is a body to type
	}
	if exp, ok := expect(h, seen); ok {
		if len(exp) != 1 || !strings.EqualFold(exp[0], "100-continue") || r.ProtoMinor == 0 {
			return refuse(http.StatusExpectationFailed, "unsupported Expect")
		}
	}
	return nil
}

var chunkedTE = []string{"chunked"}

// expect is the request's Expect field, looked up only if the head has one.
func expect(h http.Header, seen httpwire.Fields) ([]string, bool) {
	if seen&httpwire.FieldExpect == 0 {
		return nil, false
	}
	exp, ok := h["Expect"]
	return exp, ok
}

// severalContentTypes refuses a request with more than one Content-Type
// field (a singleton, RFC 9110 §8.3): the WAF reads the first to decide
// how to inspect the body ("image/png": not at all) while a backend may
// read the last ("application/x-www-form-urlencoded").
const severalContentTypes = "several Content-Type headers"

// dropH2CUpgrade takes "h2c" out of an Upgrade header: HTTP/2 is served
// to clients that start with its preface, not by upgrade, and an upgrade
// passed on would let a backend that accepts it take HTTP/2 frames that
// Rampart never parses, routes or inspects. What remains (websocket) is
// kept; an empty Upgrade goes, with HTTP2-Settings.
func dropH2CUpgrade(h http.Header, up []string) {
	var keep []string
	found := false
	for _, v := range up {
		for tok := range strings.SplitSeq(v, ",") {
			switch tok = strings.TrimSpace(tok); {
			case strings.EqualFold(tok, "h2c"):
				found = true
			case tok != "":
				keep = append(keep, tok)
			}
		}
	}
	if !found {
		return // left as sent
	}
	delete(h, "Http2-Settings")
	if len(keep) == 0 {
		delete(h, "Upgrade")
		return
	}
	h["Upgrade"] = []string{strings.Join(keep, ", ")}
}

// shouldClose applies RFC 9112 §9.3: HTTP/1.1 is persistent unless the
// client says "close"; HTTP/1.0 only when it asks for keep-alive.
func shouldClose(r *http.Request, seen httpwire.Fields) bool {
	var conn []string
	if seen&httpwire.FieldConnection != 0 {
		conn = r.Header["Connection"]
	}
	if r.ProtoMinor == 0 {
		return httpwire.HasToken(conn, "close") || !httpwire.HasToken(conn, "keep-alive")
	}
	return httpwire.HasToken(conn, "close")
}

var errBodyClosed = errors.New("http1: request body read after the handler returned")

// body is a request body. It reads from the connection's buffered reader,
// which the next request reuses, so once the handler has returned every
// read fails: a late read from a goroutine the handler started (the
// standard library's transport can do that) must not steal the next
// request's bytes.
type body struct {
	mu     sync.Mutex
	c      *conn
	src    io.Reader // &lr or a chunked reader over c.br
	lr     io.LimitedReader
	chunk  bool
	sawEOF bool
	closed bool
	// expect is set for Expect: 100-continue until the interim answer was
	// sent or the final one made it unnecessary.
	expect bool
	err    error
	// announced is what the chunk-size lines that came with the head add
	// up to (see Announced).
	announced int64
	// tooLong: finish gave up draining, with more of the body to come.
	tooLong bool
}

// Announced returns how many body bytes the chunked body's size lines that
// arrived with the head announce (0 for a body with a Content-Length,
// which announces itself). A handler holding a body to a limit can refuse
// it on that, before reading or forwarding any of it, as it would a
// Content-Length over the limit.
func (b *body) Announced() int64 { return b.announced }

// announcedChunks adds up the sizes of the chunks in buffered, the start
// of a chunked body that checkBufferedChunks found well-formed, up to the
// last chunk or to the first size line that is not all there; a chunk
// whose data is not all there counts whole. Saturates at the largest
// int64.
func announcedChunks(buffered []byte) int64 {
	var total int64
	for {
		eol := bytes.IndexByte(buffered, '\n')
		if eol < 0 {
			return total
		}
		hex := buffered[:eol]
		if i := bytes.IndexAny(hex, "; \t\r"); i >= 0 {
			hex = hex[:i]
		}
		size, err := strconv.ParseUint(string(hex), 16, 63)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return math.MaxInt64
			}
			return total
		}
		if size == 0 {
			return total
		}
		if total += int64(size); total < 0 {
			return math.MaxInt64
		}
		skip := uint64(eol+1) + size + 2 // the data and its CRLF
		if skip > uint64(len(buffered)) {
			return total
		}
		buffered = buffered[skip:]
	}
}

func (c *conn) newBody(r *http.Request, n int64) *body {
	// The idle or header deadline must not cut a long upload short; the
	// body's own (BodyTimeout, MinBodyRate) replace it. A body that came
	// whole with its head (most small ones) needs neither: no read of it
	// will wait, and arming a deadline is a runtime timer update, a tenth
	// of the CPU of a proxied 1 KiB POST.
	if n < 0 || int64(c.br.Buffered()) < n {
		c.startBody()
	}
	b := &body{c: c}
	if n < 0 {
		b.src, b.chunk = httputil.NewChunkedReader(c.br), true
	} else {
		b.lr = io.LimitedReader{R: c.br, N: n}
		b.src = &b.lr // one allocation per body, not two
	}
	_, b.expect = r.Header["Expect"]
	c.canContinue.Store(b.expect)
	return b
}

// restBuffered reports whether what is left of the body, if anything, is
// in the connection's read buffer: reading it will not wait.
func (b *body) restBuffered() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sawEOF || b.err != nil {
		return true
	}
	lr, ok := b.src.(*io.LimitedReader)
	return ok && lr.N <= int64(b.c.br.Buffered())
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	return b.read(p)
}

func (b *body) read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.sawEOF {
		return 0, io.EOF
	}
	if b.expect {
		b.expect = false
		if err := b.c.sendContinue(); err != nil {
			b.err = err
			return 0, err
		}
	}
	n, err := b.src.Read(p)
	if lr, ok := b.src.(*io.LimitedReader); ok {
		if lr.N == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	} else if err == io.EOF {
		err = skipTrailers(b.c.br)
		if err == nil {
			err = io.EOF
		}
	}
	if err == io.EOF {
		b.sawEOF = true
		b.c.meter.on = false
	} else if err != nil {
		if be, ok := errors.AsType[*bodyError](err); ok {
			err = be // not hidden by the chunked reader's wrapping
		} else if b.chunk && malformed(err) {
			// The client's fault, to be answered 400, not a failed backend.
			err = &bodyError{status: http.StatusBadRequest, reason: "malformed chunked body: " + err.Error(), err: err}
		} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			// The client left before sending all of it: its doing too.
			err = clientGone(err)
		}
		b.err = err
	}
	return n, err
}

// malformed reports whether err, from a chunked body's reader, is about
// what the client sent rather than the connection (a timeout, a reset, a
// cut-off body).
func malformed(err error) bool {
	var ne net.Error
	return !errors.As(err, &ne) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed)
}

// checkBufferedChunks runs the chunked body's parser over the part of the
// body that came with the head (already in br, no waiting) and refuses the
// request if that part is malformed, before a handler, and so a backend,
// sees any of it: smuggling attempts come in one piece. A body malformed
// further on ends where the parser finds it (malformed above): the backend
// sees the request cut short and its connection closed.
func checkBufferedChunks(br *bufio.Reader) error {
	buffered, _ := br.Peek(br.Buffered())
	// A reader of br's size, so that lines are limited as on br.
	in := bufio.NewReaderSize(bytes.NewReader(buffered), br.Size())
	_, err := io.Copy(io.Discard, httputil.NewChunkedReader(in))
	if err == nil {
		err = skipTrailers(in) // as much of the trailer section as came
	}
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil // well-formed so far
	}
	if pe, ok := errors.AsType[*parseError](err); ok {
		return pe
	}
	return refuse(http.StatusBadRequest, "malformed chunked body: "+err.Error())
}

// Close tells the connection the handler is done with a body it has not
// read to its end (a proxy whose backend answered before the body was all
// sent). A read of it that waits in another goroutine is stopped, and so
// is any later one, as the connection's own deadline would stop them:
// whoever closes the body will not use what they would get, and the
// connection's goroutine, which takes the body's lock after the handler
// (finish), would otherwise hold the answer until the client sent more.
// The connection then closes after the answer (handle), without draining
// the rest, and an answer whose head is still to be written says so. A body read to its end, one that failed, or one closed after
// its handler returned is left as it is.
func (b *body) Close() error {
	if b.mu.TryLock() { // else a read is in progress, or finish
		done := b.sawEOF || b.err != nil || b.closed
		b.mu.Unlock()
		if done {
			return nil
		}
	}
	b.c.bodyStop.Store(true)
	b.c.rwc.SetReadDeadline(time.Now()) // safe from any goroutine, unlike setReadDeadline
	return nil
}

// finish is called by the connection after the handler returned. It
// reports whether the connection can carry another request: the body was
// read to its end, or what was left was small enough to discard.
func (b *body) finish() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { b.closed = true }()
	// The drain has the connection's deadline, not the body's.
	b.c.meter.on = false
	if b.sawEOF {
		return true
	}
	if b.err != nil || b.expect {
		// A client that waits for 100 Continue may or may not send the body.
		return false
	}
	const maxDrain = 256 << 10
	var buf [4096]byte
	for drained := 0; ; {
		n, err := b.read(buf[:min(len(buf), maxDrain+1-drained)])
		drained += n
		if err == io.EOF {
			return drained <= maxDrain
		}
		if err != nil || drained > maxDrain {
			b.tooLong = err == nil
			return false
		}
	}
}

// abandon ends the body without reading the rest, when the connection is
// closed anyway, and reports whether it had been read to its end. A caller
// that may race a read in progress stops it first (a deadline).
func (b *body) abandon() (complete bool) {
	b.mu.Lock()
	b.closed = true
	b.c.meter.on = false
	complete = b.sawEOF
	b.mu.Unlock()
	return complete
}

// lingerBytes is how much of the body a lingering close may discard: what
// a Content-Length body still has to come (up to lingerMax); 0 for a
// chunked one, whose rest is unknown.
func (b *body) lingerBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.chunk {
		return 0
	}
	return min(b.lr.N, lingerMax)
}

// skipTrailers consumes the trailer section after the last chunk. Request
// trailers are not forwarded (as in nginx); they are read so the next
// request starts at the right byte. Like the chunk lines (RFC 9112 erratum
// 7633), its lines must end in CRLF: where a chunked body ends is where
// smuggling happens, so no other parser may see the end elsewhere.
func skipTrailers(br *bufio.Reader) error {
	for total := 0; ; {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return errTrailersTooLarge
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		n := len(line) - 2
		if n < 0 || line[n] != '\r' {
			return refuse(http.StatusBadRequest, "trailer line not ended by CRLF")
		}
		if n == 0 {
			return nil
		}
		if total += n; total > 8192 {
			return errTrailersTooLarge
		}
		// Discarded, but held to the header rules (no bare CR either): what
		// net/http would refuse is not a request Rampart serves.
		if _, _, err := httpwire.SplitField(string(line[:n])); err != nil {
			return refuse(http.StatusBadRequest, err.Error())
		}
	}
}

var errTrailersTooLarge = errors.New("http1: trailer section too large")
