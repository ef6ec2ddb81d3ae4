package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

var now = time.Date(2026, 11, 26, 23, 33, 0, 0, time.UTC)

func note(group string, status string) escalation.Notification {
	a := escalation.Alert{Fingerprint: "fp-" + group, Status: status, Labels: map[string]string{"alertname": "X", "g": group}, StartsAt: now.Add(-time.Minute)}
	if status == "resolved" {
		a.EndsAt = now
	}
	return escalation.Notification{GroupKey: group, Status: status, Alerts: []escalation.Alert{a}}
}

func noDecide(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
	return escalation.Change{}, escalation.ErrNoChange
}

func TestSecondOpenFailsFast(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = boltstore.Open(dir, boltstore.Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second open took %s: it hangs instead of failing fast", d)
	}
}

func TestConcurrentIngestBatches(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n = 200
	var wg sync.WaitGroup
	ids := make([]uint64, n)
	for i := range n {
		wg.Go(func() {
			res, err := escalation.Ingest(ctx, s, note(fmt.Sprint("g", i), "firing"), now, noDecide)
			if err != nil {
				t.Error(err)
			}
			ids[i] = res.Incident
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, id := range ids {
		if id == 0 || id > n || seen[id] {
			t.Fatalf("ids %v: want 1..%d each once", ids, n)
		}
		seen[id] = true
	}
	counts, err := s.Counts(ctx)
	if err != nil || counts[escalation.Open] != n || counts[escalation.Resolved] != 0 {
		t.Fatalf("counts %v %v", counts, err)
	}
	list, _ := s.Incidents(ctx, escalation.Filter{Limit: 5})
	if len(list) != 5 || list[0].ID != n || list[4].ID != n-4 {
		t.Fatalf("newest first: got ids %v", idsOf(list))
	}
	page2, _ := s.Incidents(ctx, escalation.Filter{Limit: 5, Before: list[4].ID})
	if len(page2) != 5 || page2[0].ID != n-5 {
		t.Fatalf("paging: got %v", idsOf(page2))
	}
	for i := range n / 2 {
		if _, err := escalation.Ingest(ctx, s, note(fmt.Sprint("g", i), "resolved"), now, noDecide); err != nil {
			t.Fatal(err)
		}
	}
	counts, _ = s.Counts(ctx)
	if counts[escalation.Open] != n/2 || counts[escalation.Resolved] != n/2 {
		t.Fatalf("counts after resolving half: %v", counts)
	}
	open, _ := s.Incidents(ctx, escalation.Filter{State: escalation.Open, Limit: 1000})
	resolved, _ := s.Incidents(ctx, escalation.Filter{State: escalation.Resolved, Limit: 1000})
	if len(open) != n/2 || len(resolved) != n/2 {
		t.Fatalf("filtered lists: %d open, %d resolved", len(open), len(resolved))
	}
}

func idsOf(list []escalation.Incident) []uint64 {
	var out []uint64
	for _, i := range list {
		out = append(out, i.ID)
	}
	return out
}

func TestDataSurvivesReopenAndReadOnly(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := escalation.Ingest(ctx, s, note("g", "firing"), now, noDecide); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "matrix", "next_batch", []byte("s42")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := boltstore.Open(dir, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	inc, err := ro.Incident(ctx, 1)
	if err != nil || inc.GroupKey != "g" {
		t.Fatalf("incident after reopen: %+v %v", inc, err)
	}
	v, err := ro.GetState(ctx, "matrix", "next_batch")
	if err != nil || string(v) != "s42" {
		t.Fatalf("state after reopen: %q %v", v, err)
	}
	if v, _ := ro.GetState(ctx, "matrix", "missing"); v != nil {
		t.Fatalf("missing key = %q, want nil", v)
	}
	if _, err := boltstore.Open(t.TempDir()+"/nothing", boltstore.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing database succeeded")
	}
}

func TestUpdateUnknownIncident(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = escalation.Update(context.Background(), s, 7, func(*escalation.Incident, []escalation.PageRecord) (escalation.Change, error) {
		return escalation.Change{}, nil
	})
	if !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

// TestRetentionKeepsTheStoreBounded: under steady load (incidents opening and
// resolving every simulated day, handled-event keys written), pruning what is
// older than the retention keeps the number of incidents, groups and state
// keys bounded, and the file stops growing once bbolt reuses freed pages.
func TestRetentionKeepsTheStoreBounded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const perDay, retention, days = 100, 3, 12
	var sizes []int64
	for day := range days {
		at := now.Add(time.Duration(day) * 24 * time.Hour)
		for i := range perDay {
			g := fmt.Sprintf("day%d-%d", day, i)
			n := note(g, "firing")
			n.Alerts[0].StartsAt = at
			if _, err := escalation.Ingest(ctx, s, n, at, noDecide); err != nil {
				t.Fatal(err)
			}
			r := note(g, "resolved")
			r.Alerts[0].StartsAt, r.Alerts[0].EndsAt = at, at.Add(time.Minute)
			if _, err := escalation.Ingest(ctx, s, r, at.Add(time.Minute), noDecide); err != nil {
				t.Fatal(err)
			}
			if err := s.PutState(ctx, "twilio", fmt.Sprintf("seen:%d-%d", day, i), []byte{1}); err != nil {
				t.Fatal(err)
			}
		}
		cut := at.Add(-retention * 24 * time.Hour)
		if _, err := s.Prune(ctx, escalation.Prune{ResolvedBefore: cut,
			State: []escalation.StatePrune{{Bucket: "twilio", Prefix: "seen:", Before: time.Now().Add(time.Hour)}}}); err != nil {
			t.Fatal(err)
		}
		var kept int
		for before := uint64(0); ; {
			list, err := s.Incidents(ctx, escalation.Filter{Limit: 1000, Before: before})
			if err != nil {
				t.Fatal(err)
			}
			kept += len(list)
			if len(list) < 1000 {
				break
			}
			before = list[len(list)-1].ID
		}
		if max := perDay * (retention + 1); kept > max {
			t.Fatalf("day %d: %d incidents kept, want at most %d (retention %d days)", day, kept, max, retention)
		}
		if v, _ := s.GetState(ctx, "twilio", fmt.Sprintf("seen:%d-0", day)); v != nil {
			t.Fatalf("day %d: an expired handled-event key is still there", day)
		}
		st, err := os.Stat(filepath.Join(dir, boltstore.FileName))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, st.Size())
	}
	// Past the retention the file holds steady: freed pages are reused.
	if grown := sizes[days-1] - sizes[retention+2]; grown > sizes[retention+2]/4 {
		t.Errorf("file grew from %d to %d bytes under steady load with retention: sizes %v", sizes[retention+2], sizes[days-1], sizes)
	}
	// The installation id is not channel state that expires.
	if _, err := escalation.InstallationID(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// A schedule snapshot reads what Schedule read when it was taken, not what
// was written after, and holds no transaction open meanwhile (writes that
// grow the file go on).
func TestScheduleSnapshot(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	withPage := func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
		return escalation.Change{Pages: []escalation.PageRecord{{Kind: notifiers.KindPage, Channel: notifiers.SMS,
			Recipient: notifiers.Recipient{PersonID: "alice"}, Status: escalation.PagePending}}}, nil
	}
	for i := range 50 {
		decide := noDecide
		if i%5 == 0 {
			decide = withPage
		}
		if _, err := escalation.Ingest(ctx, s, note(fmt.Sprint("before", i), "firing"), now, decide); err != nil {
			t.Fatal(err)
		}
	}
	var want []escalation.Due
	if err := s.Schedule(ctx, func(d escalation.Due) error { want = append(want, d); return nil }); err != nil {
		t.Fatal(err)
	}
	snap, err := s.SnapshotSchedule()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 { // enough to grow the file and its memory map
		if _, err := escalation.Ingest(ctx, s, note(fmt.Sprint("after", i), "firing"), now, noDecide); err != nil {
			t.Fatal(err)
		}
	}
	var got []escalation.Due
	if err := snap.Schedule(ctx, func(d escalation.Due) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	pages := 0
	for _, d := range got {
		pages += len(d.Pages)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 50 || pages != 10 {
		t.Fatalf("snapshot read %d entries, want the %d there when it was taken", len(got), len(want))
	}
	if err := snap.Schedule(ctx, func(escalation.Due) error { return nil }); err == nil {
		t.Fatal("a snapshot read twice")
	}
}

// Open fsyncs every commit unless NoSync says otherwise (tests only): the
// default is what `klaxon serve` gets.
func TestOpenSyncsByDefault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   boltstore.Options
		noSync bool
	}{
		{"default", boltstore.Options{}, false},
		{"with OnCommit", boltstore.Options{OnCommit: func(time.Duration) {}}, false},
		{"NoSync", boltstore.Options{NoSync: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := boltstore.Open(t.TempDir(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if db := s.DB(); db.NoSync != tc.noSync || db.NoGrowSync || s.Durable() == tc.noSync {
				t.Fatalf("NoSync=%v NoGrowSync=%v Durable=%v, want NoSync=%v and growth synced", db.NoSync, db.NoGrowSync, s.Durable(), tc.noSync)
			}
		})
	}
}

// TestRolledBackWriteIsNotSeenByTheNext: an update whose transaction fails
// after its incident was written leaves nothing behind:
// the next update sees the stored incident.
func TestRolledBackWriteIsNotSeenByTheNext(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := escalation.Ingest(ctx, st, note("g", "firing"), now, noDecide)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.Incident(ctx, res.Incident)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = escalation.Update(ctx, st, res.Incident, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.Title = "changed, then rolled back"
		// A state write without a bucket fails after the incident was written.
		return escalation.Change{State: []notifiers.StateWrite{{Key: "k", Value: []byte("v")}}}, nil
	})
	if err == nil {
		t.Fatal("an update with a state write to no bucket succeeded")
	}
	var seen string
	_, _, err = escalation.Update(ctx, st, res.Incident, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		seen = inc.Title
		return escalation.Change{}, escalation.ErrNoChange
	})
	if err != nil || seen != stored.Title {
		t.Fatalf("the next update saw title %q (%v), want the stored %q", seen, err, stored.Title)
	}
}
