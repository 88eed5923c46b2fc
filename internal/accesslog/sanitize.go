package accesslog

import (
	"fmt"
	"math"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// Defaults of logging.access_log.sanitize (DESIGN §3).
const (
	DefaultMaskQueryParams   = config.DefaultMaskQueryParams
	DefaultTruncateUserAgent = config.DefaultTruncateUserAgent
	// MinTruncateUserAgent is the smallest truncate_user_agent accepted.
	MinTruncateUserAgent = config.MinTruncateUserAgent
)

// Replacement texts.
const (
	redacted = "[REDACTED]"
	masked   = "[MASKED]"
)

// alwaysRedacted are headers whose values are credentials: they are
// redacted whatever redact_headers says.
var alwaysRedacted = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// SanitizeOptions is logging.access_log.sanitize.
type SanitizeOptions struct {
	// RedactHeaders are headers whose values are replaced by [REDACTED]
	// wherever a header value is logged (user_agent, referer,
	// x_forwarded_for, host, request_id). Authorization, Proxy-
	// Authorization, Cookie and Set-Cookie are always redacted.
	RedactHeaders []string
	// MaskQueryParams matches the (percent-decoded) names of query
	// parameters whose values are replaced by [MASKED]; "" is the default.
	MaskQueryParams string
	// TruncateUserAgent is the longest user_agent logged, in bytes; 0 is
	// the default.
	TruncateUserAgent int
}

// Sanitizer turns a record into one JSON line with every rule applied. It
// is the only way a record becomes bytes: there is no encoder that takes
// anything but a record, and no switch that turns a rule off.
type Sanitizer struct {
	params  *regexp.Regexp
	uaMax   int
	redact  map[string]bool // canonical header names
	rUA     bool
	rRef    bool
	rXFF    bool
	rHost   bool
	rReqID  bool
	scratch sync.Pool // *encoder, for AppendLine
}

// NewSanitizer compiles o.
func NewSanitizer(o SanitizeOptions) (*Sanitizer, error) {
	// A pattern of one's own adds to the default, never replaces it: the
	// sanitising settings can only add (a password=... must never reach
	// the disk because someone listed their own parameter).
	pat := DefaultMaskQueryParams
	if o.MaskQueryParams != "" && o.MaskQueryParams != DefaultMaskQueryParams {
		pat = "(?:" + DefaultMaskQueryParams + ")|(?:" + o.MaskQueryParams + ")"
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, fmt.Errorf("mask_query_params: %v", err)
	}
	ua := o.TruncateUserAgent
	if ua == 0 {
		ua = DefaultTruncateUserAgent
	}
	if ua < MinTruncateUserAgent {
		return nil, fmt.Errorf("truncate_user_agent %d is below %d", ua, MinTruncateUserAgent)
	}
	s := &Sanitizer{params: re, uaMax: ua, redact: map[string]bool{}}
	for _, h := range append(append([]string(nil), alwaysRedacted...), o.RedactHeaders...) {
		s.redact[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(h))] = true
	}
	s.rUA, s.rRef = s.redact["User-Agent"], s.redact["Referer"]
	s.rXFF, s.rHost, s.rReqID = s.redact["X-Forwarded-For"], s.redact["Host"], s.redact["X-Request-Id"]
	s.scratch.New = func() any { return new(encoder) }
	return s, nil
}

// Redacts reports whether the value of header name is redacted.
func (s *Sanitizer) Redacts(name string) bool {
	return s.redact[textproto.CanonicalMIMEHeaderKey(name)]
}

// AppendLine appends the sanitised JSON line of r, ending in '\n', to dst.
func (s *Sanitizer) AppendLine(dst []byte, r *pipeline.Record) []byte {
	e := s.scratch.Get().(*encoder)
	e.s = s
	dst = e.appendLine(dst, r)
	e.s = nil
	if cap(e.tmp) <= maxPooledScratch && cap(e.name) <= maxPooledScratch {
		s.scratch.Put(e)
	}
	return dst
}

const maxPooledScratch = 64 << 10

