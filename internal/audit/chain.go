package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Genesis is the prev_hash of the first entry. A fixed value (rather than
// an empty one) keeps every entry's shape the same and makes "someone cut
// entries off the front" visible: only seq 1 may point at Genesis.
var Genesis = strings.Repeat("0", 64)

// HashLine is the chain hash of one line: lowercase hex SHA-256 of its
// exact bytes, without the terminating newline. Hashing the bytes (not a
// re-encoding) means the next entry vouches for the line as stored,
// signature included.
func HashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}
