package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// recover reads the tail of the log at open, reconciles it with the
// checkpoint and repairs what a crash can leave behind. It sets the
// writer's position (size, seq, lastHash) and returns events to append
// once the writer is ready (records of the repairs).
//
// A torn last line, the decision: an entry is acknowledged only after its
// whole line, newline included, has been fsynced and the checkpoint
// updated. Bytes after the last newline are therefore a write that a crash
// interrupted and nobody was told had succeeded. Refusing to start would
// turn every crash during an append into an outage that needs a person,
// which for the security boundary in front of everything is its own risk.
// So recover truncates such bytes, after saving them to
// "<log>.torn-<time>" for forensics, and the first entry written after
// start-up records that it did (action audit.torn_tail_truncated, with the
// byte count and SHA-256). Two exceptions: if those bytes are a complete,
// valid entry that only lacks its newline, the newline is added and the
// entry kept (a complete entry is never dropped); and if the checkpoint
// vouches for more entries than the complete lines hold, the "torn" line
// was an acknowledged entry that someone cut, and start-up is refused.
func (c *core) recover(size int64, cp *Checkpoint) ([]Event, error) {
	last, partial, err := readTail(c.f, size)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %v; refusing to append to it (check it with rampart audit verify)", c.path, err)
	}
	var lastE Entry
	lastHash := Genesis
	if last != nil {
		if lastE, err = parseLine(c.pub, last); err != nil {
			return nil, fmt.Errorf("audit log %s: its last complete line does not verify (%v); refusing to append to a trail that is not intact: check it with rampart audit verify %s", c.path, err, c.path)
		}
		lastHash = HashLine(last)
	}
	end := size - int64(len(partial)) // end of the complete lines
	var pending []Event
	addNewline, truncate := false, false
	if len(partial) > 0 {
		if e, perr := parseLine(c.pub, partial); perr == nil && e.Seq == lastE.Seq+1 && e.PrevHash == lastHash {
			addNewline = true
			lastE, lastHash, end = e, HashLine(partial), size
		} else if cp != nil && cp.Seq > lastE.Seq {
			return nil, fmt.Errorf("audit log %s ends with an incomplete line after seq %d, but the checkpoint vouches for entries up to seq %d (event_id %s): the log was cut; refusing to start (restore the log from a backup)", c.path, lastE.Seq, cp.Seq, cp.EventID)
		} else {
			truncate = true
		}
	}

	cpSeq, cpHash := uint64(0), Genesis
	if cp != nil {
		cpSeq, cpHash = cp.Seq, cp.Hash
	}
	needCheckpoint := false
	switch {
	case cpSeq == lastE.Seq:
		if cpHash != lastHash {
			return nil, fmt.Errorf("audit log %s: the entry at seq %d is not the one the checkpoint vouches for (event_id %s): the log was rewritten; refusing to start", c.path, cpSeq, cp.EventID)
		}
	case cpSeq > lastE.Seq:
		return nil, fmt.Errorf("audit log %s ends at seq %d but the checkpoint %s vouches for entries up to seq %d (event_id %s): %d entries were cut off the end; refusing to start (restore the log from a backup)", c.path, lastE.Seq, c.cpPath, cpSeq, cp.EventID, cpSeq-lastE.Seq)
	case cpSeq+1 == lastE.Seq:
		// A crash between the log's fsync and the checkpoint's rename.
		if lastE.PrevHash != cpHash {
			return nil, fmt.Errorf("audit log %s: the last entry (seq %d) does not follow the entry the checkpoint vouches for: the log was rewritten; refusing to start", c.path, lastE.Seq)
		}
		needCheckpoint = true
	default:
		// The checkpoint is missing or several entries behind, which the
		// writer never leaves behind. The entries after it are signed,
		// so if the whole log verifies they are genuine: accept it, and
		// record that the checkpoint had to be rebuilt (a deleted
		// checkpoint hides a cut-off tail, so this must be visible).
		rep, err := Verify(io.NewSectionReader(c.f, 0, end), c.pub, cp)
		if err != nil {
			return nil, fmt.Errorf("audit log %s: the checkpoint is missing or behind and the log does not verify: %v; refusing to start", c.path, err)
		}
		reason := "missing"
		if cp != nil {
			reason = "behind"
		}
		pending = append(pending, Event{Actor: System("audit"), Action: ActionCheckpointRebuilt,
			Resource: Resource{Type: "audit", ID: filepath.Base(c.cpPath)}, Result: ResultSuccess,
			Details: map[string]any{"reason": reason, "checkpoint_seq": cpSeq, "log_seq": rep.LastSeq,
				"note": "the log verified from its first entry; entries cut off its end before this point could not be detected"}})
		c.log.Warn("audit checkpoint rebuilt", "checkpoint", c.cpPath, "reason", reason, "checkpoint_seq", cpSeq, "log_seq", rep.LastSeq)
		needCheckpoint = true
	}

	// Every check passed: now change the files.
	switch {
	case addNewline:
		if _, err := c.f.Write([]byte("\n")); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if err := c.fsync(); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		end = size + 1
		c.log.Warn("audit log: last entry had no newline (crash right after writing it); newline added", "file", c.path, "seq", lastE.Seq)
	case truncate:
		saved, err := c.saveTorn(partial)
		if err != nil {
			return nil, fmt.Errorf("audit: saving the torn last line of %s: %w", c.path, err)
		}
		if err := c.f.Truncate(end); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if err := c.fsync(); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		sum := sha256.Sum256(partial)
		pending = append([]Event{{Actor: System("audit"), Action: ActionTornTail,
			Resource: Resource{Type: "audit", ID: filepath.Base(c.path)}, Result: ResultSuccess,
			Details: map[string]any{"bytes": len(partial), "sha256": hex.EncodeToString(sum[:]), "saved_to": saved,
				"after_seq": lastE.Seq, "note": "an incomplete line (a write interrupted by a crash, never acknowledged) was removed from the end of the log"}}}, pending...)
		c.log.Warn("audit log: torn last line removed", "file", c.path, "bytes", len(partial), "saved_to", saved, "after_seq", lastE.Seq)
	}
	c.size, c.seq, c.lastHash = end, lastE.Seq, lastHash
	if needCheckpoint && lastE.Seq > 0 {
		if err := c.writeCheckpoint(lastE); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	return pending, nil
}

