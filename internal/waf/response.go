package waf

import (
	"bytes"
	"net/http"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// ResponseCheck inspects the answer to a request that passed (response
// inspection on): CRS's outbound rules (RESPONSE-95x: SQL, Java, PHP, IIS
// error leaks, web shells) with the outbound anomaly threshold.
type ResponseCheck struct {
	tx types.Transaction
	p  *Policy
	r  *http.Request
}

// Writer wraps w. Answers whose body CRS inspects (text, HTML, XML,
// JSON) are held back until their body is complete or max_body_inspect_
// bytes long, so a BLOCK verdict can still replace them with a 403; other
// answers stream through. verdict is called once, when the answer is
// scored as an attack. Call Finish after the answer is written.
func (c *ResponseCheck) Writer(w http.ResponseWriter, verdict func(Result)) *ResponseWriter {
	return &ResponseWriter{ResponseWriter: w, c: c, verdict: verdict}
}

// Response writer states.
const (
	respUndecided = iota
	respBuffering
	respStreaming
	respBlocked
)

// ResponseWriter is the http.ResponseWriter of Writer.
type ResponseWriter struct {
	http.ResponseWriter
	c       *ResponseCheck
	verdict func(Result)
	status  int
	state   int
	scored  bool
	buf     bytes.Buffer
}

// WriteHeader inspects the answer's head; 1xx answers pass unseen.
func (w *ResponseWriter) WriteHeader(code int) {
	if code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status != 0 {
		return
	}
	w.status = code
	tx := w.c.tx
	for k, vs := range w.Header() {
		for _, v := range vs {
			tx.AddResponseHeader(k, v)
		}
	}
	if it := tx.ProcessResponseHeaders(code, w.c.r.Proto); it != nil && w.score(it) {
		return
	}
	if w.c.r.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified ||
		w.scored || !tx.IsResponseBodyProcessable() {
		w.stream()
		return
	}
	w.state = respBuffering
}

func (w *ResponseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	switch w.state {
	case respBlocked:
		return len(b), nil // the 403 replaces it
	case respBuffering:
		w.buf.Write(b)
		if int64(w.buf.Len()) > w.c.p.maxBody {
			w.inspectBody() // the rest streams uninspected
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush forwards flushes of streamed answers; a held answer is sent whole.
func (w *ResponseWriter) Flush() {
	if w.state != respStreaming {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (upgrades).
func (w *ResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Finish inspects a held body and sends it, or the 403 that replaces a
// blocked answer, and releases the transaction.
func (w *ResponseWriter) Finish() {
	if w.state == respBuffering {
		w.inspectBody()
	}
	if w.state == respBlocked {
		pipeline.WriteError(w.ResponseWriter, w.c.r, http.StatusForbidden)
	}
	w.c.Close()
}

// Close releases the transaction (Finish does; this is for answers that
// were aborted).
func (c *ResponseCheck) Close() {
	if c.tx != nil {
		c.tx.Close()
		c.tx = nil
	}
}

func (w *ResponseWriter) inspectBody() {
	body := w.buf.Bytes()
	if int64(len(body)) > w.c.p.maxBody {
		body = body[:w.c.p.maxBody]
	}
	if _, _, err := w.c.tx.WriteResponseBody(body); err == nil {
		if it, err := w.c.tx.ProcessResponseBody(); err == nil && it != nil && w.score(it) {
			return
		}
	}
	w.stream()
	if w.buf.Len() > 0 {
		_, _ = w.ResponseWriter.Write(w.buf.Bytes())
	}
	w.buf.Reset()
}

// stream sends the held head; from now on the answer passes through.
func (w *ResponseWriter) stream() {
	w.state = respStreaming
	w.ResponseWriter.WriteHeader(w.status)
}

// score reports the verdict once and says whether the answer is blocked.
func (w *ResponseWriter) score(it *types.Interruption) bool {
	if w.scored {
		return false
	}
	w.scored = true
	res := w.c.p.verdict(w.c.tx, it, Result{})
	res.Score = txInt(w.c.tx, outboundScore)
	w.verdict(res)
	if res.Action == ActionBlock {
		w.state = respBlocked
		w.buf.Reset()
		return true
	}
	return false
}
