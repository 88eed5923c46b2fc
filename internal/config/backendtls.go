package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Backend re-encryption and mTLS (DESIGN §3 pools[].backend_tls).
//
//	backend_tls:
//	  enabled: true                      # default true once the block is present
//	  verify_certificate: true           # default true
//	  ca_certificate: certs/internal-ca.pem
//	  client_certificate: certs/lb-client.pem
//	  client_key: certs/lb-client-key.pem
//	  sni_hostname: backend.internal.example.com
//	  min_version: TLSv1.2               # TLSv1.2 | TLSv1.3
//	  allowed_sans: ["*.api.internal.example.com"]
//	  crl_file: certs/internal.crl
//
// The files are read and checked by validation, so a reload re-reads them
// all: a new CRL, CA bundle or client certificate applies with
// `rampart ctl reload` (or SIGHUP), and a bad one keeps the old config.

// BackendTLS is how a pool connects to its backends over TLS.
type BackendTLS struct {
	Enabled OnByDefault `yaml:"enabled"`
	// VerifyCertificate checks the backend's chain against CACertificate,
	// its name (AllowedSANs, or else SNIHostname or the backend's host)
	// and CRLFile. Turning it off leaves the connection encrypted but
	// open to any impostor on the path.
	VerifyCertificate OnByDefault `yaml:"verify_certificate"`
	CACertificate     string      `yaml:"ca_certificate"`
	// ClientCertificate and ClientKey are presented to backends that ask
	// for a client certificate (mTLS).
	ClientCertificate string `yaml:"client_certificate"`
	ClientKey         string `yaml:"client_key"`
	// SNIHostname is sent as the server name; without it the backend's
	// host is sent when it is a name (never for an IP address).
	SNIHostname string `yaml:"sni_hostname"`
	MinVersion  string `yaml:"min_version"`
	// AllowedSANs, when set, replaces the host name check: the backend's
	// certificate must carry a DNS or IP SAN matching one entry (exact, or
	// a one-label wildcard such as *.api.internal.example.com).
	AllowedSANs []string `yaml:"allowed_sans"`
	// CRLFile holds one or more CRLs (PEM or DER), each signed by a
	// certificate of CACertificate (so the CRL of an intermediate CA needs
	// the intermediate there too); a backend whose chain holds a listed
	// serial is refused.
	CRLFile string `yaml:"crl_file"`

	// Loaded by validation (nil until then, or when disabled).
	material *BackendTLSMaterial
}

// BackendTLSMaterial is what validation loaded from the files of a
// backend_tls block.
type BackendTLSMaterial struct {
	Roots      *x509.CertPool // nil when verify_certificate is false
	ClientCert *tls.Certificate
	CRLs       []*x509.RevocationList
	MinVersion uint16
	// Fingerprint changes whenever a setting or a file's content does, so
	// a reload can tell whether connections made under the old settings
	// may be kept.
	Fingerprint [32]byte
}

// Material returns what validation loaded, or nil when the block is
// disabled (or the config was not validated).
func (b *BackendTLS) Material() *BackendTLSMaterial {
	if !b.On() {
		return nil
	}
	return b.material
}

// On reports whether the block is present and enabled.
func (b *BackendTLS) On() bool { return b != nil && b.Enabled.On() }

// Verifies reports whether backend certificates are verified (the default).
func (b *BackendTLS) Verifies() bool { return b.VerifyCertificate.On() }

// OnByDefault is a boolean key whose default is true. A value that is not
// a boolean is reported by the decoder and leaves the default, so it does
// not also trigger the checks of "false".
type OnByDefault struct{ off bool }

// On reports the value.
func (o OnByDefault) On() bool { return !o.off }

// UnmarshalYAML accepts true or false.
func (o *OnByDefault) UnmarshalYAML(n *yaml.Node) error {
	var v bool
	if err := n.Decode(&v); err != nil {
		return err
	}
	o.off = !v
	return nil
}

// backendTLSVersions are the accepted min_version values. TLS 1.0 and 1.1
// are broken and refused.
var backendTLSVersions = map[string]uint16{"TLSv1.2": tls.VersionTLS12, "TLSv1.3": tls.VersionTLS13}

