//go:build race

package waf

// raceEnabled: the race detector makes Coraza ~5x slower, so the corpus
// test runs paranoia level 1 only under it.
const raceEnabled = true
