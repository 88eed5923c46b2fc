package config

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Validation of listeners[].tls, listeners[].sni_routing and
// redirect_to_https, and the names (versions, cipher suites, curves) the
// TLS policy is written with. The certificate files are read here so that
// a missing file, a key that does not match or an expired certificate is
// reported at its line; internal/tlsterm reads them again (and watches
// them) when it serves them.

// TLSVersion returns the version named by min_version or max_version.
// TLS 1.0 and 1.1 are refused: they lack AEAD suites and rely on SHA-1.
func TLSVersion(name string) (uint16, error) {
	switch name {
	case "TLSv1.2":
		return tls.VersionTLS12, nil
	case "TLSv1.3":
		return tls.VersionTLS13, nil
	case "TLSv1.0", "TLSv1", "TLSv1.1":
		return 0, fmt.Errorf("%s is refused: TLS 1.0 and 1.1 are broken (use TLSv1.2 or TLSv1.3)", name)
	}
	return 0, fmt.Errorf("%q is not a TLS version (use TLSv1.2 or TLSv1.3)", name)
}

// cipherSuite is a suite Rampart accepts: ECDHE key exchange (forward
// secrecy) with an AEAD cipher, or one of the TLS 1.3 suites.
type cipherSuite struct {
	iana, openssl string
	id            uint16
}

var acceptedSuites = []cipherSuite{
	{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
	{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384", tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	{"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305", tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
	// TLS 1.3: OpenSSL uses the IANA names.
	{"TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", tls.TLS_AES_128_GCM_SHA256},
	{"TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", tls.TLS_AES_256_GCM_SHA384},
	{"TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", tls.TLS_CHACHA20_POLY1305_SHA256},
}

// TLS12Suites returns the TLS 1.2 suites Rampart accepts (ECDHE with
// AEAD), in order of preference: the listeners' suites when cipher_suites
// is not set. Go's own defaults still include the CBC suites, which
// cipher_suites refuses by name.
func TLS12Suites() []uint16 {
	var ids []uint16
	for _, s := range acceptedSuites {
		if !IsTLS13Suite(s.id) {
			ids = append(ids, s.id)
		}
	}
	return ids
}

// IsTLS13Suite reports whether id is a TLS 1.3 suite. Go always offers
// all three TLS 1.3 suites and picks among them itself, so naming them in
// cipher_suites is accepted but changes nothing.
func IsTLS13Suite(id uint16) bool {
	return id == tls.TLS_AES_128_GCM_SHA256 || id == tls.TLS_AES_256_GCM_SHA384 || id == tls.TLS_CHACHA20_POLY1305_SHA256
}

// CipherSuite returns the suite named by an IANA or OpenSSL name. A name
// of a weak suite is an error that says why it is weak.
func CipherSuite(name string) (uint16, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	for _, s := range acceptedSuites {
		if n == s.iana || n == s.openssl {
			return s.id, nil
		}
	}
	if why := weakSuite(n); why != "" {
		return 0, fmt.Errorf("cipher suite %q is refused: %s; use ECDHE with AES-GCM or ChaCha20-Poly1305 (e.g. ECDHE-ECDSA-AES128-GCM-SHA256)", name, why)
	}
	return 0, fmt.Errorf("unknown cipher suite %q (use an IANA name such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 or an OpenSSL name such as ECDHE-ECDSA-AES128-GCM-SHA256)", name)
}

// weakSuite says why the (upper-cased) suite name n is weak, or "" when
// it does not look like a suite Rampart knows to refuse.
func weakSuite(n string) string {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(n, s) {
				return true
			}
		}
		return false
	}
	openSSL := strings.Contains(n, "-") && !strings.Contains(n, "_")
	aead := has("GCM", "CHACHA20", "POLY1305")
	switch {
	case has("NULL"):
		return "NULL suites do not encrypt"
	case has("EXPORT", "EXP-", "EXP1024"):
		return "export-grade suites use deliberately short keys"
	case has("ANON", "ADH", "AECDH"):
		return "anonymous key exchange authenticates nobody"
	case has("RC4"):
		return "RC4 is broken"
	case has("3DES", "DES_CBC", "DES-CBC", "_DES_", "DES40"):
		return "DES and 3DES use 64-bit blocks (Sweet32)"
	case has("MD5"):
		return "MD5 is broken"
	case has("_CBC_", "CBC"):
		return "CBC suites are exposed to padding-oracle attacks (Lucky13); only AEAD suites are accepted"
	case openSSL && has("AES", "CAMELLIA", "ARIA", "SEED", "IDEA") && !aead && !has("CCM"):
		// OpenSSL does not spell out CBC: "ECDHE-RSA-AES128-SHA".
		return "CBC suites are exposed to padding-oracle attacks (Lucky13); only AEAD suites are accepted"
	case has("CCM"):
		return "AES-CCM suites are not implemented by Go's TLS"
	case aead && !has("ECDHE") && (has("DHE")):
		return "finite-field DHE is not implemented by Go's TLS and is slow; use ECDHE"
	case aead && !has("ECDHE") && (strings.HasPrefix(n, "TLS_RSA_") || strings.HasPrefix(n, "AES") || has("PSK")):
		return "without ECDHE there is no forward secrecy"
	}
	return ""
}

