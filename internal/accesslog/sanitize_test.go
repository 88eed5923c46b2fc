package accesslog

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

func mustSanitizer(t testing.TB, o SanitizeOptions) *Sanitizer {
	t.Helper()
	s, err := NewSanitizer(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// line encodes r and checks the framing: one JSON object, one '\n'.
func line(t testing.TB, s *Sanitizer, r *pipeline.Record) (string, map[string]any) {
	t.Helper()
	b := s.AppendLine(nil, r)
	if len(b) == 0 || b[len(b)-1] != '\n' || bytes.Count(b, []byte{'\n'}) != 1 {
		t.Fatalf("not exactly one line: %q", b)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return string(b), m
}

func record() *pipeline.Record {
	r := pipeline.NewRecord()
	r.Timestamp = time.Date(2026, 3, 4, 5, 6, 7, 891234000, time.UTC)
	r.RequestID, r.ClientIP, r.ClientPort = "req-1", "203.0.113.7", 51234
	r.ServerIP, r.ServerPort, r.Method, r.Host = "127.0.0.1", 8080, "GET", "shop.example.com"
	r.Path, r.Protocol, r.StatusCode = "/", "HTTP/1.1", 200
	return r
}

// The secrets of a request never reach the file: credentials in the
// query and in the Referer (query, fragment, userinfo), whatever the
// parameter name's case or percent-encoding.
func TestCredentialsNeverReachTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := record()
	r.Path = "/app;jsessionid=Sess1onSecret/home"
	r.Query = "page=2&token=xyzTokenSecret&API_KEY=KeySecret&pass%77ord=PwSecret&Secret=&q=shoes;client_secret=CsSecret"
	r.Referer = "https://alice:RefPwSecret@shop.example/cb?password=RefQuerySecret&next=%2F#access_token=FragSecret&state=ok"
	r.UserAgent = "curl/8.5"
	l.Log(r)
	pipeline.Release(r)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"xyzTokenSecret", "KeySecret", "PwSecret", "CsSecret", "RefPwSecret", "RefQuerySecret", "FragSecret"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s reached the log:\n%s", secret, b)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if want := "page=2&token=[MASKED]&API_KEY=[MASKED]&pass%77ord=[MASKED]&Secret=[MASKED]&q=shoes;client_secret=[MASKED]"; m["query"] != want {
		t.Errorf("query = %q\nwant    %q", m["query"], want)
	}
	if want := "https://[REDACTED]@shop.example/cb?password=[MASKED]&next=%2F#access_token=[MASKED]&state=ok"; m["referer"] != want {
		t.Errorf("referer = %q\nwant      %q", m["referer"], want)
	}
	// A scheme-relative Referer has an authority, and userinfo, too.
	r2 := record()
	r2.Referer = "//bob:RelPwSecret@shop.example/x?token=T"
	if _, m2 := line(t, mustSanitizer(t, SanitizeOptions{}), r2); m2["referer"] != "//[REDACTED]@shop.example/x?token=[MASKED]" {
		t.Errorf("scheme-relative referer = %q", m2["referer"])
	}
	// A session id is a credential: path parameters follow
	// mask_query_params like query parameters do.
	if m["path"] != "/app;jsessionid=[MASKED]/home" {
		t.Errorf("path = %q", m["path"])
	}
	// The other names credentials travel under in URLs, and the names
	// that merely contain a short one, which are kept.
	r3 := record()
	r3.Query = "passwd=S1&pwd=S2&pass=S3&auth=S4&sig=S5&X-Amz-Signature=S6&X-Amz-Credential=S7&code=S8&session=S9&PHPSESSID=S10&sid=S11&jwt=S12&otp=S13&side=left&zipcode=12345&author=ann"
	if _, m3 := line(t, mustSanitizer(t, SanitizeOptions{}), r3); m3["query"] != "passwd=[MASKED]&pwd=[MASKED]&pass=[MASKED]&auth=[MASKED]&sig=[MASKED]&X-Amz-Signature=[MASKED]&X-Amz-Credential=[MASKED]&code=[MASKED]&session=[MASKED]&PHPSESSID=[MASKED]&sid=[MASKED]&jwt=[MASKED]&otp=[MASKED]&side=left&zipcode=12345&author=ann" {
		t.Errorf("query = %q", m3["query"])
	}
	s := mustSanitizer(t, SanitizeOptions{MaskQueryParams: `(?i)session|token`})
	r = record()
	r.Path = "/app;jsessionid=Sess1onSecret/home;v=1"
	if _, m := line(t, s, r); m["path"] != "/app;jsessionid=[MASKED]/home;v=1" {
		t.Errorf("path with a session parameter = %q", m["path"])
	}
}

// A mask_query_params of one's own adds to the default pattern: listing
// "hmac" must not unmask passwords and tokens.
func TestOwnMaskPatternAddsToDefault(t *testing.T) {
	for _, own := range []string{`(?i)^hmac$`, `$^`} {
		s := mustSanitizer(t, SanitizeOptions{MaskQueryParams: own})
		r := record()
		r.Query = "hmac=S1&password=S2&token=S3&api_key=S4&page=2"
		want := "hmac=[MASKED]&password=[MASKED]&token=[MASKED]&api_key=[MASKED]&page=2"
		if own == `$^` {
			want = "hmac=S1&password=[MASKED]&token=[MASKED]&api_key=[MASKED]&page=2"
		}
		if _, m := line(t, s, r); m["query"] != want {
			t.Errorf("mask_query_params %q: query %q, want %q", own, m["query"], want)
		}
	}
}

// Header values that are logged are redacted when their header is listed;
// credential headers are redacted whatever the list says.
func TestRedactHeaders(t *testing.T) {
	s := mustSanitizer(t, SanitizeOptions{RedactHeaders: []string{"user-agent", "Referer"}})
	r := record()
	r.UserAgent, r.Referer, r.XForwardedFor = "Secret-Agent/1.0", "https://a.example/", "198.51.100.1"
	_, m := line(t, s, r)
	if m["user_agent"] != "[REDACTED]" || m["referer"] != "[REDACTED]" || m["x_forwarded_for"] != "198.51.100.1" {
		t.Errorf("user_agent %q referer %q x_forwarded_for %q", m["user_agent"], m["referer"], m["x_forwarded_for"])
	}
	r.UserAgent = ""
	if _, m := line(t, s, r); m["user_agent"] != "" {
		t.Errorf("an absent header is logged as %q, want empty", m["user_agent"])
	}
	d := mustSanitizer(t, SanitizeOptions{RedactHeaders: []string{}})
	for _, h := range []string{"Authorization", "authorization", "Cookie", "Proxy-Authorization", "Set-Cookie"} {
		if !d.Redacts(h) {
			t.Errorf("%s is not redacted with an empty redact_headers", h)
		}
	}
	if d.Redacts("User-Agent") {
		t.Error("User-Agent redacted by default")
	}
}

func TestPANMasking(t *testing.T) {
	s := mustSanitizer(t, SanitizeOptions{})
	cases := []struct{ in, want string }{
		{"/pay/4111111111111111", "/pay/************1111"},
		{"/pay/4111 1111 1111 1111/x", "/pay/**** **** **** 1111/x"},
		{"/pay/4111-1111-1111-1111", "/pay/****-****-****-1111"},
		{"/amex/378282246310005", "/amex/***********0005"},
		{"/visa13/4222222222222", "/visa13/*********2222"},
		{"/n/2024-01-15 4111111111111111 ok", ""}, // checked below: no full PAN, date kept
		// Not card numbers: not Luhn-valid, too short, too long.
		{"/orders/1234567812345678", "/orders/1234567812345678"},
		{"/n/411111111111", "/n/411111111111"},
		{"/n/41111111111111111111111", "/n/41111111111111111111111"},
		{"/n/4111 1111 1111 1112", "/n/4111 1111 1111 1112"},
	}
	for _, c := range cases {
		r := record()
		r.Path = c.in
		_, m := line(t, s, r)
		got := m["path"].(string)
		if c.want == "" {
			if strings.Contains(got, "4111111111111111") || !strings.HasPrefix(got, "/n/2024-01") || !strings.HasSuffix(got, "1111 ok") {
				t.Errorf("path %q -> %q", c.in, got)
			}
			continue
		}
		if got != c.want {
			t.Errorf("path %q -> %q, want %q", c.in, got, c.want)
		}
	}
	// Every string field, and the encodings a raw query or URL uses.
	r := record()
	pan := "5555555555554444"
	r.RequestID, r.Host, r.UserAgent, r.XForwardedFor, r.Error = pan, pan+".example", "UA "+pan, "x"+pan, "e "+pan
	r.Query = "card=5555+5555+5555+4444&c2=5555%205555%205555%204444"
	r.Referer = "https://s.example/p?n=" + pan
	r.WAFRulesMatched = []string{"r " + pan}
	raw, m := line(t, s, r)
	if strings.Contains(raw, "5555555555554444") || strings.Contains(raw, "5555+5555") || strings.Contains(raw, "5555%205555") {
		t.Fatalf("a card number reached the line:\n%s", raw)
	}
	if m["query"] != "card=****+****+****+4444&c2=****%20****%20****%204444" {
		t.Errorf("query = %q", m["query"])
	}
	if m["user_agent"] != "UA ************4444" || m["request_id"] != "************4444" {
		t.Errorf("user_agent %q request_id %q", m["user_agent"], m["request_id"])
	}
}

func TestUserAgentTruncation(t *testing.T) {
	s := mustSanitizer(t, SanitizeOptions{})
	r := record()
	r.UserAgent = strings.Repeat("a", 1000)
	if _, m := line(t, s, r); m["user_agent"] != strings.Repeat("a", 256) {
		t.Errorf("default truncation: %d bytes", len(m["user_agent"].(string)))
	}
	s = mustSanitizer(t, SanitizeOptions{TruncateUserAgent: 16})
	r.UserAgent = "Mozilla/5.0 (X11" + "; Linux)" // 16 + more
	if _, m := line(t, s, r); m["user_agent"] != "Mozilla/5.0 (X11" {
		t.Errorf("user_agent = %q", m["user_agent"])
	}
	// A cut inside a multi-byte character moves before it.
	r.UserAgent = strings.Repeat("a", 14) + "€uro" // € is 3 bytes: 14..16
	_, m := line(t, s, r)
	got := m["user_agent"].(string)
	if got != strings.Repeat("a", 14) || !utf8.ValidString(got) {
		t.Errorf("user_agent = %q", got)
	}
	// Masking comes first: a cut cannot leave a card number's head.
	s = mustSanitizer(t, SanitizeOptions{TruncateUserAgent: 20})
	r.UserAgent = "UA/1 4111111111111111"
	if _, m := line(t, s, r); m["user_agent"] != "UA/1 ************111" {
		t.Errorf("user_agent = %q", m["user_agent"])
	}
	if _, err := NewSanitizer(SanitizeOptions{TruncateUserAgent: 15}); err == nil {
		t.Error("truncate_user_agent 15 accepted")
	}
}

// expectDecoded is what a JSON decoder must read back: every invalid
// UTF-8 byte as U+FFFD.
func expectDecoded(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

func TestHostileInputStaysOneValidJSONLine(t *testing.T) {
	s := mustSanitizer(t, SanitizeOptions{})
	hostile := "a\"b\\c\nd\re\tf\x00g\x1b[31mred\x7fh\xff\xfei\u2028j\u2029k\u202egnp.exe\u0085l\xc3" +
		`","status_code":200,"x":"` + "\n{\"forged\":true}"
	r := record()
	r.Method, r.Host, r.Path, r.Protocol, r.UserAgent = hostile, hostile, hostile, hostile, hostile
	r.RequestID, r.XForwardedFor, r.Error, r.Route = hostile, hostile, hostile, hostile
	r.WAFRulesMatched = []string{hostile, ""}
	raw, m := line(t, s, r)
	for i := 0; i < len(raw)-1; i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("raw control byte %#x at %d in %q", c, i, raw)
		}
	}
	for _, bad := range []string{"\u2028", "\u2029", "\u202e", "\u0085", "\xff"} {
		if strings.Contains(raw, bad) {
			t.Errorf("raw %q in the line", bad)
		}
	}
	want := expectDecoded(hostile)
	for _, k := range []string{"method", "host", "path", "protocol", "request_id", "x_forwarded_for", "error", "route"} {
		if m[k] != want {
			t.Errorf("%s decodes to %q\nwant %q", k, m[k], want)
		}
	}
	if m["status_code"] != json.Number("200") || m["forged"] != nil {
		t.Errorf("a field was forged: %v", m)
	}
	if ua := m["user_agent"].(string); !strings.HasPrefix(want, ua) && !utf8.ValidString(ua) {
		t.Errorf("user_agent %q", ua)
	}
	// encoding/json reads the same thing.
	var rec map[string]any
	if err := json.Unmarshal([]byte(raw), &rec); err != nil || rec["path"] != want {
		t.Errorf("encoding/json: %v, path %q", err, rec["path"])
	}
}

