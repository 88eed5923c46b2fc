package tlsterm

// Persistence of ACME state in data_dir/acme, one directory per CA:
//
//	data_dir/acme/                                         0700
//	  acme-v02.api.letsencrypt.org-directory/              0700
//	    account-ops_example.com.key                        0600  account key (PEM)
//	    www.example.com-1a2b3c4d.pem                       0600  key, then leaf and chain (PEM)
//
// A certificate file holds its key so that one rename replaces both: a
// crash never leaves a key beside the wrong certificate.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

func (a *ACME) certFile(s *acmeSpec) string {
	return filepath.Join(a.dir, filepath.FromSlash(s.id)+".pem")
}

func (a *ACME) accountFile(s *acmeSpec) string {
	name := "default"
	if s.email != "" {
		name = acmeFileName(s.email)
	}
	return filepath.Join(a.dir, acmeCADir(s.directory), "account-"+name+".key")
}

// loadCert returns the stored certificate, or nil when there is none or
// it is unusable (logged): then it is obtained again.
func (a *ACME) loadCert(file string, s *acmeSpec) *tls.Certificate {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	attrs := []any{"certificate", s.refs[0].name, "domains", s.domains, "file", file}
	if err != nil {
		a.log.Warn("acme stored certificate unreadable; obtaining a new one", append(attrs, "error", err.Error())...)
		return nil
	}
	var keyPEM, certPEM []byte
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			certPEM = append(certPEM, pem.EncodeToMemory(blk)...)
		} else {
			keyPEM = pem.EncodeToMemory(blk)
		}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		a.log.Warn("acme stored certificate unusable; obtaining a new one", append(attrs, "error", err.Error())...)
		return nil
	}
	left := c.Leaf.NotAfter.Sub(a.opts.Now())
	attrs = append(attrs, "serial", acmeSerial(c.Leaf), "not_after", c.Leaf.NotAfter, "days_left", int(left.Hours()/24))
	switch {
	case !acmeCovers(c.Leaf, s.domains):
		a.log.Warn("acme stored certificate does not cover the domains; obtaining a new one", attrs...)
		return nil
	case left <= 0:
		a.log.Warn("acme stored certificate has expired; serving it until a new one is obtained", attrs...)
	default:
		a.log.Info("acme certificate loaded", attrs...)
	}
	return &c
}

// acmeStoreCert writes c (key and chain) to file, replacing it atomically.
func acmeStoreCert(file string, c *tls.Certificate) error {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, cert := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})...)
	}
	return acmeWriteFile(file, out)
}

// acmeLoadAccountKey loads the CA account's key, creating it on first use.
func acmeLoadAccountKey(file string) (key *ecdsa.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(file)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, false, fmt.Errorf("account key %s: no PEM block", file)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, false, fmt.Errorf("account key %s: %w", file, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, false, fmt.Errorf("account key %s: not an ECDSA key", file)
		}
		return ek, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ek)
	if err != nil {
		return nil, false, err
	}
	if err := acmeWriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, false, err
	}
	return ek, true, nil
}

// acmeWriteFile replaces path with data durably and atomically (a
// reader sees the old or the new content, never a part), as a 0600 file
// in a 0700 directory.
func acmeWriteFile(path string, data []byte) error {
	if err := acmeMkdir(filepath.Dir(path)); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, "."+filepath.Base(path)+".tmp*", data)
}

// acmeMkdir creates dir (and parents) and makes dir itself 0700:
// it holds private keys.
func acmeMkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// acmeKeyType names a certificate's key as CertInfo.KeyType does.
func acmeKeyType(leaf *x509.Certificate) string {
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return leaf.PublicKeyAlgorithm.String()
}

// acmeSerial is a certificate's serial number in hex, as CAs print it.
func acmeSerial(leaf *x509.Certificate) string {
	return fmt.Sprintf("%x", leaf.SerialNumber)
}
