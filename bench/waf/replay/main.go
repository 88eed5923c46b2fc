// Command replay sends the WAF corpus (internal/waf/testdata/corpus) to an
// HTTP server and reports detection per attack category and false
// positives per benign category: a request counts as blocked when the
// answer is not 200. With -backend it is instead the backend those
// servers proxy to, answering 200 to everything. bench/waf/run.sh uses it
// to compare Rampart with nginx + ModSecurity on identical requests.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/rampart-proxy/rampart/internal/waf/wafcorpus"
)

func main() {
	corpus := flag.String("corpus", "internal/waf/testdata/corpus", "corpus directory")
	target := flag.String("target", "", "base URL to test, e.g. http://127.0.0.1:18082")
	backend := flag.String("backend", "", "serve as the 200-everything backend on this address instead")
	flag.Parse()
	if *backend != "" {
		err := http.ListenAndServe(*backend, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "ok\n")
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cases, err := wafcorpus.Load(*corpus)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	t := wafcorpus.NewTally()
	errs := 0
	for _, k := range cases {
		r, err := k.Request(*target)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		blocked := true
		if resp, err := c.Do(r); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			blocked = resp.StatusCode != http.StatusOK
		} else {
			errs++ // a connection cut counts as blocked, and is reported
		}
		kind := "benign"
		if k.Attack {
			kind = "attack"
		}
		t.Add(kind+"/"+k.Category, blocked)
	}
	out := map[string][2]int{}
	for _, k := range t.Keys() {
		out[k] = [2]int{t.Blocked[k], t.Total[k]}
	}
	if errs > 0 {
		fmt.Fprintf(os.Stderr, "replay: %d requests to %s failed without an answer\n", errs, *target)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
