package pipeline

import (
	"net/http"
	"strconv"
)

// WriteError answers a request Rampart refuses or cannot serve. The body is
// deliberately generic: the status, its standard reason and the request id
// the operator can look up in the access log. No backend addresses, Go
// errors or version strings ever reach the client.
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
	for k, v := range extra {
		h[k] = v
	}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Cache-Control"] = []string{"no-store"}
	if rec.RequestID != "" {
		h["X-Request-Id"] = []string{rec.RequestID}
	}
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	body := strconv.Itoa(status) + " " + text + "\n"
	if detail != "" {
		body += detail + "\n"
	}
	body += "request_id: " + rec.RequestID + "\n"
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}
