package evloop

import (
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// A goroutine other than the task that owned a connection waits on it while
// that task is running on its loop (in Rampart: the proxy's streamed-body
// sender still flushing the last of a body after handOff, while the task,
// reattached, serves the client's next request). Whether a wait yields is
// decided by the connection's owner, so such a connection is unbound first
// (Bind's contract); its waits then park, and the task stays its loop's
// running task, alone. (Found by review: without the unbinding, the
// goroutine called the task's yield, and two tasks of one loop ran at once.)
func TestEvreviewForeignWaitWhileOwnerRuns(t *testing.T) {
	g := newGroup(t, 1)
	var spinning atomic.Bool
	var overlap atomic.Int32
	got := make(chan string, 1)
	ownerDone := make(chan bool, 1)
	first := true
	addr := serve(t, g, func(c *Conn) {
		if !first { // the loop's other connection
			var b [1]byte
			if spinning.Load() {
				overlap.Add(1)
			}
			c.Read(b[:])
			if spinning.Load() {
				overlap.Add(1)
			}
			return
		}
		first = false
		t0 := TaskOf(WithConn(t.Context(), c))
		// The contract (Bind): a connection that another goroutine waits
		// on while its task runs is unbound first, as the proxy does for a
		// body sender's backend connection.
		Unbind(c)
		go func() { // not the task: a goroutine of its own
			var b [16]byte
			n, err := c.Read(b[:])
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- string(b[:n])
		}()
		// The task runs on (less than the watchdog's 10 ms) while the
		// goroutine's read finds nothing and waits.
		spinning.Store(true)
		stillOn := true
		for end := time.Now().Add(5 * time.Millisecond); time.Now().Before(end); {
			if !t0.onLoop() {
				stillOn = false
			}
		}
		spinning.Store(false)
		ownerDone <- stillOn
	})
	cc := dial(t, addr)
	time.Sleep(time.Millisecond)
	other := dial(t, addr) // its task waits on the loop for a byte
	go func() {
		time.Sleep(2 * time.Millisecond)
		other.Write([]byte{1}) // arrives while the first task spins
	}()
	stillOn := <-ownerDone
	time.Sleep(20 * time.Millisecond)
	io.WriteString(cc, "hello")
	select {
	case s := <-got:
		if s != "hello" {
			t.Errorf("foreign read: %q", s)
		}
	case <-time.After(3 * time.Second):
		t.Error("foreign read never returned")
	}
	if !stillOn {
		t.Error("the task, running on its loop, was no longer the loop's running task: a foreign goroutine's wait yielded for it")
	}
	if n := overlap.Load(); n != 0 {
		t.Errorf("another task of the same loop ran %d times while the first was running", n)
	}
}
