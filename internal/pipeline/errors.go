package pipeline

import (
	"net/http"
	"strconv"
	"strings"
)

// WriteError answers a request Rampart refuses or cannot serve. The body is
// deliberately generic: the status, its standard reason and the request id
// the operator can look up in the access log. No backend addresses, Go
// errors or version strings ever reach the client. A client whose Accept
// prefers application/json gets {"status","error","request_id"}; others get
// plain text. Answers about the request body (408, 413) close the
// connection, so what is left of the body is never read.
func WriteError(w http.ResponseWriter, r *http.Request, status int) {
	WriteErrorDetail(w, r, status, "", nil)
}

// WriteErrorDetail is WriteError with a line of detail chosen by the
// operator or by Rampart (never taken from the request or a backend), and
// extra response header fields (Retry-After, ...).
func WriteErrorDetail(w http.ResponseWriter, r *http.Request, status int, detail string, extra http.Header) {
	rec := FromContext(r.Context())
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	var body string
	if PrefersJSON(r.Header["Accept"]) {
		h["Content-Type"] = []string{"application/json"}
		// The reason is a fixed status text, the detail is Rampart's or
		// the operator's, and the id is checked (see server.requestID).
		body = `{"status":` + strconv.Itoa(status) + `,"error":"` + text + `"`
		if detail != "" {
			body += `,"detail":` + strconv.Quote(detail)
		}
		body += `,"request_id":"` + rec.RequestID + "\"}\n"
	} else {
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		body = strconv.Itoa(status) + " " + text + "\n"
		if detail != "" {
			body += detail + "\n"
		}
		body += "request_id: " + rec.RequestID + "\n"
	}
	for k, v := range extra {
		h[k] = v
	}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Cache-Control"] = []string{"no-store"}
	h["Vary"] = []string{"Accept"}
	if rec.RequestID != "" {
		h["X-Request-Id"] = []string{rec.RequestID}
	}
	if status == http.StatusRequestEntityTooLarge || status == http.StatusRequestTimeout {
		h["Connection"] = []string{"close"}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

// PrefersJSON reports whether an Accept header ranks application/json above
// text (text/plain or text/html; q-values, with application/*, text/* and
// */* wildcards, the most specific range deciding; a tie goes to text).
func PrefersJSON(accept []string) bool {
	if len(accept) == 0 {
		return false
	}
	jsonQ, textQ := -1.0, -1.0
	jsonSpec, textSpec := 0, 0 // the most specific range decides
	for _, a := range accept {
		for part := range strings.SplitSeq(a, ",") {
			mt, params, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil {
						q = f
					}
				}
			}
			var js, ts int
			switch mt {
			case "application/json":
				js = 3
			case "application/*":
				js = 2
			case "text/*":
				ts = 2
			case "text/plain", "text/html":
				ts = 3 // a browser's text/html: the text page serves it
			case "*/*":
				js, ts = 1, 1
			}
			if js > jsonSpec {
				jsonSpec, jsonQ = js, q
			}
			if ts > textSpec {
				textSpec, textQ = ts, q
			}
		}
	}
	return jsonQ > 0 && jsonQ > textQ
}
