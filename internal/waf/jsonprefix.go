package waf

import (
	"bytes"
	"encoding/json"
	"mime"
	"strings"
)

// isJSON reports whether a Content-Type selects the JSON body processor
// (rules 200001 and 200006 in directives.go).
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && strings.HasPrefix(mt, "application/") && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// closeJSONPrefix makes the start of a JSON document, cut at
// max_body_inspect_bytes, a document again: it ends after the last complete
// value, or after a string value cut midway (ended where it was cut), with
// the arrays and objects still open closed. Cut off, the document does not
// parse, so with body_limit_action: pass the rules saw none of its keys and
// values; whole again, they see every one of the part inspected. A start
// that is malformed before the cut is returned as it is. The result is no
// longer than b (the engine reads no more than the limit): the brackets
// and quote it adds replace the cut's last bytes.
func closeJSONPrefix(b []byte) []byte {
	n := len(b)
	for range 32 {
		out := closeJSON(b[:n])
		if len(out) <= len(b) {
			return out
		}
		// Cutting k bytes more saves up to k, but may close fewer
		// brackets, or more: step down by half the excess.
		n -= max(1, (len(out)-len(b))/2)
		if n <= 0 {
			break
		}
	}
	return b // nested too deep to close in place: malformed for the rules
}

func closeJSON(b []byte) []byte {
	type frame struct{ obj, wantKey bool }
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	end, lastTok := 0, 0 // after the last complete value; after the last token
	var endStack []frame
	mark := func() { end, endStack = int(dec.InputOffset()), append(endStack[:0], stack...) }
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			if _, bad := err.(*json.SyntaxError); bad {
				return b // malformed before the cut: refused as such (CRS 200002)
			}
			break
		}
		lastTok = int(dec.InputOffset())
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				stack = append(stack, frame{obj: t == '{', wantKey: t == '{'})
			} else if len(stack) > 0 {
				stack = stack[:len(stack)-1]
				valueDone()
			}
			mark()
		default:
			if n := len(stack); n > 0 && stack[n-1].wantKey {
				stack[n-1].wantKey = false // a key: its value is still to come
				continue
			}
			valueDone()
			mark()
		}
	}
	out := b[:end:end]
	closers := endStack
	if s, ok := cutString(b[lastTok:]); ok && len(stack) > 0 && !stack[len(stack)-1].wantKey {
		// A string value cut midway: what arrived of it is inspected too.
		out = append(append(b[:lastTok:lastTok], s...), '"')
		closers = stack
	}
	for i := len(closers) - 1; i >= 0; i-- {
		if closers[i].obj {
			out = append(out, '}')
		} else {
			out = append(out, ']')
		}
	}
	return out
}

// cutString returns rest, the bytes after a document's last token, up to
// the end of a string value that the cut left open: its separator and
// start, and its content without an escape sequence the cut split.
func cutString(rest []byte) ([]byte, bool) {
	i := 0
	for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t' || rest[i] == '\r' || rest[i] == '\n' || rest[i] == ':' || rest[i] == ',') {
		i++
	}
	if i == len(rest) || rest[i] != '"' {
		return nil, false
	}
	for j := i + 1; j < len(rest); j++ {
		switch rest[j] {
		case '"':
			return nil, false // a whole string: not cut
		case '\\':
			if j+1 >= len(rest) || (rest[j+1] == 'u' && j+6 > len(rest)) {
				return rest[:j], true
			}
			if rest[j+1] == 'u' {
				j += 5
			} else {
				j++
			}
		}
	}
	return rest, true
}
