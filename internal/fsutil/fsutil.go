// Package fsutil holds the durable-write steps that Rampart's state files
// (backend overrides, audit checkpoint, blocklist store, feed caches, access
// logs) share: what is acknowledged must survive a crash or kill -9.
package fsutil

import (
	"os"
	"path/filepath"
)

// SyncDir fsyncs a directory, so that a file created or renamed in it
// survives a crash, not only the file's contents.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory (named after pattern, as os.CreateTemp), fsync, rename,
// directory fsync. A crash leaves the old or the new file, never a torn
// one. The file gets os.CreateTemp's mode, 0600.
func WriteFileAtomic(path, pattern string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	return CommitTemp(tmp, path)
}

// CommitTemp makes a fully written temporary file durable under path:
// fsync, close, rename, directory fsync.
func CommitTemp(tmp *os.File, path string) error {
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}