// encoder holds the scratch space of one line; it is reused, so encoding
// allocates nothing once the buffers have grown.
type encoder struct {
	s     *Sanitizer
	tmp   []byte          // a field's value after masking, before JSON escaping
	name  []byte          // a percent-decoded parameter name
	names map[string]bool // parameter name (decoded) -> masked
}

// field kinds: which rules apply beyond PAN masking and escaping.
const (
	kindPlain = iota
	kindPath
	kindQuery
	kindURL
	kindUA
	kindLong // a plain field a client can make long (x_forwarded_for)
)

// maxLoggedField bounds, in bytes before escaping, the fields a client
// controls and can make long (path, query, referer, x_forwarded_for;
// user_agent has truncate_user_agent): a 12 KB request became a 72 KB
// line, whatever rate limit or block applied to its client.
const maxLoggedField = 2048

// maxOf is the longest value of kind that is logged (0: no cut).
func (e *encoder) maxOf(kind int) int {
	switch kind {
	case kindUA:
		return e.s.uaMax
	case kindPath, kindQuery, kindURL, kindLong:
		return maxLoggedField
	}
	return 0
}

// appendLine writes every DESIGN §5 field in a fixed order (timestamp
// first: rotation reads it back), then Rampart's own fields.
func (e *encoder) appendLine(b []byte, r *pipeline.Record) []byte {
	s := e.s
	b = append(b, `{"timestamp":"`...)
	b = r.Timestamp.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, '"')
	b = e.str(b, "request_id", r.RequestID, kindPlain, s.rReqID)
	b = e.str(b, "client_ip", r.ClientIP, kindPlain, false)
	b = appendInt(b, "client_port", int64(r.ClientPort))
	b = e.str(b, "server_ip", r.ServerIP, kindPlain, false)
	b = appendInt(b, "server_port", int64(r.ServerPort))
	b = e.str(b, "method", r.Method, kindPlain, false)
	b = e.str(b, "host", r.Host, kindPlain, s.rHost)
	b = e.str(b, "path", r.Path, kindPath, false)
	b = e.str(b, "query", r.Query, kindQuery, false)
	b = e.str(b, "protocol", r.Protocol, kindPlain, false)
	b = appendInt(b, "status_code", int64(r.StatusCode))
	b = appendInt(b, "request_size_bytes", r.RequestSizeBytes)
	b = appendInt(b, "response_size_bytes", r.ResponseSizeBytes)
	b = appendFloat(b, "request_time_ms", r.RequestTimeMs)
	b = appendFloat(b, "upstream_time_ms", r.UpstreamTimeMs)
	b = e.str(b, "ssl_protocol", r.SSLProtocol, kindPlain, false)
	b = e.str(b, "ssl_cipher", r.SSLCipher, kindPlain, false)
	b = e.str(b, "user_agent", r.UserAgent, kindUA, s.rUA)
	b = e.str(b, "referer", r.Referer, kindURL, s.rRef)
	b = e.str(b, "x_forwarded_for", r.XForwardedFor, kindLong, s.rXFF)
	b = e.str(b, "lb_instance", r.LBInstance, kindPlain, false)
	b = e.str(b, "pool_id", r.PoolID, kindPlain, false)
	b = e.str(b, "backend_server", r.BackendServer, kindPlain, false)
	b = appendBool(b, "rate_limited", r.RateLimited)
	b = e.str(b, "waf_action", r.WAFAction, kindPlain, false)
	b = append(b, `,"waf_rules_matched":[`...)
	for i, m := range r.WAFRulesMatched {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.value(b, m, kindPlain)
	}
	b = append(b, ']')
	b = e.str(b, "geo_country", r.GeoCountry, kindPlain, false)
	b = appendInt(b, "asn", int64(r.ASN))
	b = appendBool(b, "connection_reused", r.ConnectionReused)
	b = e.str(b, "ja3", r.JA3, kindPlain, false)
	b = e.str(b, "ja4", r.JA4, kindPlain, false)
	b = appendInt(b, "target_status_code", int64(r.TargetStatusCode))
	b = appendFloat(b, "target_processing_time_ms", r.TargetProcessingTimeMs)
	// Rampart's own fields, beyond DESIGN §5.
	b = e.str(b, "listener", r.Listener, kindPlain, false)
	b = e.str(b, "sni", r.SNI, kindPlain, false)
	b = appendBool(b, "tls_resumed", r.TLSResumed)
	b = e.str(b, "route", r.Route, kindPlain, false)
	b = e.str(b, "backend_id", r.BackendID, kindPlain, false)
	b = appendInt(b, "attempts", int64(r.Attempts))
	b = e.str(b, "rate_limit_tier", r.RateLimitTier, kindPlain, false)
	b = e.str(b, "acl_action", r.ACLAction, kindPlain, false)
	b = e.str(b, "acl_source", r.ACLSource, kindPlain, false)
	b = appendFloat(b, "slow_client_score", r.SlowClientScore)
	b = e.str(b, "error", r.Error, kindPlain, false)
	return append(b, "}\n"...)
}

