package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trail is a log written by a test: its files and the entries appended.
type trail struct {
	dir, path, key string
	pub            ed25519.PublicKey
	entries        []Entry
}

func newTrail(t *testing.T) *trail {
	t.Helper()
	dir := t.TempDir()
	path, key := DefaultPaths(filepath.Join(dir, "data"))
	return &trail{dir: dir, path: path, key: key}
}

func (tr *trail) open(t *testing.T) *Log {
	t.Helper()
	l, err := Open(Options{Path: tr.path, KeyFile: tr.key})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	tr.pub = l.PublicKey()
	return l
}

func testEvent(i int) Event {
	return Event{
		Actor:    Actor{Type: "api", IP: "127.0.0.1", AuthMethod: "loopback"},
		Action:   ActionBackendQuarantine,
		Resource: Resource{Type: "backend", ID: fmt.Sprintf("b-%d", i), Pool: "web"},
		Details:  map[string]any{"n": i},
		Result:   ResultSuccess,
		Before:   map[string]string{"state": "active"},
		After:    map[string]string{"state": "quarantined"},
	}
}

// write appends n events through l and remembers the entries.
func (tr *trail) write(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e, err := l.Append(context.Background(), testEvent(len(tr.entries)+1))
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		tr.entries = append(tr.entries, e)
	}
}

// written creates a closed trail of n entries.
func written(t *testing.T, n int) *trail {
	t.Helper()
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr *trail) lines(t *testing.T) [][]byte {
	t.Helper()
	data, err := os.ReadFile(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatalf("log does not end with a newline: %q", data)
	}
	return bytes.Split(data[:len(data)-1], []byte("\n"))
}

func (tr *trail) rewrite(t *testing.T, lines [][]byte, finalNewline bool) {
	t.Helper()
	data := bytes.Join(lines, []byte("\n"))
	if finalNewline {
		data = append(data, '\n')
	}
	if err := os.WriteFile(tr.path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (tr *trail) checkpoint(t *testing.T) *Checkpoint {
	t.Helper()
	cp, err := ReadCheckpoint(CheckpointPath(tr.path))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func (tr *trail) verify(t *testing.T) (*Report, error) {
	t.Helper()
	f, err := os.Open(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Verify(f, tr.pub, tr.checkpoint(t))
}

// wantVerifyError requires a *VerifyError naming line and eventID whose
// reason contains every one of reasons.
func wantVerifyError(t *testing.T, err error, line int, eventID string, reasons ...string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("Verify: %v, want a *VerifyError at line %d", err, line)
	}
	if ve.Line != line || ve.EventID != eventID {
		t.Fatalf("Verify: %q names line %d event_id %q, want line %d event_id %q", ve.Error(), ve.Line, ve.EventID, line, eventID)
	}
	for _, r := range reasons {
		if !strings.Contains(ve.Reason, r) {
			t.Fatalf("Verify: reason %q does not mention %q", ve.Reason, r)
		}
	}
	wantPrefix := fmt.Sprintf("line %d (event_id ", line)
	if line > 0 && !strings.HasPrefix(ve.Error(), wantPrefix) {
		t.Fatalf("Verify error %q does not start with %q", ve.Error(), wantPrefix)
	}
}
