//go:build linux

// Package rawio holds what the two event-loop candidates (eventloop and
// coro) share: raw non-blocking socket calls, epoll, and the minimal HTTP/1.1
// head rewriting the other candidates do (hop-by-hop fields dropped, an
// answer framed by Content-Length). A measuring instrument, not a server:
// GET and HEAD without bodies only.
package rawio

import (
	"bytes"
	"flag"
	"log"
	"net"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// extraWork is user-space work added to every request (-work): with it a
// candidate costs what a proxy with more to do per request costs, so how
// each waiting model's latency responds to that cost can be measured
// without writing the proxy (bench/run.sh's CAND_WORK).
var extraWork = flag.Duration("work", 0, "busy-loop this long per request (to measure how latency follows per-request cost)")

// BufSize is each connection's read buffer.
const BufSize = 8192

// Canned answers that end a connection.
var (
	Resp501 = []byte("HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	Resp502 = []byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
)

// Sockaddr resolves a loopback host:port (cand.Parse checked it).
func Sockaddr(hostport string) syscall.Sockaddr {
	a, err := net.ResolveTCPAddr("tcp4", hostport)
	if err != nil {
		log.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	return sa
}

// Listen returns a non-blocking listening socket.
func Listen(addr string) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, Sockaddr(addr)); err != nil {
		log.Fatal(err)
	}
	if err := syscall.Listen(fd, 4096); err != nil {
		log.Fatal(err)
	}
	return fd
}

// Accept returns a non-blocking accepted socket, or -1 (EAGAIN).
func Accept(lfd int) int {
	fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
	if err != nil {
		return -1
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	return fd
}

// Dial connects to sa: a blocking connect, which on loopback completes at
// once, then a non-blocking socket. -1 on failure.
func Dial(sa syscall.Sockaddr) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return -1
	}
	syscall.SetNonblock(fd, true)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	return fd
}

// Epoll is an epoll instance with its event buffer.
type Epoll struct {
	fd     int
	events []syscall.EpollEvent
}

// NewEpoll creates one.
func NewEpoll() *Epoll {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	return &Epoll{fd: fd, events: make([]syscall.EpollEvent, 256)}
}

// Add registers fd for events.
func (e *Epoll) Add(fd int, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	if err := syscall.EpollCtl(e.fd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		log.Fatal(err)
	}
}

// Mod changes fd's events.
func (e *Epoll) Mod(fd int, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	syscall.EpollCtl(e.fd, syscall.EPOLL_CTL_MOD, fd, &ev)
}

// Wait returns the ready events: first without blocking and without
// telling the scheduler (a busy loop finds some at once), then blocking in
// a system call the scheduler knows about.
func (e *Epoll) Wait() []syscall.EpollEvent {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(e.fd), uintptr(unsafe.Pointer(&e.events[0])), uintptr(len(e.events)), 0, 0, 0)
		if errno == 0 && n > 0 {
			return e.events[:n]
		}
		if k, err := syscall.EpollWait(e.fd, e.events, -1); err == nil && k > 0 {
			return e.events[:k]
		}
	}
}

// Read is read(2) as a raw system call: the socket never blocks.
func Read(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// Write is write(2) as a raw system call.
func Write(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// HeadEnd returns the length of the head in b including its blank line, or
// -1 while it is incomplete.
func HeadEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return -1
}

// Request appends to w the request head as the backend gets it: hop-by-hop
// fields dropped, X-Forwarded-For added. ok is false for what the
// candidates do not handle (a method other than GET or HEAD, a body, a
// malformed field).
func Request(w, head []byte) (out []byte, ok bool) {
	if *extraWork > 0 {
		for t := time.Now(); time.Since(t) < *extraWork; {
		}
	}
	line, rest, _ := bytes.Cut(head[:len(head)-2], []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("GET ")) && !bytes.HasPrefix(line, []byte("HEAD ")) {
		return w, false
	}
	w = append(append(w, line...), "\r\n"...)
	for len(rest) > 0 {
		var f []byte
		f, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(f, []byte(":"))
		switch {
		case !ok || len(name) == 0:
			return w, false
		case hop(name):
			continue
		case equalFold(name, "Content-Length") && string(bytes.TrimSpace(value)) != "0":
			return w, false
		}
		w = append(append(w, f...), "\r\n"...)
	}
	return append(w, "X-Forwarded-For: 127.0.0.1\r\n\r\n"...), true
}

// Response appends to w the answer head as the client gets it (hop-by-hop
// fields dropped) and returns the body's length; ok is false for an answer
// without exactly one valid Content-Length, or chunked.
func Response(w, head []byte) (out []byte, clen int, ok bool) {
	line, rest, _ := bytes.Cut(head[:len(head)-2], []byte("\r\n"))
	w = append(append(w, line...), "\r\n"...)
	clen = -1
	for len(rest) > 0 {
		var f []byte
		f, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(f, []byte(":"))
		if !ok || equalFold(name, "Transfer-Encoding") {
			return w, 0, false
		}
		if hop(name) {
			continue
		}
		if equalFold(name, "Content-Length") {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || n < 0 || clen >= 0 {
				return w, 0, false
			}
			clen = n
		}
		w = append(append(w, f...), "\r\n"...)
	}
	if clen < 0 {
		return w, 0, false
	}
	return append(w, "\r\n"...), clen, true
}

// hop reports whether a field is hop-by-hop (RFC 9110 section 7.6.1).
func hop(name []byte) bool {
	for _, h := range hopFields {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

var hopFields = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// equalFold compares a field name with s (ASCII letters, digits, '-').
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i]|0x20 != s[i]|0x20 {
			return false
		}
	}
	return true
}

// ReadAnswer reads a backend's answer into *buf with read (which appends
// what the socket has, waiting if need be; false at the end of the stream)
// and appends to w the answer as the client gets it; false for an answer
// the candidates do not handle, or bytes past its end.
func ReadAnswer(read func(buf *[]byte) bool, buf *[]byte, w []byte) ([]byte, bool) {
	*buf = (*buf)[:0]
	for {
		if !read(buf) {
			return w, false
		}
		in := *buf
		end := HeadEnd(in)
		if end < 0 {
			continue
		}
		w, clen, ok := Response(w, in[:end])
		switch {
		case !ok || end+clen > cap(in) || len(in) > end+clen:
			return w, false // unhandled, or more than the answer
		case len(in) < end+clen:
			continue // body still coming
		}
		return append(w, in[end:]...), true
	}
}
