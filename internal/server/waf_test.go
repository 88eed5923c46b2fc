package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/config"
)

// wafConfig: a trusted loopback proxy (clients picked by X-Forwarded-For),
// a DETECT route beside the BLOCK default, an exclusion, and 3 WAF attacks
// in 5 minutes → a block.
func wafConfig(b *testBackend, extra string) string {
	return fmt.Sprintf(`
listeners:
  - {name: web, listen: "127.0.0.1:0", trusted_proxies: [127.0.0.1/32]}
routes:
  - {name: all, match: {path_prefix: /}, pool: p}
  - {name: watch, match: {path_prefix: /watch}, pool: p, waf: {mode: DETECT}}
  - {name: hooks, match: {path_prefix: /hooks}, pool: p, waf: {exclusions: [{path: "/hooks/*", rules: [sql_injection]}]}}
pools: [{name: p, backends: %s}]
logging: {access_log: {path: access.log}}
security:
  dynamic_blocklist: {auto_block: {waf_attacks: {count: 3, window: 5m, duration: 24h}}}
  waf:
    mode: BLOCK
    paranoia_level: 1
    anomaly_threshold: 5
%s`, backendsYAML(b), extra)
}

var browser = http.Header{
	"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
	"Accept":          {"text/html,application/xhtml+xml"},
	"Accept-Language": {"en-GB,en;q=0.8"},
}

func (e *testEnv) wafReq(method, path, client, ct, body string) resp {
	e.t.Helper()
	h := http.Header{"X-Forwarded-For": {client}}
	for k, v := range browser {
		h[k] = v
	}
	var rd io.Reader
	if body != "" {
		h.Set("Content-Type", ct)
		rd = strings.NewReader(body)
	}
	return e.do(method, e.url("web", path), wafHost, h, rd)
}

// wafHost: CRS scores a numeric Host (920350), as a scanner's would be.
const wafHost = "app.example.test"

