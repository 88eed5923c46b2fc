package waf

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/corazawaf/coraza/v3/types"
)

// inspectable reports whether the WAF reads bodies of this Content-Type.
// CRS parses urlencoded forms, multipart, JSON and XML into ARGS, and
// matches every other body as a whole (REQUEST_BODY), so every body is
// inspected except media types that are binary by nature (images, audio,
// video, archives, octet streams), which stream to the backend unread. A
// body without a Content-Type is inspected too: CRS then parses it as a
// form, and a backend may as well.
func inspectable(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		// Unparsable: fall back to the prefix, as Coraza does, so a
		// malformed parameter cannot switch inspection off.
		mt, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(ct)), ";")
		mt = strings.TrimSpace(mt)
	}
	switch {
	case strings.HasPrefix(mt, "image/"), strings.HasPrefix(mt, "audio/"), strings.HasPrefix(mt, "video/"), strings.HasPrefix(mt, "font/"):
		return false
	case mt == "application/octet-stream", mt == "application/zip", mt == "application/gzip", mt == "application/x-tar", mt == "application/pdf":
		return false
	}
	return true
}

// canonicalMediaType is the Content-Type the rules see: type and parameter
// names in lower case, as every parser of the field reads them. CRS's
// charset check (920480) matches "charset=" case-sensitively, so
// "Charset=IBM037" passed it, while servlet containers and ASP.NET decode
// a form in that charset (an EBCDIC <script> scored 0). The backend gets
// the field as the client sent it. A value Go's parser refuses is given
// as it is, for CRS's own format check (920470).
func canonicalMediaType(ct string) string {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	if c := mime.FormatMediaType(mt, params); c != "" {
		return c
	}
	return ct
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
		if isJSON(r.Header.Get("Content-Type")) {
			inspect = closeJSONPrefix(inspect)
		}
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
