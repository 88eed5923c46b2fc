package ratelimit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// VerifierOptions configure a Verifier: the accepted algorithms and the
// files holding the keys (paths already resolved).
type VerifierOptions struct {
	Algorithms    []string // HS256, RS256, ES256
	SecretFile    string   // HS256 shared secret (raw bytes, at least 32)
	PublicKeyFile string   // PEM public key (RSA or EC P-256)
	JWKSFile      string   // a JSON Web Key Set of RSA and EC P-256 keys
	Issuer        string   // required iss, when set
	Audience      string   // required aud, when set
}

// Verifier checks bearer tokens and reads one claim from valid ones. A
// token that is malformed, unsigned ("alg": "none"), signed with another
// algorithm or key, expired or not yet valid yields no identity.
type Verifier struct {
	parser *jwt.Parser
	secret []byte
	rsa    []*rsa.PublicKey
	ec     []*ecdsa.PublicKey
	kids   map[string]crypto.PublicKey
}

var supportedAlgs = []string{"HS256", "RS256", "ES256"}

// NewVerifier loads the keys of o.
func NewVerifier(o VerifierOptions) (*Verifier, error) {
	v := &Verifier{kids: map[string]crypto.PublicKey{}}
	if len(o.Algorithms) == 0 {
		return nil, errors.New("no algorithms")
	}
	for _, a := range o.Algorithms {
		if !slices.Contains(supportedAlgs, a) {
			return nil, fmt.Errorf("algorithm %q is not accepted (%s)", a, strings.Join(supportedAlgs, ", "))
		}
	}
	if o.SecretFile != "" {
		b, err := os.ReadFile(o.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("secret_file: %v", unwrapPath(err))
		}
		b = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(b) < 32 {
			return nil, fmt.Errorf("secret_file %s holds %d bytes; an HS256 secret needs at least 32", o.SecretFile, len(b))
		}
		v.secret = b
	}
	if o.PublicKeyFile != "" {
		b, err := os.ReadFile(o.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("public_key_file: %v", unwrapPath(err))
		}
		if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
			v.rsa = append(v.rsa, k)
		} else if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil && k.Curve == elliptic.P256() {
			v.ec = append(v.ec, k)
		} else {
			return nil, fmt.Errorf("public_key_file %s is not a PEM RSA or EC P-256 public key", o.PublicKeyFile)
		}
	}
	if o.JWKSFile != "" {
		if err := v.loadJWKS(o.JWKSFile); err != nil {
			return nil, err
		}
	}
	for _, a := range o.Algorithms {
		switch {
		case a == "HS256" && v.secret == nil:
			return nil, errors.New("HS256 needs secret_file")
		case a == "RS256" && len(v.rsa) == 0 && !v.hasKid(false):
			return nil, errors.New("RS256 needs an RSA key in public_key_file or jwks_file")
		case a == "ES256" && len(v.ec) == 0 && !v.hasKid(true):
			return nil, errors.New("ES256 needs an EC P-256 key in public_key_file or jwks_file")
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(o.Algorithms)}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		opts = append(opts, jwt.WithAudience(o.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func (v *Verifier) hasKid(ec bool) bool {
	for _, k := range v.kids {
		if _, ok := k.(*ecdsa.PublicKey); ok == ec {
			return true
		}
	}
	return false
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (v *Verifier) loadJWKS(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("jwks_file: %v", unwrapPath(err))
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		return fmt.Errorf("jwks_file %s is not a JSON Web Key Set with keys", path)
	}
	dec := base64.RawURLEncoding.DecodeString
	for i, k := range set.Keys {
		var pub crypto.PublicKey
		switch k.Kty {
		case "RSA":
			n, err1 := dec(k.N)
			e, err2 := dec(k.E)
			if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
				return fmt.Errorf("jwks_file %s: key %d: bad RSA key (2048 bits or more)", path, i)
			}
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			x, err1 := dec(k.X)
			y, err2 := dec(k.Y)
			if k.Crv != "P-256" || err1 != nil || err2 != nil {
				return fmt.Errorf("jwks_file %s: key %d: bad EC key (P-256 only)", path, i)
			}
			raw := append(append([]byte{4}, leftPad(x, 32)...), leftPad(y, 32)...)
			pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
			if err != nil {
				return fmt.Errorf("jwks_file %s: key %d: %v", path, i, err)
			}
			pub = pk
		default:
			return fmt.Errorf("jwks_file %s: key %d: unsupported kty %q (RSA, EC)", path, i, k.Kty)
		}
		kid := k.Kid
		if kid == "" {
			kid = fmt.Sprintf("#%d", i)
		}
		v.kids[kid] = pub
	}
	return nil
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}

func (v *Verifier) key(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if kid, ok := t.Header["kid"].(string); ok && kid != "" {
		if k, ok := v.kids[kid]; ok {
			return k, nil
		}
	}
	var set jwt.VerificationKeySet
	switch alg {
	case "HS256":
		return v.secret, nil
	case "RS256":
		for _, k := range v.rsa {
			set.Keys = append(set.Keys, k)
		}
		for _, k := range v.kids {
			if rk, ok := k.(*rsa.PublicKey); ok {
				set.Keys = append(set.Keys, rk)
			}
		}
	case "ES256":
		for _, k := range v.ec {
			set.Keys = append(set.Keys, k)
		}
		for _, k := range v.kids {
			if ek, ok := k.(*ecdsa.PublicKey); ok {
				set.Keys = append(set.Keys, ek)
			}
		}
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("no key")
	}
	return set, nil
}

// maxTokenLen bounds the work a hostile header can cause.
const maxTokenLen = 8192

// Claim verifies token and returns its claim named name, when it is a
// non-empty string.
func (v *Verifier) Claim(token, name string) (string, bool) {
	if len(token) > maxTokenLen || strings.Count(token, ".") != 2 {
		return "", false
	}
	claims := jwt.MapClaims{}
	t, err := v.parser.ParseWithClaims(token, claims, v.key)
	if err != nil || !t.Valid {
		return "", false
	}
	s, ok := claims[name].(string)
	return s, ok && s != ""
}
