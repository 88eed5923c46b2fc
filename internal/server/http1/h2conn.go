package http1

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// h2Conn is an HTTP/2 connection (h2c, or "h2" over TLS) as the HTTP/2
// server sees it. It replays the bytes the HTTP/1 loop already read (h2c), tells Server.OnClose when the HTTP/2
// server closes it (so the connection guard counts it for as long as it is
// open, not only until the hand-off), and counts the client's RST_STREAM
// frames: net/http offers no hook for them, so the byte stream is followed
// frame by frame (a 9-byte header, then a skip of the payload: no copy, no
// allocation). A client resetting more than maxResets streams within a
// second gets a GOAWAY (ENHANCE_YOUR_CALM) and the connection is closed.
// (net/http sends GOAWAY only for errors of its own types, which a reader
// cannot return, so the GOAWAY is written here, between two of its frames.)
type h2Conn struct {
	net.Conn
	r       io.Reader
	onClose func(net.Conn)
	inner   net.Conn // what onClose is given
	closed  sync.Once
	// slowSeen has a bit per slow indicator its streams reported.
	slowSeen atomic.Uint32
	// isClosed: Close was called (the header timer then does nothing).
	isClosed atomic.Bool

	maxResets int // 0: not counted
	onAbuse   func(reason string)
	in        frameTracker
	resetSec  int64
	resets    int
	flooded   bool
	lastID    atomic.Uint32 // highest client stream id seen, for GOAWAY

	// A header block (HEADERS, then CONTINUATION frames up to one with
	// END_HEADERS) must end within headerTimeout, in at most
	// maxContinuations CONTINUATION frames: net/http bounds a block by its
	// bytes, which empty CONTINUATION frames never add to (CVE-2024-27316
	// class), and not in time at all. headerTimer closes the connection.
	headerTimeout time.Duration
	headerTimer   *time.Timer
	inHeaders     bool
	continuations int
	onSlow        func(c net.Conn, indicator string) // Server.OnSlow

	wmu       sync.Mutex // orders the server's writes with our GOAWAY
	wrote     *sync.Cond // on wmu: a server write, or the GOAWAY's wait is over
	out       frameTracker
	goingAway bool
	waitOver  bool
}

// errResetFlood ends the read side of a connection that reset too many
// streams, or sent a header block in too many CONTINUATION frames; the
// HTTP/2 server then closes it.
var errResetFlood = errors.New("http1: HTTP/2 client flooded the connection")

// maxContinuations bounds the CONTINUATION frames of one header block (a
// block of the largest allowed size needs at most a few).
const maxContinuations = 32

// frameTracker follows HTTP/2 frame boundaries in a byte stream.
type frameTracker struct {
	skip int     // payload bytes (or preface bytes) left to pass over
	hn   int     // header bytes collected
	hdr  [9]byte // frame header being collected
}

// atBoundary reports whether the next byte starts a frame.
func (t *frameTracker) atBoundary() bool { return t.skip == 0 && t.hn == 0 }

// feed follows p and calls frame for every complete frame header, with
// the bytes of p that follow it (the start of its payload, or less).
func (t *frameTracker) feed(p []byte, frame func(hdr *[9]byte, rest []byte)) {
	for len(p) > 0 {
		if t.skip > 0 {
			n := min(t.skip, len(p))
			t.skip -= n
			p = p[n:]
			continue
		}
		n := copy(t.hdr[t.hn:], p)
		t.hn += n
		p = p[n:]
		if t.hn == len(t.hdr) {
			t.hn = 0
			t.skip = int(t.hdr[0])<<16 | int(t.hdr[1])<<8 | int(t.hdr[2])
			if frame != nil {
				frame(&t.hdr, p)
			}
		}
	}
}

