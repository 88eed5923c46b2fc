package tlsterm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"time"
)

// Session tickets. The keys live in memory only (a restart forgets them,
// which costs one full handshake per client) and rotate every half
// session_timeout; the two previous keys are kept so that every ticket can
// be decrypted for as long as it may be used. Each ticket also carries
// its issue time (in SessionState.Extra), and one older than
// session_timeout is not resumed whatever key it was sealed with.
//
// A resumed connection is sent a new ticket, dated from that resumption:
// session_timeout bounds the age of a ticket, not the chain of
// resumptions (Go does not carry Extra across them). The keys rotating
// bounds how long a stolen key can open recorded tickets.

// ticketKeepKeys is how many keys are kept: the current one and two
// previous, which covers session_timeout at a rotation every half of it.
const ticketKeepKeys = 3

// issuedTag and nameTag mark Rampart's entries in SessionState.Extra:
// when the ticket was issued, and for which server name (SNI).
var (
	issuedTag = []byte("rampart-issued:")
	nameTag   = []byte("rampart-sni:")
)

type ticketKey struct {
	id      [8]byte
	aead    cipher.AEAD
	created time.Time
}

// ticketKeys is a Terminator's ticket keys, newest first. They survive
// config reloads so that a reload does not end every session.
type ticketKeys struct {
	mu   sync.Mutex
	keys []*ticketKey
}

// current returns the key to seal with, rotating when the newest is
// older than every.
func (k *ticketKeys) current(now time.Time, every time.Duration) (*ticketKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.keys) > 0 && now.Sub(k.keys[0].created) < every && !now.Before(k.keys[0].created) {
		return k.keys[0], nil
	}
	var secret [32]byte
	nk := &ticketKey{created: now}
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(nk.id[:]); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(secret[:])
	if err != nil {
		return nil, err
	}
	if nk.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	k.keys = append([]*ticketKey{nk}, k.keys...)
	if len(k.keys) > ticketKeepKeys {
		k.keys = k.keys[:ticketKeepKeys]
	}
	return nk, nil
}

func (k *ticketKeys) byID(id []byte) *ticketKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range k.keys {
		if bytes.Equal(key.id[:], id) {
			return key
		}
	}
	return nil
}

// wrapSession seals a session into a ticket: key id, nonce, AES-GCM of
// the session with its issue time.
func (t *Terminator) wrapSession(timeout time.Duration) func(tls.ConnectionState, *tls.SessionState) ([]byte, error) {
	every := max(timeout/2, time.Second)
	return func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		now := t.opts.Now()
		key, err := t.tickets.current(now, every)
		if err != nil {
			return nil, err
		}
		issued := make([]byte, len(issuedTag)+8)
		copy(issued, issuedTag)
		binary.BigEndian.PutUint64(issued[len(issuedTag):], uint64(now.Unix()))
		ss.Extra = append(ss.Extra, issued, append(slices.Clip(nameTag), strings.ToLower(cs.ServerName)...))
		plain, err := ss.Bytes()
		if err != nil {
			return nil, err
		}
		out := make([]byte, 8+key.aead.NonceSize(), 8+key.aead.NonceSize()+len(plain)+key.aead.Overhead())
		copy(out, key.id[:])
		nonce := out[8:]
		if _, err := rand.Read(nonce); err != nil {
			return nil, err
		}
		return key.aead.Seal(out, nonce, plain, key.id[:]), nil
	}
}

// unwrapSession opens a ticket. A ticket that cannot be opened (unknown
// key, tampered) or is older than timeout yields (nil, nil): a full
// handshake, not an error.
func (t *Terminator) unwrapSession(timeout time.Duration) func([]byte, tls.ConnectionState) (*tls.SessionState, error) {
	return func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		if len(ticket) < 8+12 {
			return nil, nil
		}
		key := t.tickets.byID(ticket[:8])
		if key == nil {
			return nil, nil
		}
		ns := key.aead.NonceSize()
		if len(ticket) < 8+ns+key.aead.Overhead() {
			return nil, nil
		}
		plain, err := key.aead.Open(nil, ticket[8:8+ns], ticket[8+ns:], ticket[:8])
		if err != nil {
			return nil, nil
		}
		ss, err := tls.ParseSessionState(plain)
		if err != nil {
			return nil, nil
		}
		var issued time.Time
		var name []byte
		for _, e := range ss.Extra {
			if v, ok := bytes.CutPrefix(e, issuedTag); ok && len(v) == 8 {
				issued = time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
			}
			if v, ok := bytes.CutPrefix(e, nameTag); ok {
				name = v
			}
		}
		now := t.opts.Now()
		if issued.IsZero() || now.Sub(issued) > timeout || issued.After(now.Add(time.Minute)) {
			return nil, nil
		}
		// A session belongs to the name it was established for (RFC 6066
		// §3): resumed under another SNI, it would skip the certificate,
		// and the SNI routing, of that name.
		if name == nil || !strings.EqualFold(string(name), cs.ServerName) {
			return nil, nil
		}
		return ss, nil
	}
}
