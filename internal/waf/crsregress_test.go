package waf

import (
	"net/http"
	"testing"

	"github.com/rampart-proxy/rampart/internal/crsregress"
)

// TestCRSRegressionSuite runs the regression tests shipped with CRS
// through the WAF stage as Rampart builds it (with the pre-filtered @rx of
// internal/wafrx), at paranoia level 4 in DETECT mode so that every rule a
// test expects gets to run. The suite's own harness also sets argument
// length limits that Rampart leaves at CRS's defaults; those tests, and
// the few that fail on every engine, are why the bar is 99%, not 100% (4,531 of 4,545 pass).
func TestCRSRegressionSuite(t *testing.T) {
	cases, err := crsregress.Load()
	if err != nil {
		t.Fatal(err)
	}
	if raceEnabled { // Coraza is ~5x slower under the race detector
		var some []crsregress.Case
		for i := 0; i < len(cases); i += 10 {
			some = append(some, cases[i])
		}
		cases = some
	}
	w, err := New(Config{
		Enabled:        true,
		Mode:           ModeDetect,
		ParanoiaLevel:  4,
		RuleSets:       []string{RuleSetCRS},
		AllowedMethods: []string{"GET", "HEAD", "POST", "OPTIONS"}, // CRS's default
		// A body that does not parse would stop phase 2 before the rules
		// a test expects.
		Exclusions: []Exclusion{{Path: "/*", Rules: []string{"body_parsing"}}},
		// The suite's uploads are larger than the default.
		MaxBodyInspectBytes: 1 << 20,
		PassLargeBody:       true,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := crsregress.Run(t, cases, func(r *http.Request) []int { return w.Evaluate(r).RuleIDs })
	t.Logf("CRS regression suite through the WAF stage:\n%s", st)
	runnable := st.Passed + st.Failed
	if runnable < len(cases)/2 {
		t.Fatalf("only %d of %d cases could run", runnable, len(cases))
	}
	if st.Passed*100 < runnable*99 {
		t.Errorf("passed %d of %d runnable CRS regression cases, want at least 99%%", st.Passed, runnable)
	}
}
