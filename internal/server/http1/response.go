package http1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/httpwire"
)

// response is the http.ResponseWriter of one request. It is reused for
// every request of a connection (reset by the connection), so handlers must
// not keep it after ServeHTTP returns, as net/http also requires.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header

	wroteHeader bool // final status chosen
	sentHeader  bool // head serialised to the buffer
	status      int
	// declared is the Content-Length the handler set, -1 if none.
	declared int64
	written  int64
	chunked  bool
	noBody   bool // HEAD, 204, 304: body writes are discarded
	// closeAfter ends the connection after this response: the client or
	// handler asked for it, or the framing cannot be trusted any more.
	closeAfter bool
	hijacked   bool
	err        error // first write error; later writes fail fast
	// block holds field lines added with AddFieldBlock, written after the
	// header map's fields.
	block *FieldBlock
}

var (
	// ErrHijacked is returned by writes after Hijack.
	ErrHijacked = http.ErrHijacked
	// ErrContentLength is returned when a handler writes more than it declared.
	ErrContentLength = http.ErrContentLength
)

func (w *response) reset(r *http.Request) {
	clear(w.header)
	*w = response{c: w.c, req: r, header: w.header, declared: -1, closeAfter: r.Close}
}

func (w *response) Header() http.Header { return w.header }

// ConnScratch returns a slot that keeps one value of the handler's from
// one request of the connection to the next, so that per-request state
// need not be allocated for each (the proxy keeps its reader of the
// backend's answer there). A value in it may back the header map's fields:
// the engine reads the map after the handler returns, and the next
// request's reset clears the map before its handler runs. HTTP/1 serves
// one request at a time, so the slot never has two users.
func (w *response) ConnScratch() *any { return &w.c.scratch }

// FieldBlock is a set of fields serialised once, for answers that all
// carry them (Rampart's security headers): one copy of the block per
// answer instead of a map entry, an iteration step and a field write each.
type FieldBlock struct {
	text string
	// replaced: fields of these names in the header map are not written
	// (the block's own names, and any the caller drops).
	replaced []string
}

// NewFieldBlock serialises fields with writeField's rules (a name that is
// not a token is dropped, CR and LF in a value become spaces). An answer
// it is added to sends the block's fields in place of the header map's of
// the same names, and none of the map's fields named in drop.
func NewFieldBlock(fields [][2]string, drop ...string) *FieldBlock {
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	fb := &FieldBlock{}
	for _, f := range fields {
		writeField(bw, f[0], f[1])
		fb.replaced = append(fb.replaced, http.CanonicalHeaderKey(f[0]))
	}
	for _, name := range drop {
		fb.replaced = append(fb.replaced, http.CanonicalHeaderKey(name))
	}
	bw.Flush()
	fb.text = b.String()
	return fb
}

// String is the block's serialised field lines.
func (fb *FieldBlock) String() string { return fb.text }

// replaces reports whether the block stands for the header map's field
// named k (canonical form). The list is short: a loop of string compares,
// most of which differ in length, is cheaper than deleting the names from
// the map, where most are not.
func (fb *FieldBlock) replaces(k string) bool {
	return fb != nil && slices.Contains(fb.replaced, k)
}

// AddFieldBlock adds b to the final answer's head, after the header map's
// fields, which do not go out where b replaces them. Call it before the
// head is written; later calls replace the block.
func (w *response) AddFieldBlock(b *FieldBlock) { w.block = b }

