package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// Options says where a trail lives.
type Options struct {
	// Path is the log file; its checkpoint is CheckpointPath(Path).
	Path string
	// KeyFile is the Ed25519 signing key, created on first start.
	KeyFile string
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now (tests set it).
	Now func() time.Time
}

// DefaultPaths are the log and key files under a data directory when the
// config names none.
func DefaultPaths(dataDir string) (logPath, keyFile string) {
	return filepath.Join(dataDir, "audit", "audit.log"), filepath.Join(dataDir, "audit", "audit.key")
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: the trail is closed")

// Appender is what a component that records actions needs (the admin API,
// detectors, signal handlers); *Log implements it.
type Appender interface {
	Append(ctx context.Context, ev Event) (Entry, error)
}

// Log is an open trail. Every Open must be matched by one Close.
//
// Opening the same file twice in one process returns two handles on one
// shared writer (so their appends still form one chain); a second process
// is refused by a file lock.
type Log struct {
	c      *core
	once   sync.Once
	closed atomic.Bool
}

// core is the writer shared by every handle on one file.
type core struct {
	path, cpPath, keyPath string
	// cpPending is the last entry, when its checkpoint could not be
	// written (see Append).
	cpPending *Entry
	log       *slog.Logger
	now       func() time.Time
	key       ed25519.PrivateKey
	pub       ed25519.PublicKey
	refs      int // guarded by shared.mu

	mu sync.Mutex // serialises appends: one writer extends the chain at a time
	f  *os.File
	// fsync is f.Sync; tests replace it to make it fail.
	fsync func() error
	// size, seq and lastHash are the end of the last acknowledged entry:
	// they only move once its line is fsynced.
	size     int64  // bytes of complete lines in f
	seq      uint64 // of the last entry (0: none)
	lastHash string // HashLine of the last entry (Genesis: none)
	// cutPending is why f may still hold bytes after size: the error of
	// an append whose write or fsync failed, until repair cuts them off.
	cutPending error
	closed     bool
	idx        []int64 // start offset of every line, built by the first Page
}

var shared = struct {
	mu sync.Mutex
	m  map[string]*core
}{m: map[string]*core{}}

// Open opens (or creates) the trail at o.Path and its signing key.
//
// On open only the tail is read: the last complete line must verify with
// the key and agree with the checkpoint (equal to it, or one entry ahead
// after a crash between the two writes). A log that ends before the
// checkpoint, or a checkpoint that does not verify, is refused: starting
// anyway would overwrite the checkpoint and erase the evidence.
func Open(o Options) (*Log, error) {
	if o.Path == "" || o.KeyFile == "" {
		return nil, errors.New("audit: log path and key file are required")
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, err
	}
	keyPath, err := filepath.Abs(o.KeyFile)
	if err != nil {
		return nil, err
	}
	if path == keyPath {
		return nil, errors.New("audit: the log and the signing key must be different files")
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if c := shared.m[path]; c != nil {
		if c.keyPath != keyPath {
			return nil, fmt.Errorf("audit log %s is already open with key %s", path, c.keyPath)
		}
		c.refs++
		return &Log{c: c}, nil
	}
	c, err := openCore(path, keyPath, o)
	if err != nil {
		return nil, err
	}
	c.refs = 1
	shared.m[path] = c
	return &Log{c: c}, nil
}

func openCore(path, keyPath string, o Options) (c *core, err error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if err := lockFile(f); err != nil {
		return nil, err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := fsutil.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	cpPath := CheckpointPath(path)
	cp, err := readCheckpointIfAny(cpPath)
	if err != nil {
		return nil, fmt.Errorf("audit: %v; refusing to start: without a trustworthy checkpoint a cut-off trail would go unnoticed", err)
	}
	key, err := LoadKey(keyPath)
	if errors.Is(err, ErrNoKey) {
		if fi.Size() > 0 || cp != nil {
			return nil, fmt.Errorf("audit: signing key %s is missing but the trail %s already has entries: restore the key from a backup (a new key could not continue the signed chain); to start a new trail instead, move %s and %s aside", keyPath, path, path, cpPath)
		}
		key, err = createKey(keyPath)
		if err == nil {
			logger.Info("audit signing key created", "file", keyPath, "public_key", EncodePublicKey(key.Public().(ed25519.PublicKey)))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	c = &core{path: path, cpPath: cpPath, keyPath: keyPath, log: logger, now: now, key: key,
		pub: key.Public().(ed25519.PublicKey), f: f, fsync: f.Sync, lastHash: Genesis}
	if cp != nil {
		if err := cp.Verify(c.pub); err != nil {
			return nil, fmt.Errorf("audit: %s: %v; refusing to start", cpPath, err)
		}
	}
	pending, err := c.recover(fi.Size(), cp)
	if err != nil {
		return nil, err
	}
	for _, ev := range pending {
		if _, err := c.append(ev); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Append writes one entry, fsyncs it and updates the checkpoint before it
// returns: once it has returned without error, the entry survives a crash
// or kill -9. Appends are serialised, so concurrent callers each get the
// next seq and the chain stays linear.
//
// ctx is not used to abandon an append: whatever it records has already
// happened, so a caller that has gone away must not make it disappear.
func (l *Log) Append(ctx context.Context, ev Event) (Entry, error) {
	if l.closed.Load() {
		return Entry{}, ErrClosed
	}
	return l.c.append(ev)
}

func (c *core) append(ev Event) (Entry, error) {
	if ev.Action == "" || ev.Actor.Type == "" || ev.Result == "" {
		return Entry{}, errors.New("audit: an event needs an actor type, an action and a result")
	}
	details := json.RawMessage("{}")
	if ev.Details != nil {
		b, err := json.Marshal(ev.Details)
		if err != nil {
			return Entry{}, fmt.Errorf("audit: details: %w", err)
		}
		details = b
	}
	before, err := encodeValue(ev.Before)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: changes.before: %w", err)
	}
	after, err := encodeValue(ev.After)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: changes.after: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Entry{}, ErrClosed
	}
	if c.cutPending != nil {
		// What a failed append left after the last acknowledged entry
		// is still there: the new line goes after it only once it is gone.
		if err := c.repair(); err != nil {
			return Entry{}, fmt.Errorf("audit: %s still holds the remains of a failed append after seq %d (%v) and removing them failed (%v); nothing appended until they are (retried on the next append)", c.path, c.seq, c.cutPending, err)
		}
	}
	if c.cpPending != nil {
		// The last entry's checkpoint could not be written. Appending now
		// would let it lag by two, which the next start could not tell
		// from tampering: first the checkpoint, or nothing.
		if err := c.writeCheckpoint(*c.cpPending); err != nil {
			return Entry{}, fmt.Errorf("audit: checkpoint %s still not written after seq %d (%v); nothing appended until it is", c.cpPath, c.cpPending.Seq, err)
		}
		c.log.Warn("audit checkpoint written again after a failure; appending resumes", "seq", c.cpPending.Seq, "file", c.cpPath)
		c.cpPending = nil
	}
	now := c.now().UTC()
	u := unsigned{Seq: c.seq + 1, EventID: newEventID(now), Timestamp: now.Format("2006-01-02T15:04:05.000000Z07:00"),
		Actor: ev.Actor, Action: ev.Action, Resource: ev.Resource, Details: details, Result: ev.Result,
		Changes: Changes{Before: before, After: after}, PrevHash: c.lastHash}
	body, err := json.Marshal(u)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: %w", err)
	}
	line := signLine(c.key, EntryDomain, body)
	if len(line) > MaxLineBytes {
		return Entry{}, fmt.Errorf("audit: entry of %d bytes is larger than %d; shorten its details", len(line), MaxLineBytes)
	}
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return Entry{}, fmt.Errorf("audit: %w", err)
	}

	// One write of the whole line and its newline, then fsync. A crash
	// before the fsync completes leaves at most a partial last line, which
	// was never acknowledged (see recover).
	if _, err := c.f.Write(append(line, '\n')); err != nil {
		return Entry{}, c.failed(fmt.Errorf("audit: writing seq %d to %s: %w", u.Seq, c.path, err))
	}
	if err := c.fsync(); err != nil {
		return Entry{}, c.failed(fmt.Errorf("audit: fsync of %s after writing seq %d: %w", c.path, u.Seq, err))
	}
	start := c.size
	c.size += int64(len(line)) + 1
	c.seq, c.lastHash = e.Seq, HashLine(line)
	if c.idx != nil {
		c.idx = append(c.idx, start)
	}
	if err := c.writeCheckpoint(e); err != nil {
		// The entry is durable and chained, and a checkpoint one entry
		// behind is what a crash between the two writes leaves (recover
		// accepts it): the entry counts as recorded. The next Append
		// writes the checkpoint first (a lag of two could not be told
		// from tampering), and appends only once that works: the trail
		// comes back by itself when the disk does (a full disk freed).
		c.cpPending = &e
		c.log.Error("audit checkpoint not written; the entry is recorded, the next append retries the checkpoint first",
			"seq", e.Seq, "file", c.cpPath, "error", err)
	}
	return e, nil
}

// failed handles an append whose write or fsync failed: the entry is not
// recorded (err says so to its caller), and whatever of it reached the
// file is removed now if possible, else before the next append.
func (c *core) failed(err error) error {
	c.cutPending = err
	if rerr := c.repair(); rerr != nil {
		c.log.Error("audit log: the remains of a failed append could not be removed; the next append retries first",
			"file", c.path, "after_seq", c.seq, "error", err, "repair_error", rerr)
	}
	return err
}

// repair cuts f back to the end of the last acknowledged entry after a
// failed append, and fsyncs that.
//
// Cutting is enough even after a failed fsync, when the kernel may have
// dropped the unwritten pages and will not report it again ("fsyncgate"):
// every byte before size was fsynced successfully before, so it is on
// disk whatever happened since, and every byte after it belongs to the
// entry whose caller was told it was not recorded. Once the truncation is
// fsynced, the file on disk is the trail as acknowledged, which size, seq
// and lastHash still describe; the next entry chains from it. The
// directory needs no fsync: no name changed.
func (c *core) repair() error {
	if err := c.f.Truncate(c.size); err != nil {
		return err
	}
	if err := c.fsync(); err != nil {
		return err
	}
	c.log.Warn("audit log cut back to its last acknowledged entry after a failed append; appending resumes",
		"file", c.path, "seq", c.seq, "cause", c.cutPending)
	c.cutPending = nil
	return nil
}

func (c *core) writeCheckpoint(e Entry) error {
	cp, err := newCheckpoint(c.key, e, c.lastHash)
	if err != nil {
		return err
	}
	return cp.write(c.cpPath)
}

// Close releases this handle; the file is closed (and its lock released)
// with the last handle. Close is idempotent.
func (l *Log) Close() error {
	var err error
	l.once.Do(func() {
		l.closed.Store(true)
		shared.mu.Lock()
		defer shared.mu.Unlock()
		c := l.c
		c.refs--
		if c.refs > 0 {
			return
		}
		delete(shared.m, c.path)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closed = true
		err = c.f.Close()
	})
	return err
}

// PublicKey is the key that verifies this trail.
func (l *Log) PublicKey() ed25519.PublicKey { return l.c.pub }

// Path is the log file.
func (l *Log) Path() string { return l.c.path }

// CheckpointPath is the checkpoint file.
func (l *Log) CheckpointPath() string { return l.c.cpPath }

// Head returns the seq and hash of the last entry (0 and Genesis when the
// trail is empty).
func (l *Log) Head() (uint64, string) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.c.seq, l.c.lastHash
}
