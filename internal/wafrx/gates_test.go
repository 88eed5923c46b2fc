package wafrx

import (
	"bytes"
	"io/fs"
	"slices"
	"strings"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
)

const sqliFile = "@owasp_crs/REQUEST-942-APPLICATION-ATTACK-SQLI.conf"

// gateSetup is what Rampart writes before CRS, at paranoia level pl.
func gateSetup(pl string) string {
	return `SecRuleEngine On
SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=` + pl + `,setvar:tx.detection_paranoia_level=` + pl + `"
SecAction "id:900990,phase:1,pass,t:none,nolog,setvar:tx.crs_setup_version=4250"
`
}

func resolve(t *testing.T, before, after string, removed ...IDRange) (fs.FS, GateReport) {
	t.Helper()
	text := before + "Include @owasp_crs/*.conf\n" + after
	fsys, rep := ResolveParanoiaGates(coreruleset.FS, text, removed)
	if rep.Disabled == "" {
		// What is handed to Coraza must compile.
		if _, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(fsys).WithDirectives(text)); err != nil {
			t.Fatalf("resolved rule set does not compile: %v", err)
		}
	}
	return fsys, rep
}

func fileOf(t *testing.T, fsys fs.FS, name string) string {
	t.Helper()
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParanoiaGatesPL1(t *testing.T) {
	fsys, rep := resolve(t, gateSetup("1"), "")
	if rep.Disabled != "" {
		t.Fatalf("disabled: %s", rep.Disabled)
	}
	for _, id := range []int{911013, 911014, 942013, 942014, 949013, 949014} {
		if !slices.Contains(rep.DroppedMatching, id) {
			t.Errorf("gate %d (matches at PL1, only jumps) not left out; left out: %v", id, rep.DroppedMatching)
		}
	}
	orig := fileOf(t, coreruleset.FS, sqliFile)
	got := fileOf(t, fsys, sqliFile)
	if strings.Count(orig, "\n") != strings.Count(got, "\n") {
		t.Errorf("line count changed: %d → %d (error messages name CRS lines)", strings.Count(orig, "\n"), strings.Count(got, "\n"))
	}
	// Left out: the gates, a PL2 rule they jump over; kept: PL1 rules,
	// the markers, the PL1 scoring in the blocking evaluation.
	for _, gone := range []string{"id:942011,", "id:942013,", "id:942120,"} {
		if strings.Contains(got, gone) {
			t.Errorf("%s still in the resolved file", gone)
		}
	}
	for _, kept := range []string{"id:942100,", `SecMarker "END-REQUEST-942-APPLICATION-ATTACK-SQLI"`} {
		if !strings.Contains(got, kept) {
			t.Errorf("%s missing from the resolved file", kept)
		}
	}
	eval := fileOf(t, fsys, "@owasp_crs/REQUEST-949-BLOCKING-EVALUATION.conf")
	if !strings.Contains(eval, "id:949052,") || strings.Contains(eval, "id:949053,") {
		t.Errorf("949052 (@ge 1, adds the PL1 score) must stay and 949053 (@ge 2, never matches at PL1) go")
	}
	// CRS's own target update of a PL3 rule that is left out goes with it.
	after := fileOf(t, fsys, "@owasp_crs/REQUEST-999-COMMON-EXCEPTIONS-AFTER.conf")
	if strings.Contains(after, "SecRuleUpdateTargetById 942421") || !strings.Contains(after, "SecRuleUpdateTargetById 941100") {
		t.Errorf("REQUEST-999: the update of 942421 (left out) must go, that of 941100 (PL1) stay:\n%s", after)
	}
	// CRS's defaults for what the configuration set are left out (they
	// never match), the others stay; files without any are CRS's own.
	init := fileOf(t, fsys, "@owasp_crs/REQUEST-901-INITIALIZATION.conf")
	for _, gone := range []string{"id:901001,", "id:901120,", "id:901125,"} {
		if strings.Contains(init, gone) {
			t.Errorf("REQUEST-901: %s (a default the configuration set) still there", gone)
		}
	}
	for _, kept := range []string{"id:901100,", "id:901160,", "id:901200,"} {
		if !strings.Contains(init, kept) {
			t.Errorf("REQUEST-901: %s missing", kept)
		}
	}
	if a, b := fileOf(t, coreruleset.FS, "@owasp_crs/REQUEST-922-MULTIPART-ATTACK.conf"), fileOf(t, fsys, "@owasp_crs/REQUEST-922-MULTIPART-ATTACK.conf"); a != b {
		t.Error("REQUEST-922 (no gate) changed")
	}
}

func TestParanoiaGatesPL4(t *testing.T) {
	fsys, rep := resolve(t, gateSetup("4"), "")
	if rep.Disabled != "" {
		t.Fatalf("disabled: %s", rep.Disabled)
	}
	// At PL4 no "@lt N" gate matches: all go, every rule stays.
	if len(rep.DroppedMatching) != 0 {
		t.Errorf("at PL4 no gate jumps, got %v", rep.DroppedMatching)
	}
	got := fileOf(t, fsys, sqliFile)
	for _, kept := range []string{"id:942100,", "id:942120,", "id:942421,"} {
		if !strings.Contains(got, kept) {
			t.Errorf("%s missing at PL4", kept)
		}
	}
	if strings.Contains(got, "id:942017,") {
		t.Error("gate 942017 (@lt 4) never matches at PL4 and should be left out")
	}
}

func TestParanoiaGatesKeptWhenTheyMayChange(t *testing.T) {
	for _, c := range []struct {
		name, before, after string
		removed             []IDRange
		disabled            bool   // nothing at all is decided
		levelVaries         bool   // no gate on the detection level is decided
		keeps               string // a rule id that must stay in sqliFile
		gate                int    // and the gate that must stay with it
	}{
		{name: "level set by a SecRule", before: gateSetup("1") + `SecRule REQUEST_URI "@beginsWith /admin" "id:10,phase:1,pass,nolog,setvar:tx.detection_paranoia_level=3"` + "\n", levelVaries: true},
		{name: "level from a macro", before: gateSetup("1") + `SecAction "id:11,phase:1,pass,nolog,setvar:tx.detection_paranoia_level=%{tx.x}"` + "\n", levelVaries: true},
		{name: "level set in phase 2", before: gateSetup("1") + `SecAction "id:12,phase:2,pass,nolog,setvar:tx.detection_paranoia_level=2"` + "\n", levelVaries: true},
		{name: "level set after CRS", before: gateSetup("1"), after: `SecAction "id:13,phase:1,pass,nolog,setvar:tx.detection_paranoia_level=2"` + "\n", levelVaries: true},
		{name: "level setter can be jumped over", before: `SecRule REQUEST_URI "@beginsWith /x" "id:14,phase:1,pass,nolog,skipAfter:M"` + "\n" + gateSetup("1") + "SecMarker M\n", levelVaries: true},
		{name: "only one level set", before: `SecAction "id:15,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=1"` + "\n", levelVaries: true},
		{name: "level setter excluded", before: gateSetup("1"), removed: []IDRange{{900000, 900000}}, levelVaries: true},
		{name: "level setter removed by a custom rule", before: gateSetup("1") + `SecRule REQUEST_URI "@beginsWith /x" "id:17,phase:1,pass,nolog,ctl:ruleRemoveById=900000"` + "\n", levelVaries: true},
		{name: "removal by message", before: gateSetup("1") + `SecRuleRemoveByMsg "SQL"` + "\n", disabled: true},
		{name: "exclusion of the gate alone", before: gateSetup("1"), removed: []IDRange{{942014, 942014}}, keeps: "id:942120,", gate: 942014},
		{name: "ctl removal of the gate", before: gateSetup("1") + `SecRule REQUEST_URI "@beginsWith /x" "id:16,phase:1,pass,nolog,ctl:ruleRemoveById=942000-942014"` + "\n", keeps: "id:942120,", gate: 942014},
		{name: "target update of a rule it jumps over", before: gateSetup("1"), after: `SecRuleUpdateTargetById 942120 "!ARGS:q"` + "\n", keeps: "id:942120,", gate: 942014},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys, rep := resolve(t, c.before, c.after, c.removed...)
			if c.disabled {
				if rep.Disabled == "" {
					t.Fatalf("rules decided (%d), want none", rep.Decided)
				}
				return
			}
			if c.levelVaries {
				got := fileOf(t, fsys, sqliFile)
				if len(rep.DroppedMatching) != 0 || !strings.Contains(got, "id:942013,") || !strings.Contains(got, "id:942120,") {
					t.Fatalf("a gate on a level that may vary was decided: left out %v", rep.DroppedMatching)
				}
				return
			}
			if rep.Disabled != "" {
				t.Fatalf("disabled: %s", rep.Disabled)
			}
			if got := fileOf(t, fsys, sqliFile); !strings.Contains(got, c.keeps) {
				t.Errorf("%s left out although its gate may not jump", c.keeps)
			}
			if slices.Contains(rep.DroppedMatching, c.gate) {
				t.Errorf("gate %d left out", c.gate)
			}
			if !slices.Contains(rep.DroppedMatching, 941013) {
				t.Error("the other files' gates should still be decided")
			}
		})
	}
}

// 942120 is a phase 2 rule: the phase 1 gate (942013) never jumps over
// it, so only the phase 2 gate (942014) matters for it.

// A category exclusion removes a whole file's rules: the gates are
// decided all the same (what they jump over is removed too).
func TestParanoiaGatesWithCategoryExclusion(t *testing.T) {
	_, rep := resolve(t, gateSetup("1"), "", IDRange{942000, 942999})
	if !slices.Contains(rep.DroppedMatching, 942013) {
		t.Errorf("942013 kept under a whole-file exclusion: %+v", rep)
	}
}

func TestDirectivesKeepLines(t *testing.T) {
	text := "# c\nSecRule A \"@rx b\" \\\n    \"id:1,\\\n    pass\"\n\nSecMarker X\n"
	ds := directives(text)
	if len(ds) != 2 || ds[0].first != 1 || ds[0].last != 3 || ds[1].first != 5 || ds[1].last != 5 {
		t.Fatalf("directives = %+v", ds)
	}
	if !bytes.Contains([]byte(ds[0].text), []byte(`"id:1,    pass"`)) {
		t.Errorf("joined text = %q", ds[0].text)
	}
}
