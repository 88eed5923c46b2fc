package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-proxy/rampart/internal/audit"
	"github.com/rampart-proxy/rampart/internal/config"
)

// trailIn writes a trail of n entries under dataDir and returns its log
// path, public key and entries.
func trailIn(t *testing.T, dataDir string, n int) (string, string, []audit.Entry) {
	t.Helper()
	logPath, key := audit.DefaultPaths(dataDir)
	l, err := audit.Open(audit.Options{Path: logPath, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var ents []audit.Entry
	for i := 0; i < n; i++ {
		e, err := l.Append(context.Background(), audit.Event{Actor: audit.System("test"), Action: "test.action",
			Resource: audit.Resource{Type: "backend", ID: "b", Pool: "p"}, Result: audit.ResultSuccess})
		if err != nil {
			t.Fatal(err)
		}
		ents = append(ents, e)
	}
	return logPath, audit.EncodePublicKey(l.PublicKey()), ents
}

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditPubkey(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	code, _, stderr := runCmd("audit", "pubkey", "--data-dir", data)
	if code != 1 || !strings.Contains(stderr, "no audit signing key at "+filepath.Join(data, "audit", "audit.key")+" yet") {
		t.Fatalf("pubkey before first start: exit %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "audit", "audit.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("audit pubkey created a key")
	}
	_, pub, _ := trailIn(t, data, 1)
	code, stdout, stderr := runCmd("audit", "pubkey", "--data-dir", data)
	if code != 0 || stdout != pub+"\n" {
		t.Fatalf("pubkey --data-dir: exit %d stdout %q stderr %q, want %s", code, stdout, stderr, pub)
	}
	// -c finds the key through the config's data_dir.
	cfgPath := filepath.Join(dir, "rampart.yaml")
	os.WriteFile(cfgPath, []byte("data_dir: data\nlisteners: [{name: p, listen: \"127.0.0.1:0\"}]\nroutes: [{name: r, match: {path_prefix: /}, pool: w}]\npools: [{name: w, backends: [{id: a, address: \"127.0.0.1:1\"}]}]\n"), 0o600)
	code, stdout, stderr = runCmd("audit", "pubkey", "-c", cfgPath)
	if code != 0 || stdout != pub+"\n" {
		t.Fatalf("pubkey -c: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if code, _, _ := runCmd("audit", "pubkey", "-c", cfgPath, "--data-dir", data); code != 2 {
		t.Fatalf("pubkey with both -c and --data-dir: exit %d, want 2", code)
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	logPath, pub, ents := trailIn(t, filepath.Join(t.TempDir(), "data"), 3)

	code, stdout, stderr := runCmd("audit", "verify", logPath, "--pubkey", pub)
	if code != 0 || !strings.HasPrefix(stdout, logPath+": OK: 3 entries, signatures and hash chain intact (key "+pub+")\n") ||
		!strings.Contains(stdout, "last entry: seq 3, event_id "+ents[2].EventID) ||
		!strings.Contains(stdout, "checkpoint: seq 3 ("+audit.CheckpointPath(logPath)+"): the log reaches it") || stderr != "" {
		t.Fatalf("verify of an intact trail: exit %d\n%s%s", code, stdout, stderr)
	}

	// --pubkey from a file, flags before FILE.
	keyFile := filepath.Join(t.TempDir(), "audit.pub")
	os.WriteFile(keyFile, []byte(pub+"\n"), 0o644)
	if code, stdout, stderr := runCmd("audit", "verify", "--pubkey", keyFile, logPath); code != 0 {
		t.Fatalf("verify --pubkey FILE: exit %d\n%s%s", code, stdout, stderr)
	}

	// Without --pubkey: the checkpoint's key, with a warning.
	code, _, stderr = runCmd("audit", "verify", logPath)
	if code != 0 || !strings.Contains(stderr, "warning: no --pubkey: checked against the key recorded in the checkpoint") {
		t.Fatalf("verify without --pubkey: exit %d %q", code, stderr)
	}

	// Another key: the checkpoint does not verify.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	code, _, stderr = runCmd("audit", "verify", logPath, "--pubkey", audit.EncodePublicKey(other))
	if code != 1 || !strings.Contains(stderr, logPath+": INVALID: checkpoint signature does not verify") {
		t.Fatalf("verify with another key: exit %d %q", code, stderr)
	}

	// A deleted line is named.
	data, _ := os.ReadFile(logPath)
	lines := strings.SplitAfter(string(data), "\n")
	os.WriteFile(logPath, []byte(lines[0]+lines[2]), 0o600)
	code, _, stderr = runCmd("audit", "verify", logPath, "--pubkey", pub)
	want := logPath + ": INVALID: line 2 (event_id " + ents[2].EventID + "): seq 3 where 2 was expected"
	if code != 1 || !strings.HasPrefix(stderr, want) {
		t.Fatalf("verify of a trail with a deleted line: exit %d %q\nwant it to start with %q", code, stderr, want)
	}
}

func TestAuditVerifyCheckpointFlag(t *testing.T) {
	logPath, pub, _ := trailIn(t, filepath.Join(t.TempDir(), "data"), 2)
	cpPath := audit.CheckpointPath(logPath)
	moved := filepath.Join(t.TempDir(), "cp")
	if err := os.Rename(cpPath, moved); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd("audit", "verify", logPath, "--pubkey", pub)
	if code != 1 || !strings.Contains(stderr, "no checkpoint at "+cpPath+": without it, entries cut off the end of the log cannot be detected") {
		t.Fatalf("verify without the default checkpoint: exit %d %q", code, stderr)
	}
	if code, stdout, stderr := runCmd("audit", "verify", logPath, "--pubkey", pub, "--checkpoint", moved); code != 0 {
		t.Fatalf("verify --checkpoint elsewhere: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = runCmd("audit", "verify", logPath, "--pubkey", pub, "--checkpoint", "")
	if code != 0 || !strings.Contains(stderr, "warning: no checkpoint: entries cut off the end of the log cannot be detected") {
		t.Fatalf("verify --checkpoint '': exit %d %q", code, stderr)
	}
	if code, _, stderr := runCmd("audit", "verify", logPath, "--checkpoint", ""); code != 2 || !strings.Contains(stderr, "--pubkey is required") {
		t.Fatalf("verify with neither key nor checkpoint: exit %d %q", code, stderr)
	}
	if code, _, _ := runCmd("audit", "verify"); code != 2 {
		t.Fatalf("verify without FILE: exit %d, want 2", code)
	}
}

func TestRecordSIGHUPReload(t *testing.T) {
	logPath, _, _ := trailIn(t, filepath.Join(t.TempDir(), "data"), 0)
	_, key := audit.DefaultPaths(filepath.Dir(filepath.Dir(logPath)))
	l, err := audit.Open(audit.Options{Path: logPath, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	log := slog.New(slog.DiscardHandler)
	recordSIGHUPReload(l, log, "/etc/rampart.yaml", nil)
	recordSIGHUPReload(l, log, "/etc/rampart.yaml", config.Problems{{File: "/etc/rampart.yaml", Line: 3, Msg: "bad"}})
	data, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d entries, want 2", len(lines))
	}
	for i, want := range []string{
		`"actor":{"type":"system","id":"sighup","ip":"","auth_method":"internal"},"action":"config.reload","resource":{"type":"config","id":"","pool":""},"details":{"file":"/etc/rampart.yaml","signal":"SIGHUP"},"result":"success"`,
		`"details":{"file":"/etc/rampart.yaml","problems":["/etc/rampart.yaml:3: bad"],"signal":"SIGHUP"},"result":"refused"`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Fatalf("entry %d: %s\nwant it to contain %s", i+1, lines[i], want)
		}
	}
}
