package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestVerifyIntactTrail(t *testing.T) {
	tr := written(t, 5)
	rep, err := tr.verify(t)
	if err != nil {
		t.Fatalf("Verify of an untouched trail: %v", err)
	}
	last := tr.entries[4]
	if rep.Entries != 5 || rep.LastSeq != 5 || rep.LastEventID != last.EventID || rep.CheckpointSeq != 5 || len(rep.Warnings) != 0 {
		t.Fatalf("report %+v, want 5 entries ending at seq 5 (%s), checkpoint 5, no warnings", rep, last.EventID)
	}
	if rep.LastHash != HashLine(tr.lines(t)[4]) {
		t.Fatalf("LastHash %s is not the hash of line 5", rep.LastHash)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, tr *trail, lines [][]byte) [][]byte
		line   int
		id     func(tr *trail) string
		reason []string
	}{{
		name: "edited byte in the details",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			i := bytes.Index(lines[2], []byte(`"details":{"n":3}`))
			if i < 0 {
				t.Fatalf("line 3 has no details n=3: %s", lines[2])
			}
			lines[2][i+len(`"details":{"n":`)] = '9'
			return lines
		},
		line: 3, id: func(tr *trail) string { return tr.entries[2].EventID },
		reason: []string{"signature does not verify", "modified"},
	}, {
		name: "edited byte in the signature",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			l := lines[2]
			i := len(l) - 10
			if l[i] == 'A' {
				l[i] = 'B'
			} else {
				l[i] = 'A'
			}
			return lines
		},
		line: 3, id: func(tr *trail) string { return tr.entries[2].EventID },
		reason: []string{"signature"},
	}, {
		name: "edited byte that breaks the JSON",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			lines[1][0] = '['
			return lines
		},
		line: 2, id: func(tr *trail) string { return tr.entries[1].EventID },
		reason: []string{"signature does not verify"},
	}, {
		name: "deleted line",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			return slices.Delete(lines, 2, 3)
		},
		// Line 3 now holds entry 4: the first entry that is not where it
		// must be.
		line: 3, id: func(tr *trail) string { return tr.entries[3].EventID },
		reason: []string{"seq 4 where 3 was expected", "missing", "deleted"},
	}, {
		name: "deleted first line",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			return lines[1:]
		},
		line: 1, id: func(tr *trail) string { return tr.entries[1].EventID },
		reason: []string{"seq 2 where 1 was expected"},
	}, {
		name: "inserted forged line",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			forged := bytes.Replace(bytes.Clone(lines[1]), []byte(`"b-2"`), []byte(`"b-X"`), 1)
			return slices.Insert(lines, 2, forged)
		},
		line: 3, id: func(tr *trail) string { return tr.entries[1].EventID },
		reason: []string{"signature does not verify"},
	}, {
		name: "inserted copy of a genuine line",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			return slices.Insert(lines, 2, bytes.Clone(lines[0]))
		},
		line: 3, id: func(tr *trail) string { return tr.entries[0].EventID },
		reason: []string{"seq 1 where 3 was expected", "repeated or out of order"},
	}, {
		name: "inserted line signed with another key",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			var u unsigned
			if err := json.Unmarshal(lines[1], &u); err != nil {
				t.Fatal(err)
			}
			u.Seq, u.PrevHash = 3, HashLine(lines[1])
			body, _ := json.Marshal(u)
			return slices.Insert(lines, 2, signLine(other, EntryDomain, body))
		},
		line: 3, id: func(tr *trail) string { return tr.entries[1].EventID },
		reason: []string{"signature does not verify"},
	}, {
		name: "inserted empty line",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			return slices.Insert(lines, 4, []byte{})
		},
		line: 5, id: func(tr *trail) string { return "" },
		reason: []string{"empty line"},
	}, {
		name: "swapped lines",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			lines[2], lines[3] = lines[3], lines[2]
			return lines
		},
		line: 3, id: func(tr *trail) string { return tr.entries[3].EventID },
		reason: []string{"seq 4 where 3 was expected", "reordering"},
	}, {
		name: "truncated by one line",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			return lines[:4]
		},
		// The missing entry is named from the checkpoint.
		line: 5, id: func(tr *trail) string { return tr.entries[4].EventID },
		reason: []string{"the log ends after seq 4", "up to seq 5", "1 entries were cut off the end"},
	}, {
		name: "truncated by two lines",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			return lines[:3]
		},
		// Entry 4's event_id is gone with it; the reason names the last
		// one, which the checkpoint knows.
		line: 4, id: func(tr *trail) string { return "" },
		reason: []string{"the log ends after seq 3", "up to seq 5 (event_id ", "2 entries were cut off the end"},
	}, {
		name: "truncated to nothing",
		tamper: func(t *testing.T, tr *trail, lines [][]byte) [][]byte {
			return nil
		},
		line: 1, id: func(tr *trail) string { return "" },
		reason: []string{"the log ends after seq 0", "5 entries were cut off"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := written(t, 5)
			lines := tc.tamper(t, tr, tr.lines(t))
			tr.rewrite(t, lines, len(lines) > 0)
			rep, err := tr.verify(t)
			if err == nil {
				t.Fatalf("Verify accepted a tampered trail: %+v", rep)
			}
			wantVerifyError(t, err, tc.line, tc.id(tr), tc.reason...)
			if tc.name == "truncated by two lines" && !strings.Contains(err.Error(), tr.entries[4].EventID) {
				t.Fatalf("%v does not name the last entry the checkpoint vouches for (%s)", err, tr.entries[4].EventID)
			}
		})
	}
}

