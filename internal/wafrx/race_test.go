//go:build race

package wafrx

import "github.com/rampart-proxy/rampart/internal/crsregress"

const raceEnabled = true

// Under the race detector Coraza runs ~10x slower; the full suite (four
// WAF builds, ~4,500 requests each) would take most of CI's budget. Every
// tenth case still runs there; the full comparison runs without -race
// (go test ./internal/wafrx).
func sampleForRace(cases []crsregress.Case) []crsregress.Case {
	var out []crsregress.Case
	for i, c := range cases {
		if i%10 == 0 {
			out = append(out, c)
		}
	}
	return out
}
