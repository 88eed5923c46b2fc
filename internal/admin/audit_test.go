package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/acl"
	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/metrics"
	"github.com/rampart-proxy/rampart/internal/proxy"
)

// fakeInstance is a real registry and a real audit trail in a temp
// directory, without listeners.
type fakeInstance struct {
	reg       *proxy.Registry
	trail     *audit.Log
	reloadErr error
	metrics   *metrics.Metrics
	acl       *acl.ACL
}

func (f *fakeInstance) Registry() *proxy.Registry { return f.reg }
func (f *fakeInstance) StatusJSON() any           { return map[string]string{"ok": "yes"} }
func (f *fakeInstance) ReloadConfig() error       { return f.reloadErr }
func (f *fakeInstance) Audit() *audit.Log         { return f.trail }
func (f *fakeInstance) Metrics() *metrics.Metrics { return f.metrics }
func (f *fakeInstance) ACL() *acl.ACL             { return f.acl }

const testConfig = `listeners:
  - {name: public, listen: "127.0.0.1:0"}
routes:
  - {name: all, match: {path_prefix: /}, pool: web}
pools:
  - name: web
    backends:
      - {id: b1, address: "127.0.0.1:1"}
      - {id: b2, address: "127.0.0.1:2"}
`

type env struct {
	t    *testing.T
	inst *fakeInstance
	api  *API
	srv  *httptest.Server
	log  string // audit log path

	mu sync.Mutex
	// linesAtAnswer is the number of audit lines on disk when each
	// response's status was written, in request order.
	linesAtAnswer []int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, envOptions{})
}

