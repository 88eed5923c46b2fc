package evloop

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rampart-proxy/rampart/internal/sockio"
)

// Conn is a TCP connection whose socket belongs to a loop. It is a
// net.Conn, and its SyscallConn's Read and Write wait as net's do, except
// that a wait by the task that owns the connection, on its loop, yields to
// the loop instead of parking the goroutine in Go's poller.
type Conn struct {
	fd            int
	loop          *Loop
	local, remote net.Addr
	// owner is the task whose waits yield (see Bind); nil: waits park.
	owner atomic.Pointer[Task]

	// state counts the calls using fd, and has closedBit once Close was
	// called: the descriptor is closed when both are true, by whichever
	// comes last, so a call never uses a number the kernel has reused.
	state atomic.Int64

	mu     sync.Mutex
	closed bool
	r, w   direction

	raw rawConn
	// sock is Conn's Read and Write: package sockio's raw calls, through
	// raw (made once the Conn is complete, see newConn).
	sock *sockio.Conn
}

const closedBit = 1 << 62

// direction is one direction's waiting state, guarded by Conn.mu.
type direction struct {
	// ready: an event came since the last wait; the next wait retries the
	// call instead of waiting. Written under Conn.mu; read without it by
	// ReadQuiet.
	ready atomic.Bool
	// ended: an event said the peer closed or reset its side, or sent
	// urgent data (a read stops short at the urgent mark): a short read no
	// longer means the socket is empty. Sticky.
	ended atomic.Bool
	// drained: the last read found the socket empty (SetDrained), and no
	// wait has taken a readiness since. Only the reading goroutine uses it.
	drained bool
	// expired: the deadline has passed (until it is moved). Written under
	// Conn.mu, read without it by every call.
	expired  atomic.Bool
	deadline time.Time
	timer    *time.Timer
	// The waiter: a task (yields) or a goroutine (parks on ch).
	task    *Task
	ch      chan struct{}
	waiting bool
}

// Adopt takes nc's socket out of Go's poller and into one of g's loops.
// nc must be a *net.TCPConn; it is closed (the socket stays open, as the
// returned Conn), unless Adopt fails.
func (g *Group) Adopt(nc net.Conn) (*Conn, error) {
	return g.pick().adopt(nc)
}

func (l *Loop) adopt(nc net.Conn) (*Conn, error) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil, errors.New("evloop: not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = dupCloexec(int(s))
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	c := newConn(fd, l, tc.LocalAddr(), tc.RemoteAddr())
	if err := l.register(c); err != nil {
		syscall.Close(fd)
		return nil, err // nc is as it was
	}
	// Closing the net.Conn takes the socket out of Go's epoll set
	// (explicitly: the duplicate keeps the socket, and with it the
	// registration, alive) and closes the original descriptor.
	tc.Close()
	return c, nil
}

func newConn(fd int, l *Loop, local, remote net.Addr) *Conn {
	c := &Conn{fd: fd, loop: l, local: local, remote: remote}
	c.raw.c = c
	c.sock = sockio.New(c)
	return c
}

func dupCloexec(fd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, os.NewSyscallError("fcntl", e)
	}
	return int(r), nil
}

// Go runs fn as a task that owns c, on c's loop.
func (c *Conn) Go(fn func()) { start(c, fn) }

// Reattach moves the task that owns c back onto its loop, when the caller
// is that task, detached (see Task.Reattach).
func (c *Conn) Reattach() { c.owner.Load().Reattach() }

// Detach moves the task that owns c off its loop, when the caller is that
// task (see Task.Detach).
func (c *Conn) Detach() { c.owner.Load().Detach() }

type ctxKey struct{}

// WithConn returns ctx carrying c: code that runs for c's task (a request
// handler) finds the task through it (TaskOf).
func WithConn(ctx context.Context, c *Conn) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// TaskOf returns the task of the connection ctx carries, or nil.
func TaskOf(ctx context.Context) *Task {
	if c, _ := ctx.Value(ctxKey{}).(*Conn); c != nil {
		return c.owner.Load()
	}
	return nil
}

// Detach detaches the task of the connection ctx carries, when the caller
// is that task running on its loop; otherwise it does nothing.
func Detach(ctx context.Context) { TaskOf(ctx).Detach() }

