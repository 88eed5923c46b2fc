package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const ctlUsage = `usage: rampart ctl [--admin URL] <command>

  backend list        [--pool P]
  backend register    --pool P --backend ID --address HOST:PORT [--weight N]
  backend deregister  --pool P --backend ID [--wait]    drain, then remove from the pool
  backend drain       --pool P --backend ID [--wait]    no new requests; in-flight ones finish
  backend quarantine  --pool P --backend ID             out of rotation now, in-flight requests cut
  backend restore     --pool P --backend ID             back into rotation
  block add|list|remove  ...                            the dynamic blocklist (rampart ctl block for details)
  allow add|list|remove  ...                            the dynamic allowlist
  reload                                                re-read the config file
  status

--admin defaults to $RAMPART_ADMIN or http://127.0.0.1:9090.
`

// cmdCtl is the CLI over the admin API, modelled on
// `aws elb deregister-instances-from-load-balancer`.
func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
	def := os.Getenv("RAMPART_ADMIN")
	if def == "" {
		def = "http://127.0.0.1:9090"
	}
	adminURL := fs.String("admin", def, "admin API base URL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	c := &ctlClient{base: strings.TrimRight(*adminURL, "/"), out: stdout, errw: stderr,
		http: &http.Client{Timeout: 2 * time.Hour}}
	switch rest[0] {
	case "status":
		return c.do(http.MethodGet, "/api/v1/status", nil)
	case "reload":
		return c.do(http.MethodPost, "/api/v1/config/reload", nil)
	case "backend":
		return c.backend(rest[1:])
	case "block":
		return c.acl("blocklist", rest[1:])
	case "allow":
		return c.acl("allowlist", rest[1:])
	}
	fs.Usage()
	return 2
}

type ctlClient struct {
	base      string
	out, errw io.Writer
	http      *http.Client
}

func (c *ctlClient) backend(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.errw, ctlUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("backend "+verb, flag.ContinueOnError)
	fs.SetOutput(c.errw)
	pool := fs.String("pool", "", "pool name")
	id := fs.String("backend", "", "backend id")
	address := fs.String("address", "", "backend host:port (register)")
	weight := fs.Int("weight", 1, "backend weight (register)")
	wait := fs.Bool("wait", false, "wait until the drain is complete")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	need := func(names ...string) bool {
		for _, n := range names {
			if fs.Lookup(n).Value.String() == "" {
				fmt.Fprintf(c.errw, "rampart ctl backend %s: --%s is required\n", verb, n)
				return false
			}
		}
		return true
	}
	bpath := func(suffix string) string {
		p := "/api/v1/pools/" + url.PathEscape(*pool) + "/backends/" + url.PathEscape(*id) + suffix
		if *wait {
			p += "?wait=true"
		}
		return p
	}
	switch verb {
	case "list":
		if *pool != "" {
			return c.do(http.MethodGet, "/api/v1/pools/"+url.PathEscape(*pool), nil)
		}
		return c.do(http.MethodGet, "/api/v1/pools", nil)
	case "register":
		if !need("pool", "backend", "address") {
			return 2
		}
		body, _ := json.Marshal(map[string]any{"id": *id, "address": *address, "weight": *weight})
		return c.do(http.MethodPost, "/api/v1/pools/"+url.PathEscape(*pool)+"/backends", body)
	case "deregister":
		if !need("pool", "backend") {
			return 2
		}
		return c.do(http.MethodDelete, bpath(""), nil)
	case "drain", "quarantine", "restore":
		if !need("pool", "backend") {
			return 2
		}
		return c.do(http.MethodPost, bpath("/"+verb), nil)
	}
	fmt.Fprint(c.errw, ctlUsage)
	return 2
}

// do sends one request and prints the JSON answer; a problem document is
// printed to stderr and turns into exit status 1.
func (c *ctlClient) do(method, path string, body []byte) int {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(c.errw, "rampart ctl: %v\n", err)
		return 1
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		fmt.Fprintf(c.errw, "rampart ctl: cannot reach the admin API at %s: %v\n", c.base, err)
		return 1
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var p struct {
			Title    string   `json:"title"`
			Detail   string   `json:"detail"`
			Problems []string `json:"problems"`
		}
		if json.Unmarshal(data, &p) == nil && p.Title != "" {
			fmt.Fprintf(c.errw, "rampart ctl: %s (HTTP %d): %s\n", p.Title, resp.StatusCode, p.Detail)
		} else {
			fmt.Fprintf(c.errw, "rampart ctl: HTTP %d: %s\n", resp.StatusCode, bytes.TrimSpace(data))
		}
		return 1
	}
	if len(data) == 0 {
		fmt.Fprintf(c.out, "done (HTTP %d)\n", resp.StatusCode)
		return 0
	}
	c.out.Write(data)
	return 0
}