func TestVerifyTruncatedMidLine(t *testing.T) {
	tr := written(t, 5)
	data, _ := os.ReadFile(tr.path)
	cut := len(data) - len(tr.lines(t)[4])/2
	if err := os.WriteFile(tr.path, data[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tr.verify(t)
	wantVerifyError(t, err, 5, tr.entries[4].EventID, "incomplete line", "checkpoint vouches for entries up to seq 5", "cut")
}

func TestVerifyTornLineNotInCheckpointIsAWarning(t *testing.T) {
	// A crash mid-append: the partial line was never acknowledged, so the
	// checkpoint does not cover it.
	tr := written(t, 3)
	f, _ := os.OpenFile(tr.path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":4,"event_id":"0190`)
	f.Close()
	rep, err := tr.verify(t)
	if err != nil {
		t.Fatalf("Verify with a torn, unacknowledged last line: %v", err)
	}
	if rep.Entries != 3 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "line 4 is an incomplete write") {
		t.Fatalf("report %+v, want 3 entries and a warning about line 4", rep)
	}
}

func TestVerifyRewrittenLogWithSameKey(t *testing.T) {
	// A second trail signed with the same key (a fork) passes the chain
	// and signature checks but not the first trail's checkpoint.
	a := written(t, 4)
	b := &trail{path: filepath.Join(t.TempDir(), "fork.log"), key: a.key}
	lb := b.open(t)
	b.write(t, lb, 4)
	lb.Close()
	f, _ := os.Open(b.path)
	defer f.Close()
	_, err := Verify(f, a.pub, a.checkpoint(t))
	wantVerifyError(t, err, 4, b.entries[3].EventID, "differs from the checkpoint", "rewritten")
}

func TestVerifyWrongKey(t *testing.T) {
	tr := written(t, 2)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	f, _ := os.Open(tr.path)
	defer f.Close()
	_, err := Verify(f, other, tr.checkpoint(t))
	wantVerifyError(t, err, 0, "", "checkpoint signature does not verify")

	f.Seek(0, 0)
	_, err = Verify(f, other, nil)
	wantVerifyError(t, err, 1, tr.entries[0].EventID, "signature does not verify")
}

func TestVerifyTamperedCheckpoint(t *testing.T) {
	tr := written(t, 3)
	// Claim fewer entries, to hide a cut: the signature no longer matches.
	cpPath := CheckpointPath(tr.path)
	data, _ := os.ReadFile(cpPath)
	data = bytes.Replace(data, []byte(`{"seq":3,`), []byte(`{"seq":2,`), 1)
	os.WriteFile(cpPath, data, 0o600)
	_, err := tr.verify(t)
	wantVerifyError(t, err, 0, "", "checkpoint signature does not verify")
}

func TestVerifyWithoutCheckpointWarns(t *testing.T) {
	tr := written(t, 3)
	f, _ := os.Open(tr.path)
	defer f.Close()
	rep, err := Verify(f, tr.pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 3 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "no checkpoint") {
		t.Fatalf("report %+v, want 3 entries and a no-checkpoint warning", rep)
	}
}

// TestCanonicalForm checks the documented signing rule with an
// independent implementation: cut the 104-byte signature suffix, close the
// object, prefix the domain.
func TestCanonicalForm(t *testing.T) {
	tr := written(t, 2)
	lines := tr.lines(t)
	for i, l := range lines {
		const suffixLen = len(`,"signature":"`) + 88 + len(`"}`)
		if len(l) < suffixLen || !bytes.HasPrefix(l[len(l)-suffixLen:], []byte(`,"signature":"`)) {
			t.Fatalf("line %d does not end with the signature member: %s", i+1, l)
		}
		sig, err := base64.StdEncoding.DecodeString(string(l[len(l)-suffixLen+len(`,"signature":"`) : len(l)-2]))
		if err != nil {
			t.Fatal(err)
		}
		msg := append([]byte("rampart-audit-entry-v1\n"), l[:len(l)-suffixLen]...)
		msg = append(msg, '}')
		if !ed25519.Verify(tr.pub, msg, sig) {
			t.Fatalf("line %d: signature over the documented canonical bytes does not verify", i+1)
		}
		// Member order is part of the format.
		var keys []string
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		want := []string{"seq", "event_id", "timestamp", "actor", "action", "resource", "details", "result", "changes", "prev_hash", "signature"}
		if !slices.Equal(keys, want) {
			t.Fatalf("line %d members %v, want %v", i+1, keys, want)
		}
	}
	if !strings.HasPrefix(string(lines[0]), `{"seq":1,"event_id":"`) || !strings.Contains(string(lines[0]), `"prev_hash":"`+Genesis+`"`) {
		t.Fatalf("first line: %s", lines[0])
	}
	if !strings.Contains(string(lines[1]), `"prev_hash":"`+HashLine(lines[0])+`"`) {
		t.Fatalf("second line's prev_hash is not the SHA-256 of the first line: %s", lines[1])
	}
	e := tr.entries[0]
	if e.Actor != (Actor{Type: "api", IP: "127.0.0.1", AuthMethod: "loopback"}) || e.Action != ActionBackendQuarantine ||
		e.Resource != (Resource{Type: "backend", ID: "b-1", Pool: "web"}) || string(e.Details) != `{"n":1}` || e.Result != ResultSuccess ||
		string(e.Changes.Before) != `{"state":"active"}` || string(e.Changes.After) != `{"state":"quarantined"}` {
		t.Fatalf("entry as returned by Append: %+v", e)
	}
	if len(e.EventID) != 36 || e.EventID[14] != '7' {
		t.Fatalf("event_id %q is not a UUIDv7", e.EventID)
	}
}
