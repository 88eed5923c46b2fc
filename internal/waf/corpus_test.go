package waf

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/waf/wafcorpus"
)

// minDetection is the least detection rate (percent, all placements) per
// category at each paranoia level, set a little under what was measured
// (see the t.Log table) so a change that loses detection fails here.
var minDetection = map[string][4]float64{
	"sqli":      {85, 92, 92, 92},
	"xss":       {97, 97, 97, 97},
	"rce":       {58, 72, 78, 78},
	"lfi":       {79, 90, 91, 91},
	"traversal": {73, 73, 82, 83},
	"rfi":       {56, 70, 72, 73},
	"ssrf":      {55, 75, 75, 77},
	"log4shell": {95, 95, 97, 97},
}

// The corpus through the stage at each paranoia level: detection rate per
// attack category, false positives per benign category. At PL1 no benign
// request may be blocked. Under the race detector only PL1 runs (it is
// several times slower there).
func TestCorpusDetection(t *testing.T) {
	cases, err := wafcorpus.Load("testdata/corpus")
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-12s %-8s %8s %8s %8s %8s\n", "category", "kind", "PL1", "PL2", "PL3", "PL4")
	levels := 4
	if raceEnabled || testing.Short() {
		levels = 1
	}
	tallies := make([]*wafcorpus.Tally, levels)
	byPlacement := wafcorpus.NewTally()
	for pl := 1; pl <= levels; pl++ {
		w := newWAF(t, Config{ParanoiaLevel: pl, AllowedMethods: []string{"GET", "POST"}})
		tl := wafcorpus.NewTally()
		for _, c := range cases {
			r, err := c.Request("http://" + wafcorpus.Host)
			if err != nil {
				t.Fatal(err)
			}
			res := w.Evaluate(r)
			tl.Add(c.Category, res.Action == ActionBlock)
			if pl == 1 {
				if c.Attack {
					byPlacement.Add(c.Placement, res.Action == ActionBlock)
				} else if res.Action == ActionBlock {
					t.Errorf("false positive at PL1: %s in %s: %q matched %v", c.Category, c.Placement, c.Payload, res.Matched())
				}
			}
		}
		tallies[pl-1] = tl
	}
	kind := func(cat string) string {
		if _, ok := minDetection[cat]; ok {
			return "attack"
		}
		return "benign FP"
	}
	for _, cat := range tallies[0].Keys() {
		fmt.Fprintf(&table, "%-12s %-8s", cat, kind(cat))
		for pl := range levels {
			fmt.Fprintf(&table, " %7.1f%%", tallies[pl].Rate(cat))
			if min, ok := minDetection[cat]; ok && tallies[pl].Rate(cat) < min[pl] {
				t.Errorf("%s at PL%d: detection %.1f%% < %.1f%%", cat, pl+1, tallies[pl].Rate(cat), min[pl])
			}
		}
		table.WriteByte('\n')
	}
	fmt.Fprintf(&table, "\nPL1 detection by placement (all attack categories):\n")
	for _, p := range byPlacement.Keys() {
		fmt.Fprintf(&table, "  %-10s %5.1f%% of %d\n", p, byPlacement.Rate(p), byPlacement.Total[p])
	}
	t.Log(table.String())
}

// TestCorpusSameWithoutRuleSkipping: every request of the corpus (each
// payload in each placement: query, path, header, cookie, JSON, form,
// multipart, XML) gets the same verdict, rule ids and anomaly score from
// Rampart's stage with rule skipping (internal/wafrx) and without, at
// every paranoia level (PL1 only under -race). The CRS regression suite
// proves the same inside internal/wafrx; this proves it through the stage
// with Rampart's own body handling.
func TestCorpusSameWithoutRuleSkipping(t *testing.T) {
	cases, err := wafcorpus.Load("testdata/corpus")
	if err != nil {
		t.Fatal(err)
	}
	levels := 4
	if raceEnabled || testing.Short() {
		levels = 1
	}
	compared := 0
	for pl := 1; pl <= levels; pl++ {
		with := newWAF(t, Config{ParanoiaLevel: pl, AllowedMethods: []string{"GET", "POST"}})
		without := newWAF(t, Config{ParanoiaLevel: pl, AllowedMethods: []string{"GET", "POST"}, NoRuleSkipping: true})
		if rep := with.RuleSkipping(); len(rep) != 1 || rep[0].Disabled != "" {
			t.Fatalf("PL%d: rule skipping not on: %+v", pl, rep)
		}
		for _, c := range cases {
			r1, err := c.Request("http://" + wafcorpus.Host)
			if err != nil {
				t.Fatal(err)
			}
			r2, _ := c.Request("http://" + wafcorpus.Host)
			a, b := with.Evaluate(r1), without.Evaluate(r2)
			if a.Action != b.Action || a.Score != b.Score || !slices.Equal(a.RuleIDs, b.RuleIDs) {
				t.Errorf("PL%d %s in %s %q: with skipping %s %v score %d, without %s %v score %d",
					pl, c.Category, c.Placement, c.Payload, a.Action, a.RuleIDs, a.Score, b.Action, b.RuleIDs, b.Score)
			}
			compared++
		}
	}
	t.Logf("%d requests compared", compared)
}
