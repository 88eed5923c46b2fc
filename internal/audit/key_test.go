package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyCreatedOwnerOnly(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	fi, err := os.Stat(tr.key)
	if err != nil {
		t.Fatalf("key not created: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %#o, want 0600", perm)
	}
	di, _ := os.Stat(filepath.Dir(tr.key))
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Fatalf("key directory mode %#o, want 0700", perm)
	}
	for _, p := range []string{tr.path} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %#o, want 0600", p, fi.Mode().Perm())
		}
	}
	// The file is PKCS#8 PEM holding the key the log signs with.
	data, _ := os.ReadFile(tr.key)
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PEM PRIVATE KEY:\n%s", data)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.(ed25519.PrivateKey).Public().(ed25519.PublicKey).Equal(l.PublicKey()) {
		t.Fatal("key file does not hold the trail's key")
	}
}

func TestKeyReusedAcrossRestarts(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, 1)
	first := EncodePublicKey(l.PublicKey())
	l.Close()
	l = tr.open(t)
	if got := EncodePublicKey(l.PublicKey()); got != first {
		t.Fatalf("public key after restart %s, want %s", got, first)
	}
	tr.write(t, l, 1)
	l.Close()
	if _, err := tr.verify(t); err != nil {
		t.Fatalf("trail across a restart: %v", err)
	}
}

func TestKeyWithGroupOrOtherPermissionsRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			tr := newTrail(t)
			tr.open(t).Close()
			if err := os.Chmod(tr.key, mode); err != nil {
				t.Fatal(err)
			}
			_, err := Open(Options{Path: tr.path, KeyFile: tr.key})
			want := fmt.Sprintf("audit signing key %s has permissions %#o", tr.key, mode)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("Open with a %#o key: %v, want an error containing %q and chmod 600", mode, err, want)
			}
		})
	}
}

func TestKeyDirectoryWritableByOthersRefused(t *testing.T) {
	tr := newTrail(t)
	tr.open(t).Close()
	dir := filepath.Dir(tr.key)
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Path: tr.path, KeyFile: tr.key})
	if err == nil || !strings.Contains(err.Error(), "others could replace the key") {
		t.Fatalf("Open with a group-writable key directory: %v", err)
	}
}

func TestMissingKeyWithExistingTrailRefused(t *testing.T) {
	tr := written(t, 2)
	if err := os.Remove(tr.key); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Path: tr.path, KeyFile: tr.key})
	if err == nil || !strings.Contains(err.Error(), "is missing but the trail") {
		t.Fatalf("Open without the key of an existing trail: %v", err)
	}
	if _, serr := os.Stat(tr.key); !errors.Is(serr, os.ErrNotExist) {
		t.Fatal("a new key was created for an existing trail")
	}
}

func TestParsePublicKey(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	s := EncodePublicKey(pub)
	if len(s) != 44 {
		t.Fatalf("encoded key %q is %d characters, want 44", s, len(s))
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for _, in := range []string{s, s + "\n", pemKey} {
		got, err := ParsePublicKey(in)
		if err != nil || !got.Equal(pub) {
			t.Fatalf("ParsePublicKey(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParsePublicKey("AAAA"); err == nil || !strings.Contains(err.Error(), "3 bytes, want 32") {
		t.Fatalf("short key: %v", err)
	}
}
