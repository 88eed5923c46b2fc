package proxy

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
)

// A quarantine the disk refused to save is in effect at once (the caller
// is told of the failure), and saved as soon as the disk accepts it, so a
// restart after the disk is back does not return the backend to rotation.
func TestFailedSaveIsRetried(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	reg, err := NewRegistry(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	reg.Apply([]config.Pool{{Name: "p", Algorithm: "round_robin", Backends: []config.Backend{{ID: "a", Address: "127.0.0.1:1", Weight: 1}}}})
	// The data directory cannot be created: a file is in its place.
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := reg.Quarantine("p", "a")
	if err == nil || st.State != StateQuarantined {
		t.Fatalf("quarantine on a refusing disk: %+v %v, want quarantined and an error", st, err)
	}
	os.Remove(dir) // the disk is back
	deadline := time.Now().Add(3 * saveRetryInterval)
	for {
		data, _ := os.ReadFile(filepath.Join(dir, StateFileName))
		if strings.Contains(string(data), `"a": "quarantined"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quarantine not saved after the disk came back: %q", data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
