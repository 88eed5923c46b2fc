package wafrx

import (
	"fmt"
	"testing"
)

func TestDiagPatterns(t *testing.T) {
	getBuilds(t)
	none := 0
	for _, p := range crsPatterns {
		pf := NewPrefilter(p)
		if pf == nil {
			none++
			fmt.Printf("NONE %.150s\n", p)
		} else {
			fmt.Printf("LITS %d %q\n", len(pf.lits), pf.lits[:min(len(pf.lits), 8)])
		}
	}
	fmt.Println("patterns", len(crsPatterns), "no prefilter", none)
}
