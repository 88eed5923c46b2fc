package proxy

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/clock"
	"github.com/rampart-proxy/rampart/internal/evloop"
)

// Request bodies the direct client streams: larger than maxBufferedBody,
// or of unknown length (chunked). The body goes to the backend as it comes
// from the client, in its own goroutine, while the request's goroutine
// waits for the answer: full duplex, as http.Transport's write loop does
// it, so a backend that answers before the body is over (a refusal, a
// streamed echo) is heard at once and its answer relayed, and an upload
// reaches the backend while the client is still sending it.

// bodySender is one streamed body on its way to the backend.
type bodySender struct {
	done chan error // the sender's result; received once (result, finished)
	err  error
	over bool // done was received

	// started: a byte of the body was taken from the client, so the
	// request can no longer go to another connection (set before done).
	started bool
	// sent: the body's last byte went out; what the sender does after
	// that never waits (finished may wait for it). eof: the client's body
	// ended; only the last flush may be left.
	sent atomic.Bool
	eof  atomic.Bool

	// body is the client's body, closed by stop.
	body io.Reader
	// blocked is signalled when a write has to wait for the backend to
	// take more (sockio's BeforeWriteWait), and drained after each flush.
	blocked chan struct{}

	// mu orders the sender's last step against the answer's arrival:
	// once the answer's head is in (headIn), its reads' deadlines are the
	// request goroutine's, and the sender neither sets one nor closes the
	// connection under the answer being relayed. stopped: the exchange
	// ended without the rest of the body (stop).
	mu      sync.Mutex
	headIn  bool
	stopped bool
	// failed is the client's body failing after the answer's head came
	// (the connection was closed under the answer for it).
	failed error
	// ended: the sender is done with the connection; until then, pooled
	// (set by handOff) says the answer is over and the connection may go
	// back to its backend's pool once the body is all sent.
	ended  bool
	pooled func()
}

// errStreamStopped is a sender's result when stop ended its read of the
// client's body: the exchange's failure or answer is what counts.
var errStreamStopped = errors.New("request body no longer sent: the exchange ended")

// startBody sends d's streamed body on uc in a new goroutine. The
// response_header_timeout applies twice: to each wait for the backend to
// take more of the body (a backend that stops reading), and, once the body
// is all sent, to the wait for the answer's head, as in http.Transport;
// until then the head may take as long as the upload does.
func (uc *upstreamConn) startBody(d *directRequest, timeout time.Duration) *bodySender {
	s := &bodySender{done: make(chan error, 1), body: d.stream, blocked: make(chan struct{}, 1)}
	uc.writeWait, uc.sendBlocked = timeout, s.blocked
	// Not only a deadline uc.readDeadline knows of: a previous streamed
	// body's sender may have left its own on the socket.
	uc.readDeadline = time.Time{}
	uc.c.SetReadDeadline(time.Time{})
	// Two goroutines use the connection from here, and the sender may
	// still be at it when the request's task is back on its loop (handOff):
	// no task's waits yield on it.
	evloop.Unbind(uc.c)
	// Not d itself: the goroutine would take it to the heap, and with it
	// every request's directRequest (the bodiless ones too).
	go func(req *http.Request, body io.Reader, length int64) {
		s.done <- uc.sendBody(s, req, body, length, timeout)
	}(d.req, d.stream, d.streamLen)
	return s
}