func (w *response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("http1: invalid status code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInterim(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header["Content-Length"]; len(cl) == 1 {
		if n, ok := httpwire.ParseContentLength(cl[0]); ok {
			w.declared = n
		} else {
			delete(w.header, "Content-Length")
		}
	} else if len(cl) > 1 {
		delete(w.header, "Content-Length")
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if w.declared >= 0 || w.noBody || code == http.StatusSwitchingProtocols {
		w.writeHead()
	}
	// Otherwise the head waits for the first Write or for the handler to
	// return: a handler that writes nothing gets Content-Length: 0 instead
	// of a chunked empty body.
}

// writeInterim sends a 1xx answer (103 Early Hints) at once, with the
// headers set so far.
func (w *response) writeInterim(code int) {
	if w.err != nil || w.req.ProtoMinor == 0 {
		// RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
		return
	}
	c := w.c
	c.contMu.Lock() // not in the middle of an automatic 100 Continue
	defer c.contMu.Unlock()
	if code == http.StatusContinue {
		c.canContinue.Store(false)
	}
	bw := c.bw
	writeStatusLine(bw, code)
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" {
			continue // RFC 9110 §8.6: never in a 1xx
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
	w.err = bw.Flush()
}

// writeHead serialises the status line and headers into the connection's
// buffer, choosing the body framing.
//
// The fields that decide the framing are picked out while the others are
// written, in the one pass over the map that writing needs anyway: a lookup
// of a field the map does not have (most answers have no Transfer-Encoding,
// Trailer, Connection or Date of the handler's) scans all of a small map.
func (w *response) writeHead() {
	w.sentHeader = true
	w.c.noContinue()
	bw := w.c.bw
	h := w.header
	writeStatusLine(bw, w.status)
	var cl, conn []string
	hasTE, trailers, hasDate := false, false, false
	for k, vv := range h {
		switch k {
		case "Transfer-Encoding":
			hasTE = true
			continue // framing is Rampart's choice, never the handler's
		case "Content-Length":
			cl = vv
			continue // written below if the framing keeps it
		case "Connection":
			conn = vv
			continue // written below from closeAfter
		case "Trailer":
			trailers = true
		case "Date":
			hasDate = true
		}
		if w.block.replaces(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if hasTE {
		delete(h, "Transfer-Encoding")
	}
	keepLength := true
	switch {
	case w.noBody || w.status == http.StatusSwitchingProtocols:
		keepLength = w.status != http.StatusNoContent && w.status != http.StatusNotModified
	case w.declared >= 0 && !trailers:
	case w.req.ProtoMinor == 1:
		keepLength = false
		w.declared = -1
		w.chunked = true
	default:
		// An HTTP/1.0 client without a known length: the end of the body
		// is the end of the connection.
		keepLength = false
		w.declared = -1
		w.closeAfter = true
	}
	if cl != nil {
		if keepLength {
			for _, v := range cl {
				writeField(bw, "Content-Length", v)
			}
		} else {
			delete(h, "Content-Length")
		}
	}
	if !w.closeAfter && httpwire.HasToken(conn, "close") {
		w.closeAfter = true
	}
	if w.c.srv.shuttingDown() || w.c.bodyStop.Load() { // bodyStop: see body.Close
		w.closeAfter = true
	}
	if w.block != nil {
		bw.WriteString(w.block.text)
	}
	if !hasDate {
		httpwire.WriteField(bw, "Date", httpDate())
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.status == http.StatusSwitchingProtocols:
		for _, v := range conn {
			writeField(bw, "Connection", v)
		}
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case w.req.ProtoMinor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		w.writeHead()
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 || w.noBody {
		return len(p), nil
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		w.closeAfter = true
		return 0, ErrContentLength
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	w.written += int64(n)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
		w.closeAfter = true
	}
	return n, err
}

// WriteString lets io.WriteString skip a conversion.
func (w *response) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// Flush sends what is buffered to the client (http.Flusher).
func (w *response) Flush() {
	if w.hijacked {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		w.writeHead()
	}
	if w.err == nil {
		if err := w.c.bw.Flush(); err != nil {
			w.err = err
			w.closeAfter = true
		}
	}
}

// FlushError is Flush for http.ResponseController.
func (w *response) FlushError() error {
	w.Flush()
	return w.err
}

// Hijack hands the connection to the handler (http.Hijacker), for protocol
// upgrades such as WebSocket. Bytes the client already sent and Rampart
// buffered are read first from the returned connection.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, ErrHijacked
	}
	if w.sentHeader && w.status != http.StatusSwitchingProtocols {
		return nil, nil, errors.New("http1: hijack after the response was sent")
	}
	c := w.c
	if lc, ok := c.rwc.(*evloop.Conn); ok {
		// The handler will copy in goroutines of its own and wait for them.
		lc.Detach()
	}
	c.noContinue()
	// What is buffered (a 101 head, answers to pipelined requests) goes out
	// before the handler writes to the connection itself.
	if err := c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	// The connection is the handler's now, with no deadline of ours.
	c.setReadDeadline(time.Time{})
	c.hijacked.Store(true)
	c.clearWriteDeadline()
	hc := &hijackedConn{Conn: c.stream(), br: c.br}
	return hc, bufio.NewReadWriter(c.br, c.bw), nil
}

// finish completes the response after the handler returned and reports
// whether the connection may carry another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		if !w.noBody {
			w.declared = 0
			w.header["Content-Length"] = zeroLength
		}
		w.writeHead()
	}
	if w.err != nil {
		return false
	}
	bw := w.c.bw
	switch {
	case w.chunked:
		bw.WriteString("0\r\n")
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vv {
					writeField(bw, name, v)
				}
			}
		}
		for _, names := range w.header["Trailer"] {
			for name := range strings.SplitSeq(names, ",") {
				for _, v := range w.header[http.CanonicalHeaderKey(httpwire.TrimOWS(name))] {
					writeField(bw, httpwire.TrimOWS(name), v)
				}
			}
		}
		bw.WriteString("\r\n")
	case w.declared >= 0 && !w.noBody && w.written != w.declared:
		// Fewer bytes than announced: the client would wait for the rest
		// or take the next response as part of this one.
		w.closeAfter = true
	}
	if w.status == http.StatusSwitchingProtocols {
		// The client speaks another protocol now, and without a hijack
		// nothing on this side does.
		w.closeAfter = true
	}
	return !w.closeAfter
}

var zeroLength = []string{"0"}

// writeField writes one header line. CR and LF in a value become spaces
// and a name that is not a token is dropped (as net/http does), so no
// handler can split the response.
func writeField(bw *bufio.Writer, k, v string) {
	if !httpwire.ValidToken(k) {
		return
	}
	if httpwire.HasCRLF(v) {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	httpwire.WriteField(bw, k, v)
}

func writeStatusLine(bw *bufio.Writer, code int) {
	if code == http.StatusOK {
		bw.WriteString("HTTP/1.1 200 OK\r\n")
		return
	}
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// httpDate returns the current time in IMF-fixdate. A goroutine started
// with the first answer formats it once a second, on the second: the
// answers read it without reading the clock (one clock read less per
// answer; the field has a resolution of a second anyway).
func httpDate() string {
	if d := cachedDate.Load(); d != nil {
		return *d
	}
	dateOnce.Do(func() {
		setDate(time.Now())
		go keepDate()
	})
	return *cachedDate.Load()
}

func setDate(now time.Time) {
	d := now.UTC().Format(http.TimeFormat)
	cachedDate.Store(&d)
}

// keepDate refreshes cachedDate just after each second begins.
func keepDate() {
	for {
		now := time.Now()
		time.Sleep(now.Truncate(time.Second).Add(time.Second).Sub(now))
		setDate(time.Now())
	}
}

var (
	cachedDate atomic.Pointer[string]
	dateOnce   sync.Once
)

// hijackedConn serves the bytes Rampart had already buffered before the
// ones still in the socket.
type hijackedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *hijackedConn) Read(p []byte) (int, error) {
	if c.br != nil && c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	c.br = nil
	return c.Conn.Read(p)
}
