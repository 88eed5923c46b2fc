package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// Checkpoint is the signed head record kept beside the log. A hash chain
// proves every entry up to the last one it holds, but says nothing about
// entries cut off after it: the checkpoint is that missing witness. It is
// rewritten after every append, so a log that ends before the checkpoint's
// seq, or whose entry at that seq hashes differently, was truncated or
// rewritten.
type Checkpoint struct {
	Seq       uint64 `json:"seq"`
	Hash      string `json:"hash"`      // HashLine of entry Seq
	EventID   string `json:"event_id"`  // of entry Seq, to name it when it is missing
	Timestamp string `json:"timestamp"` // of entry Seq
	// PublicKey is the key the checkpoint and the log are signed with,
	// for a verifier that has no copy of its own (see Verify).
	PublicKey string `json:"public_key"`
	Signature string `json:"signature"`

	line []byte // as read, for signature checks
}

// CheckpointPath is where the checkpoint of the log at logPath lives.
func CheckpointPath(logPath string) string { return logPath + ".checkpoint" }

type unsignedCheckpoint struct {
	Seq       uint64 `json:"seq"`
	Hash      string `json:"hash"`
	EventID   string `json:"event_id"`
	Timestamp string `json:"timestamp"`
	PublicKey string `json:"public_key"`
}

// newCheckpoint signs a checkpoint for entry e whose line hashes to hash.
func newCheckpoint(key ed25519.PrivateKey, e Entry, hash string) (*Checkpoint, error) {
	u := unsignedCheckpoint{Seq: e.Seq, Hash: hash, EventID: e.EventID, Timestamp: e.Timestamp,
		PublicKey: EncodePublicKey(key.Public().(ed25519.PublicKey))}
	body, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	line := signLine(key, CheckpointDomain, body)
	return ParseCheckpoint(line)
}

// ReadCheckpoint reads a checkpoint file. It does not check the signature:
// that needs the public key, see Checkpoint.Verify.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cp, err := ParseCheckpoint(bytes.TrimSuffix(data, []byte("\n")))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %v", path, err)
	}
	return cp, nil
}

// ParseCheckpoint decodes one checkpoint line.
func ParseCheckpoint(line []byte) (*Checkpoint, error) {
	cp := &Checkpoint{}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cp); err != nil {
		return nil, fmt.Errorf("not a checkpoint: %v", err)
	}
	if cp.Seq == 0 || !isHexHash(cp.Hash) {
		return nil, errors.New("not a checkpoint: seq or hash missing")
	}
	cp.line = bytes.Clone(line)
	return cp, nil
}

// Verify checks the checkpoint's signature with pub.
func (cp *Checkpoint) Verify(pub ed25519.PublicKey) error {
	if err := checkLineSignature(pub, CheckpointDomain, cp.line); err != nil {
		return fmt.Errorf("checkpoint %v", err)
	}
	return nil
}

// Key returns the public key the checkpoint names (not proof of anything
// by itself: whoever wrote the file chose it).
func (cp *Checkpoint) Key() (ed25519.PublicKey, error) { return ParsePublicKey(cp.PublicKey) }

// readCheckpointIfAny is ReadCheckpoint that returns nil, nil when there is
// no file.
func readCheckpointIfAny(path string) (*Checkpoint, error) {
	cp, err := ReadCheckpoint(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return cp, err
}

// write replaces the checkpoint file atomically: temp file, fsync, rename,
// directory fsync. A crash leaves either the old or the new checkpoint,
// never a torn one.
func (cp *Checkpoint) write(path string) error {
	return fsutil.WriteFileAtomic(path, ".checkpoint-*", append(bytes.Clone(cp.line), '\n'))
}
