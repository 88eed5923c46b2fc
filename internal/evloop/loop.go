// Package evloop runs connections on event loops of Rampart's own: each loop
// is a goroutine with an epoll instance of its own, and each connection's
// handling is straight-line code (a goroutine-per-connection server's) that
// runs as a coroutine the loop resumes when a socket it waits on is ready.
//
// Why: with a goroutine per connection, Go's network poller hands a batch of
// ready goroutines to the scheduler last-ready first, and under load the
// tail latency grows with it (docs/decisions/0001-http-engine.md, twelfth
// and thirteenth sessions: a minimal proxy in this model measured p99 1.26×
// nginx's with 2 µs of work per request added, the same proxy as coroutines
// resumed in readiness order 1.09×). A coroutine switch is a direct hand-over
// on the same thread, without the run queue.
//
// The sockets are the loop's own: a connection accepted or dialled through
// package net is adopted (Group.Adopt) by taking a duplicate of its
// descriptor and closing the net.Conn, which removes it from Go's poller, so
// that a readiness change is delivered once, to the loop.
//
// A coroutine must not block on anything that needs its loop to run (a
// channel another connection's goroutine feeds from one of this loop's
// sockets, say): code that is about to (a request body streamed by another
// goroutine, http.Transport, a hijacked connection) calls Detach first,
// and the connection goes on as an ordinary goroutine. Blocking on anything
// else (a mutex, a file write, a socket in Go's poller) is correct but holds
// up the loop's other connections while it lasts.
package evloop

import (
	"iter"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Group is a set of loops, one per P: adopted connections are spread over
// them in turn.
type Group struct {
	loops []*Loop
	next  atomic.Uint32
	// The watchdog sleeps while every loop does (watchIdle), until a loop
	// wakes it (kick): an idle process spends nothing on it.
	watchIdle atomic.Bool
	kick      chan struct{}
}

var (
	defaultGroup     atomic.Pointer[Group]
	defaultGroupErr  error
	defaultGroupOnce sync.Once
)

// Default returns the process's group, started on first use with
// GOMAXPROCS loops. Idle loops wait in Go's network poller and cost
// nothing but their memory.
func Default() (*Group, error) {
	defaultGroupOnce.Do(func() {
		var g *Group
		g, defaultGroupErr = NewGroup(runtime.GOMAXPROCS(0))
		defaultGroup.Store(g)
	})
	return defaultGroup.Load(), defaultGroupErr
}

// NewGroup starts n loops.
func NewGroup(n int) (*Group, error) {
	g := &Group{kick: make(chan struct{}, 1)}
	for range max(n, 1) {
		l, err := newLoop(g)
		if err != nil {
			return nil, err
		}
		g.loops = append(g.loops, l)
		go l.run()
	}
	go g.watch()
	return g, nil
}

func (g *Group) pick() *Loop {
	return g.loops[int(g.next.Add(1))%len(g.loops)]
}

// Loop is one event loop: an epoll instance, the connections registered in
// it and the coroutines it resumes.
type Loop struct {
	group *Group
	epfd  int
	// ep is epfd as a file in Go's poller: an idle loop waits there for
	// epfd to have events, like any goroutine waiting for a socket, so the
	// scheduler runs other goroutines meanwhile.
	ep    syscall.RawConn
	epf   *os.File
	evfd  int // eventfd: wakes the loop for what was posted to it
	event [8]byte

	// conns is the table of registered connections by descriptor; grown
	// under mu, read by the loop without it.
	conns atomic.Pointer[[]atomic.Pointer[Conn]]

	mu    sync.Mutex
	inbox []*Task // posted by other goroutines: to resume or to start
	// sleeping: the loop is (about to be) waiting in Go's poller, so a
	// post must write to evfd to wake it; notified: one already did.
	sleeping atomic.Bool
	notified atomic.Bool

	// Owned by the loop's goroutine.
	pollFn  func(uintptr) bool
	events  []syscall.EpollEvent
	nevents int
	ready   []*Task // woken for the next round
	round   []*Task // this round's, resumed from pos on
	pos     int
	spare   []*Task // the inbox's other buffer
	// running is the task being resumed; seq counts resumptions. Both are
	// read by Group.watch.
	running   atomic.Pointer[Task]
	seq       atomic.Uint64
	handovers atomic.Uint64
}

// epollET is EPOLLET, which package syscall declares as a negative int.
const epollET = 1 << 31

// connEvents: every socket is registered once, edge-triggered, for both
// directions; a waiter always tries its call before it waits, and the
// readiness an event brings is kept for the next wait when nobody waits.
const connEvents = syscall.EPOLLIN | syscall.EPOLLPRI | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET

func newLoop(g *Group) (*Loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("eventfd2", e)
	}
	l := &Loop{group: g, epfd: epfd, evfd: int(evfd), events: make([]syscall.EpollEvent, 256)}
	l.pollFn = l.pollOnce
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET, Fd: int32(evfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(evfd), &ev); err != nil {
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Non-blocking, so that os.NewFile puts it in Go's poller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		return nil, err
	}
	l.epf = os.NewFile(uintptr(epfd), "evloop")
	if l.ep, err = l.epf.SyscallConn(); err != nil {
		return nil, err
	}
	table := make([]atomic.Pointer[Conn], 1024)
	l.conns.Store(&table)
	return l, nil
}

