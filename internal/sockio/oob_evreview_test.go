package sockio_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/sockio"
)

// A read that TCP stops short while more data is already queued: the read
// before an urgent (MSG_OOB) mark returns only the bytes up to the mark. The
// loop connection records "drained" (short read), no new event comes (the
// data was all there), so the next Read skips its read and waits, although
// the rest of the data is in the socket. On a net.TCPConn the same second
// Read returns "def" at once.
func TestEvreviewShortReadAtUrgentMarkDoesNotHang(t *testing.T) {
	for _, loop := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		var c net.Conn = sc
		if loop {
			g, err := evloop.NewGroup(1)
			if err != nil {
				t.Fatal(err)
			}
			lc, err := g.Adopt(sc)
			if err != nil {
				t.Fatal(err)
			}
			defer lc.Close()
			c = lc
		}
		s := sockio.New(c)
		raw, _ := cc.(*net.TCPConn).SyscallConn()
		go func() {
			// Sent while the reader waits: its wait takes the readiness.
			time.Sleep(50 * time.Millisecond)
			raw.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1)
				syscall.Sendto(int(fd), []byte("abc"), 0, nil)
				syscall.Sendto(int(fd), []byte("X"), syscall.MSG_OOB, nil)
				syscall.Sendto(int(fd), []byte("def"), 0, nil)
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 0)
			})
		}()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		var got []byte
		buf := make([]byte, 64)
		for len(got) < 6 {
			n, err := s.Read(buf)
			if err != nil {
				t.Errorf("loop=%v: after %q: %v (the rest was already in the socket)", loop, got, err)
				break
			}
			got = append(got, buf[:n]...)
		}
		if loop && len(got) == 6 {
			t.Logf("loop=%v: %q", loop, got)
		}
	}
}
