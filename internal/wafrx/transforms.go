package wafrx

import (
	"path"
	"strings"

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
type transformChain []transformModel

func newTransformChain(names []string) (transformChain, bool) {
	c := make(transformChain, 0, len(names))
	for _, n := range names {
		m, ok := transformModels[n]
		if !ok {
			return nil, false
		}
		c = append(c, m)
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
	for i, m := range c {
		if i > 0 && !printableASCII(s) { // a decoder made non-ASCII
			return out, false
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
