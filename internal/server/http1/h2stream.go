package http1

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// The HTTP/1 engine bounds a request body's arrival (BodyTimeout,
// MinBodyRate) and the writes of the answer (WriteTimeout, MinReadRate) on
// the connection; net/http's HTTP/2 server applies none of them to a stream,
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
// With a MinReadRate it also measures the stream as writeMetered does a
// connection (see writeMeter), so a client that opens its window a few
// bytes at a time, each write staying under WriteTimeout, is cut too. A
// stream deadline cannot wake a write to judge it and let it go on, so
// the stream is judged after each write.
type h2Writer struct {
	http.ResponseWriter
	ctl     *http.ResponseController
	timeout time.Duration // 0: none
	minRate int64         // 0: not measured
	meter   writeMeter
	slow    func(indicator string)
}

func newH2Writer(w http.ResponseWriter, ctl *http.ResponseController, p *policy, slow func(string)) *h2Writer {
	return &h2Writer{ResponseWriter: w, ctl: ctl, timeout: p.WriteTimeout, minRate: p.MinReadRate,
		meter: writeMeter{step: p.RateWindow / 4}, slow: slow}
}

func (w *h2Writer) arm() time.Time {
	now := time.Now()
	if w.timeout > 0 {
		w.ctl.SetWriteDeadline(now.Add(w.timeout))
	}
	return now
}

// done ends a write of n bytes armed at armed. It says when a failed write
// was the timeout's doing, and resets the stream of a client that reads
// below the minimum rate (a SlowClientError either way, as on HTTP/1, for
// the log); otherwise it clears the deadline.
func (w *h2Writer) done(armed time.Time, n int, err error) error {
	took := time.Since(armed)
	if err != nil && w.timeout > 0 && took >= w.timeout {
		w.slow(WriteTimeout)
		return &SlowClientError{Indicator: WriteTimeout, err: err}
	}
	if err == nil && w.minRate > 0 && w.meter.wrote(n, took, w.minRate) {
		w.slow(SlowRead)
		w.ctl.SetWriteDeadline(armed) // in the past: net/http resets the stream now
		return errSlowRead
	}
	if w.timeout > 0 {
		w.ctl.SetWriteDeadline(time.Time{})
	}
	return err
}

func (w *h2Writer) Write(p []byte) (int, error) {
	armed := w.arm()
	n, err := w.ResponseWriter.Write(p)
	return n, w.done(armed, n, err)
}

func (w *h2Writer) FlushError() error {
	armed := w.arm()
	return w.done(armed, 0, w.ctl.Flush())
}

func (w *h2Writer) Flush() { w.FlushError() }

// Unwrap lets http.ResponseController reach net/http's writer.
func (w *h2Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