const (
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameGoAway       = 0x7
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
	errCodeCalm       = 0xb // ENHANCE_YOUR_CALM
	h2PrefaceLen      = 24  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// newH2Conn wraps conn, which carries the HTTP/2 bytes (the socket, or
// the TLS connection over it); inner is what onClose is given. h gives the
// limits (nil: none, for tests of the wrapper alone).
func newH2Conn(conn, inner net.Conn, r io.Reader, h *h2Server) *h2Conn {
	c := &h2Conn{Conn: conn, r: r, inner: inner}
	if h != nil {
		c.onClose, c.maxResets, c.onAbuse, c.headerTimeout = h.srv.OnClose, h.maxResets, h.onAbuse, h.headerTimeout
		c.onSlow = h.srv.OnSlow
	}
	c.wrote = sync.NewCond(&c.wmu)
	c.in.skip = h2PrefaceLen
	return c
}

func (c *h2Conn) Read(p []byte) (int, error) {
	if c.flooded {
		// Bytes the HTTP/1 loop buffered may still be there: not served.
		return 0, errResetFlood
	}
	n, err := c.r.Read(p)
	if c.maxResets <= 0 || n == 0 {
		return n, err
	}
	flood := ""
	c.in.feed(p[:n], func(h *[9]byte, _ []byte) {
		id := binary.BigEndian.Uint32(h[5:]) &^ (1 << 31)
		switch h[3] {
		case frameHeaders:
			if id > c.lastID.Load() {
				c.lastID.Store(id)
			}
			c.headerBlock(h[4]&flagEndHeaders != 0)
		case frameContinuation:
			if c.continuations++; c.continuations > maxContinuations && flood == "" {
				flood = "continuation_flood"
			}
			c.headerBlock(h[4]&flagEndHeaders != 0)
		case frameRSTStream:
			if sec := time.Now().Unix(); sec != c.resetSec {
				c.resetSec, c.resets = sec, 0
			}
			c.resets++
			if c.resets > c.maxResets && flood == "" {
				flood = "max_resets_per_second"
			}
		}
	})
	if flood != "" {
		c.flooded = true
		c.goAway(flood)
		return n, errResetFlood
	}
	return n, err
}

// headerBlock follows header blocks: a HEADERS frame without END_HEADERS
// opens one (and arms the header timeout), a frame with it closes it.
func (c *h2Conn) headerBlock(ends bool) {
	switch {
	case ends && c.inHeaders:
		c.inHeaders = false
		if c.headerTimer != nil {
			c.headerTimer.Stop()
		}
	case !ends && !c.inHeaders:
		c.inHeaders, c.continuations = true, 0
		if c.headerTimeout <= 0 {
			return
		}
		if c.headerTimer == nil {
			c.headerTimer = time.AfterFunc(c.headerTimeout, c.headerTimedOut)
		} else {
			c.headerTimer.Reset(c.headerTimeout)
		}
	}
	if ends {
		c.continuations = 0
	}
}

// headerTimedOut closes a connection whose header block did not end in
// time (HTTP/2's slowloris), as the HTTP/1 engine does with a head.
func (c *h2Conn) headerTimedOut() {
	if c.isClosed.Load() {
		return // the connection ended otherwise (a flood, the client)
	}
	c.slow(SlowHeader)
	c.goAway("header_timeout")
}

// slow reports a slow-client indicator of the connection or one of its
// streams, once per indicator and connection, as conn.slow does.
func (c *h2Conn) slow(indicator string) {
	if bit := slowBit(indicator); c.onSlow != nil && c.slowSeen.Or(bit)&bit == 0 {
		c.onSlow(c.inner, indicator)
	}
}

// goAway sends GOAWAY between two of the server's frames and closes the
// connection. When the server's last write ended inside a frame (its
// buffer flushes at any byte), the GOAWAY waits for the server to finish
// that frame; a server write in progress, or a frame not finished, is
// waited for at most a second (a flooding client may not be reading):
// then the close comes without it.
func (c *h2Conn) goAway(reason string) {
	if c.onAbuse != nil {
		c.onAbuse(reason)
	}
	// One deadline for both waits: the frame's end (the wait below) and
	// a server write holding wmu (the select).
	expired := make(chan struct{})
	stop := time.AfterFunc(time.Second, func() {
		close(expired)
		c.wmu.Lock()
		c.waitOver = true
		c.wrote.Broadcast()
		c.wmu.Unlock()
	})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		c.wmu.Lock()
		defer c.wmu.Unlock()
		for !c.goingAway && !c.out.atBoundary() && !c.waitOver {
			c.wrote.Wait()
		}
		if !c.goingAway && c.out.atBoundary() {
			var f [17]byte
			f[2] = 8 // payload length
			f[3] = frameGoAway
			binary.BigEndian.PutUint32(f[9:], c.lastID.Load())
			binary.BigEndian.PutUint32(f[13:], errCodeCalm)
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.Conn.Write(f[:])
		}
		c.goingAway = true
	}()
	select {
	case <-sent:
	case <-expired:
	}
	stop.Stop()
	c.Close()
}

func (c *h2Conn) Write(p []byte) (int, error) {
	if c.maxResets <= 0 {
		return c.Conn.Write(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.goingAway {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(p)
	c.out.feed(p[:n], c.serverFrame)
	c.wrote.Broadcast()
	return n, err
}

// serverFrame counts the HTTP/2 server's GOAWAY frames that end a
// connection for an error (a header list or HPACK table too large, a
// SETTINGS flood, ...): net/http reports few of them to CountError, and
// they are refusals like the others. Its GOAWAY is written whole, so its
// error code is in the same write.
func (c *h2Conn) serverFrame(h *[9]byte, rest []byte) {
	if h[3] != frameGoAway || c.onAbuse == nil || len(rest) < 8 {
		return
	}
	if code := binary.BigEndian.Uint32(rest[4:8]); code != 0 { // 0: NO_ERROR, a graceful close
		c.onAbuse("goaway_" + h2ErrCodeName(code))
	}
}

// h2ErrCodeNames are the HTTP/2 error codes' names (RFC 9113 §7), for
// metrics.
var h2ErrCodeNames = [...]string{"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
	"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR",
	"ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"}

func h2ErrCodeName(code uint32) string {
	if int(code) < len(h2ErrCodeNames) {
		return h2ErrCodeNames[code]
	}
	return "unknown"
}

func (c *h2Conn) Close() error {
	c.isClosed.Store(true)
	err := c.Conn.Close()
	c.closed.Do(func() {
		if c.onClose != nil {
			c.onClose(c.inner)
		}
	})
	return err
}