// Adopted returns nc as a loop connection of the task ctx carries, when that
// task is on its loop and nc is a TCP connection; otherwise nc itself. For
// connections the task dials (to a backend): their waits then yield too.
func Adopted(ctx context.Context, nc net.Conn) net.Conn {
	t := TaskOf(ctx)
	if !t.onLoop() {
		return nc
	}
	if _, ok := nc.(*net.TCPConn); !ok {
		return nc
	}
	c, err := t.loop.adopt(nc)
	if err != nil {
		return nc // still open: adopt closes it only on success
	}
	c.owner.Store(t)
	return c
}

// Bind makes the task ctx carries the owner of nc's waits, when nc is a loop
// connection: a pooled backend connection is bound to each request's task
// in turn (nil, a goroutine's request: its waits park).
//
// Whether a wait yields is decided by the connection's owner, not by who
// waits: while the owner runs on its loop, no other goroutine may wait on
// the connection (its wait would yield for the owner). A connection that
// other goroutines use meanwhile (a body sender's) is unbound first.
func Bind(nc net.Conn, ctx context.Context) {
	if c, ok := nc.(*Conn); ok {
		c.owner.Store(TaskOf(ctx))
	}
}

// Unbind leaves nc without an owner, when it is a loop connection: every
// wait on it parks. For a connection that goroutines other than a task use,
// and for one that goes back to a pool (which would otherwise keep its
// last task, and what that task holds, alive while it is idle).
func Unbind(nc net.Conn) {
	if c, ok := nc.(*Conn); ok {
		c.owner.Store(nil)
	}
}

// ready is called by the loop with the events that came for c.
func (c *Conn) ready(l *Loop, ev uint32) {
	c.mu.Lock()
	var rt, wt *Task
	if ev&(syscall.EPOLLRDHUP|syscall.EPOLLERR|syscall.EPOLLPRI) != 0 {
		c.r.ended.Store(true)
	}
	if ev&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR|syscall.EPOLLPRI) != 0 {
		rt = c.r.signal()
	}
	if ev&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		wt = c.w.signal()
	}
	c.mu.Unlock()
	if rt != nil {
		l.wakeFromLoop(rt)
	}
	if wt != nil && wt != rt {
		l.wakeFromLoop(wt)
	}
}

// signal records readiness and wakes a waiting goroutine; a waiting task is
// returned for the caller to wake once the lock is released.
func (d *direction) signal() *Task {
	d.ready.Store(true)
	return d.wake()
}

func (d *direction) wake() *Task {
	if !d.waiting {
		return nil
	}
	if d.task != nil {
		return d.task
	}
	select {
	case d.ch <- struct{}{}:
	default:
	}
	return nil
}

func (c *Conn) incref() bool {
	for {
		s := c.state.Load()
		if s&closedBit != 0 {
			return false
		}
		if c.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

func (c *Conn) decref() {
	if c.state.Add(-1) == closedBit {
		c.destroy()
	}
}

func (c *Conn) destroy() {
	c.loop.forget(c)
	syscall.Close(c.fd)
}

// Close closes the connection: waits in progress end with net.ErrClosed,
// and the descriptor is closed once no call uses it.
func (c *Conn) Close() error {
	var s int64
	for {
		s = c.state.Load()
		if s&closedBit != 0 {
			return c.opError("close", net.ErrClosed)
		}
		if c.state.CompareAndSwap(s, s|closedBit) {
			break
		}
	}
	c.mu.Lock()
	c.closed = true
	rt, wt := c.r.wake(), c.w.wake()
	c.r.stopTimer()
	c.w.stopTimer()
	c.mu.Unlock()
	wakeTask(rt)
	if wt != rt {
		wakeTask(wt)
	}
	if s == 0 {
		// Nobody was using it, and nobody can start to: closed here.
		// Otherwise the last call to end closes it (decref).
		c.destroy()
	}
	return nil
}

func wakeTask(t *Task) {
	if t != nil {
		t.loop.post(t)
	}
}

func (d *direction) stopTimer() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

// wait waits for d's next readiness: nil to retry the call, or the error
// that ends it (closed, deadline).
func (c *Conn) wait(d *direction, op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case c.closed:
			return c.opError(op, net.ErrClosed)
		case d.expired.Load():
			return c.opError(op, os.ErrDeadlineExceeded)
		case d.ready.Load():
			d.ready.Store(false)
			d.drained = false
			return nil
		}
		d.waiting = true
		if t := c.owner.Load(); t.onLoop() {
			d.task = t
			c.mu.Unlock()
			t.suspend()
			c.mu.Lock()
			d.task = nil
		} else {
			if d.ch == nil {
				d.ch = make(chan struct{}, 1)
			}
			ch := d.ch
			c.mu.Unlock()
			<-ch
			c.mu.Lock()
		}
		d.waiting = false
	}
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.local, Addr: c.remote, Err: err}
}

