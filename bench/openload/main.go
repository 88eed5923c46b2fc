// Command openload is an open-loop HTTP/1.1 load generator: -c keep-alive
// connections send requests at a fixed total -rate, each on its own
// schedule, whether or not earlier answers are late, and every latency is
// measured from when the request was due (not when it was sent), so a
// stalled server is charged for the requests it delayed.
//
// wrk is closed-loop: it sends as fast as answers come back, which drives
// the proxy's core to saturation, and its tail latency then mostly
// measures queueing on that core. At a fixed rate below saturation, the
// tail shows what a request costs when the server has room.
//
// Usage: openload -rate 15000 [-c 64] [-d 10s] [-H "Name: value"]... URL
//
// The output imitates the lines of `wrk --latency` that bench/lib.sh's
// parse_wrk reads (requests, Requests/sec, 50%, 99%, Non-2xx), so
// bench/run.sh can use it in wrk's place (RATE=...). Loopback only.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	rate := flag.Float64("rate", 10000, "requests per second, all connections together")
	conns := flag.Int("c", 64, "keep-alive connections")
	dur := flag.Duration("d", 10*time.Second, "duration")
	var hdrs headers
	flag.Var(&hdrs, "H", "request header \"Name: value\" (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 || *rate <= 0 || *conns <= 0 {
		log.Fatal("usage: openload -rate R [-c N] [-d D] [-H header]... URL")
	}
	u, err := url.Parse(flag.Arg(0))
	if err != nil || u.Scheme != "http" {
		log.Fatalf("openload: need an http:// URL: %v", err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		log.Fatalf("openload: %s is not a loopback address", u.Host)
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	for _, h := range hdrs {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n")

	interval := time.Duration(float64(*conns) / *rate * float64(time.Second))
	start := time.Now().Add(100 * time.Millisecond)
	end := start.Add(*dur)
	results := make([]result, *conns)
	var wg sync.WaitGroup
	for i := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Connections are staggered across one interval so the
			// total rate is even.
			first := start.Add(interval * time.Duration(i) / time.Duration(*conns))
			results[i] = run(u.Host, []byte(req.String()), first, interval, end)
		}()
	}
	wg.Wait()

	var all []time.Duration
	total, errs, non2xx := 0, 0, 0
	for _, r := range results {
		all = append(all, r.lat...)
		total += len(r.lat)
		errs += r.errs
		non2xx += r.non2xx
	}
	slices.Sort(all)
	q := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	secs := dur.Seconds()
	fmt.Printf("Open loop at %.0f req/s over %d connections\n", *rate, *conns)
	fmt.Printf("Latency Distribution\n")
	for _, p := range []struct {
		name string
		q    float64
	}{{"50%", 0.50}, {"75%", 0.75}, {"90%", 0.90}, {"99%", 0.99}, {"99.9%", 0.999}} {
		fmt.Printf("  %s %.2fms\n", p.name, float64(q(p.q).Microseconds())/1000)
	}
	fmt.Printf("  %d requests in %.2fs\n", total, secs)
	if errs > 0 {
		fmt.Printf("  Socket errors: connect 0, read %d, write 0, timeout 0\n", errs)
	}
	if non2xx > 0 {
		fmt.Printf("  Non-2xx or 3xx responses: %d\n", non2xx)
	}
	fmt.Printf("Requests/sec: %.2f\n", float64(total)/secs)
}

type result struct {
	lat          []time.Duration
	errs, non2xx int
}

// run sends on one connection at first, first+interval, … until end.
func run(addr string, req []byte, first time.Time, interval time.Duration, end time.Time) result {
	var r result
	var c net.Conn
	var br *bufio.Reader
	for due := first; due.Before(end); due = due.Add(interval) {
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if c == nil {
			var err error
			if c, err = net.Dial("tcp", addr); err != nil {
				r.errs++
				continue
			}
			br = bufio.NewReaderSize(c, 16<<10)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		status, err := roundTrip(c, br, req)
		if err != nil {
			r.errs++
			c.Close()
			c = nil
			continue
		}
		r.lat = append(r.lat, time.Since(due))
		if status < 200 || status > 399 {
			r.non2xx++
		}
	}
	if c != nil {
		c.Close()
	}
	return r
}

// roundTrip writes req and reads one answer (Content-Length or chunked
// bodies), returning its status.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	length, chunked := -1, false
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-length":
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		case "transfer-encoding":
			chunked = strings.Contains(strings.ToLower(v), "chunked")
		}
	}
	switch {
	case chunked:
		for {
			sz, err := br.ReadString('\n')
			if err != nil {
				return 0, err
			}
			n, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(sz, ";", 2)[0]), 16, 64)
			if err != nil {
				return 0, err
			}
			if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
				return 0, err
			}
			if n == 0 {
				return status, nil
			}
		}
	case length >= 0:
		_, err = io.CopyN(io.Discard, br, int64(length))
		return status, err
	}
	return 0, fmt.Errorf("answer without a length")
}
