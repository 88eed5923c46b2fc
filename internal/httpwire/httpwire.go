// Package httpwire holds the HTTP/1.1 wire-format rules that Rampart's
// server engine (reading clients) and its upstream client (reading
// backends) share, so both sides refuse the same malformed input.
package httpwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"unsafe"
)

// Errors from ReadLine.
var (
	ErrLineTooLong = errors.New("line too long")
	ErrBareCR      = errors.New("bare CR in message head")
)

// ReadLine appends one line from br to *dst without its line ending,
// followed by a '\n' separator, and returns the line's length. A line
// longer than max is refused while it is still arriving, so an oversized
// head is never buffered whole. A bare CR is refused (RFC 9112 §2.2:
// another parser could take it for a line break); a bare LF ends a line,
// as nginx and net/http accept.
func ReadLine(br *bufio.Reader, dst *[]byte, max int) (int, error) {
	start := len(*dst)
	for {
		frag, err := br.ReadSlice('\n')
		*dst = append(*dst, frag...)
		if len(*dst)-start > max+2 {
			return 0, ErrLineTooLong
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return 0, err
		}
	}
	b := (*dst)[start:]
	n := len(b) - 1 // drop '\n'
	if n > 0 && b[n-1] == '\r' {
		n--
	}
	if n > max {
		return 0, ErrLineTooLong
	}
	if bytes.IndexByte(b[:n], '\r') >= 0 {
		return 0, ErrBareCR
	}
	*dst = append((*dst)[:start+n], '\n')
	return n, nil
}

// TrimOWS removes optional whitespace (SP, HTAB) around a field value.
func TrimOWS(v string) string {
	for v != "" && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for v != "" && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// isTokenChar is tchar of RFC 9110 §5.6.2.
var isTokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// ValidToken reports whether s is a non-empty token (method, field name).
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar[s[i]] {
			return false
		}
	}
	return true
}

// ValidValue accepts field-content of RFC 9110 §5.5: visible characters,
// obs-text, SP and HTAB; no other control character (NUL, CR, LF, DEL).
//
// Eight bytes at a time: every field of every message is checked, and
// values (cookies, user agents, request ids) run to tens of bytes. A word
// with a byte below 0x20 or of 0x7f, which may be a permitted tab, is
// looked at byte by byte.
func ValidValue(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
		if hasLess(w, 0x20)|hasZero(w^(lows*0x7f)) != 0 && !validBytes(s[i:i+8]) {
			return false
		}
	}
	return validBytes(s[i:])
}

func validBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// HasCRLF reports whether s has a CR or LF byte: a value that would split
// the head it is written into. Eight bytes at a time, as ValidValue.
func HasCRLF(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
		if hasZero(w^(lows*'\r'))|hasZero(w^(lows*'\n')) != 0 {
			return true
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' {
			return true
		}
	}
	return false
}

// Word tests on eight bytes at once ("Bit Twiddling Hacks"): hasLess is
// non-zero when a byte of w is below n (n <= 128), hasZero when a byte is
// 0. A borrow goes up only from a byte that matches, so "any" is exact.
const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

func hasLess(w, n uint64) uint64 { return (w - lows*n) & ^w & highs }
func hasZero(w uint64) uint64    { return hasLess(w, 1) }

// ParseContentLength parses a Content-Length value: digits only, no sign,
// no whitespace, at most 18 digits (so it cannot overflow int64).
func ParseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// HasToken reports whether a comma-separated header (Connection) lists
// tok, case-insensitively.
func HasToken(vv []string, tok string) bool {
	for _, v := range vv {
		for len(v) > 0 {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(TrimOWS(t), tok) {
				return true
			}
		}
	}
	return false
}

// WriteField writes the field line "k: v\r\n" to bw, with one copy into
// its buffer when the line fits (four WriteString calls otherwise): header
// writing is a large part of a proxy's user-space work per request. It
// writes k and v as they are; checking them is the caller's job.
func WriteField(bw *bufio.Writer, k, v string) {
	if bw.Available() < len(k)+len(v)+4 {
		bw.WriteString(k)
		bw.WriteString(": ")
		bw.WriteString(v)
		bw.WriteString("\r\n")
		return
	}
	b := bw.AvailableBuffer()
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	b = append(b, "\r\n"...)
	bw.Write(b)
}