func TestWAFBlockDetectAndLog(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, wafConfig(b, ""))
	sqli := "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"

	// BLOCK: generic 403 with the request id; the backend never sees it.
	r := e.wafReq("GET", sqli, "198.51.100.1", "", "")
	id := r.header.Get("X-Request-Id")
	if r.status != 403 || id == "" || r.body != "403 Forbidden\nrequest_id: "+id+"\n" {
		t.Fatalf("blocked: %d %q", r.status, r.body)
	}
	if b.hits.Load() != 0 {
		t.Fatal("backend saw a blocked request")
	}
	// DETECT route: passed on, logged.
	if r := e.wafReq("GET", "/watch"+sqli, "198.51.100.2", "", ""); r.status != 200 || b.hits.Load() != 1 {
		t.Fatalf("detect: %d, backend hits %d", r.status, b.hits.Load())
	}
	// Benign JSON with quotes passes and is logged PASS.
	if r := e.wafReq("POST", "/api/notes", "198.51.100.3", "application/json", `{"title":"Bob's \"best\" notes","tags":["a&b","<3"]}`); r.status != 200 {
		t.Fatalf("benign JSON: %d %q", r.status, r.body)
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 3)
	for i, want := range []string{"BLOCK", "DETECT", "PASS"} {
		l := lines[i]
		if l["waf_action"] != want {
			t.Errorf("line %d: waf_action %v, want %s", i, l["waf_action"], want)
		}
		rules, _ := l["waf_rules_matched"].([]any)
		joined := fmt.Sprint(rules)
		if want != "PASS" && (!strings.Contains(joined, "942") || !strings.Contains(joined, "949110") || !strings.Contains(joined, "anomaly_score=")) {
			t.Errorf("line %d: waf_rules_matched %v", i, rules)
		}
		if want == "PASS" && len(rules) != 0 {
			t.Errorf("benign request matched %v", rules)
		}
	}
	if lines[0]["error"] != "waf_attack" || lines[0]["status_code"] != float64(403) {
		t.Errorf("blocked line: %v", lines[0])
	}
	m := metricsText(t, e)
	for _, want := range []string{`rampart_waf_requests_total{action="BLOCK"} 1`, `rampart_waf_requests_total{action="DETECT"} 1`,
		`rampart_waf_requests_total{action="PASS"} 1`, `rampart_blocked_total{reason="attack",stage="waf"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func metricsText(t *testing.T, e *testEnv) string {
	t.Helper()
	var sb strings.Builder
	rec := &stringResponseWriter{h: http.Header{}, b: &sb}
	e.srv.Metrics().Handler().ServeHTTP(rec, httptestRequest())
	return sb.String()
}

type stringResponseWriter struct {
	h http.Header
	b *strings.Builder
}

func (w *stringResponseWriter) Header() http.Header         { return w.h }
func (w *stringResponseWriter) Write(p []byte) (int, error) { return w.b.Write(p) }
func (w *stringResponseWriter) WriteHeader(int)             {}

func httptestRequest() *http.Request {
	r, _ := http.NewRequest("GET", "/metrics", nil)
	return r
}

// Attacks in every place a request carries data are blocked, and the
// backend sees none of them.
func TestWAFBlocksEverywhere(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, wafConfig(b, ""))
	// One client per case: the auto block is at 3 attacks.
	cases := []struct {
		name, method, path, ct, body string
		hdr                          http.Header
	}{
		{"query sqli", "GET", "/p?id=1%20OR%201=1--%20", "", "", nil},
		{"query xss", "GET", "/p?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", "", "", nil},
		{"query lfi", "GET", "/p?file=../../../../etc/passwd", "", "", nil},
		{"path xss", "GET", "/p/%3Cscript%3Ealert(document.domain)%3C/script%3E", "", "", nil},
		{"query rce", "GET", "/p?cmd=%3Bcat%20/etc/passwd", "", "", nil},
		{"header log4shell", "GET", "/p", "", "", http.Header{"X-Api-Version": {"${jndi:ldap://127.0.0.1:1389/a}"}}},
		{"cookie sqli", "GET", "/p", "", "", http.Header{"Cookie": {"session=1' OR '1'='1' --"}}},
		{"json sqli", "POST", "/api/x", "application/json", `{"user":"admin' UNION SELECT password FROM users--"}`, nil},
		{"form xss", "POST", "/form", "application/x-www-form-urlencoded", "comment=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", nil},
		{"multipart rce", "POST", "/upload", "multipart/form-data; boundary=XyZ", "--XyZ\r\nContent-Disposition: form-data; name=\"cmd\"\r\n\r\n; cat /etc/passwd\r\n--XyZ--\r\n", nil},
		{"xml sqli", "POST", "/soap", "application/xml", `<?xml version="1.0"?><r><q>1' UNION SELECT password FROM users--</q></r>`, nil},
	}
	for i, c := range cases {
		ip := fmt.Sprintf("198.51.100.%d", 10+i)
		h := http.Header{"X-Forwarded-For": {ip}}
		for k, v := range browser {
			h[k] = v
		}
		for k, v := range c.hdr {
			h[k] = v
		}
		var rd io.Reader
		if c.body != "" {
			h.Set("Content-Type", c.ct)
			rd = strings.NewReader(c.body)
		}
		r := e.do(c.method, e.url("web", c.path), wafHost, h, rd)
		if r.status != 403 {
			t.Errorf("%s: status %d, want 403", c.name, r.status)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend saw %d attacks", n)
	}
	// Benign traffic of the same shapes passes, bodies intact.
	var gotBody string
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		gotBody = string(body)
		io.WriteString(w, "ok")
	})
	upload := "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.txt\"\r\nContent-Type: text/plain\r\n\r\nQuarterly report: revenue up 5% (\"good\").\r\n--XyZ--\r\n"
	benign := []struct{ method, path, ct, body string }{
		{"GET", "/products?category=shoes&sort=price_asc&page=2", "", ""},
		{"POST", "/login", "application/x-www-form-urlencoded", "user=o%27brien&password=Tr0ub4dor%263"},
		{"POST", "/api/v1/items", "application/json", `{"name":"Widget \"Pro\"","desc":"It's <b>bold</b> &amp; fast","price":9.99}`},
		{"POST", "/upload", "multipart/form-data; boundary=XyZ", upload},
		{"PUT", "/api/v1/items/7", "application/xml", `<item><name>O'Reilly &amp; Sons</name></item>`},
	}
	for i, c := range benign {
		r := e.wafReq(c.method, c.path, fmt.Sprintf("192.0.2.%d", 10+i), c.ct, c.body)
		if r.status != 200 {
			t.Errorf("benign %s %s: %d %q", c.method, c.path, r.status, r.body)
		}
		if gotBody != c.body {
			t.Errorf("benign %s %s: backend got body %q", c.method, c.path, gotBody)
		}
	}
}

