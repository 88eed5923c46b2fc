package acl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/rampart-proxy/rampart/internal/config"
)

// Sources reported for the static lists from the config file and the list
// files it names.
const (
	SourceStaticAllow = "static:allowlist"
	SourceStaticBlock = "static:blocklist"
)

// ParseEntry parses one list entry: an address ("192.0.2.7", "2001:db8::1")
// or a CIDR ("198.51.100.0/24"), surrounding space ignored. CIDRs with host
// bits set, zones and garbage are errors that quote the entry.
// IPv4-mapped IPv6 entries become the IPv4 entry they stand for.
func ParseEntry(s string) (netip.Prefix, error) {
	return config.ParseListEntry(strings.TrimSpace(s))
}

// IsBroad reports whether p is broader than /8 (IPv4) or /16 (IPv6), the
// size from which a blocklist entry needs allow_broad.
func IsBroad(p netip.Prefix) bool { return config.IsBroad(p) }

// Format is the syntax of a list file or feed.
type Format uint8

const (
	// FormatPlain is one address or CIDR per line; "#" starts a comment,
	// blank lines are ignored.
	FormatPlain Format = iota
	// FormatSpamhaus is Spamhaus DROP/EDROP: "CIDR ; SBLnnn" per line,
	// lines starting with ";" are comments.
	FormatSpamhaus
)

// ParseFormat maps a config format name to a Format.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "plain":
		return FormatPlain, nil
	case "spamhaus_drop", "spamhaus_edrop":
		return FormatSpamhaus, nil
	}
	return 0, fmt.Errorf("unknown feed format %q (one of %s)", s, strings.Join(config.FeedFormats, ", "))
}

// maxListErrors bounds how many bad lines one read reports: enough to fix
// a file in one go, not so many that a binary file floods the log.
const maxListErrors = 10

// ReadList reads entries from r and passes each to add. name is used in
// errors, which read "name:line: ...". Blocklists pass allowBroad false to
// refuse entries broader than /8 or /16. ReadList reads to the end and
// returns every bad line (up to ten) as config.Problems; the caller must discard what
// add received if err is not nil, so that a bad file is never half-applied.
func ReadList(r io.Reader, name string, f Format, allowBroad bool, add func(netip.Prefix)) (n int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	var ps config.Problems
	bad := 0
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if line == 1 {
			s = strings.TrimPrefix(s, "\uFEFF")
		}
		entry, ok := entryOf(s, f)
		if !ok {
			continue
		}
		p, perr := ParseEntry(entry)
		if perr == nil && !allowBroad && IsBroad(p) {
			perr = config.BroadError(p)
		}
		if perr != nil {
			bad++
			if len(ps) < maxListErrors {
				ps = append(ps, config.Problem{File: name, Line: line, Msg: perr.Error()})
			}
			continue
		}
		add(p)
		n++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than 64 KiB (is this a list file?)")
		}
		ps = append(ps, config.Problem{File: name, Line: line + 1, Msg: err.Error()})
	}
	if bad > maxListErrors {
		ps = append(ps, config.Problem{File: name, Msg: fmt.Sprintf("%d more bad lines", bad-maxListErrors)})
	}
	if len(ps) > 0 {
		return n, ps
	}
	return n, nil
}

// entryOf strips comments and space from a line and says whether an entry
// is left.
func entryOf(s string, f Format) (string, bool) {
	switch f {
	case FormatSpamhaus:
		// "1.2.3.0/24 ; SBL123" or "; comment"
		s, _, _ = strings.Cut(s, ";")
	default:
		s, _, _ = strings.Cut(s, "#")
	}
	s = strings.TrimSpace(s)
	return s, s != ""
}

// readListFile is ReadList on a file.
func readListFile(path, name string, f Format, allowBroad bool, add func(netip.Prefix)) (int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	return ReadList(fh, name, f, allowBroad, add)
}

// staticLists are the allow and block tables built from one config.
type staticLists struct {
	allow, block *Table
	geo          *geoSet // filled by New and Reload, not by buildStatic
}

// buildStatic builds the static lists of cfg: the entries written in the
// file and those in the list files it names. It reads everything before
// returning and fails as a whole, so a reload with one bad line keeps the
// running lists. Errors name the config file and line or the list file and
// line of each bad entry.
func buildStatic(cfg *config.Config) (staticLists, error) {
	l := &cfg.Security.IPLists
	var ps config.Problems
	build := func(source, key string, entries, files []string, allowBroad bool) *Table {
		b := NewTableBuilder(source)
		for i, s := range entries {
			p, err := ParseEntry(s)
			if err == nil && !allowBroad && IsBroad(p) {
				err = config.BroadError(p)
			}
			if err != nil {
				path := fmt.Sprintf("security.ip_lists.%s[%d]", key, i)
				ps = append(ps, config.Problem{File: cfg.File, Line: cfg.Line(path), Msg: fmt.Sprintf("%s entry: %v", key, err)})
				continue
			}
			b.Add(p)
		}
		for _, f := range files {
			_, err := readListFile(cfg.Resolve(f), f, FormatPlain, allowBroad, b.Add)
			var fps config.Problems
			switch {
			case errors.As(err, &fps):
				ps = append(ps, fps...)
			case err != nil: // the file cannot be read
				ps = append(ps, config.Problem{File: f, Msg: err.Error()})
			}
		}
		return b.Build()
	}
	s := staticLists{
		// allow_broad guards blocklists, where a stray 0.0.0.0/0 locks
		// everyone out; allowlists are not restricted.
		allow: build(SourceStaticAllow, "allowlist", l.Allowlist, l.AllowlistFiles, true),
		block: build(SourceStaticBlock, "blocklist", l.Blocklist, l.BlocklistFiles, l.AllowBroad),
	}
	if len(ps) > 0 {
		return staticLists{}, ps
	}
	return s, nil
}
