package http1

import (
	"errors"
	"time"
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

// errSlowRead ends the answer of a client that reads it too slowly.
var errSlowRead = errors.New("http1: client reads the response below the minimum data rate")

// slow reports an indicator once per connection and kind.
func (c *conn) slow(indicator string) {
	if c.srv.OnSlow == nil {
		return
	}
	var bit uint32
	for i, s := range SlowIndicators {
		if s == indicator {
			bit = 1 << i
		}
	}
	if c.slowSeen.Or(bit)&bit != 0 {
		return
	}
	c.srv.OnSlow(c.hc, indicator)
}

// writeMeter measures how fast the client takes an answer that is waiting
// for it. It runs only inside writes that hit the write deadline, which
// with a MinReadRate is moved every half step at most, never per write:
// checkpoints are taken when a write is blocked, so a client that simply
// has nothing to read (a slow backend, a long poll) is never measured.
type writeMeter struct {
	step  time.Duration // RateWindow / 4
	total int64
	k     int
	at    [4]time.Time
	bytes [4]int64
}

func (m *writeMeter) restart(now time.Time) {
	m.k = 0
	for i := range m.at {
		m.at[i], m.bytes[i] = now, m.total
	}
}

// tooSlow records a checkpoint and reports whether the bytes written over
// the last four steps (the window) fall below min a second.
func (m *writeMeter) tooSlow(now time.Time, min int64) bool {
	m.k++
	j := m.k % len(m.at)
	if m.k >= len(m.at) {
		elapsed := now.Sub(m.at[j])
		if got := m.total - m.bytes[j]; elapsed > 0 && float64(got) < float64(min)*elapsed.Seconds() {
			return true
		}
	}
	m.at[j], m.bytes[j] = now, m.total
	return false
}

// writeMetered is connWriter.Write with a MinReadRate. The deadline is at
// most a step ahead (or WriteTimeout, if shorter), so a blocked write wakes
// up once a step to check the rate and the write timeout.
func (c *conn) writeMetered(p []byte, now time.Time) (int, error) {
	m := &c.wmeter
	wt := c.writeTimeout
	step := m.step
	if wt > 0 && wt < step {
		step = wt
	}
	if now.After(c.writeDeadline) {
		// The deadline passed while nothing was being written: the client
		// had nothing to read, so measuring starts afresh.
		m.restart(now)
	}
	if c.writeDeadline.Sub(now) < step/2 {
		c.writeDeadline = now.Add(step)
		c.rwc.SetWriteDeadline(c.writeDeadline)
	}
	start := now
	written := 0
	for {
		n, err := c.rwc.Write(p[written:])
		written += n
		m.total += int64(n)
		if err == nil || !isTimeoutErr(err) {
			return written, err
		}
		now = time.Now()
		if wt > 0 && now.Sub(start) >= wt {
			c.slow(WriteTimeout)
			return written, err
		}
		if m.tooSlow(now, c.minReadRate) {
			c.slow(SlowRead)
			return written, errSlowRead
		}
		c.writeDeadline = now.Add(step)
		c.rwc.SetWriteDeadline(c.writeDeadline)
	}
}
