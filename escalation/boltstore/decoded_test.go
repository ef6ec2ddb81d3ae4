package boltstore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// TestStoredFormIsWhatDecodingGives: the decoded form the writer keeps of an
// incident it saved is exactly what reading it back from the file would give,
// whatever the zone and clock reading of its times and however its maps were
// made, so that an update finds the same incident on a cache hit as on a miss.
func TestStoredFormIsWhatDecodingGives(t *testing.T) {
	inZones(func(local *time.Location, now time.Time) {
		cases := map[string]*escalation.Incident{
			"times from the clock": {ID: 1, State: escalation.Open, OpenedAt: now, UpdatedAt: now.Add(time.Second),
				Escalation: escalation.Escalation{StepAt: now, NextAt: now.Add(time.Minute)}, Alerts: []escalation.Alert{}},
			"times from a webhook": {ID: 2, OpenedAt: time.Date(2026, 11, 27, 3, 0, 0, 5, time.FixedZone("", 2*3600)),
				AckedAt: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), ResolvedAt: now.UTC(),
				Alerts: []escalation.Alert{{Fingerprint: "a", Labels: map[string]string{}, Annotations: map[string]string{},
					StartsAt: time.Date(2026, 11, 27, 2, 0, 0, 0, time.FixedZone("", -3600)), EndsAt: now}}},
			"empty maps": {ID: 3, GroupLabels: map[string]string{}, CommonLabels: map[string]string{}, CommonAnnotations: map[string]string{},
				Alerts: []escalation.Alert{{Fingerprint: "b"}}},
			"full maps": {ID: 4, GroupLabels: map[string]string{"a": "b"}, CommonLabels: map[string]string{"c": "d"},
				CommonAnnotations: map[string]string{"e": "f"}, Alerts: []escalation.Alert{{Labels: map[string]string{"g": "h"}, Annotations: map[string]string{"i": "j"}}}},
			"nothing": {ID: 5},
		}
		for name, inc := range cases {
			if got, want := storedForm(inc), roundTrip(t, inc); !reflect.DeepEqual(got, want) {
				t.Errorf("Local %s, %s:\nkept    %#v\ndecoded %#v", local, name, got, want)
			}
		}
	})
}

// TestDecodedMissesOnOtherBytes: an entry serves only the bytes it was made
// from, and the oldest entries make room for new ones.
func TestDecodedMissesOnOtherBytes(t *testing.T) {
	var d decoded[uint64, *escalation.Incident]
	inc := &escalation.Incident{ID: 1}
	d.put(1, []byte(`{"id":1}`), inc)
	if got, ok := d.get(1, []byte(`{"id":1}`)); !ok || got != inc {
		t.Fatal("no hit on the bytes the entry was made from")
	}
	if _, ok := d.get(1, []byte(`{"id":1,"state":"open"}`)); ok {
		t.Fatal("a hit on other bytes")
	}
	for id := uint64(2); id <= decodedSize+1; id++ {
		d.put(id, []byte("x"), &escalation.Incident{ID: id})
	}
	_, oldest := d.get(1, []byte(`{"id":1}`))
	_, newest := d.get(decodedSize+1, []byte("x"))
	if oldest || !newest || len(d.byID) != decodedSize {
		t.Fatalf("after %d more puts: oldest kept or newest missing (%d entries)", decodedSize, len(d.byID))
	}
}

// TestStoredPageIsWhatDecodingGives is TestStoredFormIsWhatDecodingGives
// for the page records the writer keeps decoded.
func TestStoredPageIsWhatDecodingGives(t *testing.T) {
	inZones(func(local *time.Location, now time.Time) {
		cases := map[string]escalation.PageRecord{
			"times from the clock": {ID: "1-1", Incident: 1, Seq: 1, Status: escalation.PageSent, CreatedAt: now, NextTry: now.Add(time.Second), HeldAt: now.Add(-time.Minute)},
			"times in UTC":         {ID: "1-2", CreatedAt: now.UTC(), NextTry: time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)},
			"times elsewhere":      {ID: "1-3", CreatedAt: time.Date(2026, 12, 1, 3, 0, 0, 7, time.FixedZone("", 2*3600)), HeldAt: now.In(time.FixedZone("", -3600))},
			"no times":             {ID: "1-4", Recipient: notifiers.Recipient{PersonID: "alice", Phone: "+15550100"}, LastError: "x"},
		}
		// Every time field, found by reflection, so that one added later
		// and left out of storedPage fails here.
		var all escalation.PageRecord
		v := reflect.ValueOf(&all).Elem()
		for i := range v.NumField() {
			if f := v.Field(i); f.Type() == reflect.TypeFor[time.Time]() {
				f.Set(reflect.ValueOf(now.Add(time.Duration(i) * time.Second)))
			}
		}
		cases["every time field"] = all
		for name, p := range cases {
			if got, want := storedPage(p), roundTrip(t, p); !reflect.DeepEqual(got, want) {
				t.Errorf("Local %s, %s:\nkept    %#v\ndecoded %#v", local, name, got, want)
			}
		}
	})
}

// inZones calls check under three local time zones in turn, with the time
// now (in that zone, with a monotonic reading), and restores time.Local.
func inZones(check func(local *time.Location, now time.Time)) {
	saved := time.Local
	defer func() { time.Local = saved }()
	for _, local := range []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("XST", -5*3600)} {
		time.Local = local
		check(local, time.Now())
	}
}

// roundTrip returns v as encoding it to JSON and decoding it gives it back.
func roundTrip[T any](t *testing.T, v T) T {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
