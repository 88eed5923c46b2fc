package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

// Authentication and authorisation of admin API callers.
//
// Every request goes through ServeHTTP, which decides in this order:
//
//  1. The caller's address is blocked by the failure limiter: 429 with
//     Retry-After, whatever credentials it sends.
//  2. admin.tls is set but the connection is plain (it was accepted
//     before a reload turned TLS on): 403.
//  3. An Authorization header is present: it must be "Bearer <token>"
//     whose SHA-256 equals a configured hash (compared in constant time
//     against every configured hash). The caller is the token's name,
//     with the token's role (auth_method "token"). Anything else, even
//     beside a valid client certificate, is an authentication failure:
//     401, counted by the limiter and reported to OnAuthFailure.
//  4. A client certificate that verifies against admin.tls.client_ca_file
//     (checked again on every request, so a reload that changes the CA
//     applies to open connections too): the caller is the certificate's
//     CN (or first SAN), with admin.tls.client_role (auth_method "mtls").
//  5. Tokens or mTLS are configured but the request has neither: 401 with
//     WWW-Authenticate: Bearer (403 when only mTLS is configured, since no
//     header can fix it). Not counted as a failure: nothing was guessed.
//  6. Nothing is configured: the listener is loopback (config validation
//     refuses anything else), and a loopback caller that addresses it by
//     a loopback name (DNS rebinding) is an admin (auth_method
//     "loopback"); any other caller gets 403.
//
// Before all of it, a mutating call a browser makes from another site
// (Sec-Fetch-Site, Origin: net/http's CrossOriginProtection) is refused.
//
// Then the route's least role (the routes table) is compared with the
// caller's: 403 when it is lower. The caller travels in the request
// context to the handlers, which record it as the audit actor.
//
// A presented token is never logged, echoed or recorded.

// Role is what a caller may do; each role may do everything the roles
// below it may.
type Role int

// Roles, least privileged first.
const (
	RoleNone Role = iota
	RoleViewer
	RoleOperator
	RoleAdmin
)

var roleNames = [...]string{"none", "viewer", "operator", "admin"}

func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return "invalid"
	}
	return roleNames[r]
}

// ParseRole returns the role named s (config.AdminRoles), or RoleNone.
func ParseRole(s string) Role {
	for i, n := range roleNames {
		if i > 0 && n == s {
			return Role(i)
		}
	}
	return RoleNone
}

// Options configure how callers are authenticated.
type Options struct {
	// Config returns the admin section in force. It is called for every
	// request and every accepted connection, so a reload that changes
	// tokens, roles, limits or TLS material applies to the next request
	// (TLS: the next connection). Nil means no authentication: only
	// loopback callers are accepted, as admins.
	Config func() *config.Admin
	// OnAuthFailure, when set, is called with the caller's address after
	// every failed authentication (a wrong, malformed or unexpected
	// token). The access-control issue wires it to the offender API, so
	// that repeated failures can lead to a block at accept time; the admin
	// API's own limiter works without it. It is called on the request's
	// goroutine and must not block.
	OnAuthFailure func(ip netip.Addr)
	// Now is the failure limiter's clock; nil means time.Now.
	Now func() time.Time
}

// principal is an authenticated caller.
type principal struct {
	actor audit.Actor
	role  Role
}

type principalKey struct{}

// authState is what authentication needs from one admin config, built
// once per config (a reload makes a new one).
type authState struct {
	src        *config.Admin
	tokens     verifier
	tls        *tls.Config // nil: plain HTTP
	clientCAs  *x509.CertPool
	clientRole Role
	limits     limits
	// err, when set, makes every request fail (503) and every connection
	// close: the config could not be turned into working settings.
	err error
}

