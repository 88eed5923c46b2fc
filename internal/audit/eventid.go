package audit

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// newEventID returns a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds then
// random bits. Time-ordered ids sort like the trail itself, and the random
// part makes them unguessable and unique across instances, which seq alone
// is not once trails from several instances are merged.
func newEventID(now time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (it aborts the program instead).
	ms := uint64(now.UnixMilli())
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = 0x70 | b[6]&0x0f // version 7
	b[8] = 0x80 | b[8]&0x3f // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}