// register puts c in the table under its descriptor, then in epoll.
func (l *Loop) register(c *Conn) error {
	l.mu.Lock()
	t := *l.conns.Load()
	if c.fd >= len(t) {
		grown := make([]atomic.Pointer[Conn], max(2*len(t), c.fd+1))
		for i := range t {
			grown[i].Store(t[i].Load())
		}
		l.conns.Store(&grown)
		t = grown
	}
	t[c.fd].Store(c)
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: connEvents, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		l.forget(c)
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// forget takes c out of the table, before its descriptor is closed and its
// number may be reused.
func (l *Loop) forget(c *Conn) {
	l.mu.Lock()
	t := *l.conns.Load()
	if c.fd < len(t) && t[c.fd].Load() == c {
		t[c.fd].Store(nil)
	}
	l.mu.Unlock()
}

// post hands t to the loop to resume (or to start), from any goroutine.
func (l *Loop) post(t *Task) {
	l.mu.Lock()
	l.inbox = append(l.inbox, t)
	l.mu.Unlock()
	if l.sleeping.Load() && l.notified.CompareAndSwap(false, true) {
		one := uint64(1)
		syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.evfd), uintptr(unsafe.Pointer(&one)), 8)
	}
}

// wakeFromLoop makes t runnable from the loop's own goroutine (dispatching
// events, taking the inbox): queued for the next round when t is this
// loop's, posted to its own loop otherwise.
func (l *Loop) wakeFromLoop(t *Task) {
	if t.loop != l {
		t.loop.post(t)
		return
	}
	if !t.queued {
		t.queued = true
		l.ready = append(l.ready, t)
	}
}

func (l *Loop) run() {
	for {
		if l.pos == len(l.round) {
			l.gather()
		}
		// Resumed in the order their sockets became ready; what they wake
		// on this loop waits for the next round.
		for l.pos < len(l.round) {
			t := l.round[l.pos]
			l.round[l.pos] = nil
			l.pos++
			t.queued = false
			if !l.resume(t) {
				return // handed over (see watch): this goroutine is t's now
			}
		}
	}
}

