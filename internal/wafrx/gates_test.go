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
	return resolvePhases(t, AllPhases, before, after, removed...)
}

func resolvePhases(t *testing.T, runs Phases, before, after string, removed ...IDRange) (fs.FS, GateReport) {
	t.Helper()
	return resolveAll(t, runs, nil, before, after, removed...)
}

func resolvePhasesReads(t *testing.T, runs Phases, reads []string, before, after string) (fs.FS, GateReport) {
	t.Helper()
	return resolveAll(t, runs, reads, before, after)
}

func resolveAll(t *testing.T, runs Phases, reads []string, before, after string, removed ...IDRange) (fs.FS, GateReport) {
	t.Helper()
	text := before + "Include @owasp_crs/*.conf\n" + after
	fsys, rep := ResolveParanoiaGates(coreruleset.FS, text, removed, runs, reads...)
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
	// Left out: the gates, a PL2 rule they jump over, the marker they
	// jumped to; kept: PL1 rules, the PL1 scoring in the blocking
	// evaluation.
	for _, gone := range []string{"id:942011,", "id:942013,", "id:942120,", `SecMarker "END-REQUEST-942-APPLICATION-ATTACK-SQLI"`} {
		if strings.Contains(got, gone) {
			t.Errorf("%s still in the resolved file", gone)
		}
	}
	for _, kept := range []string{"id:942100,"} {
		if !strings.Contains(got, kept) {
			t.Errorf("%s missing from the resolved file", kept)
		}
	}
	// The marker after 920539's skip:1 stays (rule skipping leaves the
	// rules up to it in place); so do the markers the remaining rules
	// jump to.
	if !strings.Contains(fileOf(t, fsys, "@owasp_crs/REQUEST-920-PROTOCOL-ENFORCEMENT.conf"), `SecMarker "END-REQUEST-920-PROTOCOL-ENFORCEMENT"`) {
		t.Error("END-REQUEST-920-PROTOCOL-ENFORCEMENT (the first marker after a skip:1) left out")
	}
	if rep.Markers == 0 || rep.MarkersKept != "" {
		t.Errorf("no marker left out: %q", rep.MarkersKept)
	}
	kept := 0
	for _, f := range crsFiles(t, fsys) {
		for _, d := range directives(fileOf(t, fsys, f)) {
			if name, ok := strings.CutPrefix(d.text, "SecMarker "); ok {
				kept++
				if name = strings.Trim(name, `"`); !strings.Contains(allText(t, fsys), "skipAfter:"+name) && name != "END-REQUEST-920-PROTOCOL-ENFORCEMENT" {
					t.Errorf("marker %s stays though no rule jumps to it", name)
				}
			}
		}
	}
	if kept+rep.Markers != 30 {
		t.Errorf("%d markers kept + %d left out, CRS has 30", kept, rep.Markers)
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

// crsFiles are the CRS rule files in fsys.
func crsFiles(t *testing.T, fsys fs.FS) []string {
	m, err := fs.Glob(fsys, "@owasp_crs/*.conf")
	if err != nil || len(m) == 0 {
		t.Fatalf("no CRS files: %v", err)
	}
	return m
}

// allText is every CRS rule file in fsys, as directives.
func allText(t *testing.T, fsys fs.FS) string {
	var b strings.Builder
	for _, f := range crsFiles(t, fsys) {
		for _, d := range directives(fileOf(t, fsys, f)) {
			b.WriteString(d.text + "\n")
		}
	}
	return b.String()
}

// TestMarkersKeptWhenTheyMayMatter: a marker stays when a rule of the
// configuration jumps to it, and none is left out when a skip:N could
// count one or a rule reads the previous rule's MATCHED_VAR.
func TestMarkersKeptWhenTheyMayMatter(t *testing.T) {
	const sqli = `SecMarker "END-REQUEST-942-APPLICATION-ATTACK-SQLI"`
	fsys, rep := resolve(t, gateSetup("1")+`SecRule REQUEST_URI "@contains /static/" "id:100,phase:1,pass,nolog,skipAfter:END-REQUEST-942-APPLICATION-ATTACK-SQLI"`+"\n", "")
	if !strings.Contains(fileOf(t, fsys, sqliFile), sqli) || rep.Markers == 0 {
		t.Errorf("a marker a custom rule jumps to was left out (%d markers left out)", rep.Markers)
	}
	for name, c := range map[string]struct {
		before, after string
		removed       []IDRange
		why           string
	}{
		"custom skip:N":      {before: `SecRule REQUEST_URI "@contains /x" "id:100,phase:1,pass,nolog,skip:2"` + "\n", why: "rule 100 has skip:N"},
		"reads MATCHED_VAR":  {after: `SecRule MATCHED_VAR "@contains x" "id:100,phase:2,pass,nolog"` + "\n", why: "rule 100 reads the previous rule's MATCHED_VAR"},
		"macro MATCHED_VAR":  {after: `SecRule ARGS "@streq %{MATCHED_VAR}" "id:100,phase:2,pass,nolog"` + "\n", why: "rule 100 reads"},
		"skip reach widened": {removed: []IDRange{{920540, 920540}}, why: "rule 920539's skip:1 may count marker"},
	} {
		t.Run(name, func(t *testing.T) {
			fsys, rep := resolve(t, gateSetup("1")+c.before, c.after, c.removed...)
			if rep.Disabled != "" {
				t.Fatalf("disabled: %s", rep.Disabled)
			}
			if rep.Markers != 0 || !strings.Contains(rep.MarkersKept, c.why) {
				t.Errorf("%d markers left out, kept because %q; want none, because %q", rep.Markers, rep.MarkersKept, c.why)
			}
			if !strings.Contains(fileOf(t, fsys, sqliFile), sqli) {
				t.Error("marker left out")
			}
		})
	}
	// A chain member reads its head's match: that keeps nothing.
	_, rep = resolve(t, gateSetup("1"), `SecRule ARGS "@contains x" "id:100,phase:2,pass,nolog,chain"`+"\n"+`SecRule MATCHED_VAR "@contains y" ""`+"\n")
	if rep.Markers == 0 {
		t.Errorf("a chain member reading MATCHED_VAR kept the markers: %q", rep.MarkersKept)
	}
}

// TestMarkersOfPhasesNotRun: the markers only response or logging rules
// jump to are left out when those phases never run, and stay when they do.
func TestMarkersOfPhasesNotRun(t *testing.T) {
	const leak = "@owasp_crs/RESPONSE-950-DATA-LEAKAGES.conf"
	const marker = `SecMarker "END-RESPONSE-950-DATA-LEAKAGES"`
	all, repAll := resolvePhases(t, AllPhases, gateSetup("1"), "")
	req, repReq := resolvePhases(t, RequestPhases, gateSetup("1"), "")
	resp, repResp := resolvePhases(t, RequestPhases|ResponsePhases, gateSetup("1"), "")
	if !strings.Contains(fileOf(t, all, leak), marker) || !strings.Contains(fileOf(t, resp, leak), marker) {
		t.Error("a marker response rules jump to was left out though the response phases run")
	}
	if strings.Contains(fileOf(t, req, leak), marker) {
		t.Error("a marker only response rules jump to stayed though they never run")
	}
	if strings.Contains(fileOf(t, resp, "@owasp_crs/RESPONSE-980-CORRELATION.conf"), `SecMarker "END-RESPONSE-980-CORRELATION"`) {
		t.Error("a marker only logging rules jump to stayed though the logging phase never runs")
	}
	if !(repReq.Markers > repResp.Markers && repResp.Markers > repAll.Markers) {
		t.Errorf("markers left out: request phases %d, with responses %d, all %d", repReq.Markers, repResp.Markers, repAll.Markers)
	}
	// A request-phase marker stays whatever the phases: 920280 jumps to it.
	if !strings.Contains(fileOf(t, req, "@owasp_crs/REQUEST-920-PROTOCOL-ENFORCEMENT.conf"), `SecMarker "END-HOST-CHECK"`) {
		t.Error("END-HOST-CHECK left out")
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
