package crsregress

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"testing/fstest"
)

func TestLoadShippedSuite(t *testing.T) {
	cases, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 4000 {
		t.Fatalf("loaded %d cases, want the whole suite (> 4000)", len(cases))
	}
	byID := map[string]Case{}
	for _, c := range cases {
		if _, dup := byID[c.ID]; dup {
			t.Fatalf("duplicate case id %s", c.ID)
		}
		byID[c.ID] = c
	}
	c, ok := byID["920330-1"]
	if !ok {
		t.Fatal("case 920330-1 missing")
	}
	if c.Family != "REQUEST-920-PROTOCOL-ENFORCEMENT" || c.Method != "GET" || c.URI != "/" || c.Proto != "HTTP/1.1" {
		t.Fatalf("920330-1 parsed as %+v", c)
	}
	if ua, ok := c.Header["User-Agent"]; !ok || len(ua) != 1 || ua[0] != "" {
		t.Fatalf("920330-1 wants an empty User-Agent, got %q (present=%v)", ua, ok)
	}
	if !slices.Equal(c.Expect, []int{920330}) || c.Skip != "" {
		t.Fatalf("920330-1 expect=%v skip=%q", c.Expect, c.Skip)
	}
	if n := byID["920330-2"]; !slices.Equal(n.ExpectNot, []int{920330}) {
		t.Fatalf("920330-2 expectNot=%v", n.ExpectNot)
	}
	reasons := map[string]int{}
	for _, c := range cases {
		reasons[c.Skip]++
	}
	for _, r := range []string{SkipRaw, SkipResponse} {
		if reasons[r] == 0 {
			t.Errorf("no case skipped for %q; the suite has such tests", r)
		}
	}
	if reasons[""] < 3500 {
		t.Errorf("only %d runnable cases", reasons[""])
	}
}

const sample = `
rule_id: 123456
tests:
  - test_id: 1
    desc: "post with body"
    stages:
      - input:
          method: POST
          uri: "/a?b=c"
          headers:
            Host: localhost
            Content-Type: application/x-www-form-urlencoded
          data: "x=1"
        output:
          log:
            expect_ids: [123456]
  - test_id: 2
    stages:
      - input:
          uri: "/"
        output:
          log:
            no_expect_ids: [123456]
  - test_id: 3
    stages:
      - input:
          encoded_request: "R0VUIC8gSFRUUC8xLjENCg0K"
        output:
          log:
            expect_ids: [123456]
  - test_id: 4
    stages:
      - input:
          uri: "/"
        output:
          status: 403
`

func TestRunChecksExpectations(t *testing.T) {
	cases, err := LoadFS(fstest.MapFS{"REQUEST-999-SAMPLE/123456.yaml": {Data: []byte(sample)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 4 {
		t.Fatalf("got %d cases, want 4", len(cases))
	}
	if cases[2].Skip != SkipRaw || cases[3].Skip != SkipNoIDs {
		t.Fatalf("skips: %q, %q", cases[2].Skip, cases[3].Skip)
	}
	r := cases[0].Request()
	body, _ := io.ReadAll(r.Body)
	if r.Method != "POST" || r.RequestURI != "/a?b=c" || r.Host != "localhost" || string(body) != "x=1" ||
		r.Header.Get("Content-Length") != "3" || r.Header.Get("Host") != "" || r.URL.Query().Get("b") != "c" {
		t.Fatalf("request: %+v body=%q", r, body)
	}

	// An evaluator that flags everything: case 1 passes, case 2 fails.
	flagAll := func(*http.Request) []int { return []int{123456} }
	st := Run(t, cases, flagAll)
	if st.Passed != 1 || st.Failed != 1 || st.Counts.Skipped != 2 || !slices.Equal(st.Failures, []string{"123456-2"}) {
		t.Fatalf("flag-all stats: %+v", st)
	}
	fam := st.ByFamily["REQUEST-999-SAMPLE"]
	if fam == nil || *fam != (Counts{Passed: 1, Failed: 1, Skipped: 2}) {
		t.Fatalf("family stats: %+v", fam)
	}
	if st.Skipped[SkipRaw] != 1 || st.Skipped[SkipNoIDs] != 1 {
		t.Fatalf("skip reasons: %v", st.Skipped)
	}

	// An evaluator that flags nothing: the reverse.
	st = Run(t, cases, func(*http.Request) []int { return nil })
	if st.Passed != 1 || st.Failed != 1 || !slices.Equal(st.Failures, []string{"123456-1"}) {
		t.Fatalf("flag-none stats: %+v", st)
	}
}
