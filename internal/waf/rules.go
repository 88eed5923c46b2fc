package waf

import (
	"fmt"
	"os"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
)

// rulesFile is a custom_rules_files entry, read once per (re)load.
type rulesFile struct {
	path string
	text string
}

func readRulesFile(path string) (rulesFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return rulesFile{}, fmt.Errorf("%s: %v", path, err)
	}
	return rulesFile{path: path, text: string(b)}, nil
}

// CheckRulesFile compiles one custom rules file followed by CRS (so an id
// that collides with a CRS rule is found too) and reports the first
// problem as "FILE:LINE: message"; config validation uses it, so
// `rampart validate` names the faulty line.
func CheckRulesFile(path string) error {
	f, err := readRulesFile(path)
	if err != nil {
		return err
	}
	return f.check("SecRuleEngine On\n", crsInclude)
}

// check compiles before+f+after and, when that fails, finds the directive
// at fault: Coraza's errors do not say where, so the file's directives are
// compiled in growing prefixes (binary search) until the first that fails.
func (f rulesFile) check(before, after string) error {
	if err := compile(before + f.text + "\n" + after); err == nil {
		return nil
	} else if len(f.text) == 0 {
		return fmt.Errorf("%s: %s", f.path, cleanErr(err))
	}
	ds := splitDirectives(f.text)
	lo, hi := 1, len(ds) // the smallest failing prefix is in [lo, hi]
	var last error
	for lo < hi {
		mid := (lo + hi) / 2
		if err := compile(before + joinDirectives(ds[:mid]) + after); err != nil {
			hi, last = mid, err
		} else {
			lo = mid + 1
		}
	}
	if last == nil || hi != lo {
		last = compile(before + joinDirectives(ds[:lo]) + after)
	}
	if last == nil || len(ds) == 0 { // fails only as a whole (e.g. an open chain)
		last = compile(before + f.text + "\n" + after)
		return fmt.Errorf("%s: %s", f.path, cleanErr(last))
	}
	return fmt.Errorf("%s:%d: %s", f.path, ds[lo-1].line, cleanErr(last))
}

func compile(directives string) error {
	_, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(directives))
	return err
}

// cleanErr drops Coraza's generic wrapping ("invalid WAF config from
// string: failed to parse string: ...").
func cleanErr(err error) string {
	s := err.Error()
	for _, p := range []string{"invalid WAF config from string: ", "failed to parse string: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

type directive struct {
	line int // where it starts, 1-based
	text string
}

// splitDirectives splits SecLang into logical directives the way Coraza's
// parser reads it: "#" comment lines, a trailing "\" continuing a line,
// and backtick blocks.
func splitDirectives(text string) []directive {
	var out []directive
	var cur strings.Builder
	start, inTicks := 0, false
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && !inTicks {
			if line == "" || line[0] == '#' {
				continue
			}
			start = i + 1
		}
		cur.WriteString(raw)
		cur.WriteByte('\n')
		switch {
		case !inTicks && strings.HasSuffix(line, "`"):
			inTicks = true
			continue
		case inTicks && strings.HasPrefix(line, "`"):
			inTicks = false
		case inTicks, strings.HasSuffix(line, "\\"):
			continue
		}
		out = append(out, directive{start, cur.String()})
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, directive{start, cur.String()})
	}
	return out
}

func joinDirectives(ds []directive) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.text)
	}
	return b.String()
}
