// Package audit is Rampart's tamper-evident audit trail (DESIGN §5): one
// JSON line per security-relevant action (admin API call, automatic
// action), hash-chained and signed, so that anyone holding the public key
// can prove that no entry was edited, inserted, deleted, reordered or cut
// off the end since it was written.
//
// # Files
//
// All three live beside each other by default, in data_dir/audit (created
// 0700):
//
//	audit.log             the trail: one entry per line, append-only (0600)
//	audit.log.checkpoint  signed head record: seq and hash of the last entry (0600)
//	audit.key             Ed25519 signing key, PKCS#8 PEM, created on first start (0600)
//
// The log and key paths can be set with logging.audit_log.path and
// logging.audit_log.signing_key_file; the checkpoint is always the log path
// plus ".checkpoint".
//
// # Entry format
//
// Every line is a compact JSON object whose members appear in exactly this
// order:
//
//	{"seq":1,"event_id":"…","timestamp":"…","actor":{…},"action":"…",
//	 "resource":{…},"details":{…},"result":"…","changes":{"before":…,"after":…},
//	 "prev_hash":"<64 hex>","signature":"<88 base64>"}
//
// seq numbers entries from 1 and equals the line number in an intact file.
// event_id is a UUIDv7; timestamp is UTC with microseconds
// ("2026-01-02T15:04:05.000000Z"); before and after are null when the
// resource did not exist (or the action has no state, like a reload).
// prev_hash is the lowercase hex SHA-256 of the previous line's exact bytes
// (without its "\n"); the first entry's prev_hash is Genesis (64 zeros).
//
// # Canonical form and signature
//
// The signed bytes of an entry are the line itself with its last member,
// `,"signature":"…"`, removed: that is, everything up to (not including)
// the `,"signature":"` that begins the 104-byte suffix
// `,"signature":"<88 chars>"}`, followed by a closing "}". The signature is
// Ed25519 over EntryDomain ("rampart-audit-entry-v1\n") + those bytes,
// encoded as standard base64 with padding (88 characters). Because the writer always puts signature last,
// the verifier never re-serialises JSON: it cuts a fixed-length suffix and
// checks the remaining bytes exactly as they are on disk, so any changed
// byte anywhere in the line breaks either the signature or the JSON.
// The domain prefix keeps an entry signature from ever being valid as a
// checkpoint signature and vice versa.
//
// The checkpoint file holds one line in the same style (members seq, hash,
// event_id, timestamp, public_key, signature; signed the same way with
// CheckpointDomain). It is replaced atomically (temp file, fsync, rename,
// directory fsync) after every append, so a log that was cut short no
// longer reaches the seq and hash the checkpoint vouches for.
//
// # What it does not protect against
//
// Whoever can read the signing key can write a new, valid trail; keep the
// public key (rampart audit pubkey) off the host and verify with --pubkey.
// Someone able to write the data directory can replace both the log and
// the checkpoint with older copies of themselves (a rollback); only
// shipping checkpoints off the host detects that.
package audit
