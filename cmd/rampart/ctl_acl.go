package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const ctlACLUsage = `usage: rampart ctl block|allow <command>

  block add     --ip IP | --cidr CIDR [--reason TEXT] [--severity low|medium|high|critical]
                [--ttl 24h | --expires RFC3339] [--allow-broad]
  block list    [--source S] [--reason TEXT] [--contains IP] [--limit N] [--cursor C]
  block remove  IP|CIDR
  allow add|list|remove                       the same for the dynamic allowlist
`

// acl runs "ctl block ..." (the dynamic blocklist) and "ctl allow ..."
// over /api/v1/acls/{blocklist,allowlist}.
func (c *ctlClient) acl(list string, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.errw, ctlACLUsage)
		return 2
	}
	verb := args[0]
	base := "/api/v1/acls/" + list
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(c.errw)
	fs.Usage = func() { fmt.Fprint(c.errw, ctlACLUsage) }
	switch verb {
	case "add":
		ip := fs.String("ip", "", "address to list")
		cidr := fs.String("cidr", "", "prefix to list")
		reason := fs.String("reason", "", "why (kept in the entry and the audit trail)")
		severity := fs.String("severity", "", "low, medium (default), high or critical")
		ttl := fs.Duration("ttl", 0, "lifetime (default: the config's manual_default_ttl)")
		expires := fs.String("expires", "", "expiry time, RFC 3339 (instead of --ttl)")
		broad := fs.Bool("allow-broad", false, "permit a prefix broader than /8 (IPv4) or /16 (IPv6)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		body := map[string]any{"source": "ctl"}
		for k, v := range map[string]string{"ip": *ip, "cidr": *cidr, "reason": *reason, "severity": *severity} {
			if v != "" {
				body[k] = v
			}
		}
		if *broad {
			body["allow_broad"] = true
		}
		switch {
		case *ttl > 0 && *expires != "":
			fmt.Fprintln(c.errw, "rampart ctl: give --ttl or --expires, not both")
			return 2
		case *ttl > 0:
			body["expires_at"] = time.Now().Add(*ttl).UTC().Format(time.RFC3339)
		case *expires != "":
			body["expires_at"] = *expires
		}
		data, _ := json.Marshal(body)
		return c.do(http.MethodPost, base, data)
	case "list":
		q := url.Values{}
		for _, k := range []string{"source", "reason", "contains", "limit", "cursor"} {
			fs.String(k, "", k+" filter")
		}
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		fs.Visit(func(f *flag.Flag) { q.Set(f.Name, f.Value.String()) })
		path := base
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		return c.do(http.MethodGet, path, nil)
	case "remove":
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() != 1 {
			fmt.Fprintf(c.errw, "rampart ctl %s remove: give one IP or CIDR\n", strings.TrimSuffix(list, "list"))
			return 2
		}
		return c.do(http.MethodDelete, base+"/"+url.PathEscape(fs.Arg(0)), nil)
	}
	fmt.Fprint(c.errw, ctlACLUsage)
	return 2
}
