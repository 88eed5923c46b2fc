package accesslog

// Rotation, compression and retention of the access log file.
//
// Rampart does this itself (about 300 lines of the standard library)
// rather than through gopkg.in/natefinch/lumberjack.v2, because erasure
// (`rampart logs purge`) must be able to rewrite the files while a server
// writes, compresses and expires them, and lumberjack cannot take part in
// that: its compression and deletion run in an unsynchronised goroutine
// (compressing a file that purge is rewriting puts the erased lines back
// in the .gz; deleting one lets purge's rename resurrect it), it truncates
// a file someone else created at its path (two loggers on one path during
// a reload lose lines), it expires old files only when it rotates, and its
// mill goroutine is never stopped (one leaked per reopened logger).
//
// The protocol: every process that changes which files exist or what they
// hold takes an exclusive flock on PATH.lock for that step only.
//   - The writer holds it around each batch write: it first checks that
//     PATH is still the file it has open (same inode), and reopens it if
//     not (someone rotated or replaced it), so no line is written to a
//     file that was moved away. Rotation (rename PATH to a backup name) is
//     done under it too.
//   - Compression writes BACKUP.gz.tmp without the lock, then under it
//     checks that BACKUP is unchanged (same inode, size, mtime) before it
//     renames the .gz into place and removes BACKUP; otherwise it throws
//     its work away.
//   - Retention removes files under it.
//   - Purge renames the active file away under it (a rotation), then
//     rewrites each file to a temp file without the lock and renames it
//     into place under the lock only if the file is unchanged, retrying
//     otherwise.
// The lock is never held while compressing or filtering, so the writer is
// blocked for a rename at most, and the request path never is.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

const (
	backupTimeLayout = "2006-01-02T15-04-05.000"
	gzSuffix         = ".gz"
	tmpMarker        = ".rampart-tmp"
	// ageRotation is how old the first line of the active file may get
	// when retention (MaxAge) is on.
	ageRotation = 24 * time.Hour
	// maintEvery is how often compression and retention run besides
	// after a rotation.
	maintEvery = time.Hour
	// staleTmp is when a temp file left by a crash is removed.
	staleTmp = time.Hour
	fileMode = 0o640
)

// layout names the files of one access log: PATH = DIR/STEM+EXT, backups
// DIR/STEM-TIMESTAMP+EXT[.gz], the lock PATH.lock.
type layout struct {
	path, dir, base, stem, ext string
}

func newLayout(path string) layout {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ext := filepath.Ext(base)
	return layout{path: path, dir: filepath.Clean(dir), base: base, stem: strings.TrimSuffix(base, ext), ext: ext}
}

func (y layout) lockPath() string { return y.path + ".lock" }

// backupName is the name PATH gets when it is rotated at t. It sorts
// after every existing backup (even if the clock went back, or rotations
// came faster than its millisecond resolution), since retention keeps the
// newest by name, and it never names an existing file.
func (y layout) backupName(t time.Time) string {
	t = t.UTC().Truncate(time.Millisecond)
	if bs, err := y.backups(); err == nil && len(bs) > 0 && !t.After(bs[0].rotated) {
		t = bs[0].rotated.Add(time.Millisecond)
	}
	for {
		name := filepath.Join(y.dir, y.stem+"-"+t.Format(backupTimeLayout)+y.ext)
		if !exists(name) && !exists(name+gzSuffix) {
			return name
		}
		t = t.Add(time.Millisecond)
	}
}

func exists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}

type backup struct {
	path       string
	rotated    time.Time // from the name
	compressed bool
}

// backups lists the rotated files, newest first.
func (y layout) backups() ([]backup, error) {
	ents, err := os.ReadDir(y.dir)
	if err != nil {
		return nil, err
	}
	var out []backup
	for _, e := range ents {
		if b, ok := y.parseBackup(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rotated.After(out[j].rotated) })
	return out, nil
}

func (y layout) parseBackup(name string) (backup, bool) {
	rest, ok := strings.CutPrefix(name, y.stem+"-")
	if !ok || len(rest) < len(backupTimeLayout) {
		return backup{}, false
	}
	ts, suffix := rest[:len(backupTimeLayout)], rest[len(backupTimeLayout):]
	gz := false
	if suffix != y.ext {
		if suffix != y.ext+gzSuffix {
			return backup{}, false
		}
		gz = true
	}
	t, err := time.Parse(backupTimeLayout, ts)
	if err != nil {
		return backup{}, false
	}
	return backup{path: filepath.Join(y.dir, name), rotated: t, compressed: gz}, true
}

