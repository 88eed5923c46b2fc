package waf

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/corazawaf/coraza/v3/types"
)

// inspectable reports whether CRS parses bodies of this Content-Type
// (the body processors Coraza has): urlencoded forms, multipart, JSON and
// XML. Other bodies are not read by the WAF and stream to the backend.
func inspectable(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		// Unparsable: fall back to the prefix, as Coraza does, so a
		// malformed parameter cannot switch inspection off.
		mt, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(ct)), ";")
		mt = strings.TrimSpace(mt)
	}
	switch {
	case mt == "application/x-www-form-urlencoded", strings.HasPrefix(mt, "multipart/"):
		return true
	case mt == "application/json", strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return true
	case mt == "application/xml", mt == "text/xml", strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+xml"):
		return true
	}
	return false
}

// feedBody reads up to max_body_inspect_bytes of r's body into tx and puts
// what it read back in front of the rest. tooLarge says the body goes on
// past the limit (one byte more was read to know).
func (p *Policy) feedBody(tx types.Transaction, r *http.Request) (tooLarge bool, err error) {
	limit := p.maxBody
	capHint := int64(512)
	if r.ContentLength > 0 {
		capHint = min(r.ContentLength, limit) + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, capHint))
	_, err = buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	read := buf.Bytes()
	r.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(read), r.Body), closer: r.Body}
	if err != nil {
		return false, err
	}
	inspect := read
	if int64(len(read)) > limit {
		tooLarge, inspect = true, read[:limit]
	}
	if _, _, err := tx.WriteRequestBody(inspect); err != nil {
		return tooLarge, err
	}
	return tooLarge, nil
}

// replayBody is a request body whose start was read for inspection.
type replayBody struct {
	io.Reader
	closer io.Closer
}

func (b *replayBody) Close() error { return b.closer.Close() }
