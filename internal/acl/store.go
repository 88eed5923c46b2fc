package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// store keeps dynamic entries in a bbolt file, one bucket per list, keyed
// by the canonical prefix so that adding a prefix again replaces it. bbolt
// fsyncs every committed write transaction, so once put returns the entry
// survives a crash, kill -9 or power loss; an interrupted transaction is
// rolled back as a whole on the next open.
type store struct {
	db   *bolt.DB
	path string
}

var (
	bucketMeta   = []byte("meta")
	keyVersion   = []byte("version")
	storeVersion = []byte("1")
)

func bucketOf(l List) []byte {
	if l == Allowlist {
		return []byte("allowlist")
	}
	return []byte("blocklist")
}

// openStore opens or creates the store at path. Another process holding the
// file (a second Rampart on the same data directory) is an error after a
// second rather than a silent hang.
func openStore(path string) (*store, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("dynamic blocklist store: %w", err)
	}
	_, statErr := os.Stat(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("dynamic blocklist store %s is locked by another process (is another rampart using this data_dir?)", path)
		}
		return nil, fmt.Errorf("dynamic blocklist store %s: %w", path, err)
	}
	s := &store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := m.Get(keyVersion); {
		case v == nil:
			if err := m.Put(keyVersion, storeVersion); err != nil {
				return err
			}
		case string(v) != string(storeVersion):
			return fmt.Errorf("store format version %q is not %q (written by a different Rampart version)", v, storeVersion)
		}
		for _, l := range []List{Blocklist, Allowlist} {
			if _, err := tx.CreateBucketIfNotExists(bucketOf(l)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && os.IsNotExist(statErr) {
		// A new file's directory entry must be durable too.
		err = fsutil.SyncDir(dir)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("dynamic blocklist store %s: %w", path, err)
	}
	return s, nil
}

// load returns every stored entry of l. A record that cannot be decoded
// is an error: refusing to start is better than forgetting a block.
func (s *store) load(l List) ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOf(l)).ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil || !e.Prefix.IsValid() || e.Prefix.String() != string(k) {
				return fmt.Errorf("%s: %s entry %q is corrupt; fix or remove the file deliberately", s.path, l, k)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// put stores e, replacing any entry for the same prefix, and returns once
// the write is on disk.
func (s *store) put(l List, e Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOf(l)).Put([]byte(e.Prefix.String()), v)
	})
}

// delete removes the entries for ps in one transaction.
func (s *store) delete(l List, ps ...netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOf(l))
		for _, p := range ps {
			if err := b.Delete([]byte(p.String())); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) close() error { return s.db.Close() }
