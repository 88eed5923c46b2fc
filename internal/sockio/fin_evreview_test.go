package sockio_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/sockio"
)

// Data followed by the peer's FIN, both arriving while the reader waits: the
// wait takes the one readiness event they bring, the read returns the data
// (fewer bytes than asked: SetDrained(true)), and the end of stream is still
// in the socket. No event follows (the FIN came already), so the next Read
// skips its read (ReadQuiet) and waits forever instead of returning io.EOF.
// In Rampart: a request body the client truncates by closing, a
// close-delimited backend answer (HTTP/1.0, Connection: close without a
// length), a pipelined request followed by a close.
func TestEvreviewDataThenFINReturnsEOF(t *testing.T) {
	g, err := evloop.NewGroup(1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		lc, err := g.Adopt(sc)
		if err != nil {
			t.Fatal(err)
		}
		s := sockio.New(lc)
		go func() {
			time.Sleep(5 * time.Millisecond) // the reader waits by then
			cc.Write([]byte("abc"))
			cc.(*net.TCPConn).CloseWrite()
		}()
		lc.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 64)
		var got []byte
		var rerr error
		for rerr == nil {
			var n int
			n, rerr = s.Read(buf)
			got = append(got, buf[:n]...)
		}
		if string(got) != "abc" || rerr != io.EOF {
			t.Errorf("attempt %d: read %q then %v, want \"abc\" then EOF", i, got, rerr)
		}
		lc.Close()
		cc.Close()
	}
}
