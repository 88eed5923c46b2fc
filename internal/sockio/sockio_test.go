package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// pair returns a sockio.Conn and the net.Conn at the other end of a
// loopback TCP connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	sc := New(c)
	if sc == nil {
		t.Fatal("New returned nil for a TCP connection")
	}
	return sc, peer
}

func TestNewOnlyForTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if New(a) != nil {
		t.Error("New made a Conn for a pipe")
	}
}

// Bytes larger than both sockets' buffers go through intact in both
// directions: writes wait while the buffer is full, reads while it is empty.
func TestReadWriteLarge(t *testing.T) {
	sc, peer := pair(t)
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	// sc -> peer
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(data))))
		got <- b
	}()
	n, err := sc.Write(data)
	if err != nil || n != len(data) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("peer read %d bytes, not the ones written", len(b))
	}
	// peer -> sc, then EOF once the peer closes
	go func() {
		peer.Write(data)
		peer.Close()
	}()
	b, err := io.ReadAll(sc)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("ReadAll: %d bytes, %v", len(b), err)
	}
	if n, err := sc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, EOF", n, err)
	}
}

// Deadlines set on the net.Conn bound sockio's waits, with net.Conn's
// timeout errors.
func TestDeadlines(t *testing.T) {
	sc, _ := pair(t)
	c := sc.nc
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := sc.Read(make([]byte, 10))
	if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	// The peer never reads: the write fills both buffers, then times out.
	big := make([]byte, 64<<20)
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := sc.Write(big)
	if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() {
		t.Fatalf("write past its deadline: %d, %v", n, err)
	}
	if n <= 0 || n >= len(big) {
		t.Fatalf("write past its deadline reported %d bytes written (%v)", n, err)
	}
}

// BeforeWriteWait runs when, and only when, a write has to wait for the
// socket's buffer: a deadline it sets bounds that wait.
func TestBeforeWriteWait(t *testing.T) {
	sc, peer := pair(t)
	calls := 0
	sc.BeforeWriteWait = func() {
		calls++
		sc.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	}
	if n, err := sc.Write([]byte("small")); n != 5 || err != nil || calls != 0 {
		t.Fatalf("a write that fits: %d, %v, %d calls to BeforeWriteWait", n, err, calls)
	}
	io.ReadFull(peer, make([]byte, 5))
	// The peer never reads: the write fills both buffers, waits, and its
	// wait ends at the deadline set on the way in. (Without the call, it
	// would wait until this test's own limit ends it.)
	limit := time.AfterFunc(5*time.Second, func() { sc.nc.SetWriteDeadline(time.Now()) })
	defer limit.Stop()
	n, err := sc.Write(make([]byte, 64<<20))
	if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() || n <= 0 {
		t.Fatalf("write to a peer that does not read: %d, %v", n, err)
	}
	if calls == 0 {
		t.Fatal("BeforeWriteWait was not called before the write waited")
	}
}

// Writable: true while the send buffer has room, false once a peer that
// does not read has let it fill.
func TestWritable(t *testing.T) {
	sc, _ := pair(t)
	if !sc.Writable() {
		t.Fatal("a fresh connection is not writable")
	}
	sc.nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := sc.Write(make([]byte, 64<<20)); err == nil {
		t.Fatal("64 MiB written to a peer that does not read")
	}
	if sc.Writable() {
		t.Fatal("writable with its send buffer full")
	}
	sc.nc.Close()
	if !sc.Writable() {
		t.Fatal("a closed connection: not writable (a write would fail at once)")
	}
}

// Closing the connection ends a read waiting for data.
func TestCloseEndsRead(t *testing.T) {
	sc, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := sc.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the read start waiting
	sc.nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read still waits after Close")
	}
}

// A failed call comes back as net.Conn's would: a *net.OpError around the
// errno.
func TestResetError(t *testing.T) {
	sc, peer := pair(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // RST
	var err error
	for range 100 { // the RST may arrive after the first read's wait began
		if _, err = sc.Read(make([]byte, 10)); err != nil {
			break
		}
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after a reset: %v (%T), want a *net.OpError with ECONNRESET", err, err)
	}
}

// PeerClosed sees a close or a reset, and nothing while the peer is there,
// also with data waiting, which it leaves for the next read.
func TestPeerClosed(t *testing.T) {
	until := func(sc *Conn, want bool) bool {
		for range 200 { // the FIN or RST takes a moment on loopback
			if sc.PeerClosed() == want {
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		return false
	}
	sc, peer := pair(t)
	if sc.PeerClosed() {
		t.Fatal("PeerClosed on an open connection")
	}
	peer.Write([]byte("x"))
	time.Sleep(20 * time.Millisecond)
	if sc.PeerClosed() {
		t.Fatal("PeerClosed with unread data")
	}
	b := make([]byte, 4)
	if n, err := sc.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("read after PeerClosed: %d %v %q, want the byte it peeked at", n, err, b[:n])
	}
	peer.(*net.TCPConn).CloseWrite() // half-close: FIN
	if !until(sc, true) {
		t.Fatal("PeerClosed false after the peer's FIN")
	}

	sc, peer = pair(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // RST
	if !until(sc, true) {
		t.Fatal("PeerClosed false after a reset")
	}
}

// Pending sees data and the end of the stream, and nothing on a quiet
// connection.
func TestPending(t *testing.T) {
	sc, peer := pair(t)
	if sc.Pending() {
		t.Fatal("Pending on a quiet connection")
	}
	peer.Write([]byte("x"))
	deadline := time.Now().Add(2 * time.Second)
	for !sc.Pending() {
		if time.Now().After(deadline) {
			t.Fatal("Pending false with data waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sc.Read(make([]byte, 1))
	if sc.Pending() {
		t.Fatal("Pending after the data was read")
	}
	peer.Close()
	for !sc.Pending() {
		if time.Now().After(deadline) {
			t.Fatal("Pending false at the end of the stream")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A reset: the read would fail at once.
	sc, peer = pair(t)
	if sc.Pending() {
		t.Fatal("Pending on a quiet connection")
	}
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	for !sc.Pending() {
		if time.Now().After(deadline) {
			t.Fatal("Pending false after a reset")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after a reset: %v, want ECONNRESET", err)
	}
}

// A write to a connection whose sending side is shut fails with EPIPE and
// raises no SIGPIPE (MSG_NOSIGNAL). Without the flag the kernel sends the
// signal, which the runtime ignores for sockets but relays to Notify.
func TestWriteAfterShutdownNoSignal(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGPIPE)
	defer signal.Stop(sigs)
	sc, _ := pair(t)
	sc.nc.(*net.TCPConn).CloseWrite()
	if _, err := sc.Write([]byte("hello")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write after shutdown: %v, want EPIPE", err)
	}
	select {
	case <-sigs:
		if !raceEnabled { // the race build writes with write(2)
			t.Fatal("SIGPIPE raised by a write to a shut connection")
		}
	case <-time.After(50 * time.Millisecond):
	}
}
