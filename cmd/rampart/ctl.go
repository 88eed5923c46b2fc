package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

const ctlUsage = `usage: rampart ctl [--admin URL] [--token-file FILE] [--cacert FILE] [--cert FILE --key FILE] <command>

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
  token hash  < TOKEN_FILE      print the SHA-256 of the token on stdin, for admin.tokens[].sha256
  token new   > TOKEN_FILE      print a new random token; its SHA-256 goes to stderr

--admin defaults to $RAMPART_ADMIN or http://127.0.0.1:9090.
The bearer token comes from --token-file, --token or $RAMPART_ADMIN_TOKEN (in that
order; --token shows the token to other users in the process list). A token is only
sent over https, or over http to a loopback address.
--cacert verifies the admin API's certificate; --cert and --key present a client
certificate (mTLS).
`

// stdin is what `ctl token hash` reads (a variable for tests).
var stdin io.Reader = os.Stdin

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
	token := fs.String("token", "", "bearer token (prefer --token-file or $RAMPART_ADMIN_TOKEN)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token")
	caCert := fs.String("cacert", "", "CA bundle (PEM) that verifies the admin API's certificate")
	cert := fs.String("cert", "", "client certificate (PEM) for mTLS")
	key := fs.String("key", "", "client certificate's private key (PEM)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	if rest[0] == "token" {
		return ctlToken(rest[1:], stdout, stderr)
	}
	c := &ctlClient{base: strings.TrimRight(*adminURL, "/"), out: stdout, errw: stderr}
	if err := c.setup(*token, *tokenFile, *caCert, *cert, *key); err != nil {
		fmt.Fprintf(stderr, "rampart ctl: %v\n", err)
		return 2
	}
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

// setup prepares the HTTP client: the token to send, the CA to trust
// and the client certificate to present.
func (c *ctlClient) setup(token, tokenFile, caCert, cert, key string) error {
	u, err := url.Parse(c.base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--admin %q is not an http:// or https:// URL", c.base)
	}
	switch {
	case tokenFile != "":
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %v", err)
		}
		token = string(data)
	case token == "":
		token = os.Getenv("RAMPART_ADMIN_TOKEN")
	}
	if token != "" {
		t, err := cleanToken(token)
		if err != nil {
			return err
		}
		if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
			return fmt.Errorf("refusing to send a token in clear to %s: use an https:// admin URL", u.Host)
		}
		c.token = t
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caCert != "" || cert != "" || key != "" {
		if u.Scheme != "https" {
			return errors.New("--cacert, --cert and --key need an https:// admin URL")
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if caCert != "" {
			pem, err := os.ReadFile(caCert)
			if err != nil {
				return fmt.Errorf("--cacert: %v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--cacert %s holds no PEM certificate", caCert)
			}
		}
		if (cert == "") != (key == "") {
			return errors.New("--cert and --key go together")
		}
		if cert != "" {
			kp, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return fmt.Errorf("--cert/--key: %v", err)
			}
			tc.Certificates = []tls.Certificate{kp}
		}
		tr.TLSClientConfig = tc
	}
	c.http = &http.Client{Timeout: 2 * time.Hour, Transport: tr}
	return nil
}

// cleanToken trims surrounding white space (a file's final newline) and
// checks what is left can be sent in a header.
func cleanToken(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("the token is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return "", errors.New("the token must be printable ASCII without spaces")
		}
	}
	return s, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

type ctlClient struct {
	base      string
	token     string // sent as Authorization: Bearer; never printed
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
	if *wait && verb != "drain" && verb != "deregister" {
		// A quarantine takes effect before its answer: nothing to wait for.
		fmt.Fprintf(c.errw, "rampart ctl backend %s: --wait applies to drain and deregister only\n", verb)
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
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
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
	var answer struct {
		Cut     int64  `json:"cut_at_drain_timeout"`
		Warning string `json:"warning"`
	}
	// Consequences the operator may not expect go where a script's
	// operator looks, without failing the command.
	if json.Unmarshal(data, &answer) == nil && answer.Cut > 0 {
		// A drain waited for ended by cutting requests.
		fmt.Fprintf(c.errw, "rampart ctl: warning: %d in-flight request(s) were cut at the pool's drain_timeout\n", answer.Cut)
	}
	if answer.Warning != "" {
		fmt.Fprintf(c.errw, "rampart ctl: warning: %s\n", answer.Warning)
	}
	return 0
}