// Exclusions: sql_injection is off under /hooks/* only; XSS still blocks
// there and SQLi still blocks elsewhere.
func TestWAFExclusions(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, wafConfig(b, "    exclusions: [{path: /legacy, rules: [\"942100\", \"942190\", \"942200\", \"942260\", \"942340\", \"942360\", \"942361\", \"942270\"]}]\n"))
	sqli := "?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"
	if r := e.wafReq("GET", "/hooks/github"+sqli, "198.51.100.1", "", ""); r.status != 200 {
		t.Errorf("excluded category: %d", r.status)
	}
	if r := e.wafReq("GET", "/hooks/github?q=%3Cscript%3Ealert(1)%3C/script%3E", "198.51.100.2", "", ""); r.status != 403 {
		t.Errorf("other category on the excluded path: %d", r.status)
	}
	if r := e.wafReq("GET", "/other"+sqli, "198.51.100.3", "", ""); r.status != 403 {
		t.Errorf("category elsewhere: %d", r.status)
	}
	r := e.wafReq("GET", "/legacy"+sqli, "198.51.100.4", "", "")
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 4)
	if r.status != 200 {
		t.Errorf("excluded ids: %d, matched %v", r.status, lines[3]["waf_rules_matched"])
	}
}

// Every detection is an offence of kind waf: the third in the window
// blocks the client (here count 3), in DETECT mode too.
func TestWAFReportsOffender(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, wafConfig(b, ""))
	for i := range 3 {
		if r := e.wafReq("GET", "/watch/x?q=%3Cscript%3Ealert(1)%3C/script%3E", "198.51.100.9", "", ""); r.status != 200 {
			t.Fatalf("detect %d: %d", i, r.status)
		}
	}
	if n := e.srv.ACL().Dynamic().Len(acl.Blocklist); n != 1 {
		t.Fatalf("dynamic blocklist has %d entries, want 1", n)
	}
	if d := e.srv.ACL().Check(netip.MustParseAddr("198.51.100.9")); d.Action != acl.ActionDeny {
		t.Fatalf("client not blocked: %+v", d)
	}
	if r := e.wafReq("GET", "/", "198.51.100.9", "", ""); r.status != 403 {
		t.Fatalf("blocked client: %d", r.status)
	}
}

// Paranoia level: a payload CRS scores only from PL2 passes at PL1 and is
// blocked after a reload to PL2.
func TestWAFParanoiaLevelReload(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, wafConfig(b, ""))
	// `">< x` is scored by 942520, a PL2 rule, with 5.
	path := "/p?q=%22%3E%3Cx"
	if r := e.wafReq("GET", path, "198.51.100.1", "", ""); r.status != 200 {
		t.Fatalf("PL1: %d", r.status)
	}
	if err := e.reload(strings.Replace(wafConfig(b, ""), "paranoia_level: 1", "paranoia_level: 2", 1)); err != nil {
		t.Fatal(err)
	}
	if r := e.wafReq("GET", path, "198.51.100.2", "", ""); r.status != 403 {
		t.Fatalf("PL2: %d", r.status)
	}
}

// Custom rules: they apply; a reload with a broken file is refused with the
// file and line and keeps the running WAF.
func TestWAFCustomRulesAndBrokenReload(t *testing.T) {
	b := newTestBackend(t, "a")
	dir := t.TempDir()
	rules := filepath.Join(dir, "custom.conf")
	os.WriteFile(rules, []byte(`SecRule REQUEST_HEADERS:X-Evil "@streq 1" "id:1000001,phase:1,deny,status:403,log,msg:'evil header'"`+"\n"), 0o644)
	cfg := wafConfig(b, fmt.Sprintf("    custom_rules_files: [%q]\n", rules))
	e := startEnv(t, cfg)
	evil := http.Header{"X-Forwarded-For": {"198.51.100.1"}, "X-Evil": {"1"}}
	for k, v := range browser {
		evil[k] = v
	}
	if r := e.do("GET", e.url("web", "/"), wafHost, evil, nil); r.status != 403 {
		t.Fatalf("custom rule: %d", r.status)
	}
	os.WriteFile(rules, []byte("# header\n\nSecRule ARGS \"@rx (\" \"id:1000002,phase:2,deny\"\n"), 0o644)
	err := e.reload(cfg)
	if err == nil || !strings.Contains(err.Error(), rules+":3: ") {
		t.Fatalf("reload error %v, want %s:3", err, rules)
	}
	evil.Set("X-Forwarded-For", "198.51.100.2")
	if r := e.do("GET", e.url("web", "/"), wafHost, evil, nil); r.status != 403 {
		t.Fatalf("after refused reload: %d (old WAF should still run)", r.status)
	}
}

