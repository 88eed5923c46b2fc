package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/server"
)

// procSysRoot is where doctor reads the kernel's settings (tests change it).
var procSysRoot = "/proc/sys"

// cmdDoctor prints the host's SYN-flood posture and, with -c, how it
// compares with security.syn_flood_protection and what apply_sysctls
// would write. It changes nothing.
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
	p := server.ReadSYNPosture(procSysRoot)
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
	// What apply_sysctls would write (doctor itself writes nothing).
	if plan := p.PlanSysctls(f); len(plan) > 0 {
		if f.ApplySysctls {
			fmt.Fprintln(stdout, "apply_sysctls: true; at start Rampart will write (if it runs as root and /proc/sys is writable):")
		} else {
			fmt.Fprintln(stdout, "with apply_sysctls: true, Rampart would write at start:")
		}
		for _, c := range plan {
			fmt.Fprintf(stdout, "  %s = %d  (now %s)\n", c.Key, c.To, show(c.From))
		}
	} else {
		fmt.Fprintln(stdout, "apply_sysctls: nothing to write")
	}
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
