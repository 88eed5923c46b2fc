package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"

	"github.com/rampart-proxy/rampart/internal/httpwire"
)

// Limits on a backend's response head. Backends are trusted more than
// clients, but a broken or compromised one must not make Rampart buffer
// without bound or pass on a response that splits differently downstream.
const (
	maxResponseLine   = 4096
	maxResponseHeader = 64 << 10
	maxResponseFields = 200
	// maxInterim bounds the interim (1xx) answers before the final one:
	// each is relayed and flushed, and a backend sending them without end
	// made Rampart spend seconds of CPU on one request.
	maxInterim = 10
)

// errTooManyInterim refuses an answer after maxInterim interim answers,
// on both paths (exchange, responseWatch).
var errTooManyInterim = errBadResponse("more than " + strconv.Itoa(maxInterim) + " interim answers")

// errBadResponse is a backend answer Rampart refuses to relay (502).
type errBadResponse string

func (e errBadResponse) Error() string { return "malformed backend response: " + string(e) }

// readResponse reads one response head from uc and sets up its body. It
// replaces http.ReadResponse on the direct path: the head's strings are
// those of the connection's previous answer where they repeat it (see
// httpwire.HeadMemo), the response and its header values live in body, and the
// fields go straight into dst, the header map of the client's answer,
// without a map of their own to copy from (see readFields). resp.Header
// is dst.
func (uc *upstreamConn) readResponse(req *http.Request, body *directBody, dst http.Header) (*http.Response, error) {
	uc.head = uc.head[:0]
	n, err := httpwire.ReadLine(uc.br, &uc.head, maxResponseLine)
	if err != nil {
		return nil, headErr(err)
	}
	if n == 0 {
		return nil, errBadResponse("empty status line")
	}
	budget := maxResponseHeader
	fields := 0
	for {
		n, err := httpwire.ReadLine(uc.br, &uc.head, budget)
		if err != nil {
			return nil, headErr(err)
		}
		if n == 0 {
			break
		}
		if fields++; fields > maxResponseFields {
			return nil, errBadResponse("too many header fields")
		}
		if budget -= n + 2; budget <= 0 {
			return nil, errBadResponse("header block too large")
		}
	}
	// head is read in place: what is kept of it comes from uc.memo as
	// strings of their own (see httpwire.HeadMemo).
	head := uc.head[:len(uc.head)-1] // without the empty line's separator
	lineLen := bytes.IndexByte(head, '\n')
	rest := head[lineLen+1:]
	line := uc.memo.Line(httpwire.View(head[:lineLen]))

	resp := &body.response
	*resp = http.Response{Request: req, ContentLength: -1}
	proto, status, ok := strings.Cut(line, " ")
	switch proto {
	case "HTTP/1.1":
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		return nil, errBadResponse("status line " + fmt.Sprintf("%.40q", line))
	}
	code, _, _ := strings.Cut(status, " ")
	if !ok || len(code) != 3 || code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		return nil, errBadResponse("status line " + fmt.Sprintf("%.40q", line))
	}
	resp.StatusCode = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	resp.Status = status

	if err := uc.readFields(dst, rest, body); err != nil {
		return nil, errBadResponse(err.Error())
	}
	resp.Header = dst
	body.resp = resp
	if err := uc.frameResponse(resp, req, body); err != nil {
		uc.undoFields(dst)
		return nil, err
	}
	if len(uc.hop["Connection"]) > 0 {
		uc.dropListed(dst)
	}
	return resp, nil
}

// savedField is a field of the client's answer that a stage had set before
// the backend's answer replaced it.
type savedField struct {
	key  string
	vals []string
}

// readFields checks the field lines of block (each ended by '\n') and
// puts them into dst, the client answer's header map, as copying the
// backend's header over it would: a backend field replaces a stage's of
// the same name, repeated fields add up. Hop-by-hop fields (RFC 9110
// §7.6.1) go to uc.hop instead, where framing reads them and from where
// they are never relayed; fields named in the Connection header are
// taken back out after framing (dropListed). Which keys the answer added
// or replaced is kept, so that a refused answer leaves dst as it was
// (undoFields). The value slices share body's array, as in
// httpwire.ParseFields. block is the connection's read buffer: the
// strings put into the maps are uc.memo's.
func (uc *upstreamConn) readFields(dst http.Header, block []byte, body *directBody) error {
	clear(uc.hop)
	uc.added, uc.replaced = uc.added[:0], uc.replaced[:0]
	vals := body.valsArr[:]
	if n := bytes.Count(block, newline); n > len(vals) {
		vals = make([]string, n)
	}
	// Most answers go into an empty map (no stage set a field before):
	// then a field is already there only if this answer added it, which a
	// short list tells faster than a lookup that misses.
	staged := len(dst) > 0
	for i := 0; len(block) > 0; i++ {
		end := bytes.IndexByte(block, '\n') // each line ends in one (ReadLine)
		key, value, err := httpwire.SplitField(httpwire.View(block[:end]))
		block = block[end+1:]
		if err != nil {
			uc.undoFields(dst)
			return err
		}
		key, value = uc.memo.Field(i, key, value)
		hop := isHopHeader(key)
		h := dst
		if hop {
			h = uc.hop
		}
		var vv []string
		exists := false
		if hop || staged || len(uc.added) >= 8 || slices.Contains(uc.added, key) {
			vv, exists = h[key]
		}
		if exists && (hop || slices.Contains(uc.added, key)) {
			h[key] = append(vv, value) // a repeated field of this answer
			continue
		}
		if !hop {
			if exists { // a stage's field of the same name
				uc.replaced = append(uc.replaced, savedField{key, vv})
			}
			uc.added = append(uc.added, key)
		}
		vals[i] = value
		h[key] = vals[i : i+1 : i+1]
	}
	return nil
}