var curveNames = map[string]tls.CurveID{
	"x25519":             tls.X25519,
	"p-256":              tls.CurveP256,
	"prime256v1":         tls.CurveP256,
	"secp256r1":          tls.CurveP256,
	"p-384":              tls.CurveP384,
	"secp384r1":          tls.CurveP384,
	"p-521":              tls.CurveP521,
	"secp521r1":          tls.CurveP521,
	"x25519mlkem768":     tls.X25519MLKEM768,
	"secp256r1mlkem768":  tls.SecP256r1MLKEM768,
	"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
}

// ECDHCurve returns the key exchange named in ecdh_curves (X25519, P-256,
// P-384, P-521, X25519MLKEM768; OpenSSL spellings such as prime256v1 too).
func ECDHCurve(name string) (tls.CurveID, error) {
	if id, ok := curveNames[strings.ToLower(strings.TrimSpace(name))]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("unknown ECDH curve %q (X25519, P-256, P-384, P-521, X25519MLKEM768, SecP256r1MLKEM768 or SecP384r1MLKEM1024)", name)
}

// isHybridKEM reports whether id is a post-quantum hybrid key exchange,
// which exists in TLS 1.3 only.
func isHybridKEM(id tls.CurveID) bool {
	return id == tls.X25519MLKEM768 || id == tls.SecP256r1MLKEM768 || id == tls.SecP384r1MLKEM1024
}

// maxSessionTimeout is the longest session_timeout: RFC 8446 caps ticket
// lifetimes at 7 days, and so does Go.
const maxSessionTimeout = 7 * 24 * 3600

// httpListenerTLS refuses the https-only keys on an http listener.
func (v *validator) httpListenerTLS(i int) {
	l := &v.cfg.Listeners[i]
	p := fmt.Sprintf("listeners[%d]", i)
	if l.TLS != nil {
		v.add(p+".tls", "listener %q: tls applies to https listeners (set protocol: https, or remove tls)", l.Name)
	}
	if len(l.SNIRouting) > 0 {
		v.add(p+".sni_routing", "listener %q: sni_routing applies to https listeners (set protocol: https, or remove sni_routing)", l.Name)
	}
}

// certNames is what validation learnt of a listener certificate: the
// names it covers (DNS SANs, or the acme domains), known unless its files
// could not be loaded.
type certNames struct {
	names []string
	known bool
}