// setDeadline moves d's deadline; a passed one ends a wait in progress.
func (c *Conn) setDeadline(d *direction, t time.Time) {
	c.mu.Lock()
	d.deadline = t
	d.expired.Store(false)
	var wake *Task
	switch {
	case t.IsZero():
		d.stopTimer()
	case !t.After(time.Now()):
		d.stopTimer()
		d.expired.Store(true)
		wake = d.wake()
	default:
		if d.timer == nil {
			d.timer = time.AfterFunc(time.Until(t), func() { c.expire(d) })
		} else {
			d.timer.Reset(time.Until(t))
		}
	}
	c.mu.Unlock()
	wakeTask(wake)
}

// expire is d's timer: the deadline has passed unless it was moved since.
func (c *Conn) expire(d *direction) {
	c.mu.Lock()
	var wake *Task
	if !d.deadline.IsZero() && !time.Now().Before(d.deadline) {
		d.expired.Store(true)
		wake = d.wake()
	}
	c.mu.Unlock()
	wakeTask(wake)
}

// net.Conn.

func (c *Conn) Read(p []byte) (int, error)         { return c.sock.Read(p) }
func (c *Conn) Write(p []byte) (int, error)        { return c.sock.Write(p) }
func (c *Conn) LocalAddr() net.Addr                { return c.local }
func (c *Conn) RemoteAddr() net.Addr               { return c.remote }
func (c *Conn) SetReadDeadline(t time.Time) error  { c.setDeadline(&c.r, t); return nil }
func (c *Conn) SetWriteDeadline(t time.Time) error { c.setDeadline(&c.w, t); return nil }
func (c *Conn) SetDeadline(t time.Time) error {
	c.setDeadline(&c.r, t)
	c.setDeadline(&c.w, t)
	return nil
}

// SyscallConn returns the connection's syscall.RawConn (package sockio
// reads and writes through it).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return &c.raw, nil }

// CloseWrite shuts down the sending side, as net.TCPConn's does.
func (c *Conn) CloseWrite() error {
	return c.raw.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_WR) })
}

// SetLinger sets SO_LINGER, as net.TCPConn's does.
func (c *Conn) SetLinger(sec int) error {
	l := syscall.Linger{Onoff: 1, Linger: int32(sec)}
	if sec < 0 {
		l = syscall.Linger{}
	}
	var err error
	if cerr := c.raw.Control(func(fd uintptr) { err = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &l) }); cerr != nil {
		return cerr
	}
	return err
}

// ReadQuiet reports whether the socket is known to be empty: the last read
// found it so, and no readiness came since (package sockio then waits
// first instead of making the read that would fail).
func (c *Conn) ReadQuiet() bool {
	return c.r.drained && !c.r.ready.Load() && !c.r.ended.Load()
}

// SetDrained records whether the last read found the socket empty.
func (c *Conn) SetDrained(empty bool) { c.r.drained = empty }

// rawConn is Conn's syscall.RawConn.
type rawConn struct{ c *Conn }

func (r *rawConn) Control(f func(fd uintptr)) error {
	c := r.c
	if !c.incref() {
		return c.opError("raw-control", net.ErrClosed)
	}
	f(uintptr(c.fd))
	c.decref()
	return nil
}

func (r *rawConn) Read(f func(fd uintptr) bool) error {
	return r.c.rawIO(&r.c.r, "read", f)
}

func (r *rawConn) Write(f func(fd uintptr) bool) error {
	return r.c.rawIO(&r.c.w, "write", f)
}

func (c *Conn) rawIO(d *direction, op string, f func(fd uintptr) bool) error {
	if !c.incref() {
		return c.opError(op, net.ErrClosed)
	}
	var err error
	for {
		if d.expired.Load() {
			err = c.opError(op, os.ErrDeadlineExceeded)
			break
		}
		if f(uintptr(c.fd)) {
			break
		}
		if err = c.wait(d, op); err != nil {
			break
		}
	}
	c.decref()
	return err
}
