package wafrx

import (
	"slices"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"strings"
	"testing"
)

func TestTXReadsOf(t *testing.T) {
	for text, want := range map[string][]string{
		`SecRule TX:BLOCKING_INBOUND_ANOMALY_SCORE "@ge %{tx.inbound_anomaly_score_threshold}" "id:1,deny"`: {"inbound_anomaly_score_threshold", "blocking_inbound_anomaly_score"},
		`SecRule &TX:x|REQUEST_URI "@eq 0" "id:1,setvar:'tx.y=1'"`:                                          {"x"},
		`SecRule "TX:/^header_name_920450_/" "@within x" "id:1"`:                                            {"/^header_name_920450_/"},
		`SecRule TX "@rx a" "id:1"`:                                   {"*"},
		`SecRule ARGS|TX "@rx a" "id:1"`:                              {"*"},
		`SecRule TX:a-b "@rx a" "id:1"`:                               {"*"},
		`SecAction "id:1,setvar:'tx.a=+%{tx.b}',setvar:tx.c=%{TX.D}"`: {"b", "d"},
		`SecAction "id:1,msg:'%{tx.%{tx.n}}'"`:                        {"*"},
		`SecRuleUpdateTargetById 942100 "TX:extra"`:                   {"extra"},
		`SecRule REQUEST_URI "@rx TXT" "id:1"`:                        nil,
		`SecRule REQUEST_URI "@rx a" "id:1,msg:'TX is here'"`:         {"*"}, // rather too much than too little
	} {
		got := txReadsOf(text)
		slices.Sort(got)
		got = slices.Compact(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", text, got, want)
		}
	}
}

// TestUnreadSettings: CRS's initialisation stops setting the scores no
// rule that runs reads, and the rules that only write them go.
func TestUnreadSettings(t *testing.T) {
	const initFile = "@owasp_crs/REQUEST-901-INITIALIZATION.conf"
	fsys, rep := resolvePhases(t, RequestPhases, gateSetup("1"), "")
	init := fileOf(t, fsys, initFile)
	if strings.Count(init, "\n") != strings.Count(fileOf(t, coreruleset.FS, initFile), "\n") {
		t.Error("line count changed")
	}
	for _, gone := range []string{"tx.sql_injection_score=0", "tx.outbound_anomaly_score_pl1=0", "tx.inbound_anomaly_score_pl2=0"} {
		if strings.Contains(init, gone) || !slices.Contains(rep.Unread, strings.TrimSuffix(strings.TrimPrefix(gone, "tx."), "=0")) {
			t.Errorf("%s still set (unread: %v)", gone, rep.Unread)
		}
	}
	for _, kept := range []string{"tx.blocking_inbound_anomaly_score=0", "tx.inbound_anomaly_score_pl1=0"} {
		if !strings.Contains(init, kept) {
			t.Errorf("%s no longer set: 949 reads it", kept)
		}
	}
	// 949152, 949159 and 949160 only keep the detection-level score,
	// which nothing reads when the logging phase does not run.
	for _, id := range []int{949152, 949159, 949160} {
		if !slices.Contains(rep.UnreadRules, id) || !slices.Contains(rep.DroppedMatching, id) {
			t.Errorf("%d not left out: %v", id, rep.UnreadRules)
		}
	}
	// Whoever reads a variable keeps it.
	_, repAll := resolvePhases(t, AllPhases, gateSetup("1"), "")
	if slices.Contains(repAll.Unread, "sql_injection_score") || slices.Contains(repAll.Unread, "detection_inbound_anomaly_score") {
		t.Errorf("with the logging phase (980 reads the scores): unread %v", repAll.Unread)
	}
	for name, c := range map[string]struct {
		after string
		reads []string
		keeps string
	}{
		"the caller":       {reads: []string{"xss_score"}, keeps: "xss_score"},
		"a custom rule":    {after: `SecRule TX:xss_score "@gt 0" "id:100,phase:2,pass,log,msg:'xss'"` + "\n", keeps: "xss_score"},
		"a custom macro":   {after: `SecRule REQUEST_URI "@rx ." "id:100,phase:2,pass,log,msg:'%{tx.rce_score}'"` + "\n", keeps: "rce_score"},
		"a key by pattern": {after: `SecRule TX:/_score$/ "@gt 0" "id:100,phase:2,pass,log,msg:'x'"` + "\n", keeps: "lfi_score"},
	} {
		t.Run(name, func(t *testing.T) {
			_, rep := resolvePhasesReads(t, RequestPhases, c.reads, gateSetup("1"), c.after)
			if slices.Contains(rep.Unread, c.keeps) {
				t.Errorf("%s left unset: %v", c.keeps, rep.Unread)
			}
		})
	}
	_, rep = resolvePhases(t, RequestPhases, gateSetup("1"), `SecRule TX "@rx x" "id:100,phase:2,pass,log,msg:'x'"`+"\n")
	if len(rep.Unread) != 0 || len(rep.UnreadRules) != 0 {
		t.Errorf("a rule reads the whole collection, yet %v unset, %v left out", rep.Unread, rep.UnreadRules)
	}
}