// listenerTLS validates an https listener: its tls section and
// certificates, and its sni_routing.
func (v *validator) listenerTLS(i int) {
	l := &v.cfg.Listeners[i]
	p := fmt.Sprintf("listeners[%d]", i)
	if l.RedirectToHTTPS {
		v.add(p+".redirect_to_https", "listener %q: redirect_to_https applies to http listeners (this one is https already)", l.Name)
	}
	t := l.TLS
	if t == nil {
		v.add(p+".protocol", "listener %q: protocol https needs a tls section with at least one certificate (tls: {certificates: [{name: NAME, cert_file: FILE, key_file: FILE}]})", l.Name)
		return
	}
	tp := p + ".tls"
	minV, minErr := TLSVersion(t.MinVersion)
	if minErr != nil {
		v.add(tp+".min_version", "listener %q: tls.min_version %v", l.Name, minErr)
	}
	maxV, maxErr := TLSVersion(t.MaxVersion)
	if maxErr != nil {
		v.add(tp+".max_version", "listener %q: tls.max_version %v", l.Name, maxErr)
	}
	if minErr == nil && maxErr == nil && minV > maxV {
		v.add(tp+".min_version", "listener %q: tls.min_version %s is above max_version %s", l.Name, t.MinVersion, t.MaxVersion)
	}
	tls12 := 0
	for j, name := range t.CipherSuites {
		id, err := CipherSuite(name)
		if err != nil {
			v.add(fmt.Sprintf("%s.cipher_suites[%d]", tp, j), "listener %q: tls.cipher_suites: %v", l.Name, err)
			tls12 = -1 << 20 // reported already; no follow-up problem
			continue
		}
		if !IsTLS13Suite(id) {
			tls12++
		}
	}
	if len(t.CipherSuites) > 0 && tls12 == 0 && minErr == nil && minV < tls.VersionTLS13 {
		v.add(tp+".cipher_suites", "listener %q: tls.cipher_suites names only TLS 1.3 suites, which Go always enables; name the TLS 1.2 suites too (e.g. ECDHE-ECDSA-AES128-GCM-SHA256) or set min_version: TLSv1.3", l.Name)
	}
	classical := 0
	for j, name := range t.ECDHCurves {
		id, err := ECDHCurve(name)
		if err != nil {
			v.add(fmt.Sprintf("%s.ecdh_curves[%d]", tp, j), "listener %q: tls.ecdh_curves: %v", l.Name, err)
			classical = -1 << 20
			continue
		}
		if !isHybridKEM(id) {
			classical++
		}
	}
	if len(t.ECDHCurves) > 0 && classical == 0 && minErr == nil && minV < tls.VersionTLS13 {
		v.add(tp+".ecdh_curves", "listener %q: tls.ecdh_curves names only post-quantum hybrids, which TLS 1.2 cannot use; add X25519 or P-256, or set min_version: TLSv1.3", l.Name)
	}
	if t.SessionTimeout <= 0 || t.SessionTimeout > maxSessionTimeout {
		v.add(tp+".session_timeout", "listener %q: tls.session_timeout must be between 1 and %d seconds (default %d)", l.Name, maxSessionTimeout, DefaultSessionTimeout)
	}
	if t.HSTS != nil && t.HSTS.MaxAge < 0 {
		v.add(tp+".hsts.max_age", "listener %q: tls.hsts.max_age must be 0 or more seconds (0 tells browsers to forget the policy)", l.Name)
	}
	certs := v.listenerCertificates(i)
	v.sniRouting(i, certs)
}

// listenerCertificates validates listeners[i].tls.certificates, loading
// the files, and returns what each certificate covers by name.
func (v *validator) listenerCertificates(i int) map[string]certNames {
	l := &v.cfg.Listeners[i]
	tp := fmt.Sprintf("listeners[%d].tls", i)
	out := map[string]certNames{}
	if len(l.TLS.Certificates) == 0 {
		v.add(tp, "listener %q: tls needs at least one certificate (certificates: [{name: NAME, cert_file: FILE, key_file: FILE}], or {name: NAME, acme: {domains: [...]}})", l.Name)
	}
	for j, c := range l.TLS.Certificates {
		cp := fmt.Sprintf("%s.certificates[%d]", tp, j)
		switch _, dup := out[c.Name]; {
		case c.Name == "":
			v.add(cp, "listener %q: certificate has no name (sni_routing refers to certificates by name)", l.Name)
		case dup:
			v.add(cp+".name", "listener %q: duplicate certificate name %q", l.Name, c.Name)
			continue
		}
		var cn certNames
		switch {
		case c.ACME != nil && (c.CertFile != "" || c.KeyFile != ""):
			v.add(cp+".acme", "listener %q: certificate %q has both files and acme: use either cert_file and key_file, or acme", l.Name, c.Name)
		case c.ACME != nil:
			if c.AllowExpired {
				v.add(cp+".allow_expired", "listener %q: certificate %q: allow_expired applies to certificate files; ACME certificates are renewed before they expire", l.Name, c.Name)
			}
			cn = v.acme(cp+".acme", l.Name, c)
		case c.CertFile == "" || c.KeyFile == "":
			v.add(cp, "listener %q: certificate %q needs cert_file and key_file (PEM), or an acme block", l.Name, c.Name)
		default:
			cn = v.certificateFiles(cp, l.Name, c)
		}
		if c.Name != "" {
			out[c.Name] = cn
		}
	}
	return out
}

