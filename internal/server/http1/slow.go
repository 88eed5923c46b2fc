package http1

import (
	"time"

	"github.com/rampart-proxy/rampart/internal/clock"
)

// Slow-client indicators: what a connection did that a slowloris, slow
// POST or slow read client does. The engine cuts such a connection off by
// itself; Server.OnSlow is told which indicator ended it, so the caller can
// score the client across connections (one slow connection is bad luck,
// many from one address are an attack).
const (
	// SlowHeader: a request head was started but not finished within the
	// header timeout (the trickle of partial headers). A connection that
	// never sends a byte is not counted: browsers open such preconnections.
	SlowHeader = "header_timeout"
	// SlowBody: a request body arrived below MinBodyRate.
	SlowBody = "slow_body"
	// BodyTimeout: a request body was not complete within BodyTimeout.
	BodyTimeout = "body_timeout"
	// SlowRead: the client read its answer below MinReadRate.
	SlowRead = "slow_read"
	// WriteTimeout: a single write of the answer waited WriteTimeout.
	WriteTimeout = "write_timeout"
)

// SlowIndicators lists every indicator (for metrics that pre-create them).
var SlowIndicators = []string{SlowHeader, SlowBody, BodyTimeout, SlowRead, WriteTimeout}

// SlowClientError ends an answer whose client reads too slowly; its
// Indicator (SlowRead, WriteTimeout) says which limit it broke, for logs.
type SlowClientError struct {
	Indicator string
	err       error
}

func (e *SlowClientError) Error() string {
	if e.Indicator == SlowRead {
		return "http1: client reads the response below the minimum data rate"
	}
	return "http1: write to the client timed out: " + e.err.Error()
}

func (e *SlowClientError) Unwrap() error { return e.err }

// errSlowRead ends the answer of a client that reads it too slowly.
var errSlowRead = &SlowClientError{Indicator: SlowRead}

// slow reports an indicator once per connection and kind.
func (c *conn) slow(indicator string) {
	if c.srv.OnSlow == nil {
		return
	}
	if bit := slowBit(indicator); c.slowSeen.Or(bit)&bit == 0 {
		c.srv.OnSlow(c.hc, indicator)
	}
}

// slowBit is indicator's bit in a connection's set of reported indicators.
func slowBit(indicator string) uint32 {
	for i, s := range SlowIndicators {
		if s == indicator {
			return 1 << i
		}
	}
	return 0
}

// writeMeter measures how fast the client takes an answer that is waiting
// for it: bytes written against the time spent blocked in writes, so a
// client that simply has nothing to read (a slow backend, a long poll, a
// trickling event stream) is never measured, only one that does not take
// what is there. Every step of blocked time is a checkpoint; the rate is
// judged over RateWindow (four steps) of blocked time. HTTP/1 connections
// (writeMetered) and HTTP/2 streams (h2Writer) both measure with it.
type writeMeter struct {
	step  time.Duration // RateWindow / 4
	total int64         // bytes written
	busy  time.Duration // time spent inside writes
	k     int
	at    [4]time.Duration // busy at each checkpoint
	bytes [4]int64
}

// wrote adds a write of n bytes that kept the writer blocked for d, and
// reports whether the client now reads below min bytes a second.
func (m *writeMeter) wrote(n int, d time.Duration, min int64) bool {
	m.busy += d
	m.total += int64(n)
	return m.tooSlow(min)
}

// tooSlow takes a checkpoint once a step of blocked time has passed since
// the last, and reports whether the bytes written since the newest
// checkpoint at least a window back fall below min a second. On HTTP/1 a
// blocked write wakes up every step, so that is the checkpoint four back;
// an HTTP/2 stream is judged only between writes, each of which may last
// several steps, and is still judged once a window has passed.
func (m *writeMeter) tooSlow(min int64) bool {
	n := len(m.at)
	if m.busy-m.at[m.k%n] < m.step {
		return false
	}
	window := m.step * time.Duration(n)
	for i := range n { // newest first; unused slots are the start (zero)
		j := (m.k - i + n) % n
		if elapsed := m.busy - m.at[j]; elapsed >= window {
			if got := m.total - m.bytes[j]; float64(got) < float64(min)*elapsed.Seconds() {
				return true
			}
			break
		}
	}
	m.k++
	m.at[m.k%n], m.bytes[m.k%n] = m.busy, m.total
	return false
}

// writeMetered is connWriter.Write with a MinReadRate. It costs a clock
// read after each write; the deadline is moved at most once every half
// step (never per write), so a write blocked outright still wakes up
// every step to be judged.
func (c *conn) writeMetered(p []byte, now time.Time) (int, error) {
	m := &c.wmeter
	wt := c.writeTimeout
	step := m.step
	if c.writeDeadline.Sub(now) < step/2 {
		c.writeDeadline = now.Add(step)
		c.rwc.SetWriteDeadline(c.writeDeadline)
	}
	start := now
	written := 0
	for {
		n, err := c.sockWrite(p[written:])
		after := clock.Now()
		slow := m.wrote(n, after.Sub(now), c.minReadRate)
		now = after
		c.wroteAt = now
		written += n
		if slow {
			c.slow(SlowRead)
			c.discardUnsent()
			return written, errSlowRead
		}
		if err == nil || !isTimeoutErr(err) {
			return written, err
		}
		if wt > 0 && now.Sub(start) >= wt {
			c.slow(WriteTimeout)
			c.discardUnsent()
			return written, &SlowClientError{Indicator: WriteTimeout, err: err}
		}
		c.writeDeadline = now.Add(step)
		c.rwc.SetWriteDeadline(c.writeDeadline)
	}
}

// discardUnsent makes the coming close drop what the kernel still holds
// for a client that does not read (megabytes of socket buffer) and reset
// the connection, instead of trickling it out to the slow reader for
// minutes after Rampart gave up on it.
func (c *conn) discardUnsent() {
	if tc, ok := c.rwc.(interface{ SetLinger(sec int) error }); ok {
		tc.SetLinger(0)
	}
}
