//go:build unix

package accesslog

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Run as root, purge leaves files (and a lock it creates) owned as before,
// so that the server's user can still compress, expire and lock them.
func TestPurgeKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	const uid, gid = 4242, 4343
	backup := newLayout(path).backupName(time.Now().Add(-time.Hour))
	lines, _ := purgeLines(t, "o", 10)
	for _, p := range []string{path, backup} {
		write(t, p, strings.Join(lines, ""))
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Purge(path, netip.MustParseAddr(victim), time.Now()); err != nil {
		t.Fatal(err)
	}
	bs, _ := newLayout(path).backups()
	for _, p := range []string{bs[0].path, bs[1].path, path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}
}
