package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Admin API authentication (DESIGN §3 admin, §4).
//
//	admin:
//	  listen: 127.0.0.1:9090
//	  tls: {cert_file: admin.pem, key_file: admin-key.pem, client_ca_file: ops-ca.pem, client_role: admin}
//	  tokens: [{name: ops, sha256: "<64 hex digits>", role: operator}]
//	  auth_failures: {max: 10, window: 1m, block: 5m}
//
// A loopback listener without tls.client_ca_file and without tokens keeps
// the historical behaviour: loopback callers are admins. Anything that
// makes the API reachable beyond loopback needs authentication, and
// tokens beyond loopback need TLS. Everything but listen applies on
// reload (tokens and limits from the next request, TLS from the next
// connection), so a leaked token is revoked by removing it and reloading.

// AdminRoles are the roles of admin API callers, least privileged first:
// viewer reads, operator also changes backends and reloads, admin may do
// everything.
var AdminRoles = []string{"viewer", "operator", "admin"}

// AdminTLS is the admin listener's certificate and, with ClientCAFile,
// the CA bundle client certificates must chain to (mTLS).
type AdminTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientRole is the role of every caller authenticated by a client
	// certificate (default admin; per-certificate roles are not
	// supported). A bearer token sent on an mTLS connection takes
	// precedence: the token's name and role apply.
	ClientRole string `yaml:"client_role"`

	// Loaded by validation, so that a file that does not parse is
	// reported at its line and the files are read once.
	cert      *tls.Certificate
	clientCAs *x509.CertPool
}

// Certificate returns the server certificate loaded from CertFile and
// KeyFile (nil until the config has been validated).
func (t *AdminTLS) Certificate() *tls.Certificate { return t.cert }

// ClientCAs returns the pool loaded from ClientCAFile (nil without one).
func (t *AdminTLS) ClientCAs() *x509.CertPool { return t.clientCAs }

// AdminToken is a bearer token, known only by its SHA-256: the token
// itself is never written to the config (`rampart ctl token hash` makes
// the hash from the token on stdin).
type AdminToken struct {
	// Name identifies the caller in the audit trail (actor.id).
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"` // 64 hex digits
	Role   string `yaml:"role"`   // viewer | operator | admin
}

// AuthFailures limits failed authentications per client address: after
// Max failures within Window (counted from the first), the address is
// answered 429 for Block, whatever it sends.
type AuthFailures struct {
	Max    int      `yaml:"max"`
	Window Duration `yaml:"window"`
	Block  Duration `yaml:"block"`
}

// Defaults of admin.auth_failures and admin.tls.client_role.
const (
	DefaultAuthFailuresMax    = 10
	DefaultAuthFailuresWindow = time.Minute
	DefaultAuthFailuresBlock  = 5 * time.Minute
	DefaultAdminClientRole    = "admin"
)

func (a *Admin) applyDefaults() {
	if a.Listen == "" {
		a.Listen = DefaultAdminListen
	}
	if a.TLS != nil && a.TLS.ClientCAFile != "" && a.TLS.ClientRole == "" {
		a.TLS.ClientRole = DefaultAdminClientRole
	}
	f := &a.AuthFailures
	zeroDefault(&f.Max, DefaultAuthFailuresMax)
	if f.Window == 0 {
		f.Window = Duration(DefaultAuthFailuresWindow)
	}
	if f.Block == 0 {
		f.Block = Duration(DefaultAuthFailuresBlock)
	}
}

// MTLS reports whether callers authenticate with client certificates.
func (a *Admin) MTLS() bool { return a.TLS != nil && a.TLS.ClientCAFile != "" }

// IsLoopbackHost reports whether host (of a listen address) is a loopback
// address or "localhost".
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (v *validator) admin() {
	a := &v.cfg.Admin
	host, err := checkHostPort(a.Listen, true, true)
	if err != nil {
		v.add("admin.listen", "admin.listen %q: %v", a.Listen, err)
	}
	v.adminTLS()
	v.adminTokens()
	v.authFailures()
	if err != nil || IsLoopbackHost(host) {
		return
	}
	switch {
	case !a.MTLS() && len(a.Tokens) == 0:
		v.add("admin.listen", "admin.listen %q is not a loopback address; beyond loopback the admin API needs authentication: configure admin.tls.client_ca_file (mTLS) or admin.tokens (with admin.tls), or listen on 127.0.0.1 or ::1", a.Listen)
	case len(a.Tokens) > 0 && a.TLS == nil:
		v.add("admin.tokens", "admin.listen %q is not a loopback address and admin.tls is not set: bearer tokens would cross the network in clear; configure admin.tls (cert_file, key_file)", a.Listen)
	}
}

