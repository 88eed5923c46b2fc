package main

import (
	"fmt"
	"io"
)

// command is one subcommand: it gets the arguments after its name and
// returns the exit status.
type command func(args []string, stdout, stderr io.Writer) int

// subcommand runs "rampart NAME SUB ARGS...": SUB from cmds, or the usage
// text (exit 0 when asked for, 2 when SUB is missing or unknown).
func subcommand(name, usage string, args []string, stdout, stderr io.Writer, cmds map[string]command) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if run, ok := cmds[args[0]]; ok {
		return run(args[1:], stdout, stderr)
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "rampart %s: unknown command %q\n\n%s", name, args[0], usage)
	return 2
}
