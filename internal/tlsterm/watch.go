package tlsterm

import (
	"context"
	"time"
)

// Certificate files are polled rather than watched with inotify: polling
// works the same on every file system (network mounts, Kubernetes secret
// volumes that swap a symlink) and costs two stats per certificate per
// second.

// fullReadEvery forces a read of files whose size and mtime look
// unchanged, for a rewrite that kept both (same size, coarse mtime).
const fullReadEvery = time.Minute

// maintain runs until ctx ends: file polling, expiry checks, OCSP.
func (t *Terminator) maintain(ctx context.Context) {
	defer t.done.Done()
	tick := time.NewTicker(t.opts.PollInterval)
	defer tick.Stop()
	for {
		st := t.state.Load()
		for _, s := range st.order {
			if !s.isACME() {
				t.poll(st, s)
			}
		}
		if t.expiryCheckDue() {
			t.checkExpiry(st)
		}
		if st.ocsp {
			t.ocspDue(ctx, st)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// missingGrace is how long certificate files may be unreadable before it
// is logged: longer than a replacement by rename or copy takes.
const missingGrace = 10 * time.Second

// poll reloads a file certificate whose files changed. A pair that does
// not load (caught half-written: a new certificate beside the old key; a
// truncated file; an expired certificate) is not served: the previous
// pair goes on, and the files are tried again at the next poll.
func (t *Terminator) poll(st *state, s *certSlot) {
	now := t.opts.Now()
	cs, err := stampOf(s.certFile)
	var ks fileStamp
	if err == nil {
		ks, err = stampOf(s.keyFile)
	}
	if err != nil {
		// Being replaced, most likely: the next poll sees the new file.
		// Still gone after a while, it is said once: the certificate in
		// memory goes on serving, but a restart would fail.
		if s.missingSince.IsZero() {
			s.missingSince = now
		}
		if !s.missingLogged && now.Sub(s.missingSince) >= missingGrace {
			t.opts.Log.Warn("tls: certificate files cannot be read; the loaded certificate goes on serving, but a restart would fail",
				"listener", st.listener, "certificate", s.name, "file", s.certFile, "key_file", s.keyFile, "error", err.Error())
			s.missingLogged = true
		}
		return
	}
	s.missingSince, s.missingLogged = time.Time{}, false
	if cs == s.certStamp && ks == s.keyStamp && now.Sub(s.checked) < fullReadEvery && s.refused == ([32]byte{}) {
		return
	}
	certPEM, keyPEM, cs, ks, err := s.readFiles()
	if err != nil {
		return
	}
	s.checked = now
	cur := s.cur.Load()
	hash := contentHash(certPEM, keyPEM)
	if hash == cur.hash {
		s.certStamp, s.keyStamp, s.refused = cs, ks, [32]byte{}
		return
	}
	lc, err := parsePair(certPEM, keyPEM, s.allowExpired, now)
	if err != nil {
		if hash != s.refused {
			t.opts.Log.Warn("tls: certificate files changed but do not load; the previous certificate goes on serving",
				"listener", st.listener, "certificate", s.name, "file", s.certFile, "key_file", s.keyFile, "error", err.Error())
			s.refused = hash
		}
		return
	}
	s.certStamp, s.keyStamp, s.refused = cs, ks, [32]byte{}
	s.mu.Lock()
	s.ocspDue = time.Time{} // a new certificate needs its own staple
	s.cur.Store(lc)
	s.mu.Unlock()
	leaf := lc.cert.Leaf
	t.opts.Log.Info("tls: certificate reloaded", "listener", st.listener, "certificate", s.name, "file", s.certFile,
		"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	t.checkExpiry(st)
}
