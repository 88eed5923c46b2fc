package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Problems is every problem found in one file; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Duration is a time.Duration written as "5s", "1m30s" or "720h". A bare
// number is refused: "30" could mean seconds or milliseconds.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return lineError(n.Line, "invalid duration %q (use a unit, e.g. 5s, 500ms, 1h)", n.Value)
	}
	if v < 0 {
		return lineError(n.Line, "duration %q must not be negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// lineError reports a bad value the way the YAML library reports its own
// type errors, so that decoding goes on and every problem is collected.
func lineError(line int, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", line, fmt.Sprintf(format, args...))}}
}

// Load reads, parses, defaults and validates a config file. The returned
// error is Problems when the file was read but is not valid.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Line: 0, Msg: fmt.Sprintf("cannot read config: %v", err)}}
	}
	return Parse(path, data)
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// Parse is Load on bytes already read; path is used in messages and to
// resolve relative paths.
func Parse(path string, data []byte) (cfg *Config, err error) {
	// The YAML library has panicked on hostile input in the past; a config
	// loader must never take the process down.
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, Problems{{File: path, Line: 1, Msg: fmt.Sprintf("cannot parse YAML: %v", r)}}
		}
	}()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{yamlProblem(path, err.Error())}
	}
	cfg = &Config{File: path, lines: map[string]int{}}
	if len(root.Content) == 0 {
		return nil, Problems{{File: path, Line: 1, Msg: "config is empty"}}
	}
	if root.Content[0].Kind != yaml.MappingNode {
		return nil, Problems{{File: path, Line: root.Content[0].Line, Msg: "config must be a mapping of keys (data_dir, listeners, routes, pools, ...)"}}
	}
	indexLines(root.Content[0], "", cfg.lines)

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var ps Problems
	if err := dec.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Problems{yamlProblem(path, err.Error())}
		}
		// Type errors leave the rest of the document decoded: check it
		// too, so one run reports every mistake.
		for _, e := range te.Errors {
			ps = append(ps, yamlProblem(path, e))
		}
	}
	cfg.applyDefaults()
	ps = append(ps, cfg.Validate()...)
	if len(ps) > 0 {
		sortProblems(ps)
		return nil, ps
	}
	return cfg, nil
}

// yamlProblem turns the YAML library's "line N: msg" into a Problem and
// rewrites its Go-flavoured wording into the operator's vocabulary.
func yamlProblem(path, s string) Problem {
	m := yamlLineRE.FindStringSubmatch(s)
	if m == nil {
		return Problem{path, 1, s}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if f, t, ok := strings.Cut(msg, " not found in type "); ok && strings.HasPrefix(f, "field ") {
		msg = fmt.Sprintf("unknown key %q in %s (check the spelling; see DESIGN §3)", strings.TrimPrefix(f, "field "), sectionName(t))
	} else if strings.HasPrefix(msg, "cannot unmarshal") {
		msg = strings.Replace(msg, "cannot unmarshal", "wrong type:", 1)
		msg = strings.NewReplacer("!!str", "a string", "!!int", "a number", "!!seq", "a list", "!!map", "a mapping", "!!bool", "a boolean",
			"into int", "where a number is expected", "into bool", "where true/false is expected", "into string", "where a string is expected").Replace(msg)
		if strings.Contains(msg, " into ") {
			_, t, _ := strings.Cut(msg, " into ")
			msg = msg[:strings.Index(msg, " into ")] + " where " + sectionName(t) + " is expected"
		}
	}
	return Problem{path, line, msg}
}

func sectionName(goType string) string {
	goType = strings.TrimPrefix(goType, "[]")
	goType = strings.TrimPrefix(goType, "config.")
	switch goType {
	case "Config":
		return "the top level"
	case "RouteMatch":
		return "a route match"
	case "HealthCheck":
		return "health_check"
	case "OutlierDetection":
		return "outlier_detection"
	case "AccessLog":
		return "access_log"
	}
	return "a " + strings.ToLower(goType)
}

// indexLines records the line of every key path in the document.
func indexLines(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if _, seen := out[p]; seen {
				// The YAML library refuses duplicate keys itself.
				continue
			}
			out[p] = k.Line
			indexLines(v, p, out)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			out[p] = v.Line
			indexLines(v, p, out)
		}
	case yaml.AliasNode:
		if n.Alias != nil {
			indexLines(n.Alias, prefix, out)
		}
	}
}

// sortProblems orders problems by line so output reads like the file.
func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}