// DefaultBackendTLSMinVersion is min_version when it is not set.
const DefaultBackendTLSMinVersion = "TLSv1.2"

// backendTLSDefaults fills the defaults of pools[i].backend_tls (a block
// that is present is enabled and verifies unless it says otherwise: see
// OnByDefault).
func (c *Config) backendTLSDefaults(i int) {
	b := c.Pools[i].BackendTLS
	if b == nil {
		return
	}
	zeroDefault(&b.MinVersion, DefaultBackendTLSMinVersion)
}

// backendTLS validates pools[i].backend_tls and loads its files.
func (v *validator) backendTLS(i int) {
	pl := &v.cfg.Pools[i]
	b := pl.BackendTLS
	if !b.On() {
		return
	}
	p := fmt.Sprintf("pools[%d].backend_tls", i)
	bad := func(key, format string, args ...any) {
		path := p
		if key != "" {
			path += "." + key
		}
		v.add(path, "pool %q: backend_tls.%s", pl.Name, fmt.Sprintf(format, args...))
	}
	m := &BackendTLSMaterial{}
	ok := true
	fp := sha256.New()
	fmt.Fprintf(fp, "%t|%s|%s|%q\n", b.Verifies(), b.SNIHostname, b.MinVersion, b.AllowedSANs)

	if ver, known := backendTLSVersions[b.MinVersion]; known {
		m.MinVersion = ver
	} else if b.MinVersion == "TLSv1.0" || b.MinVersion == "TLSv1.1" {
		ok = false
		bad("min_version", "min_version %s is refused: TLS 1.0 and 1.1 are broken (use TLSv1.2 or TLSv1.3)", b.MinVersion)
	} else {
		ok = false
		bad("min_version", "min_version %q is not a TLS version (use TLSv1.2 or TLSv1.3)", b.MinVersion)
	}

	if b.SNIHostname != "" {
		if _, err := netip.ParseAddr(b.SNIHostname); err == nil || strings.HasPrefix(b.SNIHostname, "*") || checkHostPattern(b.SNIHostname) != nil {
			ok = false
			bad("sni_hostname", "sni_hostname %q must be a host name (no IP address, port or wildcard)", b.SNIHostname)
		}
	}

	// Verification settings only mean something with verification on: a
	// name list or a CRL checked against an unverified certificate would
	// be a false sense of security.
	var cas []*x509.Certificate
	if !b.Verifies() {
		for _, k := range []struct {
			key string
			set bool
		}{{"ca_certificate", b.CACertificate != ""}, {"allowed_sans", len(b.AllowedSANs) > 0}, {"crl_file", b.CRLFile != ""}} {
			if k.set {
				ok = false
				bad(k.key, "%s has no effect with verify_certificate: false (remove it, or verify the backend's certificate)", k.key)
			}
		}
	} else if b.CACertificate == "" {
		ok = false
		bad("", "verify_certificate is on but ca_certificate is not set: name the CA bundle backend certificates are issued by (or set verify_certificate: false, which accepts any certificate)")
	} else if data, err := readPEMFile(v.cfg.Resolve(b.CACertificate)); err != nil {
		ok = false
		bad("ca_certificate", "ca_certificate: %v", err)
	} else if cas, err = parseCertBundle(data); err != nil {
		ok = false
		bad("ca_certificate", "ca_certificate %q: %v", b.CACertificate, err)
	} else {
		m.Roots = x509.NewCertPool()
		for _, c := range cas {
			m.Roots.AddCert(c)
		}
		fp.Write(data)
	}

	for j, s := range b.AllowedSANs {
		if _, err := netip.ParseAddr(s); err == nil {
			continue
		}
		if s == "" || checkHostPattern(s) != nil {
			ok = false
			bad(fmt.Sprintf("allowed_sans[%d]", j), "allowed_sans: %q is not a DNS name, a one-label wildcard such as *.internal.example.com, or an IP address", s)
		}
	}

	switch {
	case b.ClientCertificate == "" && b.ClientKey == "":
	case b.ClientCertificate == "" || b.ClientKey == "":
		ok = false
		bad("", "client_certificate and client_key go together (the certificate presented to backends and its private key, PEM)")
	default:
		cert, err := v.loadBackendClientCert(b, bad)
		if err != nil {
			ok = false
		} else {
			m.ClientCert = cert
			for _, der := range cert.Certificate {
				fp.Write(der)
			}
		}
	}

	if b.CRLFile != "" && b.Verifies() && cas != nil {
		crls, data, err := loadCRLs(v.cfg.Resolve(b.CRLFile), cas)
		if err != nil {
			ok = false
			bad("crl_file", "crl_file %q: %v", b.CRLFile, err)
		} else {
			m.CRLs = crls
			fp.Write(data)
		}
	}
	if ok {
		fp.Sum(m.Fingerprint[:0])
		b.material = m
	}
}