// rotator is the file sink.
type rotator struct {
	y          layout
	maxSize    int64
	maxBackups int
	maxAge     time.Duration
	compress   bool
	now        func() time.Time
	log        *slog.Logger
	lock       *fileLock

	// Owned by the writer goroutine (Write, Tick), under lock.
	f         *os.File
	fi        os.FileInfo // of f, when opened
	size      int64
	firstLine time.Time // of the current file; zero when empty
	lastMaint time.Time

	maintWake chan struct{}
	stop      chan struct{}
	maintDone chan struct{}
	closeOnce sync.Once
}

func openRotator(path string, o Options) (*rotator, error) {
	y := newLayout(path)
	lk, err := openLock(y.lockPath())
	if err != nil {
		return nil, err
	}
	r := &rotator{y: y, maxSize: o.MaxSizeBytes, maxBackups: o.MaxBackups, maxAge: o.MaxAge,
		compress: o.Compress, now: o.now, log: o.Log, lock: lk,
		maintWake: make(chan struct{}, 1), stop: make(chan struct{}), maintDone: make(chan struct{})}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.lock.Lock()
	err = r.ensureOpen()
	r.lock.Unlock()
	if err != nil {
		lk.Close()
		return nil, err
	}
	r.lastMaint = r.now()
	go r.maintLoop()
	r.wakeMaint() // leftovers of a previous run: uncompressed or expired backups
	return r, nil
}

// ensureOpen makes f the file at PATH. Under lock.
func (r *rotator) ensureOpen() error {
	st, err := os.Stat(r.y.path)
	if r.f != nil {
		if err == nil && os.SameFile(st, r.fi) {
			return nil
		}
		// Rotated or replaced by another process (purge) or another
		// logger on the same path: write to what is there now.
		r.f.Close()
		r.f = nil
	}
	f, err := os.OpenFile(r.y.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, fileMode)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.fi, r.size = f, fi, fi.Size()
	r.firstLine = time.Time{}
	if r.size > 0 {
		r.firstLine = firstLineTime(r.y.path, fi.ModTime())
	}
	return nil
}

// firstLineTime reads the timestamp of a file's first line (the encoder
// writes it first); fallback when it cannot.
func firstLineTime(path string, fallback time.Time) time.Time {
	f, err := os.Open(path)
	if err != nil {
		return fallback
	}
	defer f.Close()
	var buf [64]byte
	n, _ := io.ReadFull(f, buf[:])
	rest, ok := bytes.CutPrefix(buf[:n], []byte(`{"timestamp":"`))
	if !ok {
		return fallback
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return fallback
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:end]))
	if err != nil {
		return fallback
	}
	return t
}