func appendKey(b []byte, k string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

func appendInt(b []byte, k string, v int64) []byte {
	return strconv.AppendInt(appendKey(b, k), v, 10)
}

func appendBool(b []byte, k string, v bool) []byte {
	return strconv.AppendBool(appendKey(b, k), v)
}

// appendFloat writes v in plain decimal; NaN and infinities (not JSON)
// become -1, the "no value" of the timing fields.
func appendFloat(b []byte, k string, v float64) []byte {
	b = appendKey(b, k)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "-1"...)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

func (e *encoder) str(b []byte, k, v string, kind int, redact bool) []byte {
	b = appendKey(b, k)
	if redact && v != "" {
		return append(b, `"`+redacted+`"`...)
	}
	return e.value(b, v, kind)
}

// value appends v as a JSON string after the rules of its kind:
// parameters masked (path, query, URL), card numbers masked (all), long
// fields cut (maxOf, after masking so a cut cannot leave a card number's
// head unmasked).
func (e *encoder) value(b []byte, v string, kind int) []byte {
	var t []byte
	switch kind {
	case kindPath:
		if strings.IndexByte(v, ';') >= 0 {
			t = e.maskParams(e.tmp[:0], v, true)
		}
	case kindQuery:
		if v != "" {
			t = e.maskParams(e.tmp[:0], decodeDigits(v), false)
		}
	case kindURL:
		if v != "" {
			t = e.maskURL(e.tmp[:0], decodeDigits(v))
		}
	}
	limit := e.maxOf(kind)
	if t == nil {
		if !mayHoldPAN(v) && (limit == 0 || len(v) <= limit) {
			return appendJSONString(b, v)
		}
		t = append(e.tmp[:0], v...)
	}
	maskPANs(t)
	if limit > 0 && len(t) > limit {
		t = t[:utf8Cut(t, limit)] // after masking: a cut cannot leave a card number's head unmasked
	}
	e.tmp = t
	return appendJSONString(b, t)
}

// utf8Cut returns the largest n <= max at which b can be cut without
// splitting a UTF-8 sequence.
func utf8Cut(b []byte, max int) int {
	n := max
	for n > 0 && n > max-utf8.UTFMax && b[n]&0xC0 == 0x80 {
		n--
	}
	if b[n]&0xC0 == 0x80 { // not UTF-8 anyway: cut where asked
		return max
	}
	return n
}

// maskParams appends v with the values of parameters whose names match
// replaced by [MASKED]. In a query, parameters are separated by & and ;.
// In a path, only ";name=value" parameters of a segment count
// ("/a;jsessionid=X/b").
func (e *encoder) maskParams(dst []byte, v string, path bool) []byte {
	start := 0
	param := !path
	for i := 0; i <= len(v); i++ {
		if i < len(v) {
			c := v[i]
			if !(c == ';' || (path && c == '/') || (!path && c == '&')) {
				continue
			}
		}
		elem := v[start:i]
		if eq := strings.IndexByte(elem, '='); param && eq >= 0 && e.nameMatches(elem[:eq]) {
			dst = append(dst, elem[:eq+1]...)
			dst = append(dst, masked...)
		} else {
			dst = append(dst, elem...)
		}
		if i < len(v) {
			dst = append(dst, v[i])
			if path {
				param = v[i] == ';'
			}
		}
		start = i + 1
	}
	return dst
}

// nameMatches matches a parameter name, percent-decoded ("pass%77ord"
// is password) when it decodes. Results are cached per encoder: names
// repeat from request to request, and the regular expression is most of
// the cost of a line.
func (e *encoder) nameMatches(name string) bool {
	if name == "" {
		return false
	}
	if strings.IndexByte(name, '%') >= 0 || strings.IndexByte(name, '+') >= 0 {
		if d, ok := unescape(e.name[:0], name); ok {
			e.name = d
			if v, hit := e.names[string(d)]; hit {
				return v
			}
			v := e.s.params.Match(d)
			e.remember(string(d), v)
			return v
		}
	}
	if v, hit := e.names[name]; hit {
		return v
	}
	v := e.s.params.MatchString(name)
	e.remember(strings.Clone(name), v)
	return v
}

// maxCachedNames bounds the cache, which hostile clients can fill with
// random names.
const maxCachedNames = 512

func (e *encoder) remember(name string, v bool) {
	if e.names == nil || len(e.names) >= maxCachedNames {
		e.names = make(map[string]bool, 64)
	}
	e.names[name] = v
}

func unescape(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return dst, false
			}
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

// decodeDigits decodes the percent-encoded digits of a query or URL
// (RFC 3986 §2.3: they mean the same encoded or not), so that a card
// number sent as %34%31%31%31... is found and masked as the backend will
// read it. Other escapes stay as sent: they may be evidence.
func decodeDigits(v string) string {
	i := strings.IndexByte(v, '%')
	if i < 0 {
		return v
	}
	b := make([]byte, 0, len(v))
	for ; i < len(v); i = strings.IndexByte(v, '%') {
		if i < 0 {
			break
		}
		b = append(b, v[:i]...)
		if i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			if c := unhex(v[i+1])<<4 | unhex(v[i+2]); c >= '0' && c <= '9' {
				b = append(b, c)
				v = v[i+3:]
				continue
			}
		}
		b = append(b, '%')
		v = v[i+1:]
	}
	return string(append(b, v...))
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// maskURL appends a URL (a Referer) with its userinfo redacted and the
// parameters of its path, query and fragment masked. The fragment is
// treated as a query ("#access_token=..." of OAuth implicit grants).
func (e *encoder) maskURL(dst []byte, v string) []byte {
	rest := v
	authority := false
	if i := strings.Index(rest, "://"); i > 0 && isScheme(rest[:i]) {
		dst = append(dst, rest[:i+3]...)
		rest, authority = rest[i+3:], true
	} else if strings.HasPrefix(rest, "//") { // scheme-relative: "//user:pw@host/"
		dst = append(dst, "//"...)
		rest, authority = rest[2:], true
	}
	if authority {
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		auth := rest[:end]
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			dst = append(dst, redacted+"@"...)
			auth = auth[at+1:]
		}
		dst = append(dst, auth...)
		rest = rest[end:]
	}
	frag := ""
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest, frag = rest[:i], rest[i+1:]
	}
	query, hasQuery := "", false
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query, hasQuery = rest[:i], rest[i+1:], true
	}
	dst = e.maskParams(dst, rest, true)
	if hasQuery {
		dst = append(dst, '?')
		dst = e.maskParams(dst, query, false)
	}
	if frag != "" || strings.HasSuffix(v, "#") {
		dst = append(dst, '#')
		if i := strings.IndexByte(frag, '?'); i >= 0 { // "#/route?token=..."
			dst = append(dst, frag[:i+1]...)
			frag = frag[i+1:]
		}
		dst = e.maskParams(dst, frag, false)
	}
	return dst
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))) {
			return false
		}
	}
	return s != ""
}