// loadBackendClientCert reads the client certificate and key and checks
// that they match and that the certificate may be used for client auth.
func (v *validator) loadBackendClientCert(b *BackendTLS, bad func(key, format string, args ...any)) (*tls.Certificate, error) {
	certPEM, err := readPEMFile(v.cfg.Resolve(b.ClientCertificate))
	if err != nil {
		bad("client_certificate", "client_certificate: %v", err)
		return nil, err
	}
	if err = checkCertPEM(certPEM); err != nil {
		bad("client_certificate", "client_certificate %q: %v", b.ClientCertificate, err)
		return nil, err
	}
	keyPEM, err := readPEMFile(v.cfg.Resolve(b.ClientKey))
	if err != nil {
		bad("client_key", "client_key: %v", err)
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		msg := keyPairError(err)
		if strings.Contains(msg, "does not match") {
			msg = "the private key does not match the certificate in client_certificate"
		}
		bad("client_key", "client_key %q: %s", b.ClientKey, msg)
		return nil, err
	}
	leaf := cert.Leaf
	if now := time.Now(); now.After(leaf.NotAfter) {
		err = errors.New("expired")
		bad("client_certificate", "client_certificate %q expired on %s; backends will refuse it", b.ClientCertificate, leaf.NotAfter.UTC().Format(time.RFC3339))
		return nil, err
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		err = errors.New("not a client certificate")
		bad("client_certificate", "client_certificate %q is not valid for client authentication (its extended key usage lacks clientAuth); backends will refuse it", b.ClientCertificate)
		return nil, err
	}
	return &cert, nil
}

// parseCertBundle returns every certificate of a PEM bundle.
func parseCertBundle(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("holds no PEM certificate (expected the CA bundle backend certificates are issued by)")
	}
	return out, nil
}

// loadCRLs reads a file of PEM "X509 CRL" blocks (or one DER CRL) and
// checks each: it parses, a certificate of cas signed it, and it is
// current. A stale CRL is refused rather than trusted: revocations issued
// since it was published would be missed.
func loadCRLs(path string, cas []*x509.Certificate) ([]*x509.RevocationList, []byte, error) {
	data, err := readPEMFile(path)
	if err != nil {
		return nil, nil, err
	}
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type == "X509 CRL" {
				ders = append(ders, blk.Bytes)
			}
		}
		if len(ders) == 0 {
			return nil, nil, errors.New("holds no PEM \"X509 CRL\" block")
		}
	} else {
		ders = [][]byte{data}
	}
	now := time.Now()
	var out []*x509.RevocationList
	for n, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, nil, fmt.Errorf("CRL %d does not parse: %v", n+1, err)
		}
		var issuer *x509.Certificate
		for _, ca := range cas {
			if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
				issuer = ca
				break
			}
		}
		if issuer == nil {
			return nil, nil, fmt.Errorf("CRL %d (issuer %q) is not signed by a certificate in ca_certificate (a CRL of an intermediate CA needs that intermediate in ca_certificate)", n+1, crl.Issuer.String())
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			return nil, nil, fmt.Errorf("CRL %d (issuer %q) is stale: its next update was due %s; fetch a current CRL", n+1, crl.Issuer.String(), crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		out = append(out, crl)
	}
	return out, data, nil
}
