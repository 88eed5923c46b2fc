package waf

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

const sqlLeak = "<html><body>Warning: You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near ''' at line 1</body></html>"

// Outbound rules: an answer leaking a SQL error is replaced by a 403 in
// BLOCK mode and passed (scored) in DETECT mode; a clean one and a
// non-inspected type pass unchanged.
func TestResponseInspection(t *testing.T) {
	for _, c := range []struct {
		mode       Mode
		ct, body   string
		wantStatus int
		wantAction Action
	}{
		{ModeBlock, "text/html", sqlLeak, 403, ActionBlock},
		{ModeDetect, "text/html", sqlLeak, 200, ActionDetect},
		{ModeBlock, "text/html", "<html><body>Your order has shipped.</body></html>", 200, ""},
		{ModeBlock, "application/octet-stream", sqlLeak, 200, ""},
	} {
		w := newWAF(t, Config{Mode: c.mode, ResponseInspection: true})
		r := get("/report")
		res, rc := w.Policy("").EvaluateExchange(r)
		if res.Action != ActionPass || rc == nil {
			t.Fatalf("request: %+v %v", res, rc)
		}
		rec := httptest.NewRecorder()
		var got Result
		rw := rc.Writer(rec, func(r Result) { got = r })
		rw.Header().Set("Content-Type", c.ct)
		rw.WriteHeader(200)
		io.WriteString(rw, c.body[:20])
		rw.Flush()
		io.WriteString(rw, c.body[20:])
		rw.Finish()
		if rec.Code != c.wantStatus || got.Action != c.wantAction {
			t.Errorf("%s %s: status %d, verdict %+v", c.mode, c.ct, rec.Code, got)
		}
		if c.wantStatus == 200 && rec.Body.String() != c.body {
			t.Errorf("%s %s: body %q", c.mode, c.ct, rec.Body.String())
		}
		if c.wantAction != "" && !slices.ContainsFunc(got.RuleIDs, func(id int) bool { return id/1000 == 951 }) {
			t.Errorf("%s: rules %v, want a 951xxx (SQL error leak)", c.mode, got.RuleIDs)
		}
	}
	// Off: no response check.
	w := newWAF(t, Config{})
	if _, rc := w.Policy("").EvaluateExchange(get("/")); rc != nil {
		t.Error("response check without response_inspection")
	}
	_ = http.StatusOK
}

// TestRouteThresholdAndResponses: a route's anomaly_threshold and
// response_inspection override the global ones, each route getting the
// rule set its settings need.
func TestRouteThresholdAndResponses(t *testing.T) {
	on := true
	w := newWAF(t, Config{Mode: ModeBlock, Routes: map[string]RouteConfig{
		"lenient":   {AnomalyThreshold: 1000},
		"inspected": {ResponseInspection: &on},
	}})
	xss := "/?q=%3Cscript%3Ealert(1)%3C/script%3E"
	if res := w.Policy("").Evaluate(get(xss)); res.Action != ActionBlock || res.Score < 5 {
		t.Errorf("global threshold 5: %+v", res)
	}
	res := w.Policy("lenient").Evaluate(get(xss))
	if res.Action != ActionPass || res.Score < 5 || len(res.RuleIDs) == 0 {
		t.Errorf("route threshold 1000: %+v (scored, logged, passed)", res)
	}
	if _, rc := w.Policy("").EvaluateExchange(get("/report")); rc != nil {
		t.Error("response check on the global policy, which does not inspect responses")
	}
	_, rc := w.Policy("inspected").EvaluateExchange(get("/report"))
	if rc == nil {
		t.Fatal("no response check on the route that inspects responses")
	}
	rec := httptest.NewRecorder()
	var got Result
	rw := rc.Writer(rec, func(r Result) { got = r })
	rw.Header().Set("Content-Type", "text/html")
	rw.WriteHeader(200)
	io.WriteString(rw, sqlLeak)
	rw.Finish()
	if rec.Code != 403 || got.Action != ActionBlock {
		t.Errorf("SQL error leak on the inspected route: status %d, %+v", rec.Code, got)
	}
}
