// Package crsregress runs the OWASP CRS regression tests (the go-ftw YAML
// files shipped in the coraza-coreruleset module) against any request
// evaluator, so a WAF build can be checked without a live server: each test
// stage becomes an *http.Request, the evaluator returns the ids of the rules
// that logged, and the expectations of the test (expected / unexpected ids)
// are checked. Tests that only make sense on the wire (raw encoded requests,
// HTTP/0.x, backend responses, status-only checks) are skipped with a reason
// and counted, never silently dropped.
package crsregress

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	crstests "github.com/corazawaf/coraza-coreruleset/v4/tests"
	"go.yaml.in/yaml/v3"
)

// Case is one request of the regression suite with its expectations.
type Case struct {
	ID     string // "920330-1", or "920330-1/2" for the second stage of a test
	Title  string // the test's description
	Family string // rule file, e.g. "REQUEST-942-APPLICATION-ATTACK-SQLI"
	Method string
	URI    string // request target exactly as sent, possibly not a valid URL
	Proto  string // e.g. "HTTP/1.1", passed through even when unusual
	Header http.Header
	Body   []byte
	// Expect are rule ids that must log; ExpectNot must not.
	Expect    []int
	ExpectNot []int
	// Skip, when not empty, says why the case cannot be run here.
	Skip string
}

// Load reads every test of the suite, in a stable order.
func Load() ([]Case, error) {
	return LoadFS(crstests.FS)
}

// LoadFS reads a go-ftw test tree (directories of *.yaml).
func LoadFS(fsys fs.FS) ([]Case, error) {
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var cases []Case
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		cs, err := parseFile(path.Base(path.Dir(f)), data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		cases = append(cases, cs...)
	}
	return cases, nil
}

// ftwFile is the part of the go-ftw format this runner understands.
type ftwFile struct {
	RuleID int `yaml:"rule_id"`
	Tests  []struct {
		TestID int    `yaml:"test_id"`
		Title  string `yaml:"test_title"` // older files
		Desc   string `yaml:"desc"`
		Stages []struct {
			Input  ftwInput  `yaml:"input"`
			Output ftwOutput `yaml:"output"`
			Stage  *struct { // older files nest one more level
				Input  ftwInput  `yaml:"input"`
				Output ftwOutput `yaml:"output"`
			} `yaml:"stage"`
		} `yaml:"stages"`
	} `yaml:"tests"`
}

type ftwInput struct {
	Method         *string           `yaml:"method"`
	URI            *string           `yaml:"uri"`
	Version        *string           `yaml:"version"`
	Headers        map[string]string `yaml:"headers"`
	Data           *string           `yaml:"data"`
	EncodedRequest string            `yaml:"encoded_request"`
	RawRequest     string            `yaml:"raw_request"`
	Autocomplete   *bool             `yaml:"autocomplete_headers"`
}

type ftwOutput struct {
	Status           any    `yaml:"status"`
	ExpectError      bool   `yaml:"expect_error"`
	LogContains      string `yaml:"log_contains"`
	NoLogContains    string `yaml:"no_log_contains"`
	ResponseContains string `yaml:"response_contains"`
	Log              struct {
		ExpectIDs    []int  `yaml:"expect_ids"`
		NoExpectIDs  []int  `yaml:"no_expect_ids"`
		MatchRegex   string `yaml:"match_regex"`
		NoMatchRegex string `yaml:"no_match_regex"`
	} `yaml:"log"`
}

// logIDRe recognises the one log_contains form that names a rule id.
var logIDRe = regexp.MustCompile(`^id\s*"(\d+)"$`)

func parseFile(family string, data []byte) ([]Case, error) {
	var f ftwFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	var cases []Case
	for _, t := range f.Tests {
		for si, st := range t.Stages {
			in, out := st.Input, st.Output
			if st.Stage != nil {
				in, out = st.Stage.Input, st.Stage.Output
			}
			id := fmt.Sprintf("%d-%d", f.RuleID, t.TestID)
			if len(t.Stages) > 1 {
				id += "/" + strconv.Itoa(si+1)
			}
			title := t.Desc
			if title == "" {
				title = t.Title
			}
			c := buildCase(id, strings.TrimSpace(title), family, in, out)
			cases = append(cases, c)
		}
	}
	return cases, nil
}

func buildCase(id, title, family string, in ftwInput, out ftwOutput) Case {
	c := Case{ID: id, Title: title, Family: family, Method: "GET", URI: "/", Proto: "HTTP/1.1", Header: http.Header{}}
	if in.Method != nil {
		c.Method = *in.Method
	}
	if in.URI != nil {
		c.URI = *in.URI
	}
	if in.Version != nil && *in.Version != "" {
		c.Proto = *in.Version
	}
	for k, v := range in.Headers {
		// Keys are kept as written: the suite tests case and odd names.
		c.Header[k] = append(c.Header[k], v)
	}
	if in.Data != nil {
		c.Body = []byte(*in.Data)
	}
	if in.Autocomplete == nil || *in.Autocomplete {
		// go-ftw's defaults when autocompletion is on.
		if len(c.Body) > 0 && !hasHeader(c.Header, "Content-Length") {
			c.Header["Content-Length"] = []string{strconv.Itoa(len(c.Body))}
		}
		if !hasHeader(c.Header, "Connection") {
			c.Header["Connection"] = []string{"close"}
		}
	}
	c.Expect = slices.Clone(out.Log.ExpectIDs)
	c.ExpectNot = slices.Clone(out.Log.NoExpectIDs)
	if m := logIDRe.FindStringSubmatch(strings.TrimSpace(out.LogContains)); m != nil {
		n, _ := strconv.Atoi(m[1])
		c.Expect = append(c.Expect, n)
	}
	if m := logIDRe.FindStringSubmatch(strings.TrimSpace(out.NoLogContains)); m != nil {
		n, _ := strconv.Atoi(m[1])
		c.ExpectNot = append(c.ExpectNot, n)
	}
	c.Skip = skipReason(c, in, out)
	return c
}

