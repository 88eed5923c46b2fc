package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
)

// ctlToken makes token hashes for admin.tokens: the raw token is read
// from stdin (never from the command line) and only its hash is printed.
func ctlToken(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, ctlUsage)
		return 2
	}
	switch args[0] {
	case "hash":
		data, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			fmt.Fprintf(stderr, "rampart ctl token hash: reading stdin: %v\n", err)
			return 1
		}
		tok, err := cleanToken(string(data))
		if err != nil {
			fmt.Fprintf(stderr, "rampart ctl token hash: %v (pipe the token in: rampart ctl token hash < TOKEN_FILE)\n", err)
			return 1
		}
		if len(tok) < 20 {
			fmt.Fprintf(stderr, "rampart ctl token hash: warning: a %d-character token can be guessed; use rampart ctl token new\n", len(tok))
		}
		fmt.Fprintln(stdout, tokenHash(tok))
		return 0
	case "new":
		tok := newToken()
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(stderr, "sha256: %s\n", tokenHash(tok))
		return 0
	}
	fmt.Fprint(stderr, ctlUsage)
	return 2
}

// tokenHash is what admin.tokens[].sha256 holds for tok.
func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// newToken returns 256 random bits, base64url without padding.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}
