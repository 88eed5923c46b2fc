package http1

import (
	"bufio"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/rampart-proxy/rampart/internal/httpwire"
)

// Limits bound what a client may send before the request reaches a handler.
// The defaults are DESIGN §3's request_limits.
type Limits struct {
	MaxRequestLineBytes int // request line without CRLF; larger → 414
	MaxHeaderBytes      int // header lines, CRLFs included; larger → 431
	MaxHeaders          int // header fields; more → 431
}

// DefaultLimits are DESIGN §3's defaults.
var DefaultLimits = Limits{MaxRequestLineBytes: 4096, MaxHeaderBytes: 8192, MaxHeaders: 100}

// parseError is a request Rampart refuses before any handler sees it. The
// reason goes to the log, never to the client.
type parseError struct {
	status int
	reason string
}

func (e *parseError) Error() string { return e.reason }

func refuse(status int, reason string) error { return &parseError{status: status, reason: reason} }

var errH2Preface = errors.New("HTTP/2 connection preface")

// head is the reusable per-connection state of the parser: the raw bytes of
// one request head, the Header map it fills and the backing array of that
// map's value slices (see httpwire.ParseFields).
type head struct {
	buf  []byte
	hdr  http.Header
	vals []string
	memo httpwire.HeadMemo
	// seen: the framing fields the head has (frame looks up only those).
	seen httpwire.Fields
	// hosts: the head's Host values, kept out of hdr (r.Host is the one).
	hosts []string
}

// readHead reads the request line and header block from br into h.buf, one
// line at a time, enforcing the limits as bytes arrive so an oversized head
// is refused without being buffered whole. It returns the offset where the
// header lines start.
func (h *head) readHead(br *bufio.Reader, lim *Limits) (lineEnd int, err error) {
	h.buf = h.buf[:0]
	// Request line. RFC 9112 §2.2: a server SHOULD ignore at least one empty
	// line before the request line.
	for empties := 0; ; {
		line, err := readLine(br, &h.buf, lim.MaxRequestLineBytes)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				return 0, refuse(http.StatusRequestURITooLong, "request line too long")
			}
			return 0, err
		}
		if line > 0 {
			break
		}
		h.buf = h.buf[:0]
		if empties++; empties > 1 {
			return 0, refuse(http.StatusBadRequest, "empty lines before the request line")
		}
	}
	lineEnd = len(h.buf)
	if string(h.buf) == "PRI * HTTP/2.0\n" {
		return lineEnd, errH2Preface
	}
	budget := lim.MaxHeaderBytes
	for n := 0; ; n++ {
		start := len(h.buf)
		line, err := readLine(br, &h.buf, budget)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "header block too large")
			}
			return 0, err
		}
		if line == 0 {
			h.buf = h.buf[:start]
			return lineEnd, nil
		}
		if n >= lim.MaxHeaders {
			return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "too many header fields")
		}
		budget -= line + 2
		if budget < 0 {
			return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "header block too large")
		}
	}
}

var errLineTooLong = httpwire.ErrLineTooLong

// readLine is httpwire.ReadLine with a bare CR answered 400.
func readLine(br *bufio.Reader, dst *[]byte, max int) (int, error) {
	n, err := httpwire.ReadLine(br, dst, max)
	if errors.Is(err, httpwire.ErrBareCR) {
		return 0, refuse(http.StatusBadRequest, "bare CR in request head")
	}
	return n, err
}

