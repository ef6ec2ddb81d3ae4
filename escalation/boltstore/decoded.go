package boltstore

import (
	"bytes"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// decodedSize bounds the incidents kept decoded: about 2 KiB each. A page's
// result follows its incident's write by a few commits, far fewer than this.
const decodedSize = 1024

// decoded keeps the decoded form of the incidents the writer saved or read
// last, so that an update a few milliseconds after an incident's write (a
// page's result, an answer) does not decode the JSON it has just encoded. An
// entry is used only while the stored bytes are exactly those it was made
// from: a write that was rolled back, or one made since, simply misses.
type decoded struct {
	mu   sync.Mutex
	byID map[uint64]decodedEntry
	ring []uint64 // ids in the order they were added; the oldest goes first
	next int
}

type decodedEntry struct {
	raw []byte
	inc *escalation.Incident // never changed: writers change a Clone
}

// get returns the decoded incident stored as raw, or nil.
func (d *decoded) get(id uint64, raw []byte) *escalation.Incident {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byID[id]
	if !ok || !bytes.Equal(e.raw, raw) {
		return nil
	}
	return e.inc
}

// put remembers inc as the decoded form of raw. Both are the cache's from
// now on: neither may change.
func (d *decoded) put(id uint64, raw []byte, inc *escalation.Incident) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byID == nil {
		d.byID = make(map[uint64]decodedEntry, decodedSize)
	}
	if _, ok := d.byID[id]; !ok {
		if len(d.ring) < decodedSize {
			d.ring = append(d.ring, id)
		} else {
			delete(d.byID, d.ring[d.next])
			d.ring[d.next] = id
			d.next = (d.next + 1) % decodedSize
		}
	}
	d.byID[id] = decodedEntry{raw: raw, inc: inc}
}

// storedForm returns a copy of inc as decoding its JSON gives it back: times
// without their monotonic reading, a zero offset as UTC, and empty maps the
// JSON omits as nil. A cached incident then behaves exactly like one read
// from the file (TestStoredFormIsWhatDecodingGives).
func storedForm(inc *escalation.Incident) *escalation.Incident {
	c := inc.Clone()
	for _, t := range []*time.Time{&c.OpenedAt, &c.UpdatedAt, &c.AckedAt, &c.ResolvedAt, &c.Escalation.StepAt, &c.Escalation.NextAt} {
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

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
