//go:build race

package server

// raceEnabled: under the race detector sync.Pool drops items at random, so
// pooled buffers are allocated again and allocation counts mean nothing;
// scripts/test.sh runs the allocation tests without it as well.
const raceEnabled = true