// newEnvWith is newEnv with authentication options; the instance also has
// metrics, so that /metrics is served.
func newEnvWith(t *testing.T, opts envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "rampart.yaml"), []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := proxy.NewRegistry(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reg.Apply(cfg.Pools)
	t.Cleanup(reg.Close)
	logPath, key := audit.DefaultPaths(dir)
	trail, err := audit.Open(audit.Options{Path: logPath, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trail.Close() })
	lists, err := acl.New(cfg, acl.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lists.Close() })
	e := &env{t: t, inst: &fakeInstance{reg: reg, trail: trail, metrics: metrics.New(fakeSource{reg}), acl: lists}, log: logPath}
	logger := slog.New(slog.DiscardHandler)
	if opts.logTo != nil {
		logger = slog.New(slog.NewTextHandler(opts.logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	api := New(e.inst, logger, opts.Options)
	e.api = api
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(&spyWriter{ResponseWriter: w, env: e}, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// spyWriter counts the audit lines on disk at the moment a status is
// written: an entry must be durable before the caller hears of success.
type spyWriter struct {
	http.ResponseWriter
	env  *env
	done bool
}

func (s *spyWriter) WriteHeader(code int) {
	if !s.done {
		s.done = true
		n := len(s.env.lines())
		s.env.mu.Lock()
		s.env.linesAtAnswer = append(s.env.linesAtAnswer, n)
		s.env.mu.Unlock()
	}
	s.ResponseWriter.WriteHeader(code)
}

func (e *env) lines() [][]byte {
	data, err := os.ReadFile(e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return nil
	}
	return bytes.Split(data, []byte("\n"))
}

func (e *env) entries() []audit.Entry {
	var out []audit.Entry
	for _, l := range e.lines() {
		var en audit.Entry
		if err := json.Unmarshal(l, &en); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, en)
	}
	return out
}

func (e *env) call(method, path, body string) (int, http.Header, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		e.t.Fatalf("%s %s: not JSON: %s", method, path, data)
	}
	return resp.StatusCode, resp.Header, m
}

func state(raw json.RawMessage) string {
	var s struct {
		State string `json:"state"`
	}
	json.Unmarshal(raw, &s)
	return s.State
}

func TestQuarantineProducesOneAuditEntry(t *testing.T) {
	e := newEnv(t)
	code, _, body := e.call("POST", "/api/v1/pools/web/backends/b1/quarantine", "")
	if code != 200 || body["state"] != "quarantined" {
		t.Fatalf("quarantine: %d %v", code, body)
	}
	ents := e.entries()
	if len(ents) != 1 {
		t.Fatalf("%d audit entries after one quarantine, want 1", len(ents))
	}
	en := ents[0]
	if en.Seq != 1 || en.Action != "backend.quarantine" || en.Result != "success" ||
		en.Actor != (audit.Actor{Type: "api", ID: "", IP: "127.0.0.1", AuthMethod: "loopback"}) ||
		en.Resource != (audit.Resource{Type: "backend", ID: "b1", Pool: "web"}) {
		t.Fatalf("entry: %s", e.lines()[0])
	}
	if state(en.Changes.Before) != "active" || state(en.Changes.After) != "quarantined" {
		t.Fatalf("changes before %s after %s, want states active → quarantined", en.Changes.Before, en.Changes.After)
	}
	var before proxy.BackendStatus
	json.Unmarshal(en.Changes.Before, &before)
	if before.ID != "b1" || before.Pool != "web" || before.Address != "127.0.0.1:1" {
		t.Fatalf("changes.before is not b1's status: %s", en.Changes.Before)
	}
	if string(en.Details) != `{"method":"POST","path":"/api/v1/pools/web/backends/b1/quarantine"}` {
		t.Fatalf("details %s", en.Details)
	}
	if e.linesAtAnswer[0] != 1 {
		t.Fatalf("%d audit lines on disk when the 200 was written, want 1", e.linesAtAnswer[0])
	}

	// GET /api/v1/audit returns it, with the key that verifies it.
	code, _, page := e.call("GET", "/api/v1/audit", "")
	if code != 200 {
		t.Fatalf("GET /api/v1/audit: %d %v", code, page)
	}
	got, _ := page["entries"].([]any)
	if len(got) != 1 || page["order"] != "desc" || page["next_cursor"] != nil {
		t.Fatalf("GET /api/v1/audit: %v", page)
	}
	var stored, served map[string]any
	json.Unmarshal(e.lines()[0], &stored)
	served = got[0].(map[string]any)
	sb, _ := json.Marshal(stored)
	gb, _ := json.Marshal(served)
	if string(sb) != string(gb) {
		t.Fatalf("served entry %s\nstored entry %s", gb, sb)
	}
	if page["public_key"] != audit.EncodePublicKey(e.inst.trail.PublicKey()) {
		t.Fatalf("public_key %v", page["public_key"])
	}
	f, _ := os.Open(e.log)
	defer f.Close()
	cp, _ := audit.ReadCheckpoint(audit.CheckpointPath(e.log))
	if rep, err := audit.Verify(f, e.inst.trail.PublicKey(), cp); err != nil || rep.Entries != 1 {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}

func TestEveryMutatingCallIsRecordedBeforeTheAnswer(t *testing.T) {
	e := newEnv(t)
	calls := []struct {
		method, path, body string
		code               int
		action, result     string
		before, after      string
	}{
		{"POST", "/api/v1/pools/web/backends", `{"id": "b3", "address": "127.0.0.1:3"}`, 201, "backend.register", "success", "", "active"},
		{"POST", "/api/v1/pools/web/backends/b3/drain", "", 202, "backend.drain", "success", "active", "draining"},
		{"POST", "/api/v1/pools/web/backends/b3/restore", "", 200, "backend.restore", "success", "draining", "active"},
		{"POST", "/api/v1/pools/web/backends/b3/quarantine", "", 200, "backend.quarantine", "success", "active", "quarantined"},
		{"DELETE", "/api/v1/pools/web/backends/b2", "", 202, "backend.deregister", "success", "active", "draining"},
		{"POST", "/api/v1/config/reload", "", 200, "config.reload", "success", "", ""},
		// Refused calls are recorded too; nothing changed.
		{"POST", "/api/v1/pools/web/backends/nope/quarantine", "", 404, "backend.quarantine", "refused", "", ""},
		{"POST", "/api/v1/pools/web/backends/b1/restore", "", 200, "backend.restore", "success", "active", "active"},
		{"POST", "/api/v1/pools/web/backends", `{"id": "b1", "address": "127.0.0.1:9"}`, 409, "backend.register", "refused", "active", "active"},
		{"POST", "/api/v1/pools/web/backends", `{"bogus": 1}`, 400, "backend.register", "refused", "", ""},
		{"POST", "/api/v1/pools/web/backends", `{"id": "b9", "address": "127.0.0.1:9", "weight": 0}`, 400, "backend.register", "refused", "", ""},
	}
	for i, c := range calls {
		code, _, body := e.call(c.method, c.path, c.body)
		if code != c.code {
			t.Fatalf("%s %s: %d %v, want %d", c.method, c.path, code, body, c.code)
		}
		ents := e.entries()
		if len(ents) != i+1 {
			t.Fatalf("after %s %s: %d entries, want %d", c.method, c.path, len(ents), i+1)
		}
		en := ents[i]
		if en.Action != c.action || en.Result != c.result || state(en.Changes.Before) != c.before || state(en.Changes.After) != c.after {
			t.Fatalf("%s %s recorded as %s", c.method, c.path, e.lines()[i])
		}
		if e.linesAtAnswer[i] != i+1 {
			t.Fatalf("%s %s: %d lines on disk when answered, want %d", c.method, c.path, e.linesAtAnswer[i], i+1)
		}
	}
	if d := string(e.entries()[6].Details); !strings.Contains(d, `"error":"unknown backend \"nope\" in pool \"web\""`) {
		t.Fatalf("refused quarantine details: %s", d)
	}
	if d := string(e.entries()[9].Details); !strings.Contains(d, `unknown field \"bogus\"`) {
		t.Fatalf("refused register details: %s", d)
	}
	if en := e.entries()[10]; en.Resource.ID != "b9" {
		t.Fatalf("refused register of b9 recorded for %q", en.Resource.ID)
	}
	// Reads are not recorded.
	e.call("GET", "/api/v1/pools", "")
	e.call("GET", "/api/v1/audit", "")
	if n := len(e.entries()); n != len(calls) {
		t.Fatalf("%d entries after reads, want %d", n, len(calls))
	}
}

func TestRefusedReloadIsRecordedWithItsProblems(t *testing.T) {
	e := newEnv(t)
	e.inst.reloadErr = config.Problems{{File: "/etc/rampart.yaml", Line: 7, Msg: `unknown algorithm "fastest"`}}
	code, _, body := e.call("POST", "/api/v1/config/reload", "")
	if code != 422 {
		t.Fatalf("reload of a bad file: %d %v", code, body)
	}
	ents := e.entries()
	if len(ents) != 1 || ents[0].Action != "config.reload" || ents[0].Result != "refused" ||
		string(ents[0].Details) != `{"method":"POST","path":"/api/v1/config/reload","problems":["/etc/rampart.yaml:7: unknown algorithm \"fastest\""]}` {
		t.Fatalf("entries: %s", e.lines())
	}
	if p, _ := body["problems"].([]any); len(p) != 1 || p[0] != `/etc/rampart.yaml:7: unknown algorithm "fastest"` {
		t.Fatalf("problems in the answer: %v", body)
	}
}

func TestAuditFailureAnswers500AndDoesNotRollBack(t *testing.T) {
	e := newEnv(t)
	e.inst.trail.Close() // every append now fails
	code, h, body := e.call("POST", "/api/v1/pools/web/backends/b1/quarantine", "")
	if code != 500 || h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("quarantine with a broken trail: %d %s %v", code, h.Get("Content-Type"), body)
	}
	detail, _ := body["detail"].(string)
	if body["title"] != "action not recorded in the audit trail" || body["recorded"] != false || body["action"] != "backend.quarantine" ||
		!strings.HasPrefix(detail, `backend "b1" in pool "web" was quarantined, but this was NOT recorded in the audit trail (audit: the trail is closed)`) ||
		!strings.Contains(detail, "not rolled back") {
		t.Fatalf("problem: %v", body)
	}
	// The isolation stands.
	if st := e.inst.reg.Pool("web").Backend("b1").State(); st != proxy.StateQuarantined {
		t.Fatalf("b1 is %s after an unrecorded quarantine, want quarantined", st)
	}
}

func TestAuditPaging(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 5; i++ {
		e.call("POST", "/api/v1/config/reload", "")
	}
	for _, tc := range []struct {
		query string
		want  string
		next  any
	}{
		{"?order=asc&limit=2", "[1,2]", 2.0},
		{"?order=asc&limit=2&cursor=2", "[3,4]", 4.0},
		{"?order=asc&limit=2&cursor=4", "[5]", nil},
		{"?limit=2", "[5,4]", 4.0},
		{"?limit=2&cursor=4", "[3,2]", 2.0},
		{"?limit=2&cursor=2", "[1]", nil},
		{"", "[5,4,3,2,1]", nil},
	} {
		code, _, page := e.call("GET", "/api/v1/audit"+tc.query, "")
		if code != 200 || jsonString(seqs(page)) != tc.want || page["next_cursor"] != tc.next {
			t.Errorf("GET /api/v1/audit%s: %d seqs %v next %v, want %s next %v", tc.query, code, seqs(page), page["next_cursor"], tc.want, tc.next)
		}
	}
	for q, want := range map[string]string{
		"?limit=0":      "limit must be a number from 1 to 1000",
		"?limit=1001":   "limit must be a number from 1 to 1000",
		"?order=newest": "order must be asc (oldest first) or desc (newest first)",
		"?cursor=-1":    "cursor must be the next_cursor of a previous page",
		"?since=1":      "since must be an RFC 3339 time, e.g. 2026-11-22T06:00:00Z",
		"?from=1":       `unknown query parameter "from": use order, limit, cursor and since`,
	} {
		code, h, body := e.call("GET", "/api/v1/audit"+q, "")
		if code != 400 || h.Get("Content-Type") != "application/problem+json" || body["detail"] != want {
			t.Errorf("GET /api/v1/audit%s: %d %v, want 400 %q", q, code, body, want)
		}
	}
}

// since keeps entries stamped at or after it, in both orders.
func TestAuditSince(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		if code, _, _ := e.call("POST", "/api/v1/pools/web/backends/b1/restore", ""); code != 200 {
			t.Fatalf("restore: %d", code)
		}
	}
	for q, want := range map[string]string{
		"?since=2000-01-01T00:00:00Z":                   "[3,2,1]",
		"?since=2000-01-01T00:00:00Z&order=asc":         "[1,2,3]",
		"?since=2999-01-01T00:00:00Z":                   "[]",
		"?since=2000-01-01T00:00:00Z&order=asc&limit=2": "[1,2]",
	} {
		code, _, page := e.call("GET", "/api/v1/audit"+q, "")
		if code != 200 || jsonString(seqs(page)) != want {
			t.Errorf("GET /api/v1/audit%s: %d seqs %v, want %s", q, code, seqs(page), want)
		}
	}
}

// POST /audit/verify checks the running trail; a tampered one is reported
// with the first bad line, and the check itself is recorded.
func TestAuditVerifyEndpoint(t *testing.T) {
	e := newEnv(t)
	e.call("POST", "/api/v1/pools/web/backends/b1/restore", "")
	e.call("POST", "/api/v1/pools/web/backends/b1/restore", "")
	code, _, body := e.call("POST", "/api/v1/audit/verify", "")
	if code != 200 || body["valid"] != true {
		t.Fatalf("intact trail: %d %v", code, body)
	}
	data, err := os.ReadFile(e.log)
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(data), "backend.restore", "backend.RESTORE", 1)
	if tampered == string(data) {
		t.Fatal("nothing to tamper with")
	}
	if err := os.WriteFile(e.log, []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, body = e.call("POST", "/api/v1/audit/verify", "")
	if code != 200 || body["valid"] != false || body["line"] != 1.0 {
		t.Fatalf("tampered trail: %d %v, want valid:false at line 1", code, body)
	}
}

// seqs lists the seq of every entry of a GET /api/v1/audit page.
func seqs(page map[string]any) []float64 {
	out := []float64{}
	for _, x := range page["entries"].([]any) {
		out = append(out, x.(map[string]any)["seq"].(float64))
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestHugeCallerInputStillRecorded(t *testing.T) {
	e := newEnv(t)
	// The decoder's error echoes the unknown field name: 60 KiB of it
	// must not make the entry too large to record.
	code, _, body := e.call("POST", "/api/v1/pools/web/backends", `{"`+strings.Repeat("x", 60<<10)+`": 1}`)
	if code != 400 {
		t.Fatalf("register with a huge unknown field: %d %v, want 400", code, body)
	}
	ents := e.entries()
	if len(ents) != 1 || ents[0].Result != "refused" || !strings.Contains(string(ents[0].Details), `...(truncated)"`) || len(e.lines()[0]) > 4096 {
		t.Fatalf("entry (%d bytes): %.300s", len(e.lines()[0]), e.lines()[0])
	}
	ps := make(config.Problems, 100)
	for i := range ps {
		ps[i] = config.Problem{File: "f.yaml", Line: i + 1, Msg: strings.Repeat("y", 2000)}
	}
	e.inst.reloadErr = ps
	if code, _, body := e.call("POST", "/api/v1/config/reload", ""); code != 422 {
		t.Fatalf("reload with 100 long problems: %d %v, want 422", code, body)
	}
	var d struct{ Problems []string }
	json.Unmarshal(e.entries()[1].Details, &d)
	if len(d.Problems) != 21 || d.Problems[20] != "... and 80 more" {
		t.Fatalf("recorded problems: %d, last %q", len(d.Problems), d.Problems[len(d.Problems)-1])
	}
}
