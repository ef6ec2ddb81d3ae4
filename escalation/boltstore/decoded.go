package boltstore

import (
	"bytes"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// decodedSize bounds the entries each cache keeps: about 2 KiB an incident,
// under 1 KiB a page. A page's result follows its incident's write by a few
// commits, far fewer than this.
const decodedSize = 1024

// decoded keeps the decoded form of the records the writer saved or read
// last (incidents by id, pages by incident and sequence), so that an update
// a few milliseconds after a record's write (a page's result, an answer)
// does not decode the JSON it has just encoded. An entry is used only while
// the stored bytes are exactly those it was made from: a write that was
// rolled back, or one made since, simply misses.
type decoded[K comparable, V any] struct {
	mu   sync.Mutex
	byID map[K]decodedEntry[V]
	ring []K // keys in the order they were added; the oldest goes first
	next int
}

type decodedEntry[V any] struct {
	raw []byte
	v   V // never changed: incidents are changed through a Clone, pages are values
}

// get returns the decoded record stored as raw. A nil cache keeps nothing.
func (d *decoded[K, V]) get(k K, raw []byte) (V, bool) {
	if d == nil {
		var zero V
		return zero, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byID[k]
	if !ok || !bytes.Equal(e.raw, raw) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put remembers v as the decoded form of raw. Both are the cache's from
// now on: neither may change.
func (d *decoded[K, V]) put(k K, raw []byte, v V) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byID == nil {
		d.byID = make(map[K]decodedEntry[V], decodedSize)
	}
	if _, ok := d.byID[k]; !ok {
		if len(d.ring) < decodedSize {
			d.ring = append(d.ring, k)
		} else {
			delete(d.byID, d.ring[d.next])
			d.ring[d.next] = k
			d.next = (d.next + 1) % decodedSize
		}
	}
	d.byID[k] = decodedEntry[V]{raw: raw, v: v}
}

// pageKey names a page record: its incident and sequence.
type pageKey struct {
	incident uint64
	seq      int
}

// storedForm returns a copy of inc as decoding its JSON gives it back: times
// without their monotonic reading, a zero offset as UTC, and empty maps the
// JSON omits as nil. A cached incident then behaves exactly like one read
// from the file (TestStoredFormIsWhatDecodingGives).
func storedForm(inc *escalation.Incident) *escalation.Incident {
	c := inc.Clone()
	for _, t := range []*time.Time{&c.OpenedAt, &c.UpdatedAt, &c.AckedAt, &c.ResolvedAt, &c.Escalation.StepAt, &c.Escalation.NextAt, &c.Escalation.ConfirmBy} {
		*t = decodedTime(*t)
	}
	c.GroupLabels = nilIfEmpty(c.GroupLabels)
	c.CommonLabels = nilIfEmpty(c.CommonLabels)
	c.CommonAnnotations = nilIfEmpty(c.CommonAnnotations)
	for i := range c.Alerts {
		a := &c.Alerts[i]
		a.StartsAt, a.EndsAt = decodedTime(a.StartsAt), decodedTime(a.EndsAt)
		a.Annotations = nilIfEmpty(a.Annotations)
	}
	return c
}

// decodedTime is t after a JSON round trip (RFC 3339, which writes a zero
// offset as Z and reads Z as UTC).
func decodedTime(t time.Time) time.Time {
	if _, off := t.Zone(); off == 0 {
		return t.UTC()
	}
	return t.Round(0)
}

// storedPage returns p as decoding its JSON gives it back (see storedForm).
func storedPage(p escalation.PageRecord) escalation.PageRecord {
	p.CreatedAt, p.NextTry, p.HeldAt = decodedTime(p.CreatedAt), decodedTime(p.NextTry), decodedTime(p.HeldAt)
	p.SentAt, p.ConfirmBy = decodedTime(p.SentAt), decodedTime(p.ConfirmBy)
	return p
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
