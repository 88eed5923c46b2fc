package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxPage bounds how many entries one Page returns.
const MaxPage = 1000

// Page returns up to limit entries exactly as stored, for the admin API.
//
// The cursor is a line number, which is the entry's seq in an intact
// trail. Oldest first (desc false): the entries after line cursor (cursor
// 0 starts at the first). Newest first (desc true): the entries before
// line cursor (cursor 0 starts at the newest). next is the cursor for the
// following page, 0 when there is none.
//
// Page does not verify: a viewer wants to read a damaged trail too, and
// proof is rampart audit verify's job.
func (l *Log) Page(desc bool, cursor uint64, limit int) (entries []json.RawMessage, next uint64, err error) {
	if l.closed.Load() {
		return nil, 0, ErrClosed
	}
	if limit < 1 || limit > MaxPage {
		return nil, 0, fmt.Errorf("limit must be between 1 and %d", MaxPage)
	}
	c := l.c
	if err := c.buildIndex(); err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	n := uint64(len(c.idx))
	var from, to uint64 // 1-based lines, from <= to, both inclusive
	switch {
	case n == 0:
	case !desc && cursor < n:
		from, to = cursor+1, min(cursor+uint64(limit), n)
		if to < n {
			next = to
		}
	case desc && (cursor == 0 || cursor > 1):
		top := n
		if cursor != 0 && cursor-1 < n {
			top = cursor - 1
		}
		to = top
		from = 1
		if top > uint64(limit) {
			from = top - uint64(limit) + 1
		}
		if from > 1 {
			next = from
		}
	}
	// The log only grows and lines never move: the offsets can be read
	// without the lock, while appends go on.
	var offs []int64
	if from > 0 {
		offs = append(offs, c.idx[from-1:to]...)
		if to < n {
			offs = append(offs, c.idx[to])
		} else {
			offs = append(offs, c.size)
		}
	}
	c.mu.Unlock()
	for i := 0; i+1 < len(offs); i++ {
		buf := make([]byte, offs[i+1]-offs[i]-1)
		if _, err := c.f.ReadAt(buf, offs[i]); err != nil {
			return nil, 0, fmt.Errorf("audit: reading %s: %w", c.path, err)
		}
		if !json.Valid(buf) {
			// A damaged line is shown as a string rather than breaking
			// the whole page.
			buf, _ = json.Marshal(map[string]string{"invalid_line": string(buf)})
		}
		entries = append(entries, json.RawMessage(buf))
	}
	if desc {
		for i, j := 0, len(entries)-1; i < j; i, j = i+1, j-1 {
			entries[i], entries[j] = entries[j], entries[i]
		}
	}
	return entries, next, nil
}

// buildIndex records the start of every line once; appends extend it.
// The scan of what exists runs without the lock, so appends are not held
// up by a large trail; what was appended meanwhile is scanned under it.
func (c *core) buildIndex() error {
	c.mu.Lock()
	if c.idx != nil {
		c.mu.Unlock()
		return nil
	}
	size := c.size
	c.mu.Unlock()
	idx, err := lineStarts(c.f, 0, size)
	if err != nil {
		return fmt.Errorf("audit: indexing %s: %w", c.path, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idx != nil {
		return nil
	}
	more, err := lineStarts(c.f, size, c.size)
	if err != nil {
		return fmt.Errorf("audit: indexing %s: %w", c.path, err)
	}
	c.idx = append(idx, more...)
	if c.idx == nil {
		c.idx = []int64{}
	}
	return nil
}

// lineStarts returns the offset of every line that starts in [from, to);
// from must be the start of a line and to the end of one.
func lineStarts(f io.ReaderAt, from, to int64) ([]int64, error) {
	var out []int64
	br := bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 64<<10)
	off := from
	for off < to {
		out = append(out, off)
		n := int64(0)
		for {
			frag, err := br.ReadSlice('\n')
			n += int64(len(frag))
			if err == nil {
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if errors.Is(err, io.EOF) {
				// A last line without newline cannot be here: size
				// counts complete lines only.
				return out, nil
			}
			return nil, err
		}
		off += n
	}
	return out, nil
}
