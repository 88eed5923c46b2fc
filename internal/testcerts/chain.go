package testcerts

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// Intermediates and revocation lists, for tests of chain verification
// and CRLs (backend TLS).

// Intermediate returns a CA named cn that ca signed. Its PEM holds only
// its own certificate: a server sends it after its leaf.
func (ca *CA) Intermediate(t testing.TB, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// ParseCert returns the first certificate in certPEM (to revoke it, or
// read its serial).
func ParseCert(t testing.TB, certPEM []byte) *x509.Certificate {
	t.Helper()
	for {
		var b *pem.Block
		b, certPEM = pem.Decode(certPEM)
		if b == nil {
			t.Fatal("testcerts: no CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
}

// CRL returns a PEM certificate revocation list signed by ca that lists
// revoked (certificates ca issued), valid from an hour ago for a day.
func (ca *CA) CRL(t testing.TB, revoked ...*x509.Certificate) []byte {
	t.Helper()
	return ca.CRLValid(t, time.Now().Add(24*time.Hour), revoked...)
}

// CRLValid is CRL with the given next update (in the past for a stale list).
func (ca *CA) CRLValid(t testing.TB, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	entries := make([]x509.RevocationListEntry, len(revoked))
	for i, c := range revoked {
		entries[i] = x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)}
	}
	thisUpdate := time.Now().Add(-time.Hour)
	if !nextUpdate.After(thisUpdate) {
		thisUpdate = nextUpdate.Add(-time.Hour)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(time.Now().UnixNano()),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}