// A body longer than max_body_inspect_bytes: refused by default, passed
// (start inspected) where body_size_limit is excluded; the backend gets it
// whole.
func TestWAFBodyLimit(t *testing.T) {
	b := newTestBackend(t, "a")
	var got int
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got = int(n)
	})
	e := startEnv(t, wafConfig(b, "    max_body_inspect_bytes: 1024\n    exclusions: [{path: /big, rules: [body_size_limit]}]\n"))
	body := "data=" + strings.Repeat("a", 4000)
	if r := e.wafReq("POST", "/small", "198.51.100.1", "application/x-www-form-urlencoded", body); r.status != 413 {
		t.Errorf("over the limit: %d", r.status)
	}
	if r := e.wafReq("POST", "/big", "198.51.100.2", "application/x-www-form-urlencoded", body); r.status != 200 || got != len(body) {
		t.Errorf("excluded: %d, backend got %d bytes of %d", r.status, got, len(body))
	}
	// A non-inspected type streams through unread by the WAF.
	got = 0
	if r := e.wafReq("POST", "/small", "198.51.100.3", "application/octet-stream", body); r.status != 403 {
		// CRS refuses content types outside tx.allowed_request_content_type
		t.Errorf("octet-stream: %d", r.status)
	}
}

// serve refuses to start with custom rules that do not compile, naming the
// file and line.
func TestWAFBrokenRulesRefuseStart(t *testing.T) {
	b := newTestBackend(t, "a")
	dir := t.TempDir()
	rules := filepath.Join(dir, "custom.conf")
	os.WriteFile(rules, []byte("SecRule ARGS \"@rx ok\" \"id:1000001,phase:2,pass\"\nSecRule ARGS \"@rx ok\" \"id:1000001,phase:2,pass\"\n"), 0o644)
	e := &testEnv{t: t, dir: t.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "rampart.yaml")
	e.write(wafConfig(b, fmt.Sprintf("    custom_rules_files: [%q]\n", rules)))
	cfg, err := config.Load(e.cfgPath)
	if err == nil {
		srv, nerr := New(cfg, testLogger())
		if nerr == nil {
			srv.Shutdown(t.Context())
		}
		err = nerr
	}
	if err == nil || !strings.Contains(err.Error(), rules+":2: ") || !strings.Contains(err.Error(), "duplicated rule id") {
		t.Fatalf("error %v, want %s:2: ... duplicated rule id", err, rules)
	}
}

// response_inspection: an answer leaking a SQL error is replaced by the
// generic 403; clean answers and uninspected types arrive unchanged.
func TestWAFResponseInspection(t *testing.T) {
	b := newTestBackend(t, "a")
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/leak":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<p>You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax</p>")
		case "/bin":
			w.Header().Set("Content-Type", "application/octet-stream")
			io.WriteString(w, "You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version")
		default:
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<p>all good</p>")
		}
	})
	e := startEnv(t, wafConfig(b, "    response_inspection: true\n"))
	r := e.wafReq("GET", "/leak", "198.51.100.1", "", "")
	if r.status != 403 || strings.Contains(r.body, "SQL") || !strings.HasPrefix(r.body, "403 Forbidden\nrequest_id: ") {
		t.Fatalf("leak: %d %q", r.status, r.body)
	}
	if r := e.wafReq("GET", "/ok", "198.51.100.2", "", ""); r.status != 200 || r.body != "<p>all good</p>" {
		t.Fatalf("clean: %d %q", r.status, r.body)
	}
	if r := e.wafReq("GET", "/bin", "198.51.100.3", "", ""); r.status != 200 || !strings.HasPrefix(r.body, "You have an error") {
		t.Fatalf("binary: %d %q", r.status, r.body)
	}
	lines := accessLogLines(t, filepath.Join(e.dir, "access.log"), 3)
	if lines[0]["waf_action"] != "BLOCK" || lines[0]["error"] != "waf_response" || lines[0]["status_code"] != float64(403) ||
		!strings.Contains(fmt.Sprint(lines[0]["waf_rules_matched"]), "951") {
		t.Errorf("leak line: %v", lines[0])
	}
	if lines[1]["waf_action"] != "PASS" || lines[2]["waf_action"] != "PASS" {
		t.Errorf("clean lines: %v / %v", lines[1]["waf_action"], lines[2]["waf_action"])
	}
	if m := metricsText(t, e); !strings.Contains(m, `rampart_blocked_total{reason="response",stage="waf"} 1`) {
		t.Error("no response block counted")
	}
}

