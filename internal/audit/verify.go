package audit

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
)

// Report is the summary of a trail that verified.
type Report struct {
	Entries       int    `json:"entries"`
	LastSeq       uint64 `json:"last_seq"`
	LastEventID   string `json:"last_event_id,omitempty"`
	LastTimestamp string `json:"last_timestamp,omitempty"`
	LastHash      string `json:"last_hash"`
	// CheckpointSeq is the seq the checkpoint vouches for (0: none given).
	CheckpointSeq uint64 `json:"checkpoint_seq"`
	// Warnings are facts that do not make the trail invalid but that an
	// operator should know (no checkpoint, a torn final line, ...).
	Warnings []string `json:"warnings,omitempty"`
}

// VerifyError names the first entry that is not what the chain, the
// signatures and the checkpoint say it must be.
type VerifyError struct {
	Line    int    // 1-based line in the file; 0 for the checkpoint itself
	EventID string // of the entry found on that line (or, for a missing tail, of the missing entry) when known
	Reason  string
}

func (e *VerifyError) Error() string {
	if e.Line == 0 {
		return e.Reason
	}
	id := e.EventID
	if id == "" {
		id = "unknown"
	}
	return fmt.Sprintf("line %d (event_id %s): %s", e.Line, id, e.Reason)
}

// Verify reads a whole trail and checks, line by line: the signature, that
// seq counts up from 1 without gaps, that prev_hash is the hash of the line
// before (Genesis for the first) and, if cp is not nil, that the
// checkpoint is signed by pub and that the log reaches its seq with the
// same hash. It returns a *VerifyError for the first bad entry, or another
// error if r cannot be read.
//
// What each kind of tampering looks like:
//   - a changed byte: the signature (or the JSON) of that line fails;
//   - a deleted line: the next line has a seq one too high;
//   - an inserted line: a forged one fails its signature, a copied one
//     has a seq that was already seen;
//   - two swapped lines: the first of them has the seq of the second;
//   - a cut-off tail: the log ends before the checkpoint's seq.
//
// A last line without its newline is a write torn by a crash. If it is a
// complete, valid entry it counts; otherwise, as long as the checkpoint
// does not vouch for it (it was then never acknowledged), it is reported
// as a warning, matching what Open does with it.
func Verify(r io.Reader, pub ed25519.PublicKey, cp *Checkpoint) (*Report, error) {
	rep := &Report{LastHash: Genesis}
	if cp != nil {
		if err := cp.Verify(pub); err != nil {
			return nil, &VerifyError{Reason: err.Error() + " (the checkpoint was modified or the key is not this trail's)"}
		}
		rep.CheckpointSeq = cp.Seq
	} else {
		rep.Warnings = append(rep.Warnings, "no checkpoint: entries cut off the end of the log cannot be detected")
	}
	br := bufio.NewReaderSize(r, 64<<10)
	expect := uint64(1)
	for lineNo := 1; ; lineNo++ {
		line, complete, err := readLine(br, MaxLineBytes)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			break
		}
		if !complete {
			// The last bytes of the file, without a newline.
			e, perr := parseLine(pub, line)
			if perr == nil && e.Seq == expect && e.PrevHash == rep.LastHash {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("line %d has no final newline (a crash just after writing it); the entry itself is intact", lineNo))
				if verr := rep.accept(lineNo, e, line, cp); verr != nil {
					return nil, verr
				}
				break
			}
			if cp != nil && cp.Seq >= expect {
				return nil, &VerifyError{Line: lineNo, EventID: lenientEventID(line),
					Reason: fmt.Sprintf("incomplete line (%d bytes, no newline) where the checkpoint vouches for entries up to seq %d: the log was cut", len(line), cp.Seq)}
			}
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("line %d is an incomplete write (%d bytes, no newline) left by a crash; it was never acknowledged, and rampart serve truncates it on its next start and records that", lineNo, len(line)))
			break
		}
		if line == nil {
			return nil, &VerifyError{Line: lineNo, Reason: fmt.Sprintf("line longer than %d bytes: not an audit entry (inserted or corrupted)", MaxLineBytes)}
		}
		if len(line) == 0 {
			return nil, &VerifyError{Line: lineNo, Reason: "empty line: not an audit entry (inserted or corrupted)"}
		}
		e, perr := parseLine(pub, line)
		if perr != nil {
			return nil, &VerifyError{Line: lineNo, EventID: lenientEventID(line), Reason: perr.Error()}
		}
		switch {
		case e.Seq > expect:
			missing := fmt.Sprintf("the entry with seq %d is", expect)
			if e.Seq-expect > 1 {
				missing = fmt.Sprintf("the entries with seq %d to %d are", expect, e.Seq-1)
			}
			return nil, &VerifyError{Line: lineNo, EventID: e.EventID,
				Reason: fmt.Sprintf("seq %d where %d was expected: %s missing here (deleted, or moved by reordering)", e.Seq, expect, missing)}
		case e.Seq < expect:
			return nil, &VerifyError{Line: lineNo, EventID: e.EventID,
				Reason: fmt.Sprintf("seq %d where %d was expected: the entry is repeated or out of order (inserted, or moved by reordering)", e.Seq, expect)}
		case e.PrevHash != rep.LastHash:
			what := "line " + fmt.Sprint(lineNo-1)
			if lineNo == 1 {
				what = "Genesis"
			}
			return nil, &VerifyError{Line: lineNo, EventID: e.EventID,
				Reason: fmt.Sprintf("prev_hash %s does not match %s (%s): the entry before it was replaced", short(e.PrevHash), what, short(rep.LastHash))}
		}
		if verr := rep.accept(lineNo, e, line, cp); verr != nil {
			return nil, verr
		}
		expect++
	}
	if cp != nil {
		switch {
		case cp.Seq > rep.LastSeq:
			missing := &VerifyError{Line: rep.Entries + 1,
				Reason: fmt.Sprintf("missing: the log ends after seq %d but the checkpoint vouches for entries up to seq %d (event_id %s): %d entries were cut off the end",
					rep.LastSeq, cp.Seq, cp.EventID, cp.Seq-rep.LastSeq)}
			if cp.Seq == rep.LastSeq+1 {
				missing.EventID = cp.EventID
			}
			return nil, missing
		case cp.Seq < rep.LastSeq:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the checkpoint is %d entries behind the log (a crash between writing an entry and updating the checkpoint leaves it 1 behind); the entries after it are signed and chained", rep.LastSeq-cp.Seq))
		}
	}
	return rep, nil
}