// certificateFiles loads a certificate and its key and checks that they
// match and that the certificate is valid now.
func (v *validator) certificateFiles(cp, listener string, c Certificate) certNames {
	certPEM, err := readPEMFile(v.cfg.Resolve(c.CertFile))
	if err == nil {
		err = checkCertPEM(certPEM)
		if err != nil {
			err = fmt.Errorf("%q: %v", c.CertFile, err)
		}
	}
	if err != nil {
		v.add(cp+".cert_file", "listener %q: certificate %q: cert_file %v", listener, c.Name, err)
		return certNames{}
	}
	keyPEM, err := readPEMFile(v.cfg.Resolve(c.KeyFile))
	if err != nil {
		v.add(cp+".key_file", "listener %q: certificate %q: key_file %v", listener, c.Name, err)
		return certNames{}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		v.add(cp+".key_file", "listener %q: certificate %q: key_file %q: %s", listener, c.Name, c.KeyFile, keyPairError(err))
		return certNames{}
	}
	leaf := pair.Leaf
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter) && !c.AllowExpired:
		v.add(cp+".cert_file", "listener %q: certificate %q (%s) expired on %s; renew it, or set allow_expired: true to serve it anyway", listener, c.Name, c.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		v.add(cp+".cert_file", "listener %q: certificate %q (%s) is not valid before %s (check this machine's clock, or the certificate)", listener, c.Name, c.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if k, ok := leaf.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
		v.add(cp+".cert_file", "listener %q: certificate %q (%s) has an RSA key of %d bits; 2048 or more is needed", listener, c.Name, c.CertFile, k.N.BitLen())
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		v.add(cp+".cert_file", "listener %q: certificate %q (%s) is not valid for servers (its extended key usage lacks serverAuth); clients will refuse it", listener, c.Name, c.CertFile)
	}
	return certNames{names: lowerAll(leaf.DNSNames), known: true}
}

// acme validates a certificate's acme block.
func (v *validator) acme(ap, listener string, c Certificate) certNames {
	a := c.ACME
	bad := func(key, format string, args ...any) {
		path := ap
		if key != "" {
			path += "." + key
		}
		v.add(path, "listener %q: certificate %q: acme.%s", listener, c.Name, fmt.Sprintf(format, args...))
	}
	ok := true
	if len(a.Domains) == 0 {
		bad("", "domains is required: the names the certificate is for")
		ok = false
	}
	for j, d := range a.Domains {
		key := fmt.Sprintf("domains[%d]", j)
		switch {
		case strings.HasPrefix(d, "*"):
			bad(key, "domains: %q is a wildcard: wildcard certificates need the DNS-01 challenge, which Rampart does not do; list each name, or use a certificate file", d)
			ok = false
		case isIPAddress(d) || !hostNameRE.MatchString(strings.ToLower(d)) || !strings.Contains(d, "."):
			bad(key, "domains: %q is not a fully qualified host name", d)
			ok = false
		}
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email || !strings.Contains(addr.Address[strings.LastIndex(addr.Address, "@")+1:], ".") {
			bad("email", "email %q is not an e-mail address such as ops@example.com (the CA writes to it about expiring certificates)", a.Email)
		}
	}
	if u, err := url.Parse(a.DirectoryURL); err != nil || u.Host == "" {
		bad("directory_url", "directory_url %q is not a URL (the CA's ACME directory, e.g. %s)", a.DirectoryURL, DefaultACMEDirectoryURL)
	} else if u.Scheme != "https" && !(u.Scheme == "http" && IsLoopbackHost(u.Hostname())) {
		bad("directory_url", "directory_url %q must use https (plain http is allowed only for a CA on a loopback address, for tests)", a.DirectoryURL)
	}
	if a.CACertificate != "" {
		if data, err := readPEMFile(v.cfg.Resolve(a.CACertificate)); err != nil {
			bad("ca_certificate", "ca_certificate: %v", err)
		} else if _, err := parseCertBundle(data); err != nil {
			bad("ca_certificate", "ca_certificate %q: %v", a.CACertificate, err)
		}
	}
	for j, ch := range a.Challenges {
		if !slices.Contains(ACMEChallenges, ch) {
			bad(fmt.Sprintf("challenges[%d]", j), "challenges: unknown challenge %q (http-01 or tls-alpn-01; dns-01 is not supported)", ch)
		}
	}
	return certNames{names: lowerAll(a.Domains), known: ok}
}

