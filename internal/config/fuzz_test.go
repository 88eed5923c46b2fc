package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that no input takes the loader down or hangs it, and
// that every answer keeps the contract: a config and no error, or no
// config and Problems that each point at a line and say something.
func FuzzParse(f *testing.F) {
	quickstart, err := os.ReadFile(filepath.Join("..", "..", "examples", "quickstart.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(quickstart)
	f.Add([]byte(valid))
	for _, s := range []string{
		"",
		"---\n",
		"- a\n",
		"listeners: public\n",
		"loging: {}\n",
		valid + "admin: {listen: 0.0.0.0:9090}\n",
		valid + "shutdown_timeout: 10x\n",
		valid + "shutdown_timeout: -5s\n",
		valid + "data_dir: again\ndata_dir: twice\n",
		valid + "---\npools: []\n",
		valid + "logging: {access_log: {path: no/such/dir/a.log}}\n",
		strings.Replace(valid, "127.0.0.1:9001", "127.0.0.1:70000", 1),
		strings.Replace(valid, "pool: web", "pool: nope", 1),
		strings.Replace(valid, "path_prefix: /", "path_prefix: x, host: '*.*.a'", 1),
		strings.Replace(valid, "listen: \":8080\"", "listen: \":8080\", trusted_proxies: [10.0.0.0/33]", 1),
		strings.Replace(valid, "    backends:", "    algorithm: consistent_hash\n    hash_key: 'header:'\n    health_check: {interval: 1s, timeout: 5s, path: x}\n    backends:", 1),
		"listeners:\n  - {name: a, listen: \":1\"}\nroutes\n",
		"pools: [{name: x, backends: [\n",
		"a: &a [*a]\n",
		"pools: &p\n  - name: x\n    backends: *p\n",
		"a: &a [x,x,x]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n",
		"a: 'unterminated\n",
		"\tlisteners: []\n",
		"<<: {listeners: [{name: a}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		type result struct {
			cfg *Config
			err error
		}
		done := make(chan result, 1)
		go func() {
			cfg, err := Parse("fuzz.yaml", data)
			done <- result{cfg, err}
		}()
		var cfg *Config
		var err error
		select {
		case r := <-done:
			cfg, err = r.cfg, r.err
		case <-time.After(10 * time.Second):
			t.Fatalf("Parse(%q) did not return within 10s", data)
		}
		if err == nil && cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		checkParseResult(t, cfg, err)
		if err != nil {
			for _, p := range err.(Problems) {
				if p.File != "fuzz.yaml" {
					t.Fatalf("problem names file %q: %v", p.File, p)
				}
			}
		}
	})
}