// FieldError says what is wrong with a header or trailer field line.
type FieldError string

func (e FieldError) Error() string { return string(e) }

// The ways a field line can be malformed.
const (
	ErrObsFold    FieldError = "obsolete line folding in header"
	ErrFieldLine  FieldError = "malformed header field"
	ErrFieldName  FieldError = "malformed header name"
	ErrFieldValue FieldError = "control character in header value"
)

// SplitField checks one field line (without its line ending) and splits
// it into its canonical name (as textproto.CanonicalMIMEHeaderKey gives it)
// and value. obs-fold is refused (RFC 9112 §5.2: a proxy must not pass on
// a header others may unfold differently), and so is whitespace before the
// colon (§5.1), which the token check covers.
func SplitField(field string) (key, value string, err error) {
	if field == "" {
		return "", "", ErrFieldLine
	}
	if field[0] == ' ' || field[0] == '\t' {
		return "", "", ErrObsFold
	}
	colon := strings.IndexByte(field, ':')
	if colon <= 0 {
		return "", "", ErrFieldLine
	}
	key, ok := canonicalToken(field[:colon])
	if !ok {
		return "", "", ErrFieldName
	}
	value = TrimOWS(field[colon+1:])
	if !ValidValue(value) {
		return "", "", ErrFieldValue
	}
	return key, value, nil
}

// nameTable drives canonicalToken: nameTable[expectUpper][c] says whether
// byte c is a token character (nameToken), whether it breaks canonical
// case after the previous byte (nameNotCanonical: a lower-case letter
// where an upper-case one belongs, or the reverse), and whether the next
// letter should be upper case (nameNextUpper: after '-').
const (
	nameToken = 1 << iota
	nameNotCanonical
	nameNextUpper
)

var nameTable = func() (t [2][256]uint8) {
	for expectUpper := range 2 {
		for c := range 256 {
			if !isTokenChar[c] {
				continue
			}
			v := uint8(nameToken)
			switch {
			case c >= 'a' && c <= 'z' && expectUpper == 1, c >= 'A' && c <= 'Z' && expectUpper == 0:
				v |= nameNotCanonical
			case c == '-':
				v |= nameNextUpper
			}
			t[expectUpper][c] = v
		}
	}
	return t
}()

// canonicalToken checks that name is a token and returns its canonical
// form, in one pass. Clients and backends nearly always send names already
// canonical ("Content-Type"), which come back as they are, without an
// allocation or a second look; others go through textproto.
func canonicalToken(name string) (string, bool) {
	if commonName(name) {
		return name, true
	}
	if name == "" {
		return "", false
	}
	var bad uint8
	upper := 1
	for i := 0; i < len(name); i++ {
		v := nameTable[upper][name[i]]
		if v == 0 {
			return "", false
		}
		bad |= v
		upper = int(v>>2) & 1
	}
	if bad&nameNotCanonical == 0 {
		return name, true
	}
	return textproto.CanonicalMIMEHeaderKey(name), true
}

// commonName reports whether name is one of the field names most requests
// and responses carry, in canonical form: a string switch (compared by
// length first) is cheaper than checking such a name byte by byte.
func commonName(name string) bool {
	switch name {
	case "Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Connection",
		"Cookie", "Referer", "Origin", "Authorization", "Cache-Control", "Pragma",
		"If-None-Match", "If-Modified-Since", "Upgrade-Insecure-Requests", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id", "X-Real-Ip", "Content-Type",
		"Content-Length", "Content-Encoding", "Date", "Server", "Etag", "Last-Modified",
		"Set-Cookie", "Vary", "Expires", "Location", "Keep-Alive", "Transfer-Encoding",
		"Accept-Ranges", "Age", "Strict-Transport-Security", "X-Content-Type-Options",
		"X-Frame-Options", "Referrer-Policy", "Content-Security-Policy":
		return true
	}
	return false
}

// CanonicalKey is textproto.CanonicalMIMEHeaderKey without its cost for
// names that are already canonical, the usual case.
func CanonicalKey(name string) string {
	if key, ok := canonicalToken(name); ok {
		return key
	}
	return name // as textproto: a name that is no token is left alone
}

