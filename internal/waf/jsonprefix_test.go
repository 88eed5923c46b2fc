package waf

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestCloseJSONPrefix(t *testing.T) {
	// The result is no longer than the start: the closers replace its last bytes.
	for _, c := range []struct{ in, want string }{
		{`{"a":1,"b":[1,2,3   `, `{"a":1,"b":[1,2,3]}`},
		{`{"a":1,"b":[1,2`, `{"a":1,"b":[1]}`},
		{`{"a":1,"q":"<script`, `{"a":1,"q":"<scri"}`},
		{`{"a":1,"qu`, `{"a":1}`},
		{`{"a":1,"q":  `, `{"a":1}`},
		{`["x", "<scr`, `["x", "<s"]`},
		{`{"a":"xy\`, `{"a":"x"}`},
		{`{"a":"xyz\u00`, `{"a":"xyz"}`},
		{`{"a":"x\"yz`, `{"a":"x\""}`},
		{`{"a":{"b":tr`, `{"a":{}}`},
		{`{"a":12  `, `{"a":12}`},
		{`{"a":1,,"b":2`, `{"a":1,,"b":2`}, // malformed before the cut: as it is
	} {
		got := string(closeJSONPrefix([]byte(c.in)))
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.in, got, c.want)
		}
		if len(got) > len(c.in) || (!strings.Contains(c.want, ",,") && !json.Valid([]byte(got))) {
			t.Errorf("%s: %s is longer or not JSON", c.in, got)
		}
	}
}

// With body_limit_action: pass, a JSON body over the limit is inspected up
// to it: its start does not parse cut off, and the rules saw nothing of it.
func TestJSONOverLimitInspectedUpToIt(t *testing.T) {
	w := newWAF(t, Config{Mode: ModeBlock, MaxBodyInspectBytes: 4096, PassLargeBody: true})
	pad := strings.Repeat("a", 5000)
	for _, body := range []string{
		`{"q": "<script>alert(1)</script>", "id": "1' UNION SELECT password FROM users--", "pad": "` + pad + `"}`,
		`{"q": "<script>alert(1)</script> ` + pad + `"}`, // the attack's string crosses the limit
		`[{"a": 1}, {"q": ["<script>alert(1)</script>", "` + pad + `"]}]`,
	} {
		res := w.Evaluate(post("/api", "application/json; charset=utf-8", body))
		if res.Action != ActionBlock || res.Status != 403 || !slices.ContainsFunc(res.RuleIDs, func(id int) bool { return id >= 941000 && id < 943000 }) {
			t.Errorf("%.60s...: %+v, want a block by the XSS/SQLi rules", body, res)
		}
	}
	if res := w.Evaluate(post("/api", "application/json", `{"name": "blue shoes", "pad": "`+pad+`"}`)); res.Action != ActionPass {
		t.Errorf("benign JSON over the limit: %+v", res)
	}
	if res := w.Evaluate(post("/api", "application/json", `{"a":1,,"pad": "`+pad+`"}`)); res.Action != ActionBlock || res.Status != 400 {
		t.Errorf("malformed JSON over the limit: %+v, want 400", res)
	}
}

// Any start of a valid document is made valid again, never longer (or,
// nested too deep to close in its length, left as it is).
func FuzzCloseJSONPrefix(f *testing.F) {
	f.Add(`{"a":[1,"x\"y",{"b":null}],"c":"\u00e9"}`, 20)
	f.Add(`[[[[{"k":"v"}]]]]`, 9)
	f.Fuzz(func(t *testing.T, doc string, cut int) {
		if !json.Valid([]byte(doc)) || cut < 0 || cut > len(doc) {
			return
		}
		got := closeJSONPrefix([]byte(doc[:cut]))
		if len(got) > cut {
			t.Fatalf("%q cut at %d: %q is longer", doc, cut, got)
		}
		if len(got) > 0 && !json.Valid(got) && string(got) != doc[:cut] { // empty: nothing complete; as it is: too deep
			t.Fatalf("%q cut at %d: %q is not JSON", doc, cut, got)
		}
	})
}
