package accesslog

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

func TestLogWritesOneJSONLinePerRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a-1", "a-2", "a-3"} {
		rec := pipeline.NewRecord()
		rec.RequestID, rec.StatusCode, rec.PoolID = id, 200+i, "web"
		l.Log(rec)
		pipeline.Release(rec) // the line must not depend on the record afterwards
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var got []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("got %d lines, want 3", len(got))
	}
	for i, m := range got {
		if m["request_id"] != []string{"a-1", "a-2", "a-3"}[i] || m["status_code"] != float64(200+i) || m["pool_id"] != "web" {
			t.Fatalf("line %d = %v", i, m)
		}
		if m["target_processing_time_ms"] != float64(-1) {
			t.Fatalf("line %d: target_processing_time_ms = %v, want -1 when no backend answered", i, m["target_processing_time_ms"])
		}
	}
	if l.Dropped() != 0 {
		t.Fatalf("dropped %d lines", l.Dropped())
	}
}

// After Close (a reload replaced the logger) a late request is counted as
// dropped, never a panic on a closed channel.
func TestLogAfterCloseIsCountedNotFatal(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "access.log"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	l.Log(pipeline.NewRecord())
	if l.Dropped() != 1 {
		t.Fatalf("Dropped() = %d, want 1", l.Dropped())
	}
	var off *Logger // logging disabled
	off.Log(pipeline.NewRecord())
	if off.Dropped() != 0 || off.Close() != nil {
		t.Fatal("nil logger must be a no-op")
	}
}

func TestOpenEmptyPathDisables(t *testing.T) {
	l, err := Open("", Options{})
	if err != nil || l != nil {
		t.Fatalf("Open(\"\") = %v, %v; want nil, nil", l, err)
	}
}
