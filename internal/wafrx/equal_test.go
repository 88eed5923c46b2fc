package wafrx

import (
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/corazawaf/coraza/v3"
	"github.com/rampart-proxy/rampart/internal/crsregress"
)

// regressEval adapts a WAF to crsregress: the ids of the rules that logged.
func regressEval(waf coraza.WAF) func(*http.Request) []int {
	return func(r *http.Request) []int {
		body, _ := io.ReadAll(r.Body)
		return evaluate(waf, r, body).logged
	}
}

// TestDetectionUnchanged is the proof the plugin needs: every request of the
// CRS regression suite goes through the stock build and the plugin build,
// at the suite's own setup (all paranoia levels) and at the production
// setup (PL1, blocking), and the outcome must be identical per request:
// every matched rule id (nolog ones included, but for the paranoia gates
// the rule-skipping builds leave out), each rule's expanded message
// (with the anomaly scores), and the interruption. (Captures are equal by
// construction when the regexp runs, and TestPrefilterSound covers when it
// does not.) Then the
// suite's own expectations are scored for both builds and must agree.
func TestDetectionUnchanged(t *testing.T) {
	b := getBuilds(t)
	cases, err := crsregress.Load()
	if err != nil {
		t.Fatal(err)
	}
	cases = sampleForRace(cases)
	compared := 0
	for _, c := range cases {
		if c.Skip == crsregress.SkipRaw || c.Skip == crsregress.SkipHTTP0 {
			continue // no request to build
		}
		for _, pair := range []struct {
			stock, other coraza.WAF
			leftOut      map[int]bool
		}{{b.stockRegress, b.pluginRegress, nil}, {b.stock, b.plugin, nil}, {b.stockRegress, b.skipRegress, b.regressLeftOut}, {b.stock, b.skip, b.skipGatesLeftOut}} {
			want := evaluate(pair.stock, c.Request(), c.Body).without(pair.leftOut)
			got := evaluate(pair.other, c.Request(), c.Body)
			if !slices.Equal(want.all, got.all) || want.interrupted != got.interrupted || !slices.Equal(want.messages, got.messages) {
				t.Errorf("case %s (%s): stock matched %v (interrupted=%v), plugin matched %v (interrupted=%v)\nstock:  %q\nplugin: %q",
					c.ID, c.Title, want.all, want.interrupted, got.all, got.interrupted, want.messages, got.messages)
			}
			compared++
		}
	}
	if compared < len(cases) {
		t.Fatalf("compared only %d evaluations for %d cases", compared, len(cases))
	}

	stock := crsregress.Run(t, cases, regressEval(b.stockRegress))
	plugin := crsregress.Run(t, cases, regressEval(b.pluginRegress))
	t.Logf("CRS regression suite, stock Coraza:\n%s", stock)
	t.Logf("CRS regression suite, with wafrx:\n%s", plugin)
	if stock.Passed != plugin.Passed || !slices.Equal(stock.Failures, plugin.Failures) {
		t.Fatalf("suite outcome differs: stock passed %d, plugin passed %d", stock.Passed, plugin.Passed)
	}
	if stock.Passed < len(cases)/2 {
		t.Fatalf("stock build passed only %d of %d cases: the harness is not set up like the suite expects", stock.Passed, len(cases))
	}
}

// TestCapturesUnchanged compares what rules see in TX.0..TX.9 after @rx
// with capture, stock against plugin, on inputs that match, that match
// with optional groups missing, and that the pre-filter rejects.
func TestCapturesUnchanged(t *testing.T) {
	b := getBuilds(t)
	for query, matches := range map[string]int{
		"x=aacefghijk&y=SELECT%20name&z=union&w=nothing": 4,
		"x=adfghijk&y=sElEcT%20id&z=none&w=drop%20table": 4,
		"x=zzz&y=nothing&z=UNION&w=":                     1, // every @rx rejected
		"y=%C5%BFelect%20x":                              2, // U+017F LONG S: (?i)s matches it
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://localhost/?"+query, nil)
		r.RequestURI = "/?" + query
		r.Host = "localhost"
		want := evaluate(b.stockCapture, r, nil)
		got := evaluate(b.pluginCapture, r, nil)
		if !slices.Equal(want.messages, got.messages) || !slices.Equal(want.all, got.all) {
			t.Errorf("%s:\nstock:  %q\nplugin: %q", query, want.messages, got.messages)
		}
		if len(got.messages) != matches {
			t.Errorf("%s: %d rules matched (%q), want %d", query, len(got.messages), got.messages, matches)
		}
		t.Logf("%s: %q", query, got.messages)
	}
}
