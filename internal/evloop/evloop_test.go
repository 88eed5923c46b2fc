package evloop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

const testTimeout = 10 * time.Second

// serve accepts on a loopback listener and runs each connection as a task
// of g running fn.
func serve(t *testing.T, g *Group, fn func(c *Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c, err := g.Adopt(nc)
			if err != nil {
				t.Error(err)
				nc.Close()
				return
			}
			c.Go(func() { fn(c) })
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

func echo(c *Conn) { echoFrom(c, bufio.NewReader(c)) }

func echoFrom(c *Conn, br *bufio.Reader) {
	defer c.Close()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
	}
}

func newGroup(t *testing.T, n int) *Group {
	t.Helper()
	g, err := NewGroup(n)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Many connections on few loops, each a conversation of many round trips,
// and answers bigger than a socket buffer (writes that wait).
func TestEcho(t *testing.T) {
	g := newGroup(t, 2)
	addr := serve(t, g, echo)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	big[len(big)-1] = '\n'
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, addr)
			br := bufio.NewReader(c)
			for j := range 50 {
				msg := fmt.Sprintf("conn %d message %d\n", i, j)
				if j == 25 && i%8 == 0 {
					msg = string(big)
				}
				go io.WriteString(c, msg)
				got, err := br.ReadString('\n')
				if err != nil || got != msg {
					t.Errorf("conn %d message %d: got %d bytes, %v", i, j, len(got), err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A read deadline ends a wait with a timeout error, and a moved one lets
// the next read succeed.
func TestReadDeadline(t *testing.T) {
	g := newGroup(t, 1)
	res := make(chan error, 2)
	addr := serve(t, g, func(c *Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		var b [8]byte
		_, err := c.Read(b[:])
		res <- err
		c.SetReadDeadline(time.Time{})
		n, err := c.Read(b[:])
		if err == nil && string(b[:n]) != "late" {
			err = fmt.Errorf("read %q", b[:n])
		}
		res <- err
	})
	cc := dial(t, addr)
	var ne net.Error
	if err := <-res; !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	io.WriteString(cc, "late")
	if err := <-res; err != nil {
		t.Fatalf("read after the deadline was cleared: %v", err)
	}
}

// A deadline already passed fails the call even with data waiting, as
// net.Conn's does (the HTTP/1 engine stops reads that way).
func TestPassedDeadlineFailsAtOnce(t *testing.T) {
	g := newGroup(t, 1)
	res := make(chan error, 1)
	addr := serve(t, g, func(c *Conn) {
		defer c.Close()
		time.Sleep(20 * time.Millisecond) // the data is there
		c.SetReadDeadline(time.Now())
		var b [8]byte
		_, err := c.Read(b[:])
		res <- err
	})
	cc := dial(t, addr)
	io.WriteString(cc, "data")
	if err := <-res; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a passed deadline: %v", err)
	}
}

// Close from another goroutine ends the owner's wait, and the peer sees
// the connection closed.
func TestCloseFromOutside(t *testing.T) {
	g := newGroup(t, 1)
	conns := make(chan *Conn, 1)
	res := make(chan error, 1)
	addr := serve(t, g, func(c *Conn) {
		conns <- c
		var b [8]byte
		_, err := c.Read(b[:])
		res <- err
	})
	cc := dial(t, addr)
	c := <-conns
	time.Sleep(20 * time.Millisecond) // waiting in Read
	c.Close()
	if err := <-res; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read ended by Close: %v", err)
	}
	var b [1]byte
	if _, err := cc.Read(b[:]); err != io.EOF {
		t.Fatalf("peer read after Close: %v, want EOF", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// A task that blocks on something other than its sockets is detached by
// the watchdog, and the loop's other connections go on meanwhile.
func TestBlockedTaskHandedOver(t *testing.T) {
	g := newGroup(t, 1)
	release := make(chan struct{})
	addr := serve(t, g, func(c *Conn) {
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err == nil && line == "block\n" {
			<-release
		}
		echoFrom(c, br)
	})
	blocked := dial(t, addr)
	io.WriteString(blocked, "block\n")
	time.Sleep(20 * time.Millisecond)
	other := dial(t, addr)
	io.WriteString(other, "first\nsecond\nthird\n")
	br := bufio.NewReader(other)
	for _, want := range []string{"second\n", "third\n"} {
		if got, err := br.ReadString('\n'); err != nil || got != want {
			t.Fatalf("other connection while one task blocks: %q, %v", got, err)
		}
	}
	if n := g.loops[0].handovers.Load(); n == 0 {
		t.Fatal("no handover recorded")
	}
	close(release)
	// The blocked task goes on as a goroutine.
	io.WriteString(blocked, "after\n")
	if got, err := bufio.NewReader(blocked).ReadString('\n'); err != nil || got != "after\n" {
		t.Fatalf("blocked connection after release: %q, %v", got, err)
	}
}

// Detach turns the task into a goroutine, whose waits then park, so it may
// wait for another goroutine that reads its connection.
func TestDetach(t *testing.T) {
	g := newGroup(t, 1)
	addr := serve(t, g, func(c *Conn) {
		defer c.Close()
		c.Detach()
		got := make(chan string)
		go func() {
			line, _ := bufio.NewReader(c).ReadString('\n')
			got <- line
		}()
		io.WriteString(c, <-got)
	})
	cc := dial(t, addr)
	time.Sleep(20 * time.Millisecond)
	io.WriteString(cc, "detached\n")
	if got, err := bufio.NewReader(cc).ReadString('\n'); err != nil || got != "detached\n" {
		t.Fatalf("%q, %v", got, err)
	}
	if n := g.loops[0].handovers.Load(); n != 0 {
		t.Fatalf("%d handovers: the detached task still held the loop", n)
	}
}

// A connection a task dials is adopted into the task's loop (Adopted) and
// its waits yield; bound to a task of another loop (Bind), its waits yield
// to that one.
func TestDialedConnAcrossLoops(t *testing.T) {
	g := newGroup(t, 2)
	backend := serve(t, newGroup(t, 1), echo)
	var mu sync.Mutex
	var pooled net.Conn // one backend connection, used by every client in turn
	ctxs := 0
	addr := serve(t, g, func(c *Conn) {
		defer c.Close()
		ctx := WithConn(context.Background(), c)
		mu.Lock()
		defer mu.Unlock()
		if pooled == nil {
			nc, err := net.Dial("tcp", backend)
			if err != nil {
				t.Error(err)
				return
			}
			pooled = Adopted(ctx, nc)
			if _, ok := pooled.(*Conn); !ok {
				t.Errorf("Adopted returned %T", pooled)
			}
		}
		Bind(pooled, ctx)
		ctxs++
		msg := fmt.Sprintf("via %d\n", ctxs)
		io.WriteString(pooled, msg)
		got, err := bufio.NewReader(pooled).ReadString('\n')
		if err != nil || got != msg {
			t.Errorf("backend answer %q, %v", got, err)
		}
		io.WriteString(c, got)
	})
	for i := range 6 { // spread over both loops
		cc := dial(t, addr)
		if got, err := bufio.NewReader(cc).ReadString('\n'); err != nil || got != fmt.Sprintf("via %d\n", i+1) {
			t.Fatalf("client %d: %q, %v", i, got, err)
		}
	}
	pooled.Close()
}

// A goroutine that is not the owner (nobody's task) waits by parking.
func TestForeignGoroutineReads(t *testing.T) {
	g := newGroup(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc := dial(t, ln.Addr().String())
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.Adopt(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(testTimeout)) // a lost wakeup fails, not hangs
	go func() {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(cc, "hello")
	}()
	var b [8]byte
	n, err := c.Read(b[:])
	if err != nil || string(b[:n]) != "hello" {
		t.Fatalf("%q, %v", b[:n], err)
	}
}

// Dial connects on the task's loop; a refused connect fails as net.Dialer's
// does (a "dial" *net.OpError); outside a task, or for a name, Dial
// declines.
func TestDial(t *testing.T) {
	g := newGroup(t, 1)
	backend := serve(t, newGroup(t, 1), echo)
	refused := func() string { // a port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}()
	type result struct {
		got string
		err error
		ok  bool
	}
	res := make(chan result, 4)
	addr := serve(t, g, func(c *Conn) {
		defer c.Close()
		ctx := WithConn(context.Background(), c)
		nc, ok, err := Dial(ctx, backend, time.Second)
		if err == nil {
			_, isLoop := nc.(*Conn)
			io.WriteString(nc, "dialled\n")
			line, rerr := bufio.NewReader(nc).ReadString('\n')
			if !isLoop {
				rerr = fmt.Errorf("dialled a %T", nc)
			}
			nc.Close()
			res <- result{line, rerr, ok}
		} else {
			res <- result{"", err, ok}
		}
		_, ok, err = Dial(ctx, refused, time.Second)
		res <- result{"", err, ok}
		// A name is declined: resolving it would wait outside the loop.
		_, ok, err = Dial(ctx, "localhost:1", time.Second)
		res <- result{"", err, ok}
	})
	dial(t, addr)
	if r := <-res; r.err != nil || !r.ok || r.got != "dialled\n" {
		t.Fatalf("dial on the loop: %+v", r)
	}
	var op *net.OpError
	if r := <-res; !r.ok || !errors.As(r.err, &op) || op.Op != "dial" {
		t.Fatalf("refused dial: %+v, want a dial OpError", r)
	}
	if r := <-res; r.ok {
		t.Fatalf("a name: %+v, want Dial to decline", r)
	}
	if _, ok, _ := Dial(context.Background(), backend, time.Second); ok {
		t.Fatal("Dial outside a task did not decline")
	}
}