// parse fills r from the head in h.buf. The request's strings are the
// connection's previous request's where they repeat it, else copies out of
// h.buf (httpwire.HeadMemo): a client repeating its request allocates
// nothing (the header map and its value slices are the connection's).
func (h *head) parse(r *http.Request, lineEnd int) error {
	line := h.memo.Line(httpwire.View(h.buf[:lineEnd-1]))

	// Request line: method SP request-target SP HTTP-version, single spaces.
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return refuse(http.StatusBadRequest, "malformed request line")
	}
	sp2 := strings.IndexByte(line[sp1+1:], ' ')
	if sp2 < 0 {
		return refuse(http.StatusBadRequest, "malformed request line")
	}
	sp2 += sp1 + 1
	method, target, proto := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	if !httpwire.ValidToken(method) {
		return refuse(http.StatusBadRequest, "malformed method")
	}
	switch proto {
	case "HTTP/1.1":
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		if len(proto) == 8 && strings.HasPrefix(proto, "HTTP/") && isDigit(proto[5]) && proto[6] == '.' && isDigit(proto[7]) {
			return refuse(http.StatusHTTPVersionNotSupported, "unsupported HTTP version")
		}
		return refuse(http.StatusBadRequest, "malformed request line")
	}
	r.Method = commonMethod(method)
	if target == "" || !validTarget(target) {
		return refuse(http.StatusBadRequest, "malformed request target")
	}
	r.RequestURI = target
	if err := parseTarget(r, target); err != nil {
		return err
	}

	// Header fields.
	seen, err := httpwire.ParseFields(h.hdr, httpwire.View(h.buf[lineEnd:]), &h.vals, &h.memo, &h.hosts)
	if err != nil {
		return refuse(http.StatusBadRequest, err.Error())
	}
	h.seen = seen
	r.Header = h.hdr
	if r.ProtoMinor == 0 {
		// An HTTP/1.0 request's Upgrade is ignored (RFC 9110 §7.8).
		delete(r.Header, "Upgrade")
	}
	return nil
}

// parseTarget sets r.URL and, for the absolute form, r.Host.
func parseTarget(r *http.Request, target string) error {
	u := r.URL
	*u = url.URL{}
	if r.Method == http.MethodConnect {
		// Whatever the target's form: Rampart opens no tunnels.
		return refuse(http.StatusMethodNotAllowed, "CONNECT is not supported")
	}
	switch {
	case target[0] == '/' && plainPath(target):
		// origin-form without escapes, by far the most common: no parsing
		// beyond splitting off the query.
		if q := strings.IndexByte(target, '?'); q >= 0 {
			u.Path, u.RawQuery, u.ForceQuery = target[:q], target[q+1:], q == len(target)-1
		} else {
			u.Path = target
		}
		return nil
	case target == "*":
		if r.Method != http.MethodOptions {
			return refuse(http.StatusBadRequest, "asterisk-form target outside OPTIONS")
		}
		u.Path = "*"
		return nil
	}
	parsed, err := url.ParseRequestURI(target)
	if err != nil || (parsed.Scheme != "" && parsed.Scheme != "http" && parsed.Scheme != "https") ||
		(parsed.Scheme == "" && target[0] != '/') || parsed.Opaque != "" || parsed.User != nil ||
		(parsed.Scheme != "" && parsed.Host == "") {
		// Userinfo in a target is refused too (RFC 9110 §4.2.4), and an
		// http(s) URI without a host (RFC 9110 §4.2.1).
		return refuse(http.StatusBadRequest, "malformed request target")
	}
	if parsed.Path == "" {
		parsed.Path = "/" // "http://host" asks for "/" (RFC 9112 §3.2.2)
	}
	*u = *parsed
	return nil
}

// plainPath reports whether the path of an origin-form target has only
// bytes that url.URL neither unescapes nor keeps a RawPath for, so that
// splitting off the query gives what url.ParseRequestURI gives. Anything
// else ("!", "*", "(", non-ASCII, escapes) is parsed by net/url, or the
// URL's EscapedPath, which builds the upstream request line, would differ.
func plainPath(target string) bool {
	for i := 0; i < len(target); i++ {
		c := target[i]
		if c == '?' {
			return true
		}
		if !isPlainPathChar[c] {
			return false
		}
	}
	return true
}

var isPlainPathChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "$&+,-./:;=@_~" {
		t[c] = true
	}
	return t
}()

func commonMethod(m string) string {
	switch m {
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "POST":
		return http.MethodPost
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return m
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// validTarget refuses control characters, spaces and fragments in the
// request target; anything else is left to the URL parser.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// validHost accepts a uri-host with an optional port: reg-name characters,
// an IP-literal in brackets, digits after the colon. Anything else could
// confuse routing or a backend's virtual hosting.
func validHost(h string) bool {
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		host, port = h[1:end], h[end+1:]
		for i := 0; i < len(host); i++ {
			if c := host[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
	} else {
		if i := strings.IndexByte(h, ':'); i >= 0 {
			host, port = h[:i], h[i:]
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			case strings.IndexByte("-._~!$&'()*+,;=%", c) >= 0:
			default:
				return false
			}
		}
	}
	if port == "" {
		return true
	}
	// ":" and then up to five digits (an empty port is allowed, RFC 3986).
	if port[0] != ':' || len(port) > 6 {
		return false
	}
	for i := 1; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}
