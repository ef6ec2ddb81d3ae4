package boltstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// unorderedKey is group i's key as Alertmanager writes it for
// group_by: ['...']: keys of consecutive groups far apart in key order.
func unorderedKey(i int) string {
	return fmt.Sprintf(`{}:{alertname="X", instance="host-%016x"}`, uint64(i)*0x9E3779B97F4A7C15)
}

// bucketKeys counts the keys of bucket name.
func bucketKeys(t *testing.T, s *boltstore.Store, name string) int {
	t.Helper()
	n := 0
	err := s.DB().View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(name))
		if b == nil {
			return nil
		}
		n = b.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNewGroupsAreAppendedNotScattered: a storm of new Alertmanager groups
// with unordered keys writes each group's record beside the previous one
// (under its incident's id), not on a random page of the groups bucket under
// its key; the groups still deduplicate their webhooks, and a group gets its
// record under its key once it has more to remember than its open incident.
func TestNewGroupsAreAppendedNotScattered(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n = 200
	for i := range n {
		if _, err := escalation.Ingest(ctx, s, note(unorderedKey(i), "firing"), now, noDecide); err != nil {
			t.Fatal(err)
		}
	}
	// A second alert joins group 3's incident: still nothing to remember
	// but the open incident.
	more := note(unorderedKey(3), "firing")
	second := more.Alerts[0]
	second.Fingerprint, second.Labels = "fp-second", map[string]string{"alertname": "Y"}
	more.Alerts = append(more.Alerts, second)
	if res, err := escalation.Ingest(ctx, s, more, now, noDecide); err != nil || !res.Changed || res.Incident != 4 {
		t.Fatalf("a second alert for group 3: %+v %v, want incident 4 changed", res, err)
	}
	if got := bucketKeys(t, s, "groups"); got != 0 {
		t.Errorf("%d of %d new groups written under their keys", got, n)
	}
	if got := bucketKeys(t, s, "newGroups"); got != n {
		t.Errorf("%d new groups appended, want %d", got, n)
	}
	for i := range n {
		res, err := escalation.Ingest(ctx, s, note(unorderedKey(i), "firing"), now, noDecide)
		if err != nil || res.Changed || res.Incident != uint64(i+1) {
			t.Fatalf("group %d's duplicate webhook: %+v %v, want a duplicate of incident %d", i, res, err, i+1)
		}
	}
	// Resolved in Alertmanager: the group remembers when its alert ended,
	// under its key, and its next firing after that opens a new incident.
	if res, err := escalation.Ingest(ctx, s, note(unorderedKey(7), "resolved"), now, noDecide); err != nil || !res.Resolved {
		t.Fatalf("resolving group 7: %+v %v", res, err)
	}
	if g, a := bucketKeys(t, s, "groups"), bucketKeys(t, s, "newGroups"); g != 1 || a != n-1 {
		t.Errorf("after a resolve: %d records under their keys, %d appended; want 1 and %d", g, a, n-1)
	}
	later := note(unorderedKey(7), "firing")
	later.Alerts[0].StartsAt = now.Add(time.Minute)
	if res, err := escalation.Ingest(ctx, s, later, now.Add(2*time.Minute), noDecide); err != nil || !res.Opened || res.Incident != n+1 {
		t.Fatalf("group 7 firing again: %+v %v, want incident %d opened", res, err, n+1)
	}
}

// TestNewGroupsSurviveRestarts: after a crash the appended groups are read
// back and still deduplicate; a clean Close writes every one under its key
// (as a Klaxon that predates them reads groups) and they deduplicate too.
func TestNewGroupsSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 50
	for i := range n {
		if _, err := escalation.Ingest(ctx, s, note(unorderedKey(i), "firing"), now, noDecide); err != nil {
			t.Fatal(err)
		}
	}
	crashDir := closeAndKeepCrash(t, s)
	for _, c := range []struct {
		name          string
		dir           string
		keys, appends int
	}{{"after a crash", crashDir, 0, n}, {"after a clean close", dir, n, 0}} {
		t.Run(c.name, func(t *testing.T) {
			s, err := boltstore.Open(c.dir, boltstore.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if g, a := bucketKeys(t, s, "groups"), bucketKeys(t, s, "newGroups"); g != c.keys || a != c.appends {
				t.Errorf("%d groups under their keys, %d appended; want %d and %d", g, a, c.keys, c.appends)
			}
			for i := range n {
				res, err := escalation.Ingest(ctx, s, note(unorderedKey(i), "firing"), now, noDecide)
				if err != nil || res.Changed || res.Incident != uint64(i+1) {
					t.Fatalf("group %d's duplicate webhook after the restart: %+v %v, want a duplicate of incident %d", i, res, err, i+1)
				}
			}
		})
	}
}

// TestExportIncludesNewGroups: a copy of the store (klaxon migrate) carries
// the groups not yet written under their keys.
func TestExportIncludesNewGroups(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, g := range []string{"a", "b"} {
		if _, err := escalation.Ingest(ctx, s, note(g, "firing"), now, noDecide); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := escalation.Ingest(ctx, s, note("b", "resolved"), now, noDecide); err != nil {
		t.Fatal(err)
	}
	x := &groupRecorder{groups: map[string]escalation.Group{}}
	if err := s.Export(ctx, x); err != nil {
		t.Fatal(err)
	}
	if g, ok := x.groups["a"]; !ok || g.Open != 1 {
		t.Errorf("group a exported as %+v (present: %v), want open on incident 1", g, ok)
	}
	if g, ok := x.groups["b"]; !ok || g.Open != 0 || len(g.LastEnd) != 1 {
		t.Errorf("group b exported as %+v (present: %v), want closed with its alert's end", g, ok)
	}
}

// groupRecorder is an escalation.Exporter keeping the groups.
type groupRecorder struct{ groups map[string]escalation.Group }

func (*groupRecorder) Sequence(uint64) error { return nil }
func (*groupRecorder) Incident(escalation.Incident, []escalation.Event, []escalation.PageRecord) error {
	return nil
}
func (r *groupRecorder) Group(key string, g escalation.Group) error {
	if _, dup := r.groups[key]; dup {
		return fmt.Errorf("group %q exported twice", key)
	}
	r.groups[key] = g
	return nil
}
func (*groupRecorder) State(string, string, []byte) error { return nil }
