package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	// A second handle on the same file in this process shares the writer.
	l2 := tr.open(t)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := l
			if w%2 == 1 {
				h = l2
			}
			for i := 0; i < each; i++ {
				e, err := h.Append(context.Background(), testEvent(w*1000+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d handed out twice", s)
		}
		seen[s] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct seqs, want %d", len(seen), workers*each)
	}
	rep, err := tr.verify(t)
	if err != nil {
		t.Fatalf("trail after concurrent appends: %v", err)
	}
	if rep.Entries != workers*each || rep.CheckpointSeq != workers*each {
		t.Fatalf("report %+v, want %d entries, checkpoint at the last", rep, workers*each)
	}
	if seq, hash := l2.Head(); seq != workers*each || hash != rep.LastHash {
		t.Fatalf("Head() = %d %s, want %d %s", seq, hash, workers*each, rep.LastHash)
	}
}

func TestSecondWriterOnTheFileIsRefused(t *testing.T) {
	tr := newTrail(t)
	tr.open(t)
	// What another process would do: open the file and lock it.
	f, err := os.OpenFile(tr.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lockFile(f); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second lock on an open trail: %v", err)
	}
}

func TestReopenContinuesTheChain(t *testing.T) {
	tr := written(t, 3)
	l := tr.open(t)
	if seq, _ := l.Head(); seq != 3 {
		t.Fatalf("after reopen Head seq %d, want 3", seq)
	}
	tr.write(t, l, 2)
	if tr.entries[3].Seq != 4 || tr.entries[3].PrevHash != HashLine(tr.lines(t)[2]) {
		t.Fatalf("first entry after reopen: %+v", tr.entries[3])
	}
	l.Close()
	if rep, err := tr.verify(t); err != nil || rep.Entries != 5 {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}

func TestTornLastLineIsTruncatedAndRecorded(t *testing.T) {
	tr := written(t, 3)
	torn := `{"seq":4,"event_id":"0190abcd-` // a crash in the middle of a write
	f, _ := os.OpenFile(tr.path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(torn)
	f.Close()

	l := tr.open(t)
	seq, _ := l.Head()
	if seq != 4 {
		t.Fatalf("Head seq %d after recovery, want 4 (3 entries + the recovery record)", seq)
	}
	lines := tr.lines(t)
	var rec Entry
	if err := json.Unmarshal(lines[3], &rec); err != nil {
		t.Fatal(err)
	}
	var d struct {
		Bytes    int    `json:"bytes"`
		SHA256   string `json:"sha256"`
		SavedTo  string `json:"saved_to"`
		AfterSeq uint64 `json:"after_seq"`
	}
	json.Unmarshal(rec.Details, &d)
	sum := sha256.Sum256([]byte(torn))
	if rec.Action != ActionTornTail || rec.Actor != System("audit") || d.Bytes != len(torn) || d.SHA256 != hex.EncodeToString(sum[:]) || d.AfterSeq != 3 {
		t.Fatalf("recovery entry %s", lines[3])
	}
	saved, err := os.ReadFile(d.SavedTo)
	if err != nil || string(saved) != torn {
		t.Fatalf("torn bytes saved to %s: %q, %v", d.SavedTo, saved, err)
	}
	tr.write(t, l, 1)
	l.Close()
	if rep, err := tr.verify(t); err != nil || rep.Entries != 5 {
		t.Fatalf("Verify after recovery: %+v %v", rep, err)
	}
}

func TestCompleteEntryWithoutNewlineIsKept(t *testing.T) {
	tr := written(t, 3)
	data, _ := os.ReadFile(tr.path)
	os.WriteFile(tr.path, data[:len(data)-1], 0o600)
	l := tr.open(t)
	if seq, _ := l.Head(); seq != 3 {
		t.Fatalf("Head seq %d, want 3: the complete last entry must be kept, with no recovery record", seq)
	}
	tr.write(t, l, 1)
	l.Close()
	if rep, err := tr.verify(t); err != nil || rep.Entries != 4 || rep.LastEventID != tr.entries[3].EventID {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}

func TestCheckpointOneBehindIsAccepted(t *testing.T) {
	// kill -9 between the log's fsync and the checkpoint's rename.
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, 2)
	old, _ := os.ReadFile(CheckpointPath(tr.path))
	tr.write(t, l, 1)
	l.Close()
	os.WriteFile(CheckpointPath(tr.path), old, 0o600)

	l = tr.open(t)
	if cp := tr.checkpoint(t); cp.Seq != 3 || cp.EventID != tr.entries[2].EventID {
		t.Fatalf("checkpoint after open: seq %d %s, want it brought up to seq 3", cp.Seq, cp.EventID)
	}
	if seq, _ := l.Head(); seq != 3 {
		t.Fatalf("Head seq %d, want 3 (no recovery record needed)", seq)
	}
}

func TestMissingCheckpointIsRebuiltAndRecorded(t *testing.T) {
	tr := written(t, 3)
	os.Remove(CheckpointPath(tr.path))
	l := tr.open(t)
	if seq, _ := l.Head(); seq != 4 {
		t.Fatalf("Head seq %d, want 4 (3 + a checkpoint_rebuilt record)", seq)
	}
	var rec Entry
	json.Unmarshal(tr.lines(t)[3], &rec)
	if rec.Action != ActionCheckpointRebuilt || !strings.Contains(string(rec.Details), `"reason":"missing"`) || !strings.Contains(string(rec.Details), `"log_seq":3`) {
		t.Fatalf("record: %s", tr.lines(t)[3])
	}
	l.Close()
	if _, err := tr.verify(t); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesTamperedTrail(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, tr *trail)
		want   string
	}{{
		name: "tail cut off",
		tamper: func(t *testing.T, tr *trail) {
			tr.rewrite(t, tr.lines(t)[:3], true)
		},
		want: "ends at seq 3 but the checkpoint " + "", // path follows
	}, {
		name: "last line cut in half",
		tamper: func(t *testing.T, tr *trail) {
			data, _ := os.ReadFile(tr.path)
			os.WriteFile(tr.path, data[:len(data)-40], 0o600)
		},
		want: "ends with an incomplete line after seq 4, but the checkpoint vouches for entries up to seq 5",
	}, {
		name: "last line edited",
		tamper: func(t *testing.T, tr *trail) {
			lines := tr.lines(t)
			lines[4] = []byte(strings.Replace(string(lines[4]), `"b-5"`, `"b-6"`, 1))
			tr.rewrite(t, lines, true)
		},
		want: "its last complete line does not verify",
	}, {
		name: "checkpoint missing and a middle line deleted",
		tamper: func(t *testing.T, tr *trail) {
			lines := tr.lines(t)
			tr.rewrite(t, append(lines[:1], lines[2:]...), true)
			os.Remove(CheckpointPath(tr.path))
		},
		want: "the checkpoint is missing or behind and the log does not verify: line 2",
	}, {
		name: "checkpoint edited",
		tamper: func(t *testing.T, tr *trail) {
			p := CheckpointPath(tr.path)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(data), `"seq":5`, `"seq":4`, 1)), 0o600)
		},
		want: "checkpoint signature does not verify",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := written(t, 5)
			tc.tamper(t, tr)
			before, _ := os.ReadFile(tr.path)
			l, err := Open(Options{Path: tr.path, KeyFile: tr.key})
			if err == nil {
				l.Close()
				t.Fatal("Open accepted a tampered trail")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v\nwant it to contain %q", err, tc.want)
			}
			if after, _ := os.ReadFile(tr.path); string(after) != string(before) {
				t.Fatal("a refused Open changed the log")
			}
		})
	}
}

