// Command accesslog measures the access log writer's sustainable rate:
// producers log typical records at fixed offered rates into a real file
// (rotation at 100 MB, compression on, as by default) and the highest
// rate with no dropped line is reported. A last run offers as much as the
// producers can encode ("max").
//
//	go run ./bench/accesslog [-dir DIR] [-duration 5s] [-rates 50000,100000,...] [-compress=true]
//
// Nothing leaves the machine; files are removed after each run.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/accesslog"
	"github.com/rampart-proxy/rampart/internal/pipeline"
)

func main() {
	dir := flag.String("dir", "", "directory for the log files (default: a new temp directory)")
	duration := flag.Duration("duration", 5*time.Second, "length of each run")
	rates := flag.String("rates", "25000,50000,100000,200000,400000", "offered lines/s, comma-separated; a max run follows")
	compress := flag.Bool("compress", true, "gzip rotated files")
	producers := flag.Int("producers", runtime.GOMAXPROCS(0), "logging goroutines")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "rampart-accesslog-bench-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	fmt.Printf("dir %s, %d producers, %s per run, rotation 100 MB, compress %v, GOMAXPROCS %d\n",
		*dir, *producers, *duration, *compress, runtime.GOMAXPROCS(0))
	fmt.Printf("%10s %12s %12s %10s %8s %10s\n", "offered", "logged/s", "written/s", "dropped", "drop%", "MB/s")
	best := 0
	var list []int
	for _, s := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fail(fmt.Errorf("-rates: %v", err))
		}
		list = append(list, n)
	}
	for _, rate := range append(list, 0) {
		r := run(*dir, rate, *producers, *duration, *compress)
		name := strconv.Itoa(rate)
		if rate == 0 {
			name = "max"
		}
		fmt.Printf("%10s %12.0f %12.0f %10d %7.2f%% %10.1f\n", name, r.logged/r.secs, r.written/r.secs,
			r.dropped, 100*float64(r.dropped)/r.logged, r.bytes/r.secs/1e6)
		if rate > 0 && r.dropped == 0 && rate > best {
			best = rate
		}
	}
	fmt.Printf("sustainable (highest offered rate with no drop): %d lines/s\n", best)
}

type result struct {
	logged, written, secs, bytes float64
	dropped                      int64
}

func run(dir string, rate, producers int, d time.Duration, compress bool) result {
	runDir, err := os.MkdirTemp(dir, "run-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(runDir)
	l, err := accesslog.Open(filepath.Join(runDir, "access.log"), accesslog.Options{
		MaxSizeBytes: 100 << 20, MaxBackups: 10, Compress: compress,
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fail(err)
	}
	var logged atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			r := record(p)
			n := int64(0)
			for {
				now := time.Now()
				if now.After(deadline) {
					break
				}
				if rate > 0 {
					// Pace: log what is due by now, then sleep a little.
					due := int64(float64(rate) / float64(producers) * now.Sub(start).Seconds())
					if n >= due {
						time.Sleep(100 * time.Microsecond)
						continue
					}
					for ; n < due; n++ {
						r.Timestamp = now
						l.Log(r)
					}
					continue
				}
				for range 256 {
					l.Log(r)
				}
				n += 256
			}
			logged.Add(n)
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if err := l.Close(); err != nil { // writes what is queued
		fail(err)
	}
	written := l.Written()
	line := len(lineOf())
	return result{logged: float64(logged.Load()), written: float64(written), secs: secs,
		bytes: float64(written) * float64(line), dropped: l.Dropped()}
}

func lineOf() []byte {
	s, _ := accesslog.NewSanitizer(accesslog.SanitizeOptions{})
	return s.AppendLine(nil, record(0))
}

// record is a typical proxied request (as in the package's benchmarks).
func record(p int) *pipeline.Record {
	r := pipeline.NewRecord()
	r.Timestamp = time.Now()
	r.RequestID = "3f2a9c1b7e5d4a60-1a2b3c" + strconv.Itoa(p)
	r.ClientIP, r.ClientPort, r.ServerIP, r.ServerPort = "198.51.100.23", 53122, "10.0.0.5", 8443
	r.XForwardedFor, r.Listener, r.LBInstance = "198.51.100.23", "public", "lb-1"
	r.Method, r.Host, r.Path = "GET", "shop.example.com", "/api/v1/orders/123456/items"
	r.Query = "page=2&per_page=50&access_token=eyJhbGciOiJIUzI1NiJ9.abc.def&sort=desc"
	r.Protocol = "HTTP/1.1"
	r.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	r.Referer = "https://shop.example.com/cart?step=3&coupon=SPRING"
	r.StatusCode, r.RequestSizeBytes, r.ResponseSizeBytes, r.RequestTimeMs = 200, 312, 18231, 3.417
	r.Route, r.PoolID, r.BackendServer, r.BackendID, r.Attempts = "api", "pool-api", "10.0.42.100:8080", "api-42", 1
	r.UpstreamTimeMs, r.TargetStatusCode, r.TargetProcessingTimeMs = 3.1, 200, 3.1
	return r
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "accesslog bench:", err)
	os.Exit(1)
}