func (v *validator) adminTLS() {
	t := v.cfg.Admin.TLS
	if t == nil {
		return
	}
	if t.CertFile == "" || t.KeyFile == "" {
		v.add("admin.tls", "admin.tls needs cert_file and key_file (the admin API's certificate and its private key, PEM)")
	} else {
		certPEM, cerr := readPEMFile(v.cfg.Resolve(t.CertFile))
		if cerr != nil {
			v.add("admin.tls.cert_file", "admin.tls.cert_file: %v", cerr)
		} else if cerr = checkCertPEM(certPEM); cerr != nil {
			v.add("admin.tls.cert_file", "admin.tls.cert_file %q: %v", t.CertFile, cerr)
		}
		keyPEM, kerr := readPEMFile(v.cfg.Resolve(t.KeyFile))
		if kerr != nil {
			v.add("admin.tls.key_file", "admin.tls.key_file: %v", kerr)
		}
		if cerr == nil && kerr == nil {
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				v.add("admin.tls.key_file", "admin.tls.key_file %q: %s", t.KeyFile, keyPairError(err))
			} else {
				t.cert = &cert
			}
		}
	}
	if t.ClientCAFile != "" {
		data, err := readPEMFile(v.cfg.Resolve(t.ClientCAFile))
		if err != nil {
			v.add("admin.tls.client_ca_file", "admin.tls.client_ca_file: %v", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data) {
				v.add("admin.tls.client_ca_file", "admin.tls.client_ca_file %q holds no PEM certificate (expected the CA bundle client certificates are issued by)", t.ClientCAFile)
			} else {
				t.clientCAs = pool
			}
		}
	}
	switch {
	case t.ClientRole == "":
	case t.ClientCAFile == "":
		v.add("admin.tls.client_role", "admin.tls.client_role is the role of client certificates: set admin.tls.client_ca_file too, or remove it")
	case !slices.Contains(AdminRoles, t.ClientRole):
		v.add("admin.tls.client_role", "admin.tls.client_role: unknown role %q (viewer, operator or admin)", t.ClientRole)
	}
}

// emptySHA256 is the SHA-256 of the empty string: a token nobody should
// be able to authenticate with.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func (v *validator) adminTokens() {
	names := map[string]bool{}
	hashes := map[string]string{}
	for i, t := range v.cfg.Admin.Tokens {
		p := fmt.Sprintf("admin.tokens[%d]", i)
		switch {
		case t.Name == "":
			v.add(p, "admin token has no name (it names the caller in the audit trail)")
		case !tokenNameRE.MatchString(t.Name):
			v.add(p+".name", "admin token name %q: use 1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit", t.Name)
		case names[t.Name]:
			v.add(p+".name", "duplicate admin token name %q", t.Name)
		}
		names[t.Name] = true
		h := strings.ToLower(t.SHA256)
		switch {
		case t.SHA256 == "":
			v.add(p, "admin token %q has no sha256 (make it with: rampart ctl token hash < TOKEN_FILE)", t.Name)
		case len(h) != 64 || !isHex(h):
			v.add(p+".sha256", "admin token %q: sha256 must be 64 hex digits: the SHA-256 of the token, never the token itself (make it with: rampart ctl token hash < TOKEN_FILE)", t.Name)
		case h == emptySHA256:
			v.add(p+".sha256", "admin token %q: sha256 is the hash of an empty token", t.Name)
		case hashes[h] != "":
			v.add(p+".sha256", "admin token %q has the same sha256 as token %q: every token must be different", t.Name, hashes[h])
		default:
			hashes[h] = t.Name
		}
		switch {
		case t.Role == "":
			v.add(p, "admin token %q has no role (viewer, operator or admin)", t.Name)
		case !slices.Contains(AdminRoles, t.Role):
			v.add(p+".role", "admin token %q: unknown role %q (viewer, operator or admin)", t.Name, t.Role)
		}
	}
}

func (v *validator) authFailures() {
	f := v.cfg.Admin.AuthFailures
	if f.Max < 1 {
		v.add("admin.auth_failures.max", "admin.auth_failures.max must be 1 or more (default %d)", DefaultAuthFailuresMax)
	}
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// maxPEMFile bounds what is read from a TLS file: certificates and keys
// are a few KiB, CA bundles a few hundred.
const maxPEMFile = 4 << 20

// readPEMFile reads a regular file of at most maxPEMFile bytes (never a
// device or a FIFO, which could block the loader: checked before opening,
// since opening a FIFO blocks too).
func readPEMFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %q: %v", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %v", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %v", path, err)
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%q is larger than %d MiB; it is not a PEM certificate or key", path, maxPEMFile>>20)
	}
	return data, nil
}

// checkCertPEM checks that data starts a chain with a parseable
// certificate, so that a bad certificate file is not blamed on the key.
func checkCertPEM(data []byte) error {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return errors.New("holds no PEM CERTIFICATE block")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate does not parse: %v", err)
		}
		return nil
	}
}

func keyPairError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "tls: ")
	if strings.Contains(msg, "does not match") {
		return "the private key does not match the certificate in cert_file"
	}
	return msg
}