// Write writes whole lines, rotating before the file would pass maxSize
// (a file is never cut inside a line).
func (r *rotator) Write(p []byte) (int, error) {
	r.lock.Lock()
	defer r.lock.Unlock()
	if err := r.ensureOpen(); err != nil {
		return 0, err
	}
	now := r.now()
	if r.ageDue(now) {
		if err := r.rotate(now); err != nil {
			return 0, err
		}
	}
	written := 0
	for len(p) > 0 {
		chunk := p
		if r.maxSize > 0 && r.size+int64(len(p)) > r.maxSize {
			room := r.maxSize - r.size
			cut := 0
			if room > 0 {
				cut = bytes.LastIndexByte(p[:min(room, int64(len(p)))], '\n') + 1
			}
			if cut == 0 {
				if r.size > 0 {
					if err := r.rotate(now); err != nil {
						return written, err
					}
					continue
				}
				// One line longer than maxSize: it gets a file of its own.
				if cut = bytes.IndexByte(p, '\n') + 1; cut == 0 {
					cut = len(p)
				}
			}
			chunk = p[:cut]
		}
		n, err := r.f.Write(chunk)
		written += n
		r.size += int64(n)
		if r.firstLine.IsZero() && n > 0 {
			r.firstLine = now
		}
		if err != nil {
			r.f.Close()
			r.f = nil
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (r *rotator) ageDue(now time.Time) bool {
	return r.maxAge > 0 && r.size > 0 && !r.firstLine.IsZero() && now.Sub(r.firstLine) >= ageRotation
}

// rotate renames PATH to a backup name and opens a new PATH. Under lock,
// with f being PATH.
func (r *rotator) rotate(now time.Time) error {
	r.f.Close()
	r.f = nil
	if err := os.Rename(r.y.path, r.y.backupName(now)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	r.wakeMaint()
	return r.ensureOpen()
}

// Tick rotates an active file whose first line is a day old (when
// retention is on) and schedules maintenance.
func (r *rotator) Tick(now time.Time) {
	if r.maxAge > 0 {
		r.lock.Lock()
		if r.ensureOpen() == nil && r.ageDue(now) {
			if err := r.rotate(now); err != nil {
				r.log.Error("access log rotation failed", "error", err.Error())
			}
		}
		r.lock.Unlock()
	}
	if now.Sub(r.lastMaint) >= maintEvery {
		r.lastMaint = now
		r.wakeMaint()
	}
}

func (r *rotator) wakeMaint() {
	select {
	case r.maintWake <- struct{}{}:
	default:
	}
}

func (r *rotator) maintLoop() {
	defer close(r.maintDone)
	for {
		select {
		case <-r.stop:
			return
		case <-r.maintWake:
			if err := r.maintain(); err != nil {
				r.log.Error("access log maintenance failed", "error", err.Error())
			}
		}
	}
}

// Close stops maintenance, runs it once more (so a file rotated last is
// compressed and expiry applied) and closes the file.
func (r *rotator) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.maintDone
		if merr := r.maintain(); merr != nil {
			r.log.Error("access log maintenance failed", "error", merr.Error())
		}
		r.lock.Lock()
		if r.f != nil {
			err = r.f.Close()
			r.f = nil
		}
		r.lock.Unlock()
		r.lock.Close()
	})
	return err
}

// maintain expires backups (count and age), removes stale temp files and
// compresses what is left uncompressed.
func (r *rotator) maintain() error {
	return maintain(r.y, r.lock, r.now(), r.maxBackups, r.maxAge, r.compress)
}

func maintain(y layout, lk *fileLock, now time.Time, maxBackups int, maxAge time.Duration, compress bool) error {
	bs, err := y.backups()
	if err != nil {
		return err
	}
	var keep, remove []backup
	for i, b := range bs {
		switch {
		case maxBackups > 0 && i >= maxBackups:
			remove = append(remove, b)
		case maxAge > 0 && now.Sub(b.rotated) > maxAge:
			remove = append(remove, b)
		default:
			keep = append(keep, b)
		}
	}
	var errs []error
	if len(remove) > 0 {
		lk.Lock()
		for _, b := range remove {
			if err := os.Remove(b.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		lk.Unlock()
	}
	removeStaleTemps(y, now)
	if compress {
		for _, b := range keep {
			if !b.compressed {
				if err := compressBackup(y, lk, b.path); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// removeStaleTemps removes temp files that a crashed compression or purge
// left (they hold log lines, so they must expire too).
func removeStaleTemps(y layout, now time.Time) {
	ents, err := os.ReadDir(y.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), y.stem) || !strings.Contains(e.Name(), tmpMarker) {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > staleTmp {
			os.Remove(filepath.Join(y.dir, e.Name()))
		}
	}
}

// compressBackup gzips src into src.gz and removes src, unless src
// changed meanwhile (purge rewrote it).
func compressBackup(y layout, lk *fileLock, src string) error {
	st0, err := os.Stat(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	tmp, err := writeTemp(y.dir, filepath.Base(src)+gzSuffix, st0, func(w io.Writer) error {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		// BestSpeed: compression competes with the proxy for CPU; on
		// access log lines it costs about 2.5x less than the default
		// level for files about 15% larger.
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if _, err := io.Copy(zw, in); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("compress %s: %w", src, err)
	}
	lk.Lock()
	defer lk.Unlock()
	if st1, err := os.Stat(src); err != nil || !sameContent(st0, st1) {
		os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, src+gzSuffix); err != nil {
		os.Remove(tmp)
		return err
	}
	_ = fsutil.SyncDir(y.dir) // best effort: the files themselves are synced
	return os.Remove(src)
}

// sameContent says whether two stats are of the same, unchanged file.
func sameContent(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// writeTemp writes a new temp file in dir, with the mode (and, as root,
// the owner) of like, through fill, fsyncs it and returns its name; on
// error it removes it.
func writeTemp(dir, base string, like os.FileInfo, fill func(io.Writer) error) (name string, err error) {
	f, err := os.CreateTemp(dir, base+tmpMarker+"-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(like.Mode().Perm()); err != nil {
		return "", err
	}
	copyOwner(f, like)
	bw := bufio.NewWriterSize(f, 256<<10)
	if err = fill(bw); err != nil {
		return "", err
	}
	if err = bw.Flush(); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}