// Every field of the record is in every line, under its json tag, with
// zero values when nothing filled it, so the schema is stable.
func TestLineHasEveryRecordField(t *testing.T) {
	var tags []string
	rt := reflect.TypeOf(pipeline.Record{})
	for i := 0; i < rt.NumField(); i++ {
		tag := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		if tag != "-" && tag != "" {
			tags = append(tags, tag)
		}
	}
	for _, k := range []string{"timestamp", "request_id", "client_ip", "client_port", "server_ip", "server_port", "method",
		"host", "path", "query", "protocol", "status_code", "request_size_bytes", "response_size_bytes", "request_time_ms",
		"upstream_time_ms", "ssl_protocol", "ssl_cipher", "user_agent", "referer", "x_forwarded_for", "lb_instance",
		"pool_id", "backend_server", "rate_limited", "waf_action", "waf_rules_matched", "geo_country", "asn",
		"connection_reused", "ja3", "ja4", "target_status_code", "target_processing_time_ms"} {
		found := false
		for _, t := range tags {
			found = found || t == k
		}
		if !found {
			t.Errorf("DESIGN §5 field %q is not in pipeline.Record", k)
		}
	}
	s := mustSanitizer(t, SanitizeOptions{})
	r := pipeline.NewRecord()
	raw, m := line(t, s, r)
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sort.Strings(tags)
	if !reflect.DeepEqual(keys, tags) {
		t.Fatalf("line keys %v\nrecord tags %v", keys, tags)
	}
	if m["upstream_time_ms"] != json.Number("-1") || m["target_processing_time_ms"] != json.Number("-1") {
		t.Errorf("no backend: upstream %v target %v, want -1", m["upstream_time_ms"], m["target_processing_time_ms"])
	}
	if !strings.Contains(raw, `"waf_rules_matched":[]`) || !strings.Contains(raw, `"rate_limited":false`) || !strings.Contains(raw, `"asn":0`) {
		t.Errorf("zero values: %s", raw)
	}
	if !strings.HasPrefix(raw, `{"timestamp":"0001-01-01T00:00:00.000000Z"`) {
		t.Errorf("timestamp first: %s", raw[:40])
	}
	// Values round-trip.
	r = record()
	r.RequestTimeMs, r.UpstreamTimeMs, r.RequestSizeBytes, r.RateLimited, r.ASN = 1.25, 0.5, 1<<40, true, 64496
	_, m = line(t, s, r)
	if m["timestamp"] != "2026-03-04T05:06:07.891234Z" || m["request_time_ms"] != json.Number("1.25") ||
		m["request_size_bytes"] != json.Number("1099511627776") || m["rate_limited"] != true || m["asn"] != json.Number("64496") {
		t.Errorf("values: %v", m)
	}
}

