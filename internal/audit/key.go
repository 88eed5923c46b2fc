package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// The signing key is an Ed25519 private key stored as PKCS#8 PEM ("PRIVATE
// KEY"), the format openssl and every TLS stack read, so an operator can
// inspect or back it up with standard tools. It never leaves the file: the
// process logs only the public key.

// ErrNoKey is returned by LoadKey when the key file does not exist.
var ErrNoKey = errors.New("no audit signing key")

// LoadKey reads the signing key at path, refusing a file that anyone but
// its owner can access and a directory that others can write (they could
// swap the key for their own).
func LoadKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s", ErrNoKey, path)
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("audit signing key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("audit signing key %s has permissions %#o: it must be accessible by its owner only; run chmod 600 %s (and consider the key compromised if others could read it)", path, perm, path)
	}
	if err := checkKeyDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit signing key %s: not a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: %v", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit signing key %s: a %T, want Ed25519", path, k)
	}
	return ek, nil
}

func checkKeyDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("directory %s of the audit signing key has permissions %#o: others could replace the key; run chmod go-w %s", dir, perm, dir)
	}
	return nil
}

// createKey generates a key and writes it to path with mode 0600, creating
// the directory with mode 0700. It never overwrites an existing file: two
// processes racing to create it cannot end up signing with different keys.
func createKey(path string) (ed25519.PrivateKey, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := checkKeyDir(dir); err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	// A umask cannot widen 0600, but an ACL default could: check what we
	// got the same way a later start will.
	if _, err := LoadKey(path); err != nil {
		return nil, err
	}
	return key, fsutil.SyncDir(dir)
}

// EncodePublicKey is the text form of a public key used everywhere
// (rampart audit pubkey, the checkpoint, --pubkey): standard base64 of the
// 32 raw key bytes, 44 characters.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey accepts EncodePublicKey's form or a PEM "PUBLIC KEY"
// (PKIX, as openssl pkey -pubout writes it).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		if len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("public key is %d bytes, want %d", len(b), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(b), nil
	}
	if blk, _ := pem.Decode([]byte(s)); blk != nil && blk.Type == "PUBLIC KEY" {
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		if ek, ok := k.(ed25519.PublicKey); ok {
			return ek, nil
		}
		return nil, fmt.Errorf("public key is a %T, want Ed25519", k)
	}
	return nil, errors.New("public key is neither 44 characters of base64 nor a PEM PUBLIC KEY")
}