// TestUnreadConfigSettings: settings of the configuration no rule that runs
// reads are reported, unless a decision relied on them.
func TestUnreadConfigSettings(t *testing.T) {
	setup := gateSetup("1") + `SecAction "id:900001,phase:1,pass,nolog,setvar:tx.outbound_anomaly_score_threshold=4,setvar:tx.reporting_level=4,setvar:tx.crs_setup_version=4250,setvar:tx.sampling_percentage=100,setvar:tx.inbound_anomaly_score_threshold=5"` + "\n"
	_, rep := resolvePhases(t, RequestPhases, setup, "")
	// crs_setup_version: 901001 refuses requests without it; the sampling
	// gate was decided on sampling_percentage; 949 reads the inbound
	// threshold.
	if want := []string{"outbound_anomaly_score_threshold", "reporting_level"}; !slices.Equal(rep.UnreadSettings, want) {
		t.Errorf("request phases: %v, want %v", rep.UnreadSettings, want)
	}
	_, rep = resolvePhases(t, RequestPhases|ResponsePhases, setup, "")
	if slices.Contains(rep.UnreadSettings, "outbound_anomaly_score_threshold") || !slices.Contains(rep.UnreadSettings, "reporting_level") {
		t.Errorf("with response phases: %v", rep.UnreadSettings)
	}
	_, rep = resolvePhases(t, AllPhases, setup, "")
	if len(rep.UnreadSettings) != 0 {
		t.Errorf("all phases (980 reads the reporting level): %v", rep.UnreadSettings)
	}
	// Without the setting, CRS's default rule for it only writes what
	// nobody reads: it goes too.
	_, rep = resolvePhases(t, RequestPhases, gateSetup("1"), "")
	if !slices.Contains(rep.UnreadRules, 901111) || !slices.Contains(rep.UnreadRules, 901110) {
		t.Errorf("defaults of unread settings kept: %v", rep.UnreadRules)
	}
}

// TestOwnReads: a rule that only writes the variable it reads does not
// keep it alive; one that also writes another variable does.
func TestOwnReads(t *testing.T) {
	only := ruleInfo{reads: []string{"x"}}
	only.secRule, _, _ = parseSecRule(`&TX:x "@eq 0" "id:1,phase:1,pass,nolog,setvar:tx.x=5"`)
	if got := ownReadsLeftOut(only); len(got) != 0 {
		t.Errorf("default rule keeps %v", got)
	}
	more := ruleInfo{reads: []string{"x"}}
	more.secRule, _, _ = parseSecRule(`TX:x "@eq 1" "id:2,phase:1,pass,nolog,setvar:tx.x=2,setvar:tx.y=1"`)
	if got := ownReadsLeftOut(more); !slices.Equal(got, []string{"x"}) {
		t.Errorf("a rule writing y from x must keep x: %v", got)
	}
}
