package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
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

// String is "FILE:LINE: message", or "FILE: message" for problems with the
// file as a whole (it cannot be read).
func (p Problem) String() string {
	if p.Line <= 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

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
	if n.Kind != yaml.ScalarNode {
		return lineError(n.Line, "wrong type: a duration (e.g. 5s, 500ms, 1h) is expected, not a %s", map[yaml.Kind]string{
			yaml.SequenceNode: "list", yaml.MappingNode: "mapping"}[n.Kind])
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil && durationSyntax.MatchString(n.Value) {
		return lineError(n.Line, "duration %q is too long (at most about 290 years)", n.Value)
	}
	if err != nil {
		return lineError(n.Line, "invalid duration %q (use a unit, e.g. 5s, 500ms, 1h)", n.Value)
	}
	if v < 0 {
		return lineError(n.Line, "duration %q must not be negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// durationSyntax is what time.ParseDuration reads; a value written so that
// it still refuses is out of range.
var durationSyntax = regexp.MustCompile(`^[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+$`)

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
		return nil, Problems{syntaxProblem(path, data, err)}
	}
	cfg = &Config{File: path, lines: map[string]int{}}
	if len(root.Content) == 0 || isNull(root.Content[0]) {
		// No document, or one that is only "---" or "~".
		return nil, Problems{{File: path, Line: 1, Msg: "config is empty"}}
	}
	if root.Content[0].Kind != yaml.MappingNode {
		return nil, Problems{{File: path, Line: root.Content[0].Line, Msg: "config must be a mapping of keys (data_dir, listeners, routes, pools, ...)"}}
	}
	ix := indexer{out: cfg.lines, budget: maxIndexedKeys}
	ix.index(root.Content[0], "", 0, false)

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var ps Problems
	if err := dec.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Problems{syntaxProblem(path, data, err)}
		}
		// Type errors leave the rest of the document decoded: check it
		// too, so one run reports every mistake.
		for _, e := range te.Errors {
			ps = append(ps, yamlProblem(path, e))
		}
		// The library skips a whole mapping that repeats a key, so the
		// rest of it (for a top-level key: the whole file) would go
		// unchecked and look missing. The repeat is reported above; decode
		// again with only each key's first occurrence.
		if dropDuplicateKeys(root.Content[0], map[*yaml.Node]bool{}) {
			again := &Config{File: path, lines: cfg.lines}
			if err := root.Content[0].Decode(again); err == nil || errors.As(err, &te) {
				cfg = again
			}
		}
	}
	// A second document ("---") would be silently ignored: refuse it,
	// unless it is empty (a trailing "---").
	var extra yaml.Node
	if err := dec.Decode(&extra); err != nil && !errors.Is(err, io.EOF) {
		ps = append(ps, syntaxProblem(path, data, err))
	} else if err == nil && len(extra.Content) > 0 && !isNull(extra.Content[0]) {
		ps = append(ps, Problem{path, extra.Line, "a config file holds one YAML document; remove this \"---\" and what follows, or merge it into the first document"})
	}
	cfg.applyDefaults()
	ps = append(ps, cfg.Validate()...)
	if len(ps) > 0 {
		sortProblems(ps)
		return nil, ps
	}
	// Paths in the file are relative to the file, not to wherever Rampart
	// happens to be started from.
	cfg.DataDir = cfg.Resolve(cfg.DataDir)
	return cfg, nil
}

// syntaxProblem is yamlProblem for an error that stopped the YAML parser.
// Errors at the end of input are reported past a final newline, on a line
// no editor shows: point at the last line instead.
func syntaxProblem(path string, data []byte, err error) Problem {
	p := yamlProblem(path, err.Error())
	last := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		last++
	}
	if p.Line > last {
		p.Line = max(last, 1)
	}
	return p
}