// saveTorn keeps the bytes of a torn line beside the log.
func (c *core) saveTorn(b []byte) (string, error) {
	name := fmt.Sprintf("%s.torn-%s", c.path, c.now().UTC().Format("20060102T150405.000000000Z"))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return name, fsutil.SyncDir(filepath.Dir(name))
}

// readTail returns the last complete line of f[:size] (nil if there is
// none) and the bytes after it. It reads at most two entries' worth from
// the end, whatever the size of the log.
func readTail(f io.ReaderAt, size int64) (last, partial []byte, err error) {
	if size == 0 {
		return nil, nil, nil
	}
	start := max(size-(2*MaxLineBytes+2), 0)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil {
		return nil, nil, err
	}
	nl := bytes.LastIndexByte(buf, '\n')
	if nl < 0 {
		if start > 0 {
			return nil, nil, fmt.Errorf("its last %d bytes hold no line break: not an audit log", len(buf))
		}
		return nil, buf, nil
	}
	partial = buf[nl+1:]
	if len(partial) > MaxLineBytes {
		return nil, nil, fmt.Errorf("it ends with %d bytes without a newline, more than any entry", len(partial))
	}
	body := buf[:nl]
	prev := bytes.LastIndexByte(body, '\n')
	if prev < 0 && start > 0 {
		return nil, nil, fmt.Errorf("its last line is longer than any entry (%d bytes)", MaxLineBytes)
	}
	return body[prev+1:], partial, nil
}
