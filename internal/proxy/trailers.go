package proxy

import (
	"io"
	"net/http"
)

// A backend's trailer fields reach the client only when the backend
// announced them in its Trailer header and they are fields a trailer may
// carry (RFC 9110 §6.5.1): framing, routing, authentication, cookies,
// caching and content handling are not, since a client (or a cache
// before it) that merged them into the header would be told what the
// head never said.
var forbiddenTrailers = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Te": true, "Connection": true,
	"Keep-Alive": true, "Upgrade": true, "Host": true, "Content-Type": true, "Content-Encoding": true,
	"Content-Range": true, "Content-Location": true, "Set-Cookie": true, "Cookie": true,
	"Authorization": true, "Proxy-Authorization": true, "Www-Authenticate": true, "Proxy-Authenticate": true,
	"Cache-Control": true, "Expires": true, "Age": true, "Vary": true, "Date": true, "Location": true,
	"Retry-After": true, "Pragma": true, "Range": true, "Expect": true, "Max-Forwards": true,
	"Strict-Transport-Security": true, "Content-Security-Policy": true, "Alt-Svc": true,
}

// announcedTrailers removes the forbidden names from a response's
// announced trailers (resp.Trailer at head time, values nil) and returns
// the names that remain allowed.
func announcedTrailers(t http.Header) map[string]bool {
	if len(t) == 0 {
		return nil
	}
	allowed := make(map[string]bool, len(t))
	for k := range t {
		if forbiddenTrailers[k] {
			delete(t, k)
			continue
		}
		allowed[k] = true
	}
	return allowed
}

// keepAllowedTrailers drops, once the body has ended, the trailer fields
// that were not announced (or not allowed).
func keepAllowedTrailers(t http.Header, allowed map[string]bool) {
	for k := range t {
		if !allowed[k] {
			delete(t, k)
		}
	}
}

// trailerFilter is the body of an http.Transport response: at its end, it
// leaves in resp.Trailer only the allowed fields, before the reverse proxy
// copies them to the client.
type trailerFilter struct {
	io.ReadCloser
	resp    *http.Response
	allowed map[string]bool
}

func (f *trailerFilter) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if err == io.EOF {
		keepAllowedTrailers(f.resp.Trailer, f.allowed)
	}
	return n, err
}