// yamlProblem turns the YAML library's "line N: msg" into a Problem and
// rewrites its Go-flavoured wording into the operator's vocabulary.
func yamlProblem(path, s string) Problem {
	m := yamlLineRE.FindStringSubmatch(s)
	if m == nil {
		// The library omits the line for errors on the first line.
		msg := strings.TrimPrefix(s, "yaml: ")
		if msg == "" {
			msg = "invalid YAML"
		}
		return Problem{path, 1, msg}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if msg == "" {
		msg = "invalid YAML"
	}
	if yamlParserErrors[msg] {
		// The library numbers lines from 0 in its parser errors (it adds
		// 1 only for scanner errors).
		line++
	}
	if f, t, ok := strings.Cut(msg, " not found in type "); ok && strings.HasPrefix(f, "field ") {
		key := strings.TrimPrefix(f, "field ")
		if near := nearestKey(key, sectionKeys[strings.TrimPrefix(t, "config.")]); near != "" {
			msg = fmt.Sprintf("unknown key %q in %s: did you mean %q? (see DESIGN §3)", key, sectionName(t), near)
		} else {
			msg = fmt.Sprintf("unknown key %q in %s (check the spelling; see DESIGN §3)", key, sectionName(t))
		}
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

// yamlParserErrors are the YAML library's parser (as opposed to scanner)
// error messages, whose line numbers it reports counted from 0.
var yamlParserErrors = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func sectionName(goType string) string {
	if elem, ok := strings.CutPrefix(goType, "[]"); ok {
		// "listeners: foo" must say a list is expected, not one listener.
		elem = strings.TrimPrefix(elem, "config.")
		if elem == "AdminToken" {
			return "a list of admin tokens"
		}
		return "a list of " + strings.ToLower(elem) + "s"
	}
	goType = strings.TrimPrefix(goType, "config.")
	switch goType {
	case "AdminToken":
		return "an admin token"
	case "Config":
		return "the top level"
	case "RouteMatch":
		return "a route match"
	case "HealthCheck":
		return "health_check"
	case "OutlierDetection":
		return "outlier_detection"
	case "BackendTLS":
		return "backend_tls"
	case "ListenerTLS":
		return "a listener's tls"
	case "ACME":
		return "acme"
	case "HSTS":
		return "hsts"
	case "SNIRoute":
		return "an sni_routing entry"
	case "SNIDefault":
		return "an sni_routing default"
	case "EndpointLimit":
		return "a security.rate_limits.endpoints entry"
	case "RouteWAF":
		return "a route's waf"
	case "BucketLimit": // also a per_user tier, under a map
		return "security.rate_limits.per_ip or a per_user tier"
	}
	if p, ok := sectionPaths[goType]; ok {
		return p
	}
	return "a " + strings.ToLower(goType)
}

// sectionPaths maps the name of a config struct type to where its section
// sits in the file ("security.slowloris_protection"), so that errors name
// sections as users write them; types under lists and maps are left out
// (they read better as "a listener"), and a type found at several places
// gets them all. sectionKeys maps every config struct type to its yaml
// keys, for the suggestion after an unknown key. Both come from one walk
// of the yaml tags from Config.
var sectionPaths, sectionKeys = func() (map[string]string, map[string][]string) {
	found := map[string][]string{}
	keys := map[string][]string{}
	pkg := reflect.TypeFor[Config]().PkgPath()
	// at is the section's path, "" under a list or a map.
	var walk func(t reflect.Type, at string)
	walk = func(t reflect.Type, at string) {
		_, walked := keys[t.Name()] // walked again only for its paths
		if !walked {
			keys[t.Name()] = []string{}
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !walked {
				keys[t.Name()] = append(keys[t.Name()], name)
			}
			ft, inList := f.Type, false
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map {
				inList = inList || ft.Kind() != reflect.Pointer
				ft = ft.Elem()
			}
			if ft.Kind() != reflect.Struct || ft.PkgPath() != pkg {
				continue
			}
			p := ""
			if !inList && (at != "" || t.Name() == "Config") {
				p = strings.TrimPrefix(at+"."+name, ".")
				found[ft.Name()] = append(found[ft.Name()], p)
			}
			if _, seen := keys[ft.Name()]; !seen || p != "" {
				walk(ft, p)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	paths := make(map[string]string, len(found))
	for typ, ps := range found {
		paths[typ] = strings.Join(ps, " or ")
	}
	return paths, keys
}()

// nearestKey returns the key of keys closest to key, if it is close enough
// to be a typo of it (one edit, two for keys of 8 letters or more), or "".
func nearestKey(key string, keys []string) string {
	best, bestD := "", 2
	if len(key) >= 8 {
		bestD = 3
	}
	for _, k := range keys {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// dropDuplicateKeys removes the second and later occurrences of a key from
// every mapping under n and says whether it removed any.
func dropDuplicateKeys(n *yaml.Node, seen map[*yaml.Node]bool) bool {
	if n == nil || seen[n] {
		return false
	}
	seen[n] = true
	dropped := false
	if n.Kind == yaml.MappingNode {
		type key struct {
			kind  yaml.Kind
			value string
		}
		keys := map[key]bool{}
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := key{n.Content[i].Kind, n.Content[i].Value}
			if keys[k] {
				dropped = true
				continue
			}
			keys[k] = true
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		if dropDuplicateKeys(c, seen) {
			dropped = true
		}
	}
	if n.Kind == yaml.AliasNode && dropDuplicateKeys(n.Alias, seen) {
		dropped = true
	}
	return dropped
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Limits on indexing so that hostile input (self-referencing anchors,
// "billion laughs" alias fans, very deep nesting) cannot hang the loader or
// exhaust memory before the decoder gets to refuse it. The schema is
// nowhere deeper than a handful of levels, and real files have far fewer
// keys; anything past the limits falls back to an enclosing key's line.
const (
	maxIndexDepth  = 16
	maxIndexedKeys = 1 << 18
)

// indexer records the line of every key path in the document.
type indexer struct {
	out    map[string]int
	budget int
}

func (ix *indexer) index(n *yaml.Node, prefix string, depth int, inAlias bool) {
	if depth >= maxIndexDepth {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if _, seen := ix.out[p]; seen {
				// The YAML library refuses duplicate keys itself.
				continue
			}
			if !ix.add(p, k.Line) {
				return
			}
			ix.index(v, p, depth+1, inAlias)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if !ix.add(p, v.Line) {
				return
			}
			ix.index(v, p, depth+1, inAlias)
		}
	case yaml.AliasNode:
		// Follow an alias once, not aliases inside what it points at: that
		// keeps a self-referencing anchor ("&a [*a]") finite.
		if n.Alias != nil && !inAlias {
			ix.index(n.Alias, prefix, depth, true)
		}
	}
}

func (ix *indexer) add(p string, line int) bool {
	if ix.budget <= 0 {
		return false
	}
	ix.budget--
	ix.out[p] = line
	return true
}

// sortProblems orders problems by line so output reads like the file.
func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}
