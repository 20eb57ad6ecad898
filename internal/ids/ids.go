// Package ids makes the identifiers erpstream hands out: event ids, random UUIDs and
// deterministic UUIDs derived from names.
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ULID returns a lexicographically sortable id: 48 bits of milliseconds and 80 random bits.
func ULID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	// 128 bits as 26 base32 characters, most significant first.
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// EventID returns a new event id ("evt_" + ULID).
func EventID(t time.Time) string { return "evt_" + ULID(t) }

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return format(b)
}

// NameUUID returns a UUID (version 8 layout, SHA-256 based) determined by the parts alone.
// Parts are joined with a separator that cannot occur in them unescaped.
func NameUUID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(strings.ReplaceAll(p, "\x1f", "\x1f\x1f")))
		h.Write([]byte{0x1f, 0x1e})
	}
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return format(b)
}

func format(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// ValidUUID reports whether s is a UUID in canonical text form.
func ValidUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// MonotonicMicros hands out strictly increasing microsecond timestamps, so two events
// received in the same microsecond by one process still order.
type MonotonicMicros struct {
	mu   sync.Mutex
	last int64
}

// Next returns max(now in µs, last+1).
func (m *MonotonicMicros) Next(now time.Time) int64 {
	us := now.UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()
	if us <= m.last {
		us = m.last + 1
	}
	m.last = us
	return us
}
