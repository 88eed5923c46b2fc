// Package cand holds what the engine-candidate proxies share: flag parsing
// (-listen, -backends, -cpuprofile), the loopback-only guard, and a signal
// handler that flushes the CPU profile before exiting.
package cand

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
)

// Config is what every candidate is told on its command line.
type Config struct {
	Listen   string
	Backends []string // host:port, loopback only
}

// Parse parses the command line, validates that every address is on
// loopback, and starts the CPU profile if -cpuprofile was given. It exits the
// process on bad input.
func Parse(name string) Config {
	listen := flag.String("listen", "127.0.0.1:18100", "address to listen on (loopback only)")
	backends := flag.String("backends", "127.0.0.1:18081,127.0.0.1:18082", "comma-separated backend host:port list (loopback only)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file; flushed on SIGINT/SIGTERM")
	flag.Parse()

	cfg := Config{Listen: *listen}
	mustLoopback(name, cfg.Listen)
	for _, b := range strings.Split(*backends, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		mustLoopback(name, b)
		cfg.Backends = append(cfg.Backends, b)
	}
	if len(cfg.Backends) == 0 {
		fatal(name, "no backends")
	}

	var prof *os.File
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(name, err.Error())
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(name, err.Error())
		}
		prof = f
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
		os.Exit(0)
	}()
	fmt.Fprintf(os.Stderr, "%s: listening on %s, backends %v\n", name, cfg.Listen, cfg.Backends)
	return cfg
}

func mustLoopback(name, addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		fatal(name, fmt.Sprintf("bad address %q: %v", addr, err))
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		fatal(name, fmt.Sprintf("refusing non-loopback address %q", addr))
	}
}

func fatal(name, msg string) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", name, msg)
	os.Exit(2)
}