// ParseFields clears hdr and fills it from block: field lines, each ended
// by '\n' (as ReadLine leaves them). block may be a View of a read buffer:
// the names and values put into hdr are memo's (see HeadMemo). The value
// slices share one backing array, *vals, grown when it is too short: a
// connection that keeps its vals and memo between the blocks it parses
// allocates nothing here for fields that repeat. The slices of the
// previous block parsed with the same vals must be dead by then.
//
// It reports which framing fields the block has (a bit is set when the
// field is there, may be set when it was dropped). With hosts non-nil, the
// values of Host fields are put there instead of into hdr (a server keeps
// the request's Host apart from its header map, as net/http does).
func ParseFields(hdr http.Header, block string, vals *[]string, memo *HeadMemo, hosts *[]string) (Fields, error) {
	clear(hdr)
	if hosts != nil {
		*hosts = (*hosts)[:0]
	}
	var seen Fields
	n := strings.Count(block, "\n")
	if cap(*vals) < n {
		*vals = make([]string, n)
	}
	vs := (*vals)[:n]
	for i := 0; block != ""; i++ {
		var field string
		field, block, _ = strings.Cut(block, "\n")
		key, value, err := SplitField(field)
		if err != nil {
			return 0, err
		}
		key, value = memo.Field(i, key, value)
		seen |= framingField(key)
		if hosts != nil && key == "Host" {
			*hosts = append(*hosts, value)
			continue
		}
		if strings.IndexByte(key, '_') >= 0 {
			// Dropped, as nginx does by default (underscores_in_headers
			// off): CGI-style backends read X_Real_IP and X-Real-IP as one
			// variable, so the field would get past the ones the proxy
			// removes or sets itself (X-Forwarded-For, X-Real-IP).
			continue
		}
		if vv, dup := hdr[key]; dup {
			hdr[key] = append(vv, value) // cap 1: a copy, vs is not touched
		} else {
			vs[i] = value
			hdr[key] = vs[i : i+1 : i+1]
		}
	}
	return seen, nil
}

// Fields is a set of the framing fields that decide how a message is
// delimited and whether its connection stays open. Code that must look
// each of them up does so only when the head has it: most heads have none,
// and a miss in a small map scans all of its slots.
type Fields uint8

const (
	FieldConnection Fields = 1 << iota
	FieldUpgrade
	FieldTransferEncoding
	FieldContentLength
	FieldExpect
)

// framingField is key's bit in Fields (key in canonical form), 0 for the
// other fields.
func framingField(key string) Fields {
	switch key {
	case "Connection":
		return FieldConnection
	case "Upgrade":
		return FieldUpgrade
	case "Transfer-Encoding":
		return FieldTransferEncoding
	case "Content-Length":
		return FieldContentLength
	case "Expect":
		return FieldExpect
	}
	return 0
}

// View is b as a string without copying, for parsing only: b is a read
// buffer that the next message overwrites, so nothing may keep the result
// or a substring of it. HeadMemo makes the strings that are kept.
func View(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// maxMemoFields bounds how many fields of a head HeadMemo keeps.
const maxMemoFields = 32

// HeadMemo keeps the strings of the previous head read on a connection,
// so that a head repeating its first line or a field of it at the same
// place reuses them instead of allocating: a client's requests mostly
// repeat Host, User-Agent, Accept and Cookie, a backend's answers
// Content-Type, Server and a Date that changes once a second. What does
// not repeat is copied out of the read buffer, one string each. The
// strings handed out are never changed, so the header maps, the access
// log and any stage may keep them. The zero value is ready to use.
type HeadMemo struct {
	line   string
	fields [][2]string // name and value, by position in the head
}

// Line returns a string equal to line (a View of the read buffer, say).
func (m *HeadMemo) Line(line string) string {
	if line != m.line {
		m.line = strings.Clone(line)
	}
	return m.line
}

// Field returns strings equal to the i-th field's name and value.
func (m *HeadMemo) Field(i int, name, value string) (string, string) {
	if i >= len(m.fields) {
		f := [2]string{strings.Clone(name), strings.Clone(value)}
		if i == len(m.fields) && i < maxMemoFields {
			m.fields = append(m.fields, f)
		}
		return f[0], f[1]
	}
	f := &m.fields[i]
	if f[0] != name {
		f[0] = strings.Clone(name)
	}
	if f[1] != value {
		f[1] = strings.Clone(value)
	}
	return f[0], f[1]
}
