// Command idleconns measures what idle keep-alive connections cost Rampart:
// it opens N connections to a running Rampart on loopback (each sends one
// request and reads the answer, then stays open and silent, unless
// -request=false), and prints Rampart's resident memory (VmRSS from
// /proc/PID/status) before and after. Loopback only, bounded in time; it
// raises its own RLIMIT_NOFILE to the hard limit.
//
//	go run ./bench/idleconns -addr 127.0.0.1:18100 -pid $(pgrep -nf 'rampart serve') -n 10000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18100", "Rampart listener (must be a loopback address)")
	pid := flag.Int("pid", 0, "Rampart's process id (required: its VmRSS is read)")
	n := flag.Int("n", 10000, "connections to open")
	request := flag.Bool("request", true, "send one GET / on each connection before leaving it idle")
	sources := flag.Int("sources", 1, "spread connections over this many source addresses 127.0.0.2... (for per-IP limits)")
	hold := flag.Duration("hold", 3*time.Second, "wait this long with all connections open before measuring")
	limit := flag.Duration("timeout", 120*time.Second, "give up opening connections after this")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fail("-addr %q is not a loopback address", *addr)
	}
	if *pid <= 0 {
		fail("-pid is required")
	}
	raiseNofile(*n + 64)

	before := rss(*pid)
	fmt.Printf("rampart pid %d VmRSS before: %d KiB\n", *pid, before)

	conns := make([]net.Conn, *n)
	var opened, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	deadline := time.Now().Add(*limit)
	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c, err := open(*addr, i%*sources, *sources > 1, *request, deadline)
				if err != nil {
					failed.Add(1)
					msg := err.Error()
					firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				conns[i] = c
				opened.Add(1)
			}
		}()
	}
	for i := 0; i < *n && time.Now().Before(deadline); i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	fmt.Printf("opened %d connections (%d failed) in %s\n", opened.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	if e := firstErr.Load(); e != nil {
		fmt.Printf("first error: %s\n", *e)
	}
	time.Sleep(*hold)
	// Still open? A closed connection reads EOF at once.
	alive := 0
	for _, c := range conns {
		if c == nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				alive++
			}
		}
	}
	after := rss(*pid)
	fmt.Printf("still open after %s: %d\n", *hold, alive)
	fmt.Printf("rampart VmRSS with %d idle connections: %d KiB (+%d KiB, %.1f KiB per connection)\n",
		alive, after, after-before, float64(after-before)/float64(max(alive, 1)))
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Printf("rampart VmRSS after closing them: %d KiB\n", rss(*pid))
}

func open(addr string, src int, spread, request bool, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline, Timeout: 10 * time.Second}
	if spread {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, byte((src+2)>>8), byte((src+2)&0xff))}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if !request {
		return c, nil
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: idleconns\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Close {
		c.Close()
		return nil, fmt.Errorf("answer %d (close %v)", res.StatusCode, res.Close)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// rss reads VmRSS (KiB) of pid.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fail("%v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	fail("no VmRSS in /proc/%d/status", pid)
	return 0
}

func raiseNofile(want int) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		fail("getrlimit: %v", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		fail("setrlimit: %v", err)
	}
	if l.Cur < uint64(want) {
		fmt.Fprintf(os.Stderr, "warning: RLIMIT_NOFILE hard limit %d < %d connections\n", l.Max, want)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "idleconns: "+format+"\n", args...)
	os.Exit(1)
}
