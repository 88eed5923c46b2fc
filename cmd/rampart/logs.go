package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/rampart-proxy/rampart/internal/accesslog"
	"github.com/rampart-proxy/rampart/internal/config"
)

const logsUsage = `usage: rampart logs <command>

  purge --ip ADDR [-c FILE]   remove every access log line of client ADDR (client_ip, or an
                              entry of x_forwarded_for) from the access log and its rotated
                              files, plain and gzipped; other lines stay byte for byte

Safe while Rampart runs: if the active file holds lines of ADDR it is rotated first (the
server follows at its next write, no line is lost) and purged like the rotated files. Lines
written after the purge started are not purged: block the client first if it still sends.
`

// cmdLogs is `rampart logs purge`.
func cmdLogs(args []string, stdout, stderr io.Writer) int {
	return subcommand("logs", logsUsage, args, stdout, stderr, map[string]command{"purge": logsPurge})
}

func logsPurge(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("logs purge", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, logsUsage) }
	cfgPath := flags.String("c", "rampart.yaml", "config file")
	ipFlag := flags.String("ip", "", "client address whose lines are removed")
	rest, err := parseInterspersed(flags, args)
	if err != nil {
		return 2
	}
	if len(rest) > 0 || *ipFlag == "" {
		flags.Usage()
		return 2
	}
	ip, err := netip.ParseAddr(*ipFlag)
	if err != nil {
		fmt.Fprintf(stderr, "rampart logs purge: --ip %q is not an IP address\n", *ipFlag)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	path := cfg.Resolve(cfg.Logging.AccessLog.Path)
	if path == "" || path == "-" {
		fmt.Fprintf(stderr, "rampart logs purge: %s: logging.access_log.path is %q: there are no access log files to purge\n", *cfgPath, path)
		return 1
	}
	res, err := accesslog.Purge(path, ip, time.Now())
	removed, touched := 0, 0
	for _, r := range res {
		if r.RotatedFrom != "" {
			fmt.Fprintf(stdout, "%s: rotated from %s, ", r.File, r.RotatedFrom)
		} else {
			fmt.Fprintf(stdout, "%s: ", r.File)
		}
		fmt.Fprintf(stdout, "removed %d of %d lines", r.Removed, r.Lines)
		if r.Deleted {
			fmt.Fprint(stdout, " (nothing left: file deleted)")
		}
		fmt.Fprintln(stdout)
		if r.Unparsed > 0 {
			fmt.Fprintf(stderr, "warning: %s: %d lines are not JSON (cut by a crash?) and were kept; check them by hand\n", r.File, r.Unparsed)
		}
		removed += r.Removed
		if r.Removed > 0 {
			touched++
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "rampart logs purge: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "removed %d lines of %s from %d of %d files\n", removed, ip, touched, len(res))
	return 0
}