// The start-up log says what rule skipping decided: at PL1 the gates and
// defaults, and far fewer when a custom rule may change the detection
// level (the gates on it stay to Coraza).
func TestWAFStartupReportsRuleSkipping(t *testing.T) {
	b := newTestBackend(t, "a")
	dir := t.TempDir()
	rules := filepath.Join(dir, "custom.conf")
	os.WriteFile(rules, []byte(`SecRule REQUEST_URI "@beginsWith /admin" "id:1000001,phase:1,pass,nolog,setvar:tx.detection_paranoia_level=2"`+"\n"), 0o644)
	for _, c := range []struct {
		name, extra string
		want        []string
	}{
		{"CRS at PL1", "", []string{"waf rule skipping on", "crs_rules_decided=134", "crs_rules_left_out=366", "crs_markers_left_out=28", "crs_unread_vars_left_out=25", "crs_settings_unset=6"}},
		{"a custom rule sets the level", fmt.Sprintf("    custom_rules_files: [%q]\n", rules), []string{"waf rule skipping on", "crs_rules_decided=31 crs_rules_left_out=46"}},
	} {
		e := &testEnv{t: t, dir: t.TempDir()}
		e.cfgPath = filepath.Join(e.dir, "rampart.yaml")
		e.write(wafConfig(b, c.extra))
		cfg, err := config.Load(e.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		if _, err := buildWAF(cfg, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("%s: log lacks %q:\n%s", c.name, w, logs.String())
			}
		}
	}
}

// A benign chunked POST is not scored for lacking a framing field: CRS
// (920180) looks for Transfer-Encoding, which the engine keeps out of the
// header map, and each such POST scored 3 towards a block.
func TestWAFChunkedPostNotScored(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, wafConfig(b, ""))
	h := http.Header{"X-Forwarded-For": {"198.51.100.40"}, "Content-Type": {"application/x-www-form-urlencoded"}}
	for k, v := range browser {
		h[k] = v
	}
	body := struct{ io.Reader }{strings.NewReader("name=alice&city=Paris")} // unknown length: chunked
	if r := e.do("POST", e.url("web", "/form"), wafHost, h, body); r.status != 200 {
		t.Fatalf("benign chunked POST: %d %q", r.status, r.body)
	}
	l := accessLogLines(t, filepath.Join(e.dir, "access.log"), 1)[0]
	if rules := fmt.Sprint(l["waf_rules_matched"]); l["waf_action"] != "PASS" || strings.Contains(rules, "920180") {
		t.Fatalf("benign chunked POST: waf_action %v, rules %s; want PASS and no 920180", l["waf_action"], rules)
	}
}

// A body that does not parse as its Content-Type says is refused with 400
// but is a client's mistake, not an attack: logged waf_bad_body, never an
// offence towards a block. One passed on over the inspection limit is
// inspected up to it, and its cut-off start not parsing is no refusal.
func TestWAFBadBodyIsNoAttack(t *testing.T) {
	b := newTestBackend(t, "a")
	e := startEnv(t, wafConfig(b, "    max_body_inspect_bytes: 1024\n    exclusions: [{path: /big, rules: [body_size_limit]}]\n"))
	for range 4 { // auto_block.waf_attacks blocks at 3
		if r := e.wafReq("POST", "/api", "198.51.100.50", "application/json", `{"a":`); r.status != 400 {
			t.Fatalf("malformed JSON: %d %q, want 400", r.status, r.body)
		}
	}
	if r := e.wafReq("GET", "/", "198.51.100.50", "", ""); r.status != 200 {
		t.Fatalf("the client that sent malformed JSON was blocked: %d", r.status)
	}
	l := accessLogLines(t, filepath.Join(e.dir, "access.log"), 1)[0]
	if l["error"] != "waf_bad_body" || l["status_code"] != 400.0 {
		t.Fatalf("malformed JSON logged %v / %v, want waf_bad_body / 400", l["error"], l["status_code"])
	}
	big := `{"items":[` + strings.Repeat(`{"name":"widget","qty":1},`, 200) + `{"name":"last","qty":2}]}`
	if r := e.wafReq("POST", "/big", "198.51.100.51", "application/json", big); r.status != 200 {
		t.Fatalf("benign JSON over the limit on a path that lets it pass: %d %q", r.status, r.body)
	}
}
