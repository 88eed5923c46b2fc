package waf

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Exclusion turns rules off for some paths: Path is exact ("/api/upload")
// or a prefix when it ends in "*" ("/webhooks/*"); Rules are rule ids
// ("942100") or category names (Categories).
type Exclusion struct {
	Path  string
	Rules []string
}

// BodySizeLimit is the pseudo-category that lets bodies over
// max_body_inspect_bytes through on a path (inspected up to the limit)
// instead of refusing them.
const BodySizeLimit = "body_size_limit"

// Categories map exclusion category names to the CRS rule id ranges that
// detect them. CRS numbers its rules by file, one file per attack class
// (REQUEST-942-APPLICATION-ATTACK-SQLI.conf holds 942000-942999), so a
// range is exactly a category, paranoia levels included.
var Categories = map[string][][2]int{
	"method":           {{911000, 911999}},
	"scanner":          {{913000, 913999}},
	"protocol":         {{920000, 921999}},
	"multipart":        {{922000, 922999}},
	"lfi":              {{930000, 930999}},
	"rfi":              {{931000, 931999}},
	"rce":              {{932000, 932999}},
	"php":              {{933000, 933999}},
	"generic":          {{934000, 934999}}, // Node.js, SSRF, prototype pollution, ...
	"xss":              {{941000, 941999}},
	"sql_injection":    {{942000, 942999}},
	"session_fixation": {{943000, 943999}},
	"java":             {{944000, 944999}},
	// Request bodies Coraza cannot parse (200002) or that fail strict
	// multipart validation (200003).
	"body_parsing":    {{200002, 200003}},
	"body_size_limit": nil,
}

// CategoryNames lists the categories, sorted, for error messages.
func CategoryNames() []string {
	out := make([]string, 0, len(Categories))
	for k := range Categories {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// CheckRule validates one entry of an exclusion's rules: a rule id or a
// category name.
func CheckRule(s string) error {
	if _, ok := Categories[s]; ok {
		return nil
	}
	if id, err := strconv.Atoi(s); err == nil && id > 0 {
		return nil
	}
	return fmt.Errorf("%q is neither a rule id nor a category (%s)", s, strings.Join(CategoryNames(), ", "))
}

// exclusion is an Exclusion compiled for matching.
type exclusion struct {
	path     string
	prefix   bool
	ids      []int
	ranges   [][2]int
	bodyPass bool // body_size_limit
}

func compileExclusions(in []Exclusion) ([]exclusion, error) {
	out := make([]exclusion, 0, len(in))
	for _, e := range in {
		if !strings.HasPrefix(e.Path, "/") {
			return nil, fmt.Errorf("exclusion path %q must start with /", e.Path)
		}
		x := exclusion{path: e.Path}
		if p, ok := strings.CutSuffix(e.Path, "*"); ok {
			x.path, x.prefix = p, true
		}
		for _, r := range e.Rules {
			if err := CheckRule(r); err != nil {
				return nil, err
			}
			if r == BodySizeLimit {
				x.bodyPass = true
			} else if rs, ok := Categories[r]; ok {
				x.ranges = append(x.ranges, rs...)
			} else {
				id, _ := strconv.Atoi(r)
				x.ids = append(x.ids, id)
			}
		}
		out = append(out, x)
	}
	return out, nil
}

func (x *exclusion) matches(path string) bool {
	if x.prefix {
		return strings.HasPrefix(path, x.path)
	}
	return path == x.path
}

// ruleRemover is the part of Coraza's transaction that turns rules off
// for one transaction only (what ctl:ruleRemoveById does); the shared
// rule set is never changed.
type ruleRemover interface {
	RemoveRuleByID(id int)
	RemoveRuleByIDRange(start, end int)
}