// sniRouting validates listeners[i].sni_routing against the listener's
// certificates and the pools.
func (v *validator) sniRouting(i int, certs map[string]certNames) {
	l := &v.cfg.Listeners[i]
	seen := map[string]int{}
	defaults := 0
	certList := func() string {
		names := make([]string, 0, len(certs))
		for n := range certs {
			names = append(names, n)
		}
		slices.Sort(names)
		return strings.Join(names, ", ")
	}
	checkCert := func(path, name string) (certNames, bool) {
		cn, ok := certs[name]
		if !ok {
			v.add(path, "listener %q: sni_routing: certificate %q is not one of this listener's certificates (%s)", l.Name, name, certList())
		}
		return cn, ok
	}
	checkPool := func(path, name string) {
		if name != "" && v.cfg.Pool(name) == nil {
			v.add(path, "listener %q: sni_routing: pool %q is not defined under pools", l.Name, name)
		}
	}
	for j, r := range l.SNIRouting {
		rp := fmt.Sprintf("listeners[%d].sni_routing[%d]", i, j)
		if d := r.Default; d != nil {
			if r.SNI != "" || r.Certificate != "" || r.Pool != "" {
				v.add(rp, "listener %q: sni_routing: an entry is either {sni, certificate, pool} or {default: {action, certificate, pool}}, not both", l.Name)
			}
			defaults++
			if defaults > 1 {
				v.add(rp+".default", "listener %q: sni_routing has more than one default entry", l.Name)
			}
			dp := rp + ".default"
			switch d.Action {
			case "reject":
				if d.Certificate != "" || d.Pool != "" {
					v.add(dp, "listener %q: sni_routing default action reject refuses the handshake: it takes no certificate or pool", l.Name)
				}
			case "serve":
				if d.Certificate == "" {
					v.add(dp, "listener %q: sni_routing default action serve needs a certificate (one of %s)", l.Name, certList())
				} else {
					checkCert(dp+".certificate", d.Certificate)
				}
				checkPool(dp+".pool", d.Pool)
			case "":
				v.add(dp, "listener %q: sni_routing default needs an action: reject (refuse unknown names) or serve (with a certificate)", l.Name)
			default:
				v.add(dp+".action", "listener %q: sni_routing default action %q is unknown (reject or serve)", l.Name, d.Action)
			}
			continue
		}
		if r.SNI == "" {
			v.add(rp, "listener %q: sni_routing entry has no sni (an exact name or *.example.com; or write default: {action: reject})", l.Name)
			continue
		}
		pattern := strings.ToLower(r.SNI)
		if err := checkSNIPattern(pattern); err != nil {
			v.add(rp+".sni", "listener %q: sni_routing: %v", l.Name, err)
			continue
		}
		if k, dup := seen[pattern]; dup {
			v.add(rp+".sni", "listener %q: sni_routing: duplicate sni %q (entry %d has it already)", l.Name, r.SNI, k)
		}
		seen[pattern] = j
		if r.Certificate != "" {
			if cn, ok := checkCert(rp+".certificate", r.Certificate); ok && cn.known && !CoversPattern(cn.names, pattern) {
				v.add(rp+".certificate", "listener %q: sni_routing: certificate %q does not cover %q (its names: %s); clients would refuse it", l.Name, r.Certificate, r.SNI, strings.Join(cn.names, ", "))
			}
		}
		checkPool(rp+".pool", r.Pool)
	}
}

// checkSNIPattern accepts an exact host name or a one-label wildcard
// ("*.example.com", never "*.com" alone or "a.*.example.com").
func checkSNIPattern(p string) error {
	if isIPAddress(p) {
		return fmt.Errorf("sni %q is an IP address; clients send host names only", p)
	}
	rest, wild := strings.CutPrefix(p, "*.")
	if !hostNameRE.MatchString(rest) || wild && !strings.Contains(rest, ".") {
		return fmt.Errorf("sni %q is not an exact host name or a one-label wildcard such as *.example.com", p)
	}
	return nil
}

// hostNameRE is a lower-case DNS name: labels of letters, digits and
// inner hyphens.
var hostNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// CoversName reports whether a certificate with DNS names names is valid
// for host (lower case): an exact name, or a wildcard name covering one
// label.
func CoversName(names []string, host string) bool {
	for _, n := range names {
		if n == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(n, "*."); ok {
			if label, rest, found := strings.Cut(host, "."); found && label != "" && rest == suffix {
				return true
			}
		}
	}
	return false
}

// CoversPattern is CoversName for an sni_routing pattern: a wildcard
// pattern is covered only by the same wildcard name, since it stands for
// every name one label under it.
func CoversPattern(names []string, pattern string) bool {
	if strings.HasPrefix(pattern, "*.") {
		return slices.Contains(names, pattern)
	}
	return CoversName(names, pattern)
}

func isIPAddress(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}

func lowerAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}
