package http1

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// recordConn is a net.Conn whose writes are recorded and whose reads
// come from a fixed byte stream.
type recordConn struct {
	net.Conn
	in     *bytes.Reader
	out    syncBuffer
	closed atomic.Bool
}

func (c *recordConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *recordConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *recordConn) Close() error                     { c.closed.Store(true); return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recordConn) written() ([]byte, bool) { return []byte(c.out.String()), c.closed.Load() }

// h2Frame returns a frame of the given type and payload length.
func h2Frame(typ byte, id uint32, n int) []byte {
	f := make([]byte, 9+n)
	f[0], f[1], f[2] = byte(n>>16), byte(n>>8), byte(n)
	f[3] = typ
	binary.BigEndian.PutUint32(f[5:], id)
	return f
}

// A reset flood's GOAWAY goes out between two of the server's frames: when
// the server's last write ended inside a frame, it waits for the rest.
func TestH2ConnGoAwayAfterPartialFrame(t *testing.T) {
	for _, finish := range []bool{true, false} {
		var flood []byte
		flood = append(flood, make([]byte, h2PrefaceLen)...)
		for id := uint32(1); id < 10; id += 2 {
			flood = append(flood, h2Frame(frameHeaders, id, 6)...)
			flood = append(flood, h2Frame(frameRSTStream, id, 4)...)
		}
		rc := &recordConn{in: bytes.NewReader(flood)}
		c := newH2Conn(rc, rc, rc, nil, 2, nil)
		data := h2Frame(0x0, 1, 100) // a DATA frame the server writes in two parts
		if _, err := c.Write(data[:50]); err != nil {
			t.Fatal(err)
		}
		if finish {
			go func() {
				time.Sleep(50 * time.Millisecond)
				c.Write(data[50:])
			}()
		}
		start := time.Now()
		buf := make([]byte, len(flood))
		var err error
		for err == nil {
			_, err = c.Read(buf)
		}
		if err != errResetFlood {
			t.Fatalf("finish %v: read error %v, want errResetFlood", finish, err)
		}
		out, closed := rc.written()
		if !closed {
			t.Errorf("finish %v: connection not closed", finish)
		}
		if !finish {
			if !bytes.Equal(out, data[:50]) {
				t.Errorf("unfinished frame: wrote %d bytes, want the 50 of the partial frame and no GOAWAY", len(out))
			}
			if d := time.Since(start); d < 900*time.Millisecond {
				t.Errorf("unfinished frame: closed after %v, want about a second of waiting", d)
			}
			continue
		}
		want := append(bytes.Clone(data), h2Frame(frameGoAway, 0, 8)...)
		binary.BigEndian.PutUint32(want[len(data)+9:], 9) // last stream id
		binary.BigEndian.PutUint32(want[len(data)+13:], errCodeCalm)
		if !bytes.Equal(out, want) {
			t.Errorf("finished frame: wrote\n%x\nwant the whole DATA frame, then GOAWAY:\n%x", out, want)
		}
	}
}