// accept records a verified entry and checks it against the checkpoint.
func (rep *Report) accept(lineNo int, e Entry, line []byte, cp *Checkpoint) error {
	h := HashLine(line)
	if cp != nil && e.Seq == cp.Seq && h != cp.Hash {
		return &VerifyError{Line: lineNo, EventID: e.EventID,
			Reason: fmt.Sprintf("hash %s differs from the checkpoint's %s for seq %d (event_id %s): the log was rewritten from here", short(h), short(cp.Hash), cp.Seq, cp.EventID)}
	}
	rep.Entries++
	rep.LastSeq, rep.LastEventID, rep.LastTimestamp, rep.LastHash = e.Seq, e.EventID, e.Timestamp, h
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// readLine returns the next line without its newline and whether it had
// one. A line longer than max is consumed and returned as nil with
// complete set; io.EOF comes with the final bytes (if any) of a file that
// does not end in a newline.
func readLine(br *bufio.Reader, max int) (line []byte, complete bool, err error) {
	var buf []byte
	tooLong := false
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, frag...)
			if len(buf) > max+1 {
				tooLong, buf = true, nil
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, true, nil
			}
			return buf[: len(buf)-1 : len(buf)-1], true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if tooLong {
				return nil, true, nil
			}
			if buf == nil {
				buf = []byte{}
			}
			return buf, false, err
		}
	}
}