// The property behind masking, over arbitrary input: the line is one valid
// JSON object and no field holds an unmasked Luhn-valid run of 13..19
// digits.
func FuzzAppendLine(f *testing.F) {
	f.Add("/pay/4111111111111111", "token=abc&x=1", "https://u:p@h/?password=1", "UA", "1.2.3.4")
	f.Add("a\"\n\xff", "%zz=1&;&=&token", "#", "\u2028", "")
	f.Add("/1-2-3-4-5-6-7-8-9-0-1-2-3-4-5-6-7-8-9-0-4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1", "q=4111%2011111111%2d11111", "x://", strings.Repeat("€", 100), "")
	s := mustSanitizer(f, SanitizeOptions{TruncateUserAgent: 40})
	f.Fuzz(func(t *testing.T, path, query, referer, ua, xff string) {
		r := record()
		r.Path, r.Query, r.Referer, r.UserAgent, r.XForwardedFor = path, query, referer, ua, xff
		_, m := line(t, s, r)
		for _, k := range []string{"path", "query", "referer", "user_agent", "x_forwarded_for"} {
			v := m[k].(string)
			if run := unmaskedPAN(v); run != "" {
				t.Fatalf("%s %q holds the card number %s", k, v, run)
			}
		}
		if len(m["user_agent"].(string)) > 40 && m["user_agent"] != "[REDACTED]" {
			// decoded U+FFFD can be longer than the raw byte it replaced
			if len(expectDecoded(ua)) <= len(ua) {
				t.Fatalf("user_agent %d bytes", len(m["user_agent"].(string)))
			}
		}
	})
}