func buildAuthState(src *config.Admin) *authState {
	st := &authState{src: src, limits: limits{
		max:    config.DefaultAuthFailuresMax,
		window: config.DefaultAuthFailuresWindow,
		block:  config.DefaultAuthFailuresBlock,
	}}
	if src == nil {
		return st
	}
	if f := src.AuthFailures; f.Max > 0 {
		st.limits.max = f.Max
	}
	if w := src.AuthFailures.Window.D(); w > 0 {
		st.limits.window = w
	}
	if b := src.AuthFailures.Block.D(); b > 0 {
		st.limits.block = b
	}
	for _, t := range src.Tokens {
		sum, err := hex.DecodeString(t.SHA256)
		role := ParseRole(t.Role)
		if err != nil || len(sum) != sha256.Size || role == RoleNone || t.Name == "" {
			// Validation refuses this; fail closed if it got here anyway.
			st.err = fmt.Errorf("admin token %q is invalid (sha256 or role)", t.Name)
			return st
		}
		st.tokens = append(st.tokens, tokenEntry{name: t.Name, sum: [sha256.Size]byte(sum), role: role})
	}
	if t := src.TLS; t != nil {
		cert := t.Certificate()
		if cert == nil {
			st.err = errors.New("admin.tls: the certificate was not loaded (the config was not validated)")
			return st
		}
		st.tls = &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			NextProtos:   []string{"http/1.1"},
		}
		if t.ClientCAFile != "" {
			st.clientCAs = t.ClientCAs()
			st.clientRole = ParseRole(t.ClientRole)
			if t.ClientRole == "" {
				st.clientRole = RoleAdmin
			}
			if st.clientCAs == nil || st.clientRole == RoleNone {
				st.err = errors.New("admin.tls: the client CA bundle was not loaded or client_role is invalid")
				return st
			}
			st.tls.ClientAuth = tls.RequireAndVerifyClientCert
			st.tls.ClientCAs = st.clientCAs
		}
	}
	return st
}

