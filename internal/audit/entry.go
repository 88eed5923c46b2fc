package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Actor is who caused an action. The fields are the same for people and
// for Rampart itself so that one query finds everything an actor did.
type Actor struct {
	// Type is "api" (an admin API caller), "system" (Rampart acting on
	// its own: detectors, signals, recovery) or "cli".
	Type string `json:"type"`
	// ID names the actor: the token name or the client certificate's CN
	// (or first SAN) for "api" (empty for an unauthenticated loopback
	// caller), the detector for "system".
	ID string `json:"id"`
	// IP is the caller's address; empty for "system".
	IP string `json:"ip"`
	// AuthMethod is how the actor was identified: "token", "mtls", or
	// "loopback" (an admin API without authentication configured, which
	// answers loopback callers only); "internal" for "system".
	AuthMethod string `json:"auth_method"`
}

// System is the actor for an automatic action taken by the component id
// ("outlier_detector", "auto_block", "sighup", "audit", ...). It is the
// hook for every part of Rampart that acts without an operator.
func System(id string) Actor {
	return Actor{Type: "system", ID: id, AuthMethod: "internal"}
}

// Resource is what an action was applied to.
type Resource struct {
	Type string `json:"type"` // "backend", "config", "audit", ...
	ID   string `json:"id"`
	Pool string `json:"pool"`
}

// Results of an action.
const (
	ResultSuccess = "success" // the action took effect
	ResultRefused = "refused" // it was refused; nothing changed
	ResultError   = "error"   // it failed part-way; see details.error
)

// Actions recorded by Rampart.
const (
	ActionConfigReload      = "config.reload"
	ActionBackendRegister   = "backend.register"
	ActionBackendDeregister = "backend.deregister"
	ActionBackendDrain      = "backend.drain"
	ActionBackendQuarantine = "backend.quarantine"
	ActionBackendRestore    = "backend.restore"
	ActionTornTail          = "audit.torn_tail_truncated"
	ActionCheckpointRebuilt = "audit.checkpoint_rebuilt"
	ActionVerify            = "audit.verify" // POST /api/v1/audit/verify
	ActionAPIDenied         = "api.denied"   // a mutating call refused with 401 or 403
	// Automatic actions, taken by Rampart itself.
	ActionBackendEject       = "backend.eject"          // passive outlier detection
	ActionAutoBlock          = "acl.blocklist.auto_add" // auto_block rules
	ActionAdaptiveTransition = "ratelimit.adaptive.transition"
)

// Event is what a caller records; Append turns it into an Entry.
type Event struct {
	Actor    Actor
	Action   string
	Resource Resource
	// Details is any extra context (request path, error, problems). It
	// must not hold secrets: the trail is kept for years and shown by the
	// API to every viewer.
	Details map[string]any
	Result  string
	// Before and After are the resource's state around the action (nil
	// when it did not exist), encoded as JSON.
	Before, After any
}

// Entry is one line of the trail, with its members in the canonical order.
type Entry struct {
	Seq       uint64          `json:"seq"`
	EventID   string          `json:"event_id"`
	Timestamp string          `json:"timestamp"`
	Actor     Actor           `json:"actor"`
	Action    string          `json:"action"`
	Resource  Resource        `json:"resource"`
	Details   json.RawMessage `json:"details"`
	Result    string          `json:"result"`
	Changes   Changes         `json:"changes"`
	PrevHash  string          `json:"prev_hash"`
	Signature string          `json:"signature"`
}

// Changes is the state of the resource before and after the action.
type Changes struct {
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
}

// unsigned is Entry without its signature: the canonical form that is
// signed. Its members must stay in Entry's order.
type unsigned struct {
	Seq       uint64          `json:"seq"`
	EventID   string          `json:"event_id"`
	Timestamp string          `json:"timestamp"`
	Actor     Actor           `json:"actor"`
	Action    string          `json:"action"`
	Resource  Resource        `json:"resource"`
	Details   json.RawMessage `json:"details"`
	Result    string          `json:"result"`
	Changes   Changes         `json:"changes"`
	PrevHash  string          `json:"prev_hash"`
}

// Signature domains: what is signed is domain + canonical bytes.
const (
	EntryDomain      = "rampart-audit-entry-v1\n"
	CheckpointDomain = "rampart-audit-checkpoint-v1\n"
)

// MaxLineBytes bounds one entry. Appends of larger events are refused, so a
// reader never needs more than this to find a line's end.
const MaxLineBytes = 64 << 10

// sigMember is what precedes the signature value at the end of a line.
const sigMember = `,"signature":"`

// sigSuffixLen is the length of `,"signature":"<88 base64>"}`.
var sigSuffixLen = len(sigMember) + base64.StdEncoding.EncodedLen(ed25519.SignatureSize) + len(`"}`)

// signLine returns body (a compact JSON object without the signature) with
// the signature member added as its last member.
func signLine(key ed25519.PrivateKey, domain string, body []byte) []byte {
	sig := ed25519.Sign(key, append([]byte(domain), body...))
	line := make([]byte, 0, len(body)+sigSuffixLen)
	line = append(line, body[:len(body)-1]...)
	line = append(line, sigMember...)
	line = base64.StdEncoding.AppendEncode(line, sig)
	return append(line, `"}`...)
}

// checkLineSignature verifies a signed line as described in the package
// documentation, without parsing it as JSON.
func checkLineSignature(pub ed25519.PublicKey, domain string, line []byte) error {
	if len(line) < sigSuffixLen+2 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return errors.New("does not end with a signature member")
	}
	cut := len(line) - sigSuffixLen
	if string(line[cut:cut+len(sigMember)]) != sigMember {
		return errors.New(`"signature" is not the last member`)
	}
	sig, err := base64.StdEncoding.DecodeString(string(line[cut+len(sigMember) : len(line)-2]))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("signature is not 64 bytes of base64")
	}
	msg := make([]byte, 0, len(domain)+cut+1)
	msg = append(msg, domain...)
	msg = append(msg, line[:cut]...)
	msg = append(msg, '}')
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("signature does not verify: the entry was modified or signed with another key")
	}
	return nil
}

// parseLine checks a line's signature and then decodes it strictly.
func parseLine(pub ed25519.PublicKey, line []byte) (Entry, error) {
	if err := checkLineSignature(pub, EntryDomain, line); err != nil {
		return Entry{}, err
	}
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("signed but not a valid entry: %v", err)
	}
	if e.Seq == 0 || e.EventID == "" || !isHexHash(e.PrevHash) {
		return Entry{}, errors.New("signed but seq, event_id or prev_hash is missing")
	}
	return e, nil
}

// lenientEventID digs the event_id out of a line that failed verification,
// so that the report can still name the entry.
func lenientEventID(line []byte) string {
	var v struct {
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(line, &v) == nil && v.EventID != "" {
		return v.EventID
	}
	// Not JSON any more: look for the member by hand.
	const key = `"event_id":"`
	if i := bytes.Index(line, []byte(key)); i >= 0 {
		rest := line[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j > 0 && j <= 64 {
			return string(rest[:j])
		}
	}
	return ""
}

func isHexHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// encodeValue turns a caller's Before/After/Details value into JSON, "null"
// for nil.
func encodeValue(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage("null"), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}
