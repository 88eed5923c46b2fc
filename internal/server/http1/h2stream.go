package http1

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// The HTTP/1 engine bounds a request body's arrival (BodyTimeout,
// MinBodyRate) and each write of the answer (WriteTimeout) on the
// connection; net/http's HTTP/2 server applies none of them to a stream,
// so a client could keep thousands of backend requests open by never
// sending a body it announced, or never opening its flow-control window.
// These wrappers apply them per stream, with the stream deadlines net/http
// offers (http.ResponseController), and report the same slow-client
// indicators.

// h2Body is an HTTP/2 request body under BodyTimeout and MinBodyRate. Its
// read deadline is the end of the body timeout or, with a minimum rate, a
// rate window after the last data (moved at most every quarter window: a
// move is a message to the connection's goroutine). A deadline ends the
// body for good (net/http closes the stream's body), so it is only ever set
// where the body is to be cut.
type h2Body struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	end     time.Time // end of BodyTimeout; zero: none
	min     int64
	window  time.Duration
	start   time.Time
	armedAt time.Time
	total   int64
	slow    func(indicator string)
}

func newH2Body(rc io.ReadCloser, ctl *http.ResponseController, p *policy, slow func(string)) *h2Body {
	now := time.Now()
	b := &h2Body{rc: rc, ctl: ctl, min: p.MinBodyRate, window: p.RateWindow, start: now, slow: slow}
	if p.BodyTimeout > 0 {
		b.end = now.Add(p.BodyTimeout)
	}
	b.arm(now)
	return b
}

func (b *h2Body) arm(now time.Time) {
	d := b.end
	if b.min > 0 {
		if t := now.Add(b.window); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	b.armedAt = now
	b.ctl.SetReadDeadline(d)
}

func (b *h2Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.total += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if !b.end.IsZero() && !time.Now().Before(b.end) {
			b.slow(BodyTimeout)
			return n, errBodyTimeout
		}
		b.slow(SlowBody) // a whole window without data
		return n, errBodyTooSlow
	}
	if err != nil || b.min <= 0 {
		return n, err
	}
	now := time.Now()
	if elapsed := now.Sub(b.start); elapsed >= b.window && float64(b.total) < float64(b.min)*elapsed.Seconds() {
		b.slow(SlowBody)
		return n, errBodyTooSlow
	}
	if now.Sub(b.armedAt) >= b.window/4 {
		b.arm(now)
	}
	return n, nil
}

func (b *h2Body) Close() error { return b.rc.Close() }

// h2Writer bounds each write of an HTTP/2 answer by WriteTimeout: a write
// that cannot finish (a client that stopped reading, or keeps its window
// shut) is cut. The deadline is set around each write and flush and
// cleared after it, since an expired stream deadline resets the stream
// even between writes (a stream that waits for its backend is not slow).
type h2Writer struct {
	http.ResponseWriter
	ctl     *http.ResponseController
	timeout time.Duration
	slow    func(indicator string)
}

func (w *h2Writer) arm() time.Time {
	now := time.Now()
	w.ctl.SetWriteDeadline(now.Add(w.timeout))
	return now
}

// done clears the deadline after a write, and says when a failed one was
// the timeout's doing (a SlowClientError, as on HTTP/1, for the log).
func (w *h2Writer) done(armed time.Time, err error) error {
	if err != nil && time.Since(armed) >= w.timeout {
		w.slow(WriteTimeout)
		return &SlowClientError{Indicator: WriteTimeout, err: err}
	}
	w.ctl.SetWriteDeadline(time.Time{})
	return err
}

func (w *h2Writer) Write(p []byte) (int, error) {
	armed := w.arm()
	n, err := w.ResponseWriter.Write(p)
	return n, w.done(armed, err)
}

func (w *h2Writer) FlushError() error {
	armed := w.arm()
	return w.done(armed, w.ctl.Flush())
}

func (w *h2Writer) Flush() { w.FlushError() }

// Unwrap lets http.ResponseController reach net/http's writer.
func (w *h2Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