// Card numbers (PAN): 13 to 19 digits, possibly in groups separated by
// one space or dash (also "+" and "%20", how a space looks in a raw query
// or URL), that pass the Luhn check. All digits but the last 4 become *.
const (
	panMin = 13
	panMax = 19
)

// mayHoldPAN is the fast path: a string with fewer than 13 digits holds no
// card number.
func mayHoldPAN[S string | []byte](s S) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			if n++; n >= panMin {
				return true
			}
		}
	}
	return false
}

// digitGroup is a maximal run of digits in b.
type digitGroup struct{ start, end int }

// maskPANs masks card numbers in b in place (the length does not change).
func maskPANs(b []byte) {
	if !mayHoldPAN(b) {
		return
	}
	// A window of groups of one chain (groups joined by single
	// separators): a card number spans at most 19 groups, so with 20 in
	// hand the span that starts at the first one can be decided.
	var w [panMax + 1]digitGroup
	n := 0
	i := 0
	for i < len(b) {
		if !isDigit(b[i]) {
			i++
			continue
		}
		j := i
		for {
			k := j
			for k < len(b) && isDigit(b[k]) {
				k++
			}
			if n == len(w) {
				c := panStep(b, w[:n])
				n = copy(w[:], w[c:n])
			}
			w[n] = digitGroup{j, k}
			n++
			sep := separatorAt(b, k)
			if sep == 0 || k+sep >= len(b) || !isDigit(b[k+sep]) {
				j = k
				break
			}
			j = k + sep
		}
		for n > 0 {
			c := panStep(b, w[:n])
			n = copy(w[:], w[c:n])
		}
		i = j
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// separatorAt returns the length of a group separator at b[i], or 0.
func separatorAt(b []byte, i int) int {
	if i >= len(b) {
		return 0
	}
	switch b[i] {
	case ' ', '-', '+':
		return 1
	case '%':
		if i+2 < len(b) && b[i+1] == '2' && (b[i+2] == '0' || b[i+2] == 'D' || b[i+2] == 'd') {
			return 3
		}
	}
	return 0
}

// panStep decides the span that starts at gs[0]: the longest run of whole
// groups with 13..19 digits that passes Luhn is masked. It returns how
// many groups are done with.
func panStep(b []byte, gs []digitGroup) int {
	digits, last := 0, -1
	for j := range gs {
		digits += gs[j].end - gs[j].start
		if digits > panMax {
			break
		}
		last = j
	}
	for j := last; j >= 0; j-- {
		if digits = spanDigits(gs[:j+1]); digits < panMin {
			break
		}
		if luhn(b, gs[:j+1]) {
			maskGroups(b, gs[:j+1])
			return j + 1
		}
	}
	return 1
}

func spanDigits(gs []digitGroup) int {
	d := 0
	for _, g := range gs {
		d += g.end - g.start
	}
	return d
}

func luhn(b []byte, gs []digitGroup) bool {
	sum, double := 0, false
	for g := len(gs) - 1; g >= 0; g-- {
		for k := gs[g].end - 1; k >= gs[g].start; k-- {
			d := int(b[k] - '0')
			if double {
				if d *= 2; d > 9 {
					d -= 9
				}
			}
			sum += d
			double = !double
		}
	}
	return sum%10 == 0
}

// maskGroups replaces every digit of gs but the last 4 with '*'.
func maskGroups(b []byte, gs []digitGroup) {
	keep := 4
	for g := len(gs) - 1; g >= 0; g-- {
		for k := gs[g].end - 1; k >= gs[g].start; k-- {
			if keep > 0 {
				keep--
				continue
			}
			b[k] = '*'
		}
	}
}

// appendJSONString appends s as a JSON string. Beyond what JSON requires
// (quote, backslash, C0 controls) it escapes what could forge or disguise
// a log line when it is read in a terminal or an editor: DEL, C1 controls,
// the Unicode line and paragraph separators and bidirectional overrides.
// Invalid UTF-8 becomes U+FFFD.
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = appendU(b, rune(c))
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if escapeRune(r) {
			b = append(b, s[start:i]...)
			b = appendU(b, r)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plainASCII marks the ASCII bytes written as they are.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func escapeRune(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 ||
		r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

func appendU(b []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}
