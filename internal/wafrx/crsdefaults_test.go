package wafrx

import (
	"slices"
	"strings"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
)

func TestCRSDefaults(t *testing.T) {
	ds := CRSDefaults(coreruleset.FS, `SecAction "id:1,phase:1,pass,nolog,setvar:tx.Reporting_Level=2"`)
	find := func(name string) (string, bool) {
		i := slices.IndexFunc(ds, func(d TXDefault) bool { return d.Name == name })
		if i < 0 {
			return "", false
		}
		return ds[i].Value, true
	}
	for name, want := range map[string]string{
		"inbound_anomaly_score_threshold": "5",
		"allowed_methods":                 "GET HEAD POST OPTIONS",
		"critical_anomaly_score":          "5",
		"sampling_percentage":             "100",
		"blocking_paranoia_level":         "1",
	} {
		if got, ok := find(name); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, ok, want)
		}
	}
	// A default made by a macro, the rule that refuses to run without a
	// setup (deny, not a setvar), and one the configuration mentions are
	// not listed.
	for _, name := range []string{"detection_paranoia_level", "crs_setup_version", "reporting_level"} {
		if _, ok := find(name); ok {
			t.Errorf("%s listed", name)
		}
	}
	a := DefaultsAction(ds[:2])
	if !strings.HasPrefix(a, `SecAction "id:9990003,phase:1,`) || !strings.Contains(a, ",setvar:'tx."+ds[0].Name+"="+ds[0].Value+"'") {
		t.Errorf("DefaultsAction = %s", a)
	}
}
