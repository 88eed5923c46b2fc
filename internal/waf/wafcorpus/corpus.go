// Package wafcorpus turns Rampart's WAF corpus (internal/waf/testdata/
// corpus: attack/CATEGORY.txt and benign/CATEGORY.txt, one raw payload per
// line) into HTTP requests, one per payload and placement. The WAF tests
// and bench/waf (which replays the same requests through nginx +
// ModSecurity) share it, so both measure exactly the same traffic.
package wafcorpus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Placements are where a payload is put in a request.
var Placements = []string{"query", "path", "header", "cookie", "json", "form", "multipart", "xml"}

// Case is one payload in one placement.
type Case struct {
	Attack    bool   // from attack/, else benign/
	Category  string // file name without .txt
	Placement string
	Payload   string
}

// Host is the Host of every corpus request.
const Host = "app.example.test"

// Load reads dir/attack/*.txt and dir/benign/*.txt.
func Load(dir string) ([]Case, error) {
	var out []Case
	for _, kind := range []string{"attack", "benign"} {
		files, err := filepath.Glob(filepath.Join(dir, kind, "*.txt"))
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, f := range files {
			ps, err := readPayloads(f)
			if err != nil {
				return nil, err
			}
			cat := strings.TrimSuffix(filepath.Base(f), ".txt")
			for _, p := range ps {
				for _, pl := range Placements {
					out = append(out, Case{Attack: kind == "attack", Category: cat, Placement: pl, Payload: p})
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no corpus in %s", dir)
	}
	return out, nil
}

func readPayloads(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// Request builds the case's request against base ("http://127.0.0.1:8080"),
// with a browser's headers so that only the payload can be scored.
func (c Case) Request(base string) (*http.Request, error) {
	method, target := http.MethodGet, "/app/search?lang=en"
	var body io.Reader
	ct := ""
	hdr := http.Header{}
	switch c.Placement {
	case "query":
		target = "/app/search?lang=en&q=" + url.QueryEscape(c.Payload)
	case "path":
		// A middle segment, as REST ids are (/users/{id}/orders).
		target = "/app/items/" + url.PathEscape(c.Payload) + "/view"
	case "header":
		hdr.Set("Referer", c.Payload)
	case "cookie":
		hdr.Set("Cookie", "session=8f14e45fceea167a; pref="+url.QueryEscape(c.Payload))
	case "json":
		b, _ := json.Marshal(map[string]any{"id": 42, "comment": c.Payload})
		method, ct, body = http.MethodPost, "application/json", bytes.NewReader(b)
	case "form":
		method, ct = http.MethodPost, "application/x-www-form-urlencoded"
		body = strings.NewReader("id=42&comment=" + url.QueryEscape(c.Payload))
	case "multipart":
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		_ = mw.WriteField("id", "42")
		_ = mw.WriteField("comment", c.Payload)
		_ = mw.Close()
		method, ct, body = http.MethodPost, mw.FormDataContentType(), &b
	case "xml":
		var b bytes.Buffer
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><request><id>42</id><comment>`)
		_ = xml.EscapeText(&b, []byte(c.Payload))
		b.WriteString("</comment></request>")
		method, ct, body = http.MethodPost, "application/xml", &b
	default:
		return nil, fmt.Errorf("unknown placement %q", c.Placement)
	}
	if method == http.MethodPost {
		target = "/app/submit"
	}
	r, err := http.NewRequest(method, base+target, body)
	if err != nil {
		return nil, err
	}
	r.Host = Host
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.7")
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	for k, v := range hdr {
		r.Header[k] = v
	}
	return r, nil
}

// Tally counts verdicts per category (and placement).
type Tally struct {
	Total, Blocked map[string]int
}

// NewTally returns an empty tally.
func NewTally() *Tally { return &Tally{Total: map[string]int{}, Blocked: map[string]int{}} }

// Add records one verdict under key.
func (t *Tally) Add(key string, blocked bool) {
	t.Total[key]++
	if blocked {
		t.Blocked[key]++
	}
}

// Rate is the share of key's requests that were blocked, in percent.
func (t *Tally) Rate(key string) float64 {
	if t.Total[key] == 0 {
		return 0
	}
	return 100 * float64(t.Blocked[key]) / float64(t.Total[key])
}

// Keys returns the tallied keys, sorted.
func (t *Tally) Keys() []string {
	out := make([]string, 0, len(t.Total))
	for k := range t.Total {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
