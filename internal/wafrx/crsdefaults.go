package wafrx

import (
	"fmt"
	"io/fs"
	"strings"
)

// SkipRuleIDDefaults is the id of the SecAction DefaultsAction writes,
// reserved like rule skipping's own two.
const SkipRuleIDDefaults = 9990003

// crsInit is the CRS file that sets defaults for what the configuration
// leaves unset.
const crsInit = "@owasp_crs/REQUEST-901-INITIALIZATION.conf"

// A TXDefault is one of CRS's defaults: a TX variable, its value and the
// CRS rule that sets it.
type TXDefault struct {
	Name, Value string
	RuleID      int
}

// CRSDefaults returns the defaults CRS sets in phase 1 with rules of the
// form `SecRule &TX:name "@eq 0" "...,setvar:'tx.name=value'"` (a plain
// value, no macro), in file order, for the variables config (the
// configuration's own directives) does not mention: those it may set or
// read itself keep CRS's handling.
//
// Why: each such rule matches on every request whose configuration left
// the variable unset, and a matching rule is one of Coraza's costliest
// steps. Set once in one SecAction ahead of CRS (DefaultsAction), the
// same values make those rules never match, and ResolveParanoiaGates then
// leaves them out: at PL1 that is 17 rule matches fewer per request.
func CRSDefaults(fsys fs.FS, config string) []TXDefault {
	b, err := fs.ReadFile(fsys, crsInit)
	if err != nil {
		return nil
	}
	config = strings.ToLower(config)
	var out []TXDefault
	for _, d := range directives(string(b)) {
		kind, rest, _ := strings.Cut(d.text, " ")
		if !strings.EqualFold(kind, "SecRule") {
			continue
		}
		r, chain, err := parseRuleInfo("secrule", rest, d)
		if err != nil || chain || r.unsetCheck == "" || r.phase != 1 || len(r.setvars) != 1 || !r.setOnly || r.skipAfter != "" || r.skips {
			continue
		}
		name, _, _, plain, value := txWrite(r.setvars[0])
		if name == r.unsetCheck && plain && !strings.ContainsAny(value, `'"\`) && !strings.Contains(config, name) {
			out = append(out, TXDefault{name, value, r.id})
		}
	}
	return out
}

// DefaultsAction is the phase 1 SecAction that sets defaults, to be put
// after the configuration's own settings and before anything else reads
// them; "" for none.
func DefaultsAction(defaults []TXDefault) string {
	if len(defaults) == 0 {
		return ""
	}
	return fmt.Sprintf(`SecAction "id:%d,phase:1,pass,t:none,nolog,noauditlog%s"`+"\n", SkipRuleIDDefaults, DefaultsSetvars(defaults))
}

// DefaultsSetvars are the setvar actions that set defaults, each after a
// comma, for a configuration that puts them in a SecAction of its own
// making (every SecAction that matches costs Coraza a match record).
func DefaultsSetvars(defaults []TXDefault) string {
	var b strings.Builder
	for _, d := range defaults {
		fmt.Fprintf(&b, ",setvar:'tx.%s=%s'", d.Name, d.Value)
	}
	return b.String()
}
