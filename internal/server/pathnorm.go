package server

import (
	"net/url"
	"strings"
)

// Path policy (README "Path normalisation"): before the rate limits,
// routing and everything after them look at a request's path, it is
// normalised, and the backend receives the normalised path too, so that
// the backend and Rampart's decisions agree on what was asked for:
//
//   - dot segments are removed (RFC 3986 §5.2.4), "%2e"/"%2E" counting as
//     a dot ("/a/%2e%2e/b" is "/b");
//   - runs of slashes become one ("//api//x" is "/api/x");
//   - a path that climbs above the root ("/../x") is refused (400);
//   - an encoded slash or backslash (%2F, %5C) is refused (400) unless
//     security.request_limits.allow_encoded_slashes is true, in which case
//     it is kept encoded, as one segment;
//   - an encoded NUL (%00) is refused (400), as nginx does;
//   - nothing else changes: case is kept (paths are case-sensitive), other
//     percent-encodings are passed on as they came.

// pathRefusal is why a path was refused; "" when it was not.
type pathRefusal string

const (
	pathAboveRoot    pathRefusal = "path above root"
	pathEncodedSlash pathRefusal = "encoded slash in path"
	pathNUL          pathRefusal = "encoded NUL in path"
)

// normalizePath normalises u's path in place.
func normalizePath(u *url.URL, allowEncodedSlash bool) pathRefusal {
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "" // "*" (OPTIONS) or an absent path
	}
	raw := u.EscapedPath()
	if !strings.Contains(raw, "//") && !strings.Contains(raw, "/.") && !strings.Contains(raw, "%") {
		return "" // the common case: nothing to do
	}
	if !allowEncodedSlash && hasEncodedSlash(raw) {
		return pathEncodedSlash
	}
	if strings.Contains(u.Path, "\x00") {
		return pathNUL // %00: C backends end the path there
	}
	segs := strings.Split(raw[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false // the result ends with "/"
	for i, s := range segs {
		last := i == len(segs)-1
		switch dotSegment(s) {
		case 1:
			trailing = last
			continue
		case 2:
			if len(out) == 0 {
				return pathAboveRoot
			}
			out = out[:len(out)-1]
			trailing = last
			continue
		}
		if s == "" {
			trailing = last && len(out) > 0
			continue
		}
		out = append(out, s)
		trailing = false
	}
	np := "/" + strings.Join(out, "/")
	if trailing {
		np += "/"
	}
	if np == raw {
		return ""
	}
	p, err := url.PathUnescape(np)
	if err != nil {
		return "" // EscapedPath is valid escaping; cannot happen
	}
	u.Path, u.RawPath = p, ""
	if u.EscapedPath() != np {
		u.RawPath = np
	}
	return ""
}

// dotSegment returns 1 for ".", 2 for ".." (a dot may be written %2e),
// 0 otherwise.
func dotSegment(s string) int {
	if len(s) > 6 || len(s) == 0 {
		return 0
	}
	s = strings.ReplaceAll(strings.ReplaceAll(s, "%2e", "."), "%2E", ".")
	switch s {
	case ".":
		return 1
	case "..":
		return 2
	}
	return 0
}

func hasEncodedSlash(raw string) bool {
	for i := strings.IndexByte(raw, '%'); i >= 0 && i+2 < len(raw); {
		if h := raw[i+1 : i+3]; strings.EqualFold(h, "2f") || strings.EqualFold(h, "5c") {
			return true
		}
		j := strings.IndexByte(raw[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}