// auth returns the state for the admin config in force.
func (a *API) auth() *authState {
	var src *config.Admin
	if a.opts.Config != nil {
		src = a.opts.Config()
	}
	if st := a.state.Load(); st != nil && st.src == src {
		return st
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if st := a.state.Load(); st != nil && st.src == src {
		return st
	}
	st := buildAuthState(src)
	if st.err != nil {
		a.log.Error("admin API: refusing every request until the admin config is fixed", "error", st.err.Error())
	}
	a.state.Store(st)
	return st
}

// tokenEntry is one configured token.
type tokenEntry struct {
	name string
	sum  [sha256.Size]byte
	role Role
}

// verifier holds the configured token hashes.
type verifier []tokenEntry

// compare is subtle.ConstantTimeCompare; a variable only so that a test
// can check that every configured hash is compared on every call.
var compare = subtle.ConstantTimeCompare

// verify hashes presented and compares the hash with every configured
// one, in constant time and without stopping at a match, so that the time
// taken says nothing about which hash (or which prefix) matched.
func (v verifier) verify(presented string) (tokenEntry, bool) {
	sum := sha256.Sum256([]byte(presented))
	found, idx := 0, 0
	for i := range v {
		eq := compare(sum[:], v[i].sum[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return tokenEntry{}, false
	}
	return v[idx], true
}

// authenticate identifies the caller, or answers the request itself and
// returns false.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (principal, bool) {
	st := a.auth()
	if st.err != nil {
		problem(w, http.StatusServiceUnavailable, "admin API misconfigured", "the admin API refuses every request until its configuration is fixed; see the server log")
		return principal{}, false
	}
	ipText := clientIP(r)
	ip, _ := netip.ParseAddr(ipText)
	ip = ip.Unmap()
	// A blocked address is refused unless it proves who it is: the block
	// stops guessing, and must not let a neighbour on the same address
	// (everyone on loopback) lock operators out during an incident.
	wait, blocked := a.limiter.blocked(ip)
	refuse := func(why string) {
		if blocked {
			tooManyFailures(w, wait)
			return
		}
		a.authFailed(w, ip, st, why)
	}
	if st.tls != nil && r.TLS == nil {
		problem(w, http.StatusForbidden, "TLS required", "the admin API is served over TLS; reconnect with https")
		return principal{}, false
	}
	actor := audit.Actor{Type: "api", IP: ipText}
	if hdr := r.Header.Values("Authorization"); len(hdr) > 0 {
		tok, ok := bearer(hdr)
		if !ok {
			refuse("the Authorization header is not one \"Bearer <token>\"")
			return principal{}, false
		}
		if len(st.tokens) == 0 {
			refuse("this admin API has no tokens configured; do not send one")
			return principal{}, false
		}
		e, ok := st.tokens.verify(tok)
		if !ok {
			refuse("the bearer token is not valid")
			return principal{}, false
		}
		actor.ID, actor.AuthMethod = e.name, "token"
		return principal{actor: actor, role: e.role}, true
	}
	if name, ok := st.clientIdentity(r.TLS); ok {
		actor.ID, actor.AuthMethod = name, "mtls"
		return principal{actor: actor, role: st.clientRole}, true
	}
	if blocked {
		tooManyFailures(w, wait)
		return principal{}, false
	}
	switch {
	case len(st.tokens) > 0:
		w.Header().Set("WWW-Authenticate", `Bearer realm="rampart-admin"`)
		problem(w, http.StatusUnauthorized, "authentication required",
			"this admin API requires a bearer token: send Authorization: Bearer <token> (rampart ctl --token-file FILE, or $RAMPART_ADMIN_TOKEN)")
		return principal{}, false
	case st.clientCAs != nil:
		problem(w, http.StatusForbidden, "client certificate required",
			"this admin API requires a client certificate issued by its admin.tls.client_ca_file (rampart ctl --cert FILE --key FILE)")
		return principal{}, false
	case !ip.IsLoopback():
		problem(w, http.StatusForbidden, "loopback only",
			"this admin API has no authentication configured and answers loopback callers only")
		return principal{}, false
	case !loopbackName(r.Host):
		problem(w, http.StatusForbidden, "loopback name only",
			"this admin API has no authentication configured and answers requests addressed to localhost, 127.0.0.1 or [::1] only")
		return principal{}, false
	}
	actor.AuthMethod = "loopback"
	return principal{actor: actor, role: RoleAdmin}, true
}

// loopbackName reports whether a request's Host names loopback. A web page
// can reach a loopback admin API through DNS rebinding (a name of its own
// that now resolves to 127.0.0.1): the browser then sends that name, and
// the page can read the answers, which are same-origin to it.
func loopbackName(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// bearer extracts the token from the Authorization header values.
func bearer(hdr []string) (string, bool) {
	if len(hdr) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(hdr[0], " ")
	tok = strings.TrimLeft(tok, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// authFailed counts a failed authentication and answers it: 401, or 429
// when this failure starts a block. why goes to the caller; it never
// contains what the caller sent.
func (a *API) authFailed(w http.ResponseWriter, ip netip.Addr, st *authState, why string) {
	wait, blocked, started := a.limiter.fail(ip, st.limits)
	a.log.Info("admin API authentication failed", "client_ip", ip.String(), "reason", why)
	if started {
		a.log.Warn("admin API: too many authentication failures, address blocked", "client_ip", ip.String(),
			"failures", st.limits.max, "window", st.limits.window.String(), "block", wait.String())
	}
	if a.opts.OnAuthFailure != nil && ip.IsValid() {
		a.opts.OnAuthFailure(ip)
	}
	if blocked {
		tooManyFailures(w, wait)
		return
	}
	if len(st.tokens) > 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rampart-admin", error="invalid_token"`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rampart-admin"`)
	}
	problem(w, http.StatusUnauthorized, "authentication failed", why)
}

func tooManyFailures(w http.ResponseWriter, wait time.Duration) {
	secs := int64(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	problem(w, http.StatusTooManyRequests, "too many authentication failures",
		fmt.Sprintf("too many failed authentications from this address; for %d more seconds it is refused unless it presents valid credentials", secs))
}

// clientIdentity returns the name of a client certificate that verifies
// against the CA bundle in force.
func (st *authState) clientIdentity(cs *tls.ConnectionState) (string, bool) {
	if st.clientCAs == nil || cs == nil || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: st.clientCAs, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return "", false
	}
	return certName(leaf), true
}

// certName names a certificate's subject: its CN, else its first SAN,
// else its fingerprint.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return clip(c.Subject.CommonName)
	case len(c.DNSNames) > 0:
		return clip(c.DNSNames[0])
	case len(c.EmailAddresses) > 0:
		return clip(c.EmailAddresses[0])
	case len(c.URIs) > 0:
		return clip(c.URIs[0].String())
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Listener wraps the admin listener's socket: each accepted connection is
// served with the TLS settings in force when it is accepted (plain when
// admin.tls is not set).
func (a *API) Listener(ln net.Listener) net.Listener { return &adminListener{Listener: ln, api: a} }

type adminListener struct {
	net.Listener
	api *API
}

func (l *adminListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		st := l.api.auth()
		switch {
		case st.err != nil:
			c.Close()
			continue
		case st.tls != nil:
			return tls.Server(c, st.tls), nil
		}
		return c, nil
	}
}

// withPrincipal returns ctx carrying the caller.
func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}
