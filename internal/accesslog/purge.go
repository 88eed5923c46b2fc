package accesslog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// PurgeResult is what Purge did to one file.
type PurgeResult struct {
	File    string // the file as it is named after the purge
	Lines   int    // lines read
	Removed int    // lines removed
	// Unparsed counts lines that are not JSON objects (a line cut by a
	// crash): they are kept, so the operator can look at them.
	Unparsed int
	// RotatedFrom is the active file's path when Purge had to rotate it
	// (it held lines to remove); File is then the new backup.
	RotatedFrom string
	// Deleted: every line was removed, and so was the file (an empty
	// backup would count toward max_backups and push out one with data).
	Deleted bool
}

// maxPurgeAttempts bounds the retries of one file that keeps changing
// under Purge (a running server compressing it).
const maxPurgeAttempts = 5

// Purge removes every line whose client_ip, or an entry of whose
// x_forwarded_for chain, is ip from the access log at path and its
// rotated files (plain and gzip). Other lines stay byte for byte; a file
// with nothing to remove is not touched. Each file is rewritten to a temp
// file, fsynced and renamed over the original.
//
// It is safe while a server writes the log: the active file, if it holds
// lines of ip, is first rotated under the log's lock (the server notices
// at its next write and opens a new file; no line is lost), then purged
// like any backup. Files are renamed into place only if they did not
// change meanwhile (compressed or expired by the server), otherwise they
// are done again. Lines the server writes after the rotation are not
// purged: block the client first if it is still sending requests.
func Purge(path string, ip netip.Addr, now time.Time) ([]PurgeResult, error) {
	if path == "" || path == "-" {
		return nil, fmt.Errorf("the access log is not a file (path %q)", path)
	}
	ip = ip.Unmap()
	y := newLayout(path)
	_, lockErr := os.Stat(y.lockPath())
	lk, err := openLock(y.lockPath())
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	if errors.Is(lockErr, fs.ErrNotExist) {
		// A lock file that root creates here must stay usable by the
		// server's user: give it the owner of the log (or its directory).
		if st, err := os.Stat(path); err == nil {
			copyOwner(lk.f, st)
		} else if st, err := os.Stat(y.dir); err == nil {
			copyOwner(lk.f, st)
		}
	}

	var out []PurgeResult
	rotatedTo := ""
	if n, err := countMatches(path, ip); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	} else if n > 0 {
		lk.Lock()
		rotatedTo = y.backupName(now)
		err := os.Rename(path, rotatedTo)
		lk.Unlock()
		if err != nil {
			return nil, fmt.Errorf("rotate %s: %w", path, err)
		}
		_ = fsutil.SyncDir(y.dir) // best effort: the files themselves are synced
	}

	// The files to purge are those there now. A file that a running
	// server compresses meanwhile is followed to its .gz; one it expires
	// is gone anyway. Files rotated later hold only lines written after
	// this started (or the rotated active file, which is in the list).
	bs, err := y.backups()
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		res, err := purgeFile(lk, b.path, b.compressed, ip)
		if errors.Is(err, fs.ErrNotExist) && !b.compressed {
			res, err = purgeFile(lk, b.path+gzSuffix, true, ip)
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, err
		}
		if b.path == rotatedTo {
			res.RotatedFrom = path
		}
		out = append(out, res)
	}
	return out, nil
}

// countMatches counts the lines of ip in a plain file.
func countMatches(path string, ip netip.Addr) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	err = eachLine(f, func(line []byte) error {
		if m, _ := lineMatches(line, ip); m {
			n++
		}
		return nil
	})
	return n, err
}

// purgeFile rewrites one file without the lines of ip. fs.ErrNotExist
// means the file went away (compressed or expired): the caller lists the
// files again.
func purgeFile(lk *fileLock, path string, gz bool, ip netip.Addr) (PurgeResult, error) {
	dir := newLayout(path).dir
	for attempt := 0; ; attempt++ {
		res := PurgeResult{File: path}
		st0, err := os.Stat(path)
		if err != nil {
			return res, err
		}
		in, err := os.Open(path)
		if err != nil {
			return res, err
		}
		tmp, err := writeTemp(dir, filepathBase(path), st0, func(w io.Writer) error {
			var r io.Reader = bufio.NewReaderSize(in, 256<<10)
			var zw *gzip.Writer
			if gz {
				zr, err := gzip.NewReader(r)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				defer zr.Close()
				r = zr
				zw = gzip.NewWriter(w)
				w = zw
			}
			err := eachLine(r, func(line []byte) error {
				res.Lines++
				m, ok := lineMatches(line, ip)
				if !ok {
					res.Unparsed++
				}
				if m {
					res.Removed++
					return nil
				}
				_, err := w.Write(line)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if zw != nil {
				return zw.Close()
			}
			return nil
		})
		in.Close()
		if err != nil {
			return res, err
		}
		if res.Removed == 0 {
			os.Remove(tmp)
			return res, nil
		}
		lk.Lock()
		st1, err := os.Stat(path)
		if err == nil && sameContent(st0, st1) {
			if res.Deleted = res.Removed == res.Lines; res.Deleted {
				err = os.Remove(path)
				os.Remove(tmp)
			} else {
				err = os.Rename(tmp, path)
			}
			lk.Unlock()
			if err != nil {
				os.Remove(tmp)
				return res, err
			}
			_ = fsutil.SyncDir(dir) // best effort: the files themselves are synced
			return res, nil
		}
		lk.Unlock()
		os.Remove(tmp)
		if err != nil {
			return res, err
		}
		if attempt >= maxPurgeAttempts {
			return res, fmt.Errorf("%s keeps changing; run purge again", path)
		}
	}
}

func filepathBase(p string) string { return newLayout(p).base }

// eachLine calls fn with every line of r, with its '\n' (the last line
// may have none).
func eachLine(r io.Reader, fn func([]byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 {
			if ferr := fn(line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// lineMatches says whether a log line is about ip (client_ip or an entry
// of x_forwarded_for), and whether it could be read at all.
func lineMatches(line []byte, ip netip.Addr) (match, ok bool) {
	var rec struct {
		ClientIP      string `json:"client_ip"`
		XForwardedFor string `json:"x_forwarded_for"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &rec); err != nil {
		return false, false
	}
	if sameAddr(rec.ClientIP, ip) {
		return true, true
	}
	for e := range strings.SplitSeq(rec.XForwardedFor, ",") {
		if sameAddr(e, ip) {
			return true, true
		}
	}
	return false, true
}

func sameAddr(s string, ip netip.Addr) bool {
	s = strings.TrimSpace(s)
	if s == "" {
		return false
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap().WithZone("") == ip.WithZone("")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("") == ip.WithZone("")
	}
	return false
}
