package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/server"
)

// cmdDoctor prints the host's SYN-flood posture and, with -c, how it
// compares with security.syn_flood_protection. It changes nothing.
func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config file (optional)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	f := &config.SynFloodProtection{MaxSynBacklog: config.DefaultMaxSynBacklog, OnMismatch: "warn"}
	if *path != "" {
		cfg, err := config.Load(*path)
		if err != nil {
			printConfigError(stderr, err)
			return 1
		}
		f = &cfg.Security.SynFloodProtection
	}
	p := server.ReadSYNPosture("/proc/sys")
	show := func(n int) string {
		if n < 0 {
			return "unknown"
		}
		return fmt.Sprint(n)
	}
	fmt.Fprintf(stdout, "SYN flood posture (the kernel's job; Rampart only checks it):\n")
	fmt.Fprintf(stdout, "  net.ipv4.tcp_syncookies      %s  (0 off, 1 on backlog overflow, 2 always)\n", show(p.SynCookies))
	fmt.Fprintf(stdout, "  net.ipv4.tcp_max_syn_backlog %s\n", show(p.MaxSynBacklog))
	fmt.Fprintf(stdout, "  net.core.somaxconn           %s  (caps the accept backlog of Rampart's listeners)\n", show(p.Somaxconn))
	fmt.Fprintf(stdout, "  open files limit             see `ulimit -n` (each connection is a file descriptor)\n")
	probs := p.Problems(f)
	if len(probs) == 0 {
		fmt.Fprintln(stdout, "OK: the kernel matches syn_flood_protection")
		return 0
	}
	for _, m := range probs {
		fmt.Fprintln(stdout, "WARNING:", m)
	}
	return 1
}
