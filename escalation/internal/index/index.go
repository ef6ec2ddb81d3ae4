// Package index holds the byte encodings the stores share for their keys and
// indexes: times as big-endian nanoseconds, (incident, sequence) sub-keys,
// and the entry of the index of unfinished pages. bbolt and etcd keep the
// same entries, so one definition keeps them (and a migration between them)
// in step.
package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// UnixNano encodes t as nanoseconds since the epoch, zero for the zero time.
func UnixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// FromUnixNano decodes UnixNano (UTC).
func FromUnixNano(v uint64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v)).UTC()
}

// SubKey is the 12-byte key of entry seq of incident id: ordered by incident,
// then sequence.
func SubKey(id uint64, seq int) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint64(b, id)
	binary.BigEndian.PutUint32(b[8:], uint32(seq))
	return b
}

// ParseSubKey decodes the last 12 bytes of k as a SubKey.
func ParseSubKey(k []byte) (id uint64, seq int, ok bool) {
	if len(k) < 12 {
		return 0, 0, false
	}
	k = k[len(k)-12:]
	return binary.BigEndian.Uint64(k), int(binary.BigEndian.Uint32(k[8:])), true
}

// Pending is p's entry in the index of unfinished pages: when it tries
// again, whether a rate limit holds it, its channel and its person.
func Pending(p *escalation.PageRecord) []byte {
	v := binary.BigEndian.AppendUint64(nil, UnixNano(p.NextTry))
	if p.Status == escalation.PageDeferred {
		v = append(v, 1)
	} else {
		v = append(v, 0)
	}
	v = append(v, p.Channel...)
	v = append(v, 0)
	return append(v, p.Recipient.PersonID...)
}

// ParsePending decodes the index entry v under key k (whose last 12 bytes are
// the page's SubKey). rest is what a store appended after the person,
// without its separating zero byte ("" if nothing).
func ParsePending(k, v []byte) (p escalation.DuePage, incident uint64, rest string, err error) {
	id, seq, ok := ParseSubKey(k)
	if !ok || len(v) < 9 {
		return escalation.DuePage{}, 0, "", fmt.Errorf("pending page %x: short index entry", k)
	}
	parts := strings.SplitN(string(v[9:]), "\x00", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return escalation.DuePage{
		ID:      escalation.PageID(id, seq),
		NextTry: FromUnixNano(binary.BigEndian.Uint64(v)), Deferred: v[8] == 1,
		Channel: notifiers.Channel(parts[0]), Person: parts[1],
	}, id, parts[2], nil
}

// HeldFor reports whether index entry v is a page a rate limit holds for
// person on ch.
// It runs on every entry of the index when a held page is sent, so it
// compares bytes in place rather than decode the entry.
func HeldFor(v []byte, person string, ch notifiers.Channel) bool {
	if len(v) < 10 || v[8] != 1 {
		return false
	}
	c, rest, _ := bytes.Cut(v[9:], []byte{0})
	p, _, _ := bytes.Cut(rest, []byte{0})
	return string(c) == string(ch) && string(p) == person
}
