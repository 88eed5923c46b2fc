package wafrx

import (
	"path"
	"strings"
	"unicode"

	"golang.org/x/net/html"
)

// transformModel is what rule skipping knows about one Coraza
// transformation: on printable ASCII input (0x20-0x7e, all the model
// accepts) it returns exactly the transformation's output, or ok=false
// when the input contains something the model does not follow (an escape
// a decoder would act on, a path segment a normaliser would fold). "Not
// followed" only ever costs speed: the rule then runs.
// TestTransformModels checks every model against Coraza's own
// transformation on generated inputs.
type transformModel func(s string) (out string, ok bool)

var transformModels = map[string]transformModel{
	"lowercase": func(s string) (string, bool) { return lowerASCIIString(s), true },
	"uppercase": func(s string) (string, bool) { return strings.ToUpper(s), true },
	// Decoders are the identity on input without their escape character
	// (URL decoding also turns + into a space).
	"urlDecode":    urlDecodePlus,
	"urlDecodeUni": urlDecodePlus,
	// Coraza decodes entities with x/net/html, as here.
	"htmlEntityDecode": func(s string) (string, bool) { return html.UnescapeString(s), true },
	"jsDecode":         unlessAny(`\`),
	"cssDecode":        unlessAny(`\`),
	"escapeSeqDecode":  unlessAny(`\`),
	// Comment removal acts only where a comment can start or end.
	"replaceComments":    unlessSub("/*", "*/"),
	"removeCommentsChar": unlessSub("/*", "*/", "--", "#"),
	"removeComments":     unlessSub("/*", "*/", "--", "#", "<!--", "-->"),
	// Nothing to do on printable ASCII.
	"removeNulls":   identity,
	"replaceNulls":  identity,
	"utf8toUnicode": identity,
	"trim":          func(s string) (string, bool) { return strings.Trim(s, " "), true },
	"trimLeft":      func(s string) (string, bool) { return strings.TrimLeft(s, " "), true },
	"trimRight":     func(s string) (string, bool) { return strings.TrimRight(s, " "), true },
	// The only printable ASCII white space is the space.
	"removeWhitespace":   func(s string) (string, bool) { return strings.ReplaceAll(s, " ", ""), true },
	"compressWhitespace": compressSpaces,
	"cmdLine":            cmdLine,
	"normalizePath":      normalizedPath,
	"normalisePath":      normalizedPath,
	// Printable ASCII in, any bytes out: what follows must be in
	// binaryModels for the chain to go on.
	"base64Decode": base64Decoded,
}

// binaryModels are the models that are also exact on any bytes, for the
// values a decoder turned into arbitrary bytes (CRS's Node.js injection
// rules base64-decode every argument, then URL- and JS-decode the
// result): each acts only on bytes it bails out on, or is Coraza's own
// definition in terms of the standard library.
// TestBinaryTransformModels checks them against Coraza on random bytes.
var binaryModels = map[string]transformModel{
	"urlDecode":       unlessAny("%+"),
	"urlDecodeUni":    unlessAny("%+"),
	"jsDecode":        unlessAny(`\`),
	"replaceComments": unlessSub("/*", "*/"),
	// Coraza drops what unicode.IsSpace says is space, rune by rune, as
	// strings.Map reads runes (an invalid byte becomes U+FFFD).
	"removeWhitespace": func(s string) (string, bool) {
		return strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, s), true
	},
}

// base64Decoded is Coraza's t:base64Decode: the standard alphabet;
// carriage returns and line feeds are skipped; '=', a space or any other
// byte outside the alphabet ends the input; a last group of two or three
// characters gives one or two bytes, a lone one nothing.
func base64Decoded(s string) (string, bool) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	out := make([]byte, 0, len(s)*3/4+2)
	var bits, n uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			continue
		}
		v := strings.IndexByte(alphabet, c)
		if v < 0 {
			break
		}
		bits, n = bits<<6|uint32(v), n+1
		if n == 4 {
			out = append(out, byte(bits>>16), byte(bits>>8), byte(bits))
			bits, n = 0, 0
		}
	}
	switch n {
	case 2:
		out = append(out, byte(bits>>4))
	case 3:
		out = append(out, byte(bits>>10), byte(bits>>2))
	}
	return string(out), true
}

func init() {
	// Coraza's Windows variants also cut at colons (drive letters,
	// streams), drop spaces and segments' trailing dots: followed only without
	// any of those and without backslashes, where they normalise like
	// the others.
	for _, n := range []string{"normalizePathWin", "normalisePathWin"} {
		transformModels[n] = func(s string) (string, bool) {
			if strings.ContainsAny(s, `\: `) || strings.HasSuffix(s, ".") || strings.Contains(s, "./") {
				return "", false
			}
			return normalizedPath(s)
		}
	}
}

func identity(s string) (string, bool) { return s, true }

func urlDecodePlus(s string) (string, bool) {
	if strings.Contains(s, "%") {
		return "", false
	}
	return strings.ReplaceAll(s, "+", " "), true
}

func notIf(cond bool, s string) (string, bool) { return s, !cond }

func unlessAny(chars string) transformModel {
	return func(s string) (string, bool) { return notIf(strings.ContainsAny(s, chars), s) }
}

func unlessSub(subs ...string) transformModel {
	return func(s string) (string, bool) {
		for _, sub := range subs {
			if strings.Contains(s, sub) {
				return "", false
			}
		}
		return s, true
	}
}

// compressSpaces turns every run of spaces into one.
func compressSpaces(s string) (string, bool) {
	if !strings.Contains(s, "  ") {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' && i > 0 && s[i-1] == ' ' {
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), true
}

// cmdLine follows ModSecurity's documented t:cmdLine: delete \ " ' ^,
// delete spaces before / and (, turn , and ; into spaces, squeeze runs of
// spaces into one, lowercase.
func cmdLine(s string) (string, bool) {
	out := make([]byte, 0, len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\', '"', '\'', '^':
		case ' ', ',', ';':
			if !space {
				out = append(out, ' ')
				space = true
			}
		case '/', '(':
			if space {
				out = out[:len(out)-1]
			}
			space = false
			out = append(out, c)
		default:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
			space = false
		}
	}
	return string(out), true
}

// normalizedPath is ModSecurity's normalizePath: the lexical cleaning of
// path.Clean (repeated slashes, "." and ".." segments), keeping a
// trailing slash, and "" for what cleans to ".".
func normalizedPath(s string) (string, bool) {
	if s == "" {
		return s, true
	}
	c := path.Clean(s)
	switch {
	case c == ".":
		return "", true
	case s[len(s)-1] == '/':
		return c + "/", true
	}
	return c, true
}

// printableASCII reports whether every byte of s is in 0x20-0x7e, the
// only input the transformation models follow.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// transformChain is a rule's transformation list as one model.
type transformChain []transformStep

// transformStep is one transformation's models: for printable ASCII, and
// for any bytes (nil when there is none).
type transformStep struct{ ascii, binary transformModel }

func newTransformChain(names []string) (transformChain, bool) {
	c := make(transformChain, 0, len(names))
	for _, n := range names {
		m, ok := transformModels[n]
		if !ok {
			return nil, false
		}
		c = append(c, transformStep{m, binaryModels[n]})
	}
	return c, true
}

// apply returns every value the rule's operator would see for s: the
// final one, and with multiMatch also s and each intermediate result.
func (c transformChain) apply(s string, multi bool, out []string) ([]string, bool) {
	if len(c) > 0 && !printableASCII(s) {
		return out, false
	}
	if multi {
		out = append(out, s)
	}
	for _, step := range c {
		m := step.ascii
		if !printableASCII(s) { // a decoder made other bytes
			if m = step.binary; m == nil {
				return out, false
			}
		}
		var ok bool
		if s, ok = m(s); !ok {
			return out, false
		}
		if multi {
			out = append(out, s)
		}
	}
	if !multi {
		out = append(out, s)
	}
	return out, true
}
