package accesslog

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source for rotation tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// readLog returns the lines of a plain or gzip file.
func readLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a whole line", path)
	}
	lines := strings.SplitAfter(string(b), "\n")
	return lines[:len(lines)-1]
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Size rotation cuts between lines, never inside one; rotated files are
// gzipped; only max_backups of them are kept, the newest.
func TestRotationBySizeCompressesAndKeepsMaxBackups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	const maxSize = 4096
	l, err := Open(path, Options{MaxSizeBytes: maxSize, MaxBackups: 3, Compress: true, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		logID(l, i)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() != 0 {
		t.Fatalf("dropped %d", l.Dropped())
	}
	y := newLayout(path)
	bs, err := y.backups()
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 {
		t.Fatalf("%d backups, want 3 (max_backups): %v", len(bs), dirNames(t, dir))
	}
	var ids []int
	for i := len(bs) - 1; i >= 0; i-- { // oldest first
		b := bs[i]
		if !b.compressed {
			t.Errorf("%s is not compressed", b.path)
		}
		lines := readLog(t, b.path)
		size := 0
		for _, ln := range lines {
			size += len(ln)
			ids = append(ids, idOf(t, ln))
		}
		if size > maxSize || size < maxSize/2 {
			t.Errorf("%s holds %d bytes, max %d", b.path, size, maxSize)
		}
	}
	for _, ln := range readLog(t, path) {
		ids = append(ids, idOf(t, ln))
	}
	// The kept files hold the newest lines, in order, without a gap.
	if len(ids) == 0 || ids[len(ids)-1] != n-1 {
		t.Fatalf("last id %v, want %d", ids, n-1)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Fatalf("ids not contiguous: %v", ids)
		}
	}
	for _, name := range dirNames(t, dir) {
		if strings.Contains(name, tmpMarker) || (strings.HasPrefix(name, "access-") && !strings.HasSuffix(name, ".log.gz")) {
			t.Errorf("left over: %s", name)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != fileMode {
		t.Errorf("active file: %v %v", fi, err)
	}
}

func idOf(t *testing.T, line string) int {
	t.Helper()
	i := strings.Index(line, `"request_id":"`)
	if i < 0 {
		t.Fatalf("no request_id in %q", line)
	}
	rest := line[i+len(`"request_id":"`):]
	n := 0
	for _, c := range rest[:strings.IndexByte(rest, '"')] {
		n = n*10 + int(c-'0')
	}
	return n
}

// Retention: rotated files older than max_age are deleted, newer ones
// compressed, and temp files a crash left behind removed.
func TestRetentionDeletesOldFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	clk := &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	y := newLayout(path)
	old := y.backupName(clk.t.Add(-31 * 24 * time.Hour))
	write(t, old+".gz", "old\n")
	write(t, y.backupName(clk.t.Add(-40*24*time.Hour)), "older, uncompressed\n")
	recent := y.backupName(clk.t.Add(-2 * 24 * time.Hour))
	write(t, recent, `{"timestamp":"x"}`+"\n")
	stale := filepath.Join(dir, "access-x.log.gz"+tmpMarker+"-123")
	write(t, stale, "half a gzip")
	os.Chtimes(stale, clk.t.Add(-2*time.Hour), clk.t.Add(-2*time.Hour))
	fresh := filepath.Join(dir, "access-y.log"+tmpMarker+"-456")
	write(t, fresh, "a purge in progress")
	os.Chtimes(fresh, clk.t, clk.t)
	other := filepath.Join(dir, "other-2000-01-01T00-00-00.000.log")
	write(t, other, "not ours")

	l, err := Open(path, Options{MaxAge: 30 * 24 * time.Hour, Compress: true, Log: quiet(), now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	got := dirNames(t, dir)
	want := []string{"access-y.log" + tmpMarker + "-456", "access.log", "access.log.lock", filepath.Base(recent) + ".gz", "other-2000-01-01T00-00-00.000.log"}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("files after retention:\n%v\nwant\n%v", got, want)
	}
	if lines := readLog(t, recent+".gz"); len(lines) != 1 || lines[0] != `{"timestamp":"x"}`+"\n" {
		t.Fatalf("compressed content %q", lines)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

// With retention on, the active file is rotated once its first line is a
// day old, so that no line escapes max_age by sitting in the active file.
func TestAgeRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	clk := &clock{t: time.Now()}
	l, err := Open(path, Options{MaxAge: 7 * 24 * time.Hour, Log: quiet(), now: clk.now, tick: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	logID(l, 1)
	waitFor(t, "the first line written", func() bool { return l.Written() == 1 })
	clk.add(23 * time.Hour)
	time.Sleep(20 * time.Millisecond) // some ticks: nothing may happen yet
	if bs, _ := newLayout(path).backups(); len(bs) != 0 {
		t.Fatalf("rotated after 23h: %v", dirNames(t, dir))
	}
	clk.add(time.Hour)
	waitFor(t, "a rotation by age", func() bool {
		bs, _ := newLayout(path).backups()
		return len(bs) == 1
	})
	logID(l, 2)
	l.Close()
	bs, _ := newLayout(path).backups()
	if ids := readLog(t, bs[0].path); len(ids) != 1 || idOf(t, ids[0]) != 1 {
		t.Fatalf("backup holds %q", ids)
	}
	if ids := readLog(t, path); len(ids) != 1 || idOf(t, ids[0]) != 2 {
		t.Fatalf("active file holds %q", ids)
	}

	// A restart finds an active file whose first line is old: it is
	// rotated at the first write.
	clk.add(48 * time.Hour)
	l2, err := Open(path, Options{MaxAge: 7 * 24 * time.Hour, Log: quiet(), now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	logID(l2, 3)
	l2.Close()
	if bs, _ := newLayout(path).backups(); len(bs) != 2 {
		t.Fatalf("after restart: %v", dirNames(t, dir))
	}
}

// waitFor polls cond, bounded (the writer is asynchronous).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A file moved away by someone else (purge, another logger, an operator)
// is noticed at the next write: lines go to a new file at the path, none
// to the moved one.
func TestWriterFollowsReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l, err := Open(path, Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	logID(l, 1)
	waitFor(t, "line 1", func() bool { return l.Written() == 1 })
	moved := filepath.Join(dir, "moved.log")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	logID(l, 2)
	l.Close()
	if a, b := readLog(t, moved), readLog(t, path); len(a) != 1 || len(b) != 1 || idOf(t, b[0]) != 2 {
		t.Fatalf("moved %q, new %q", a, b)
	}
}
