// Command rampart is a security-first Layer-7 load balancer and reverse proxy.
package main

import (
	"fmt"
	"io"
	"os"
)

var version = "dev"

const usage = `usage: rampart <command> [flags]

commands:
  serve     -c FILE [--demo-backends]   run the load balancer
  validate  -c FILE                     check a config file, print FILE:LINE: problem
  doctor    [-c FILE]                   print the host's SYN-flood posture (syncookies, backlogs)
  ctl       backend|block|allow|reload|status|token ...
                                        operate a running instance over its admin API
  audit     pubkey | verify FILE        print the audit trail's public key, verify a trail
  logs      purge --ip ADDR [-c FILE]   remove a client's lines from the access logs
  version                               print the version
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "ctl":
		return cmdCtl(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "logs":
		return cmdLogs(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "rampart", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "rampart: unknown command %q\n\n%s", args[0], usage)
	return 2
}