// sendBody copies the body to the backend, each piece flushed as it comes
// (the backend may be waiting for it), chunked when its length is unknown.
// A client that fails its body (a limit, a timeout, gone) gets its error
// back from the exchange, and so does a backend that stops taking it (a
// timeout): the connection is closed so that the request's wait for an
// answer ends, unless the answer has come already.
func (uc *upstreamConn) sendBody(s *bodySender, req *http.Request, body io.Reader, length int64, timeout time.Duration) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	chunked := length < 0
	var err error
	var sent int64
	for {
		n, rerr := body.Read(buf)
		if sent += int64(n); !chunked && (sent > length || rerr == io.EOF && sent < length) {
			// Not what the head announced (the engines hold a body to
			// its length; this holds whatever reader comes here): past
			// it, the bytes would be the backend's next request.
			err = errShortBody
			uc.c.Close()
			break
		}
		if !chunked && sent == length {
			// All of it is here (the read that says so may come later):
			// a backend can answer once this piece is flushed.
			s.eof.Store(true)
		}
		if n > 0 {
			s.started = true
			if chunked {
				size := strconv.AppendInt(uc.bw.AvailableBuffer(), int64(n), 16)
				uc.bw.Write(append(size, "\r\n"...))
			}
			uc.bw.Write(buf[:n])
			if chunked {
				uc.bw.WriteString("\r\n")
			}
			if uc.raw == nil && timeout > 0 {
				// TLS: writes do not pass through sockio's hook.
				uc.c.SetWriteDeadline(clock.Now().Add(timeout))
				uc.writeArmed = true
			}
			if err = uc.bw.Flush(); err != nil {
				break
			}
			select { // a wait that is over
			case <-s.blocked:
			default:
			}
		}
		if rerr == io.EOF {
			s.eof.Store(true)
			if chunked {
				uc.bw.WriteString("0\r\n\r\n")
				err = uc.bw.Flush()
			}
			s.sent.Store(err == nil)
			break
		}
		if rerr != nil {
			s.mu.Lock()
			if err = bodyReadError(req, rerr); s.stopped {
				err = errStreamStopped
			}
			s.mu.Unlock()
			break
		}
	}
	uc.writeWait, uc.sendBlocked = 0, nil
	if uc.writeArmed {
		uc.writeArmed = false
		uc.c.SetWriteDeadline(time.Time{})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	switch {
	case s.pooled != nil: // the answer is over (handOff)
		if err == nil && !uc.cut.Load() {
			s.pooled()
		} else {
			uc.c.Close()
		}
	case s.headIn:
		if isClientBodyError(err) { // (errStreamStopped is not one)
			// The answer is being relayed, and the backend waits for
			// the rest of a body that will not come: cut it.
			s.failed = err
			uc.c.Close()
		}
	case err == nil && timeout > 0:
		uc.c.SetReadDeadline(clock.Now().Add(timeout))
	case isClientBodyError(err) || isResponseTimeout(err):
		// The client's body failed, or the backend took no more of it
		// in time: the wait for its answer, which has no deadline while
		// the body is sent, ends here. (A connection the backend closed
		// or reset ends that wait by itself, and may still hold an
		// answer it sent first.)
		uc.c.Close()
	}
	return err
}

// stop ends the sender's part when the exchange is over without the rest of
// the body (the backend answered first, failed or was cut): its writes fail
// on the connection, closed by then, and a read of the client's body that
// waits is stopped by closing the body (the HTTP/1 engine stops it, HTTP/2
// breaks the stream's pipe), which leaves the client's connection to close
// after the answer rather than wait for the rest of the body.
func (s *bodySender) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	if c, ok := s.body.(io.Closer); ok {
		c.Close()
	}
}

// handOff leaves the connection to the sender, to pool once the body is
// all sent (or close if that fails), when the answer ended first and the
// client has sent the body's end (so that what is left is the sender's
// last flush): it reports whether it did. A sender that has not reached the
// body's end is stopped instead (releaseConn).
func (s *bodySender) handOff(uc *upstreamConn, b *Backend, maxIdle int, lastUsed time.Time) bool {
	if !s.eof.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false // done meanwhile: finished says how
	}
	s.pooled = func() { pool(uc, b, maxIdle, lastUsed) }
	return true
}

// awaitLastFlush waits for a sender that has read the body's end to be
// done, unless a write of it has to wait for the backend (which then
// answered before it read the body whole): it reports whether the body was
// all sent. A backend that answers once it has the body has taken the
// last bytes, so the wait is the sender's few steps after its last write:
// the connection goes back to the pool before the answer's handler
// returns, and the client's next request finds it there.
func (s *bodySender) awaitLastFlush() bool {
	if s.over {
		return s.err == nil
	}
	select {
	case err := <-s.done:
		s.err, s.over = err, true
		return err == nil
	case <-s.blocked:
		return false
	}
}

// clientFailure is the client's body failing after the answer's head came
// (nil if it did not).
func (s *bodySender) clientFailure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// answered records that the answer's head has arrived (see mu).
func (s *bodySender) answered() {
	s.mu.Lock()
	s.headIn = true
	s.mu.Unlock()
}

// result waits for the sender to end and returns its error.
func (s *bodySender) result() error {
	if !s.over {
		s.err, s.over = <-s.done, true
	}
	return s.err
}

// finished reports whether the whole body was sent: only then can the
// connection carry another request. It waits only for a sender that has
// sent it all and is finishing (a backend answers once it has read the
// body, which can be before its sender has returned), never for a client.
func (s *bodySender) finished() bool {
	if s.sent.Load() {
		return s.result() == nil
	}
	if !s.over {
		select {
		case s.err = <-s.done:
			s.over = true
		default:
			return false
		}
	}
	return s.err == nil
}

// isClientBodyError reports whether err is the client's body failing
// (bodyReadError), not the backend's connection.
func isClientBodyError(err error) bool {
	var se interface{ HTTPStatus() int }
	return err == ErrClientGone || errors.As(err, &se)
}
