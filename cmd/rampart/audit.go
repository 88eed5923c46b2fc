package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/rampart-proxy/rampart/internal/admin"
	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

const auditUsage = `usage: rampart audit <command>

  pubkey [-c FILE | --data-dir DIR]           print the public key that verifies the audit trail
  verify FILE [--pubkey K] [--checkpoint F]   check every entry's signature, the hash chain and
                                              the checkpoint; exit 0 if intact, 1 naming the
                                              first bad entry

The public key is printed as standard base64 of the 32-byte Ed25519 key (44 characters).
Keep a copy off this host: whoever can read the signing key can write a new, valid trail.

--pubkey takes that base64 text, or a file holding it (or a PEM PUBLIC KEY). Without it, the
key recorded in the checkpoint is used: that proves the file is consistent, not who wrote it.
--checkpoint defaults to FILE.checkpoint; --checkpoint "" checks without one, and entries cut
off the end of the log then go unnoticed.
`

// cmdAudit is `rampart audit pubkey|verify`.
func cmdAudit(args []string, stdout, stderr io.Writer) int {
	return subcommand("audit", auditUsage, args, stdout, stderr, map[string]command{
		"pubkey": auditPubkey,
		"verify": auditVerify,
	})
}

// auditPubkey prints the public half of the signing key that the config
// (or the default layout of a data directory) points at. It never creates
// a key: that is serve's job on first start.
func auditPubkey(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("audit pubkey", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, auditUsage) }
	cfgPath := flags.String("c", "rampart.yaml", "config file")
	dataDir := flags.String("data-dir", "", "data directory (instead of -c), with the key at DIR/audit/audit.key")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() > 0 || (*dataDir != "" && isSet(flags, "c")) {
		flags.Usage()
		return 2
	}
	var keyFile string
	if *dataDir != "" {
		_, keyFile = audit.DefaultPaths(*dataDir)
	} else {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			printConfigError(stderr, err)
			return 1
		}
		_, keyFile = cfg.AuditPaths()
	}
	key, err := audit.LoadKey(keyFile)
	if errors.Is(err, audit.ErrNoKey) {
		fmt.Fprintf(stderr, "rampart audit pubkey: no audit signing key at %s yet: rampart serve creates it on first start\n", keyFile)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "rampart audit pubkey: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, audit.EncodePublicKey(key.Public().(ed25519.PublicKey)))
	return 0
}

// auditVerify checks a trail file and its checkpoint.
func auditVerify(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() { fmt.Fprint(stderr, auditUsage) }
	pubFlag := flags.String("pubkey", "", "public key (base64) or a file holding it")
	cpFlag := flags.String("checkpoint", "", "checkpoint file (default FILE.checkpoint; \"\" for none)")
	files, err := parseInterspersed(flags, args)
	if err != nil {
		return 2
	}
	if len(files) != 1 {
		flags.Usage()
		return 2
	}
	file := files[0]

	var cp *audit.Checkpoint
	cpPath := *cpFlag
	if !isSet(flags, "checkpoint") {
		cpPath = audit.CheckpointPath(file)
	}
	if cpPath != "" {
		cp, err = audit.ReadCheckpoint(cpPath)
		if errors.Is(err, fs.ErrNotExist) && !isSet(flags, "checkpoint") {
			fmt.Fprintf(stderr, "rampart audit verify: no checkpoint at %s: without it, entries cut off the end of the log cannot be detected; pass --checkpoint F, or --checkpoint \"\" to check without one\n", cpPath)
			return 1
		}
		if err != nil {
			fmt.Fprintf(stderr, "rampart audit verify: %v\n", err)
			return 1
		}
	}

	var pub ed25519.PublicKey
	switch {
	case *pubFlag != "":
		if pub, err = readPublicKey(*pubFlag); err != nil {
			fmt.Fprintf(stderr, "rampart audit verify: --pubkey: %v\n", err)
			return 2
		}
	case cp != nil:
		if pub, err = cp.Key(); err != nil {
			fmt.Fprintf(stderr, "rampart audit verify: %s: %v\n", cpPath, err)
			return 1
		}
		fmt.Fprintf(stderr, "warning: no --pubkey: checked against the key recorded in the checkpoint (%s), which proves the trail is consistent but not who wrote it; pass --pubkey with the key from `rampart audit pubkey`, kept off this host\n", audit.EncodePublicKey(pub))
	default:
		fmt.Fprintln(stderr, "rampart audit verify: --pubkey is required when there is no checkpoint")
		return 2
	}

	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(stderr, "rampart audit verify: %v\n", err)
		return 1
	}
	defer f.Close()
	rep, err := audit.Verify(f, pub, cp)
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		fmt.Fprintf(stderr, "%s: INVALID: %v\n", file, ve)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "rampart audit verify: %s: %v\n", file, err)
		return 1
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: OK: %d entries, signatures and hash chain intact (key %s)\n", file, rep.Entries, audit.EncodePublicKey(pub))
	if rep.Entries > 0 {
		fmt.Fprintf(stdout, "last entry: seq %d, event_id %s, %s, hash %s\n", rep.LastSeq, rep.LastEventID, rep.LastTimestamp, rep.LastHash)
	}
	if cp != nil {
		fmt.Fprintf(stdout, "checkpoint: seq %d (%s): the log reaches it\n", cp.Seq, cpPath)
	}
	return 0
}

// readPublicKey parses --pubkey: the key itself, or a file holding it.
func readPublicKey(v string) (ed25519.PublicKey, error) {
	if k, err := audit.ParsePublicKey(v); err == nil {
		return k, nil
	}
	data, err := os.ReadFile(v)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a base64 Ed25519 public key nor a readable file", v)
	}
	return audit.ParsePublicKey(string(data))
}

// parseInterspersed parses flags that may come before or after the
// positional arguments ("verify FILE --pubkey K"), which flag.Parse alone
// does not allow.
func parseInterspersed(flags *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := flags.Parse(args); err != nil {
			return nil, err
		}
		args = flags.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func isSet(flags *flag.FlagSet, name string) bool {
	set := false
	flags.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// recordSIGHUPReload appends the audit entry of a reload asked for by
// SIGHUP. Nobody authenticated to send a signal, so the actor is Rampart
// itself (system/sighup). There is no caller to answer: a failure to
// record is logged at ERROR.
func recordSIGHUPReload(l *audit.Log, log *slog.Logger, path string, reloadErr error) {
	ev := admin.ReloadEvent(audit.System("sighup"), map[string]any{"signal": "SIGHUP", "file": path}, reloadErr)
	if l == nil {
		log.Error("config reload NOT recorded in the audit trail", "error", "no audit trail is open")
		return
	}
	if _, err := l.Append(context.Background(), ev); err != nil {
		log.Error("config reload NOT recorded in the audit trail", "result", ev.Result, "error", err.Error())
	}
}