// unmaskedPAN returns a maximal digit run of 13..19 digits that passes Luhn.
func unmaskedPAN(s string) string {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if n := j - i; n >= panMin && n <= panMax && luhn([]byte(s), []digitGroup{{i, j}}) {
			return s[i:j]
		}
		i = j
	}
	return ""
}

// The fields a client can make long are cut (after masking), so a request
// cannot become a log line many times its size: each invalid byte is
// written as \ufffd, six bytes.
func TestLongFieldsCut(t *testing.T) {
	r := record()
	junk := strings.Repeat("\xff", 8000)
	r.Path, r.Query, r.Referer, r.XForwardedFor = "/"+junk, "q="+junk, "https://x.example/?a="+junk, strings.Repeat("1.2.3.4, ", 900)
	b, m := line(t, mustSanitizer(t, SanitizeOptions{}), r)
	for _, f := range []string{"path", "query", "referer", "x_forwarded_for"} {
		if v, _ := m[f].(string); len(v) > 3*2048 || len(v) < 100 {
			t.Errorf("%s logged with %d bytes", f, len(v))
		}
	}
	if len(b) > 60000 {
		t.Errorf("a line of %d bytes", len(b))
	}
}

// A card number sent percent-encoded (%34%31...) in the query or a
// Referer is masked as the backend reads it; escapes of other than digits
// stay as sent.
func TestPANPercentEncoded(t *testing.T) {
	r := record()
	r.Query = "c=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31&q=a%20b%26c"
	r.Referer = "https://shop.example/x?cc=%34111111111111111&n=%7e%31"
	_, m := line(t, mustSanitizer(t, SanitizeOptions{}), r)
	if m["query"] != "c=************1111&q=a%20b%26c" {
		t.Errorf("query = %q", m["query"])
	}
	if m["referer"] != "https://shop.example/x?cc=************1111&n=%7e1" {
		t.Errorf("referer = %q", m["referer"])
	}
	for _, c := range []struct{ in, want string }{
		{"", ""}, {"%", "%"}, {"a%3", "a%3"}, {"%41%2F%39%zz%30", "%41%2F9%zz0"}, {"100%", "100%"},
	} {
		if got := decodeDigits(c.in); got != c.want {
			t.Errorf("decodeDigits(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