// dropListed takes the fields named in the backend's Connection header,
// hop-by-hop for this message, out of dst again, bringing back a stage's
// field of the same name. It runs after framing, which still reads a
// Content-Length named there.
func (uc *upstreamConn) dropListed(dst http.Header) {
	for _, v := range uc.hop["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			key := http.CanonicalHeaderKey(strings.TrimSpace(tok))
			i := slices.Index(uc.added, key)
			if i < 0 {
				continue
			}
			uc.added = slices.Delete(uc.added, i, i+1)
			delete(dst, key)
			for _, f := range uc.replaced {
				if f.key == key {
					dst[key] = f.vals
				}
			}
		}
	}
}

// undoFields leaves dst as it was before the last readFields.
func (uc *upstreamConn) undoFields(dst http.Header) {
	for _, key := range uc.added {
		delete(dst, key)
	}
	for _, f := range uc.replaced {
		dst[f.key] = f.vals
	}
	uc.added, uc.replaced = uc.added[:0], uc.replaced[:0]
}

func headErr(err error) error {
	switch {
	case errors.Is(err, httpwire.ErrLineTooLong):
		return errBadResponse("head too large")
	case errors.Is(err, httpwire.ErrBareCR):
		return errBadResponse("bare CR")
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	}
	return err
}

// frameResponse decides how the body is delimited (RFC 9112 §6.3) and
// refuses ambiguous framing, which is how a backend could smuggle a second
// response into the client connection. The framing fields other than
// Content-Length are hop-by-hop: readFields left them in uc.hop.
// The body's reader is set in body.rc: nil when there is none.
func (uc *upstreamConn) frameResponse(resp *http.Response, req *http.Request, body *directBody) error {
	h, hop := resp.Header, uc.hop
	resp.Close = httpwire.HasToken(hop["Connection"], "close") ||
		resp.ProtoMinor == 0 && !httpwire.HasToken(hop["Connection"], "keep-alive")
	// The backend's Content-Length, never one a stage may have set.
	var cl []string
	if slices.Contains(uc.added, "Content-Length") {
		cl = h["Content-Length"]
	}
	code := resp.StatusCode
	if req.Method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		if len(cl) == 1 {
			resp.ContentLength, _ = httpwire.ParseContentLength(cl[0])
		}
		return nil
	}
	te := hop["Transfer-Encoding"]
	switch {
	case len(te) > 0:
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") || len(cl) > 0 {
			return errBadResponse("Transfer-Encoding other than chunked, or with Content-Length")
		}
		resp.TransferEncoding = []string{"chunked"}
		if announced := hop["Trailer"]; len(announced) > 0 {
			// As http.ReadResponse does: announced names now, values at
			// the end of the body.
			resp.Trailer = http.Header{}
			for _, names := range announced {
				for name := range strings.SplitSeq(names, ",") {
					if name = httpwire.TrimOWS(name); httpwire.ValidToken(name) {
						resp.Trailer[httpwire.CanonicalKey(name)] = nil
					}
				}
			}
		}
		body.rc = &chunkedBody{r: httputil.NewChunkedReader(uc.br), uc: uc, resp: resp, allowed: announcedTrailers(resp.Trailer)}
	case len(cl) > 0:
		n, ok := httpwire.ParseContentLength(cl[0])
		for _, v := range cl[1:] {
			ok = ok && v == cl[0]
		}
		if !ok {
			return errBadResponse("invalid or conflicting Content-Length")
		}
		if len(cl) > 1 {
			h["Content-Length"] = cl[:1] // equal repeats (checked above) go as one
		}
		resp.ContentLength = n
		if n > 0 {
			body.lr = io.LimitedReader{R: uc.br, N: n}
			body.rc = &body.lr
		}
	default:
		// Delimited by the backend closing the connection.
		resp.Close = true
		body.rc = uc.br
	}
	return nil
}

// chunkedBody reads a chunked response body and, at its end, the trailer
// section into resp.Trailer.
type chunkedBody struct {
	r       io.Reader
	uc      *upstreamConn
	resp    *http.Response
	allowed map[string]bool // announced trailers a client may get
}

func (c *chunkedBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		if terr := c.readTrailer(); terr != nil {
			return n, terr
		}
	}
	return n, err
}

func (c *chunkedBody) readTrailer() error {
	var buf []byte
	for fields := 0; ; fields++ {
		start := len(buf)
		n, err := httpwire.ReadLine(c.uc.br, &buf, 8192)
		if err != nil {
			return headErr(err)
		}
		if n == 0 {
			return nil
		}
		if fields >= 64 || len(buf) > 16<<10 {
			return errBadResponse("trailer section too large")
		}
		key, value, err := httpwire.SplitField(string(buf[start : start+n]))
		if err != nil {
			return errBadResponse("trailer: " + err.Error())
		}
		if !c.allowed[key] {
			continue // not announced, or not a field a trailer may carry
		}
		c.resp.Trailer[key] = append(c.resp.Trailer[key], value)
	}
}

var newline = []byte{'\n'}
