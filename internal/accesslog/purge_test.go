package accesslog

import (
	"bytes"
	"compress/gzip"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

const (
	victim = "203.0.113.7"
	other  = "198.51.100.1"
)

// purgeLines builds log lines and says which are the victim's.
func purgeLines(t *testing.T, prefix string, n int) (all []string, victims int) {
	t.Helper()
	s := mustSanitizer(t, SanitizeOptions{})
	for i := range n {
		r := record()
		r.RequestID = prefix + strconv.Itoa(i)
		r.ClientIP, r.XForwardedFor = other, other
		isVictim := true
		switch i % 5 {
		case 0:
			r.ClientIP, r.XForwardedFor = victim, victim
		case 1: // behind a trusted proxy: the victim is in the chain
			r.XForwardedFor = "10.9.9.9, " + victim + " , " + other
		case 2:
			r.ClientIP = "::ffff:" + victim // the same address, written otherwise
		default:
			isVictim = false
			r.XForwardedFor = "203.0.113.70, " + other // close, but not the victim
		}
		if isVictim {
			victims++
		}
		all = append(all, string(s.AppendLine(nil, r)))
		pipeline.Release(r)
	}
	all = append(all, "not json, kept as it is "+victim+"\n")
	return all, victims
}

func keepOthers(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		if m, _ := lineMatches([]byte(l), netip.MustParseAddr(victim)); !m {
			b.WriteString(l)
		}
	}
	return b.String()
}

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	lines := readLog(t, path)
	return strings.Join(lines, "")
}