func TestAppendAfterCloseFails(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	l.Close()
	l.Close() // idempotent
	if _, err := l.Append(context.Background(), testEvent(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
}

func TestAppendRefusesIncompleteOrOversizedEvents(t *testing.T) {
	l := newTrail(t).open(t)
	if _, err := l.Append(context.Background(), Event{Action: "x", Result: ResultSuccess}); err == nil || !strings.Contains(err.Error(), "needs an actor type") {
		t.Fatalf("event without actor: %v", err)
	}
	big := testEvent(1)
	big.Details = map[string]any{"blob": strings.Repeat("x", MaxLineBytes)}
	if _, err := l.Append(context.Background(), big); err == nil || !strings.Contains(err.Error(), "larger than 65536") {
		t.Fatalf("oversized event: %v", err)
	}
	if seq, _ := l.Head(); seq != 0 {
		t.Fatalf("refused events were written: seq %d", seq)
	}
}

func TestPage(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, 5)
	seqsOf := func(raw []json.RawMessage) []uint64 {
		var out []uint64
		for _, r := range raw {
			var e Entry
			if err := json.Unmarshal(r, &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, e.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		desc   bool
		cursor uint64
		limit  int
		want   []uint64
		next   uint64
	}{
		{false, 0, 2, []uint64{1, 2}, 2},
		{false, 2, 2, []uint64{3, 4}, 4},
		{false, 4, 2, []uint64{5}, 0},
		{false, 5, 2, nil, 0},
		{true, 0, 2, []uint64{5, 4}, 4},
		{true, 4, 2, []uint64{3, 2}, 2},
		{true, 2, 2, []uint64{1}, 0},
		{true, 1, 2, nil, 0},
		{true, 0, 1000, []uint64{5, 4, 3, 2, 1}, 0},
	} {
		raw, next, err := l.Page(tc.desc, tc.cursor, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqsOf(raw); !equalU(got, tc.want) || next != tc.next {
			t.Errorf("Page(desc=%v, cursor=%d, limit=%d) = %v next %d, want %v next %d", tc.desc, tc.cursor, tc.limit, got, next, tc.want, tc.next)
		}
	}
	// Appends after the index was built show up, byte for byte.
	tr.write(t, l, 1)
	raw, _, _ := l.Page(true, 0, 1)
	if len(raw) != 1 || string(raw[0]) != string(tr.lines(t)[5]) {
		t.Fatalf("newest entry %s, want line 6 as stored", raw)
	}
	if _, _, err := l.Page(false, 0, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func equalU(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDefaultPaths(t *testing.T) {
	logPath, key := DefaultPaths("/var/lib/rampart")
	if logPath != filepath.FromSlash("/var/lib/rampart/audit/audit.log") || key != filepath.FromSlash("/var/lib/rampart/audit/audit.key") ||
		CheckpointPath(logPath) != filepath.FromSlash("/var/lib/rampart/audit/audit.log.checkpoint") {
		t.Fatal(logPath, key)
	}
}

// A checkpoint the disk refuses (full) leaves the entry recorded (the
// checkpoint lags by one, as after a crash between the two writes); the
// next append writes the checkpoint first and is refused while that
// fails, and the trail resumes by itself once it works: no restart, one
// chain, and the checkpoint at the last entry.
func TestCheckpointFailureRecoversWithoutRestart(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, 1)
	cp := CheckpointPath(tr.path)
	// The checkpoint's rename over a non-empty directory fails.
	os.Remove(cp)
	os.MkdirAll(filepath.Join(cp, "x"), 0o700)
	if _, err := l.Append(context.Background(), testEvent(2)); err != nil {
		t.Fatalf("append whose checkpoint fails: %v, want it recorded", err)
	}
	if _, err := l.Append(context.Background(), testEvent(3)); err == nil || !strings.Contains(err.Error(), "nothing appended") {
		t.Fatalf("append while the checkpoint still fails: %v", err)
	}
	os.RemoveAll(cp) // the disk is back
	if _, err := l.Append(context.Background(), testEvent(4)); err != nil {
		t.Fatalf("append after the disk is back: %v", err)
	}
	if seq, _ := l.Head(); seq != 3 {
		t.Fatalf("Head seq %d, want 3 (entries 1, 2 and the one after recovery)", seq)
	}
	l.Close()
	if c := tr.checkpoint(t); c.Seq != 3 {
		t.Fatalf("checkpoint at seq %d, want 3", c.Seq)
	}
	if rep, err := tr.verify(t); err != nil || rep.Entries != 3 {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}

// failFsync makes the next n fsyncs of l's file fail, as a disk that
// returns EIO or ENOSPC for a while does.
func failFsync(l *Log, n *int) {
	sync := l.c.fsync
	l.c.fsync = func() error {
		if *n > 0 {
			*n--
			return errors.New("input/output error (injected)")
		}
		return sync()
	}
}

// afterCrash opens a copy of tr's files, as a start after kill -9 finds
// them (what the page cache holds, once fsynced, is what the disk holds).
func afterCrash(t *testing.T, tr *trail) (*trail, *Log) {
	t.Helper()
	cp := newTrail(t)
	os.MkdirAll(filepath.Dir(cp.path), 0o700)
	for from, to := range map[string]string{tr.path: cp.path, CheckpointPath(tr.path): CheckpointPath(cp.path), tr.key: cp.key} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(to, data, 0o600)
	}
	return cp, cp.open(t)
}

// checkChain requires the log to hold exactly tr.entries, seq 1 to n each
// chained from the line before, and to verify up to its checkpoint at n.
func checkChain(t *testing.T, tr *trail) {
	t.Helper()
	lines := tr.lines(t)
	if len(lines) != len(tr.entries) {
		t.Fatalf("%d lines in the log, want %d", len(lines), len(tr.entries))
	}
	prev := Genesis
	for i, line := range lines {
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil || e.EventID != tr.entries[i].EventID || e.Seq != uint64(i+1) || e.PrevHash != prev {
			t.Fatalf("line %d: %s, want seq %d, event_id %s, chained from %s", i+1, line, i+1, tr.entries[i].EventID, prev)
		}
		prev = HashLine(line)
	}
	if rep, err := tr.verify(t); err != nil || rep.Entries != len(tr.entries) || rep.CheckpointSeq != uint64(len(tr.entries)) {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}

// A failed fsync leaves the entry's durability unknown: the append is
// refused and the line cut off again, and the trail goes on from the last
// acknowledged entry without a restart.
func TestFsyncFailureRecoversWithoutRestart(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, 2)
	fails := 1
	failFsync(l, &fails)
	if _, err := l.Append(context.Background(), testEvent(99)); err == nil || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("append whose fsync fails: %v, want an fsync error", err)
	}
	if seq, _ := l.Head(); seq != 2 {
		t.Fatalf("Head seq %d after the failed append, want 2", seq)
	}
	if n := len(tr.lines(t)); n != 2 {
		t.Fatalf("%d lines after the failed append, want the unacknowledged one cut off", n)
	}
	tr.write(t, l, 2) // no restart
	checkChain(t, tr)
	if data, _ := os.ReadFile(tr.path); strings.Contains(string(data), `"b-99"`) {
		t.Fatal("the failed entry is in the trail")
	}
	// kill -9 now: the next start finds nothing to repair.
	cleanAfterCrash(t, tr, 4)
}

// While the disk keeps failing, removing the failed line fails too: each
// append tries it first and is refused with why; once it works the trail
// resumes.
func TestFsyncFailureRepairIsRetriedByTheNextAppend(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, 1)
	fails := 3 // the append, its repair, and the next append's repair
	failFsync(l, &fails)
	if _, err := l.Append(context.Background(), testEvent(98)); err == nil || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("append whose fsync fails: %v", err)
	}
	_, err := l.Append(context.Background(), testEvent(99))
	if err == nil || !strings.Contains(err.Error(), "nothing appended") || !strings.Contains(err.Error(), "retried on the next append") ||
		strings.Contains(err.Error(), "restart") {
		t.Fatalf("append while the repair still fails: %v", err)
	}
	if fails != 0 {
		t.Fatalf("%d injected failures left, want the repair tried once per append", fails)
	}
	tr.write(t, l, 2) // the disk is back
	checkChain(t, tr)
	if data, _ := os.ReadFile(tr.path); strings.Contains(string(data), `"b-98"`) || strings.Contains(string(data), `"b-99"`) {
		t.Fatal("a failed entry is in the trail")
	}
	cleanAfterCrash(t, tr, 3)
}

// A write that fails part way, whose partial line cannot be removed at
// once either, is repaired by the next append the same way.
func TestFailedWriteWithPartialLineRecoversWithoutRestart(t *testing.T) {
	tr := newTrail(t)
	l := tr.open(t)
	tr.write(t, l, 2)
	// The start of a line, as a short write leaves it, and a file that
	// refuses both the write and the truncation.
	w, _ := os.OpenFile(tr.path, os.O_WRONLY|os.O_APPEND, 0)
	w.WriteString(`{"seq":3,"event_id":"01`)
	w.Close()
	ro, err := os.Open(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	f := l.c.f
	l.c.f = ro
	_, err = l.Append(context.Background(), testEvent(99))
	l.c.f = f
	if err == nil || !strings.Contains(err.Error(), "writing seq 3") {
		t.Fatalf("append whose write fails: %v", err)
	}
	if data, _ := os.ReadFile(tr.path); !strings.HasSuffix(string(data), `"event_id":"01`) {
		t.Fatal("the partial line is gone already: the next append's repair is not tested")
	}
	tr.write(t, l, 1)
	checkChain(t, tr)
}

// cleanAfterCrash opens a copy of tr as a kill -9 would leave it and checks
// that it starts at seq, the last acknowledged entry, with nothing to
// repair (no recovery record), and that the chain holds.
func cleanAfterCrash(t *testing.T, tr *trail, seq uint64) {
	t.Helper()
	crashed, l2 := afterCrash(t, tr)
	if got, hash := l2.Head(); got != seq || hash != HashLine(tr.lines(t)[seq-1]) {
		t.Fatalf("Head after a crash: seq %d, want %d and no recovery record", got, seq)
	}
	crashed.entries = tr.entries
	checkChain(t, crashed)
}