// gather waits for the next round's tasks: posted ones, then those whose
// sockets are ready, in that order.
func (l *Loop) gather() {
	spent := l.round[:0] // l.ready is empty: only gather fills it
	l.takeInbox()
	l.poll(false)
	if len(l.ready) == 0 && l.nevents == 0 {
		l.sleeping.Store(true)
		l.mu.Lock()
		empty := len(l.inbox) == 0
		l.mu.Unlock()
		if empty {
			l.poll(true)
		}
		l.sleeping.Store(false)
		if l.group.watchIdle.Load() {
			select {
			case l.group.kick <- struct{}{}:
			default:
			}
		}
		l.takeInbox()
	}
	l.dispatch()
	l.round, l.pos, l.ready = l.ready, 0, spent
}

// poll collects ready events: at once, or, with wait, after waiting in Go's
// poller for epfd to have some.
func (l *Loop) poll(wait bool) {
	l.nevents = 0
	if !wait {
		l.nevents = l.epollNow()
		return
	}
	l.ep.Read(l.pollFn)
}

// pollOnce is poll's function for Go's poller (as l.pollFn, a method value
// made once: a closure here would be an allocation per wait).
func (l *Loop) pollOnce(uintptr) bool {
	l.nevents = l.epollNow()
	return l.nevents > 0
}

// epollNow is epoll_wait with a zero timeout, as a raw system call: it never
// blocks.
func (l *Loop) epollNow() int {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		if e != syscall.EINTR {
			if e != 0 {
				return 0
			}
			return int(n)
		}
	}
}

func (l *Loop) dispatch() {
	table := *l.conns.Load()
	for _, ev := range l.events[:l.nevents] {
		fd := int(ev.Fd)
		if fd == l.evfd {
			syscall.RawSyscall(syscall.SYS_READ, uintptr(l.evfd), uintptr(unsafe.Pointer(&l.event[0])), 8)
			l.notified.Store(false)
			continue
		}
		if fd < len(table) {
			if c := table[fd].Load(); c != nil {
				c.ready(l, ev.Events)
			}
		}
	}
	l.nevents = 0
}

func (l *Loop) takeInbox() {
	l.mu.Lock()
	in := l.inbox
	l.inbox = l.spare[:0]
	l.mu.Unlock()
	for i, t := range in {
		l.wakeFromLoop(t)
		in[i] = nil
	}
	l.spare = in[:0]
}

// resume runs t until it waits again, asks to leave the loop, or ends. It
// reports false when the loop was handed to another goroutine meanwhile
// (watch): the caller is then t's goroutine, and leaves the loop alone.
func (l *Loop) resume(t *Task) bool {
	if !t.attached.Load() {
		return true // ended, or detached since it was woken
	}
	l.seq.Add(1)
	l.running.Store(t)
	_, alive := t.next()
	if !l.running.CompareAndSwap(t, nil) {
		// t blocked, and watch gave the loop to a new goroutine; t is
		// detached, and this goroutine drives it. (A Detach it asked for
		// meanwhile is moot.)
		t.detach = false
		if alive {
			t.drive()
		}
		return false
	}
	switch {
	case !alive:
		t.attached.Store(false)
	case t.detach:
		t.detach = false
		t.attached.Store(false)
		go t.drive()
	}
	return true
}

// stalled is what running holds once watch has taken the loop from a task
// that blocked.
var stalled = new(Task)