// Purge removes exactly the victim's lines (client_ip, or an entry of the
// x_forwarded_for chain, however the address is written) from the active
// file and from plain and gzipped backups; every other line stays byte for
// byte, in order; a file without the victim is not touched.
func TestPurgeRemovesExactlyOneClient(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	y := newLayout(path)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

	active, va := purgeLines(t, "a", 20)
	plain, vp := purgeLines(t, "p", 30)
	zipped, vz := purgeLines(t, "z", 40)
	clean := []string{}
	for _, l := range plain {
		if m, _ := lineMatches([]byte(l), netip.MustParseAddr(victim)); !m {
			clean = append(clean, l)
		}
	}
	write(t, path, strings.Join(active, ""))
	plainPath := y.backupName(now.Add(-2 * time.Hour))
	write(t, plainPath, strings.Join(plain, ""))
	zipPath := y.backupName(now.Add(-26*time.Hour)) + gzSuffix
	if err := os.WriteFile(zipPath, gz(t, strings.Join(zipped, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cleanPath := y.backupName(now.Add(-50 * time.Hour))
	write(t, cleanPath, strings.Join(clean, ""))
	cleanBefore, _ := os.Stat(cleanPath)

	rotated := y.backupName(now) // the active file, renamed by the purge
	res, err := Purge(path, netip.MustParseAddr(victim), now)
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string]PurgeResult{}
	for _, r := range res {
		byFile[r.File] = r
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the active file was not rotated")
	}
	for _, c := range []struct {
		file     string
		lines    []string
		removed  int
		zipped   bool
		fromPath string
	}{
		{rotated, active, va, false, path},
		{plainPath, plain, vp, false, ""},
		{zipPath, zipped, vz, true, ""},
		{cleanPath, clean, 0, false, ""},
	} {
		r, ok := byFile[c.file]
		if !ok {
			t.Fatalf("no result for %s: %+v", c.file, res)
		}
		if r.Removed != c.removed || r.Lines != len(c.lines) || r.RotatedFrom != c.fromPath {
			t.Errorf("%s: %+v, want %d of %d removed", c.file, r, c.removed, len(c.lines))
		}
		got := gunzip(t, c.file)
		if want := keepOthers(c.lines); got != want {
			t.Errorf("%s after purge:\n%s\nwant\n%s", c.file, got, want)
		}
		if strings.Contains(got, `"client_ip":"`+victim+`"`) || strings.Contains(got, victim+" ,") {
			t.Errorf("%s still holds the victim", c.file)
		}
	}
	if c := byFile[rotated]; c.Unparsed != 1 {
		t.Errorf("unparsed lines %d, want 1 (kept)", c.Unparsed)
	}
	cleanAfter, _ := os.Stat(cleanPath)
	if !sameContent(cleanBefore, cleanAfter) {
		t.Error("a file without the victim was rewritten")
	}
	if fi, _ := os.Stat(zipPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of the rewritten file %v, want the original 0600", fi.Mode().Perm())
	}
	for _, n := range dirNames(t, dir) {
		if strings.Contains(n, tmpMarker) {
			t.Errorf("temp file left: %s", n)
		}
	}
	// Again: nothing left to remove, nothing touched.
	res, err = Purge(path, netip.MustParseAddr(victim), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Removed != 0 {
			t.Errorf("second purge removed %d from %s", r.Removed, r.File)
		}
	}
}

// Purge while a server writes, rotates and compresses: no line of anyone
// else is lost (the writer follows the rotated file, compression and purge
// never undo each other), and once the victim stops, one more purge leaves
// none of the victim's lines.
func TestPurgeWhileWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l, err := Open(path, Options{MaxSizeBytes: 128 << 10, Compress: true, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	logAs := func(ip string, id int) {
		r := record()
		r.ClientIP, r.XForwardedFor, r.RequestID = ip, ip, strconv.Itoa(id)
		l.Log(r)
		pipeline.Release(r)
	}
	const victims = 300
	for i := range victims {
		logAs(victim, i)
	}
	waitFor(t, "the victim's lines on disk", func() bool { return l.Written() == victims })

	const n = 6000
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			logAs(other, i)
			if i%50 == 0 {
				logAs(victim, i)
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the writer keep up, and purges run meanwhile
			}
		}
	}()
	purges, removed := 0, 0
	purge := func() {
		res, err := Purge(path, netip.MustParseAddr(victim), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			removed += r.Removed
		}
		purges++
	}
	for !stop.Load() {
		purge()
		select {
		case <-done:
			stop.Store(true)
		default:
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	purge()
	count := map[string]int{}
	bs, _ := newLayout(path).backups()
	var files []string
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	}
	for _, b := range bs {
		files = append(files, b.path)
	}
	for _, f := range files {
		for _, ln := range readLog(t, f) {
			m, ok := lineMatches([]byte(ln), netip.MustParseAddr(victim))
			if !ok {
				t.Fatalf("%s: a broken line: %q", f, ln)
			}
			if m {
				count[victim]++
			} else {
				count[other]++
			}
		}
	}
	if count[victim] != 0 {
		t.Errorf("%d lines of the victim survived %d purges", count[victim], purges)
	}
	// Every line written is either on disk or was removed by a purge:
	// nothing lost, nothing purged came back, nothing counted twice.
	if int64(count[other]+removed) != l.Written() {
		t.Errorf("%d lines of others on disk + %d purged != %d written (%d dropped)", count[other], removed, l.Written(), l.Dropped())
	}
	if removed < victims {
		t.Errorf("%d lines purged, fewer than the %d victim lines written before", removed, victims)
	}
	t.Logf("%d purges during %d writes, %d files, %d dropped", purges, n, len(files), l.Dropped())
}

func TestPurgeRefusesStdout(t *testing.T) {
	if _, err := Purge("-", netip.MustParseAddr(victim), time.Now()); err == nil {
		t.Fatal("purge of stdout accepted")
	}
}

// A backup that held only the client's lines is deleted, not left empty:
// an empty backup would count toward max_backups and push out one with
// data at the next rotation.
func TestPurgeDeletesFilesLeftEmpty(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	y := newLayout(path)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	lines, _ := purgeLines(t, "v", 5)
	var only []string
	for _, l := range lines {
		if m, _ := lineMatches([]byte(l), netip.MustParseAddr(victim)); m {
			only = append(only, l)
		}
	}
	plainPath := y.backupName(now.Add(-2 * time.Hour))
	write(t, plainPath, strings.Join(only, ""))
	zipPath := y.backupName(now.Add(-26*time.Hour)) + gzSuffix
	if err := os.WriteFile(zipPath, gz(t, strings.Join(only, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Purge(path, netip.MustParseAddr(victim), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].Deleted || !res[1].Deleted {
		t.Fatalf("results %+v, want both files deleted", res)
	}
	for _, p := range []string{plainPath, zipPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}