func hasHeader(h http.Header, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// Skip reasons, also the keys of Stats.Skipped.
const (
	SkipRaw      = "raw or encoded request bytes"
	SkipHTTP0    = "HTTP/0.x request line"
	SkipResponse = "needs a backend response (RESPONSE-* rules)"
	SkipNoIDs    = "no rule-id expectation (status, error or log text only)"
)

func skipReason(c Case, in ftwInput, out ftwOutput) string {
	switch {
	case in.EncodedRequest != "" || in.RawRequest != "":
		return SkipRaw
	case strings.HasPrefix(c.Proto, "HTTP/0."):
		return SkipHTTP0
	case strings.HasPrefix(c.Family, "RESPONSE-"):
		return SkipResponse
	case len(c.Expect) == 0 && len(c.ExpectNot) == 0:
		return SkipNoIDs
	}
	return ""
}

// Request builds the request the case describes. RequestURI carries the
// target exactly as the test sends it; URL is its parse when it parses.
// Host, as with net/http, moves from Header to Host.
func (c Case) Request() *http.Request {
	h := c.Header.Clone()
	host := ""
	for k, v := range h {
		if strings.EqualFold(k, "Host") {
			host = v[0]
			delete(h, k)
		}
	}
	u, err := url.ParseRequestURI(c.URI)
	if err != nil {
		u = &url.URL{Opaque: c.URI}
	}
	major, minor, _ := http.ParseHTTPVersion(c.Proto)
	return &http.Request{
		Method:        c.Method,
		URL:           u,
		RequestURI:    c.URI,
		Proto:         c.Proto,
		ProtoMajor:    major,
		ProtoMinor:    minor,
		Header:        h,
		Host:          host,
		Body:          io.NopCloser(bytes.NewReader(c.Body)),
		ContentLength: int64(len(c.Body)),
		RemoteAddr:    "127.0.0.1:40000",
	}
}

// Check reports how a case's expectations compare with the ids that logged.
func (c Case) Check(ids []int) (ok bool, why string) {
	var missing, unexpected []int
	for _, id := range c.Expect {
		if !slices.Contains(ids, id) {
			missing = append(missing, id)
		}
	}
	for _, id := range c.ExpectNot {
		if slices.Contains(ids, id) {
			unexpected = append(unexpected, id)
		}
	}
	if len(missing) == 0 && len(unexpected) == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("missing %v, unexpected %v", missing, unexpected)
}

// Counts is pass/fail/skip for a group of cases.
type Counts struct{ Passed, Failed, Skipped int }

// Stats is the outcome of a run.
type Stats struct {
	Counts
	ByFamily map[string]*Counts
	Skipped  map[string]int // by reason
	Failures []string       // case ids, in run order
}

// Run evaluates every case that can run and checks its expectations. It
// does not fail t: the suite is known not to pass fully on any engine, so
// callers compare Stats (or Failures against a list) and decide; each
// failure is logged with its reason.
func Run(t *testing.T, cases []Case, eval func(*http.Request) []int) Stats {
	t.Helper()
	st := Stats{ByFamily: map[string]*Counts{}, Skipped: map[string]int{}}
	for _, c := range cases {
		fam := st.ByFamily[c.Family]
		if fam == nil {
			fam = &Counts{}
			st.ByFamily[c.Family] = fam
		}
		if c.Skip != "" {
			st.Counts.Skipped++
			fam.Skipped++
			st.Skipped[c.Skip]++
			continue
		}
		if ok, why := c.Check(eval(c.Request())); !ok {
			st.Failed++
			fam.Failed++
			st.Failures = append(st.Failures, c.ID)
			t.Logf("crs %s (%s): %s", c.ID, c.Title, why)
			continue
		}
		st.Passed++
		fam.Passed++
	}
	return st
}

// String is a multi-line summary: totals, skips by reason, then families.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "passed %d, failed %d, skipped %d\n", s.Passed, s.Failed, s.Counts.Skipped)
	reasons := make([]string, 0, len(s.Skipped))
	for r := range s.Skipped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(&b, "  skipped %4d: %s\n", s.Skipped[r], r)
	}
	fams := make([]string, 0, len(s.ByFamily))
	for f := range s.ByFamily {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	for _, f := range fams {
		c := s.ByFamily[f]
		fmt.Fprintf(&b, "  %-45s passed %4d  failed %3d  skipped %3d\n", f, c.Passed, c.Failed, c.Skipped)
	}
	return b.String()
}