// watch runs for the group: a task that blocks on something other than its
// sockets (a handler waiting for a channel, a DNS lookup, a slow disk)
// holds up every connection of its loop. When a loop has been running the
// same resumption for stallTicks ticks, the task is detached where it
// stands (its later waits park, as a goroutine's do, until it reattaches
// for its connection's next request) and a new goroutine takes over the
// loop; the blocked one becomes the task's own. As Go's runtime does with a
// P whose thread blocks in a system call. Not sooner: a loop whose thread
// the kernel has merely set aside for another process (a busy machine) is
// not blocked, and handing it over would only cost.
func (g *Group) watch() {
	const tick = 5 * time.Millisecond
	const stallTicks = 2 // 10–15 ms
	type seen struct {
		seq   uint64
		ticks int
	}
	last := make([]seen, len(g.loops))
	idle := 0
	for {
		time.Sleep(tick)
		if idle > 20 && g.asleep() {
			// Nothing ran for a while and every loop waits for events:
			// sleep until one wakes (it kicks after it set watchIdle).
			g.watchIdle.Store(true)
			if g.asleep() {
				<-g.kick
			}
			g.watchIdle.Store(false)
			select {
			case <-g.kick:
			default:
			}
			idle = 0
		}
		busy := false
		for i, l := range g.loops {
			// running before seq: a resumption that began since the last
			// tick has moved seq by the time running shows it.
			t := l.running.Load()
			seq := l.seq.Load()
			switch {
			case seq != last[i].seq:
				busy = true
				last[i] = seen{seq: seq}
			case t != nil && t != stalled:
				busy = true
				last[i].ticks++
				if last[i].ticks >= stallTicks && l.running.CompareAndSwap(t, stalled) {
					t.attached.Store(false)
					l.handovers.Add(1)
					last[i].ticks = 0
					go l.run()
				}
			}
		}
		if busy {
			idle = 0
		} else {
			idle++
		}
	}
}

// asleep reports whether every loop waits in Go's poller.
func (g *Group) asleep() bool {
	for _, l := range g.loops {
		if !l.sleeping.Load() {
			return false
		}
	}
	return true
}

// Handovers counts the loops taken over from a task that blocked (see
// watch), over the process's group; 0 before it started.
func Handovers() uint64 {
	g := defaultGroup.Load()
	if g == nil {
		return 0
	}
	var n uint64
	for _, l := range g.loops {
		n += l.handovers.Load()
	}
	return n
}

// Task is one connection's coroutine.
type Task struct {
	loop     *Loop
	next     func() (struct{}, bool)
	yield    func(struct{}) bool
	attached atomic.Bool // the loop resumes it (false once ended or detached)
	queued   bool        // in the loop's ready list (loop-owned)
	// detach and reattach are what the task asks of whoever resumed it
	// when it yields other than to wait.
	detach, reattach bool
}

// onLoop reports whether t is running on its loop, so that a wait by t can
// yield to the loop. A wait by any other goroutine on a connection t owns
// would yield for t too: such connections are unbound, or t detached, first
// (see Bind).
func (t *Task) onLoop() bool {
	return t != nil && t.attached.Load() && t.loop.running.Load() == t
}

// suspend gives the thread back to the loop until something wakes t.
func (t *Task) suspend() { t.yield(struct{}{}) }

// drive runs a detached task on a goroutine of its own, until it ends or
// asks to go back to its loop (Reattach): its waits no longer yield.
func (t *Task) drive() {
	for {
		if t.reattach {
			t.reattach = false
			t.attached.Store(true)
			t.loop.post(t)
			return
		}
		if _, alive := t.next(); !alive {
			return
		}
	}
}

// Reattach moves a detached task back onto its loop, when the caller is
// that task: a connection that left the loop for one request (a streamed
// upload, a blocked handler) comes back for the next. It does nothing for a
// task on its loop.
func (t *Task) Reattach() {
	if t == nil || t.attached.Load() {
		return
	}
	t.reattach = true
	t.suspend()
}

// Detach moves the calling task off its loop: from here on it is an
// ordinary goroutine. Code running as a task calls it before it blocks on
// something that needs a loop to run; elsewhere (t nil, or not on its
// loop) it does nothing.
func (t *Task) Detach() {
	if !t.onLoop() {
		return
	}
	t.detach = true
	t.suspend()
}

// start creates the task running fn for c and hands it to c's loop.
func start(c *Conn, fn func()) {
	t := &Task{loop: c.loop}
	t.attached.Store(true)
	t.next, _ = iter.Pull(func(yield func(struct{}) bool) {
		t.yield = yield
		fn()
	})
	c.owner.Store(t)
	c.loop.post(t)
}
