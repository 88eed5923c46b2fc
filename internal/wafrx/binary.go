package wafrx

import (
	"strconv"
	"unicode/utf8"
)

// matchesArbitraryBytes reports whether a pattern spells, through \xHH or
// \x{HH} escapes, bytes that are not valid UTF-8 (e.g. [\x80-\xff]). Go's
// regexp matches runes, so Coraza hands such patterns to a byte-oriented
// engine; this plugin makes the same choice for the same patterns.
func matchesArbitraryBytes(pattern string) bool {
	decoded := make([]byte, 0, len(pattern))
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '\\' || i+1 >= len(pattern) {
			decoded = append(decoded, c)
			continue
		}
		if pattern[i+1] != 'x' {
			// As in Coraza, the next character is examined afresh, so
			// `\\x80` counts as a byte escape too: what matters is that
			// the same patterns go to the same engine as with stock @rx.
			decoded = append(decoded, c)
			continue
		}
		hex, width := "", 0
		switch {
		case i+4 <= len(pattern) && pattern[i+2] != '{':
			hex, width = pattern[i+2:i+4], 4
		case i+2 < len(pattern) && pattern[i+2] == '{':
			for j := i + 3; j < len(pattern); j++ {
				if pattern[j] == '}' {
					hex, width = pattern[i+3:j], j+1-i
					break
				}
			}
		}
		v, err := strconv.ParseUint(hex, 16, 8)
		if hex == "" || err != nil {
			decoded = append(decoded, c)
			continue
		}
		decoded = append(decoded, byte(v))
		i += width - 1
	}
	return !utf8.Valid(decoded)
}
