//go:build !race

package wafrx

import "github.com/rampart-proxy/rampart/internal/crsregress"

const raceEnabled = false

func sampleForRace(cases []crsregress.Case) []crsregress.Case { return cases }
