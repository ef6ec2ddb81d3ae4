package escalation_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/storetest"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// The rules of an incident's life that escalation.Ingest and
// escalation.Update write once on top of a store's transaction: merge or
// open, duplicates, stale firings, the quiet refresh, decide's change,
// sequence numbers, and a group detached when resolved by hand. They run
// against a real store (bbolt); storetest checks the storage under them.
func TestIngestAndUpdateRules(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s escalation.Store)
	}{
		{"IngestIsIdempotentPerGroupKey", testIdempotentIngest},
		{"ResolvedGroupOpensNewIncident", testResolvedGroupReopens},
		{"StaleFiringAfterResolutionOpensNothing", testStaleFiring},
		{"DecideChangeIsWrittenWithIngest", testDecideWithIngest},
		{"DecideErrorWritesNothing", testDecideError},
		{"QuietRefreshUpdatesIncident", testQuietRefresh},
		{"UpdateNoChangeWritesNothing", testUpdateNoChange},
		{"UpdateUnknownIncident", testUpdateUnknown},
		{"UpdateFnErrorWritesNothing", testUpdateError},
		{"OutboxAssignsSeqAndUpdatesInPlace", testOutbox},
		{"ManualResolveDetachesGroup", testManualResolve},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

// now is these tests' fixed clock: storetest.Note's.
var now = storetest.Now

// Note and NoDecide are storetest's.
var (
	Note     = storetest.Note
	NoDecide = storetest.NoDecide
)

var (
	ctx      = storetest.Ctx
	ingest   = storetest.MustIngest
	timeline = storetest.MustTimeline
	kinds    = storetest.Kinds
	update   = storetest.MustUpdate
	note     = storetest.NoteAt
)

func testIdempotentIngest(t *testing.T, s escalation.Store) {
	first := ingest(t, s, Note("g", "firing"), NoDecide)
	before := timeline(t, s, first.Incident)
	calls := 0
	again := ingest(t, s, Note("g", "firing"), func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
		calls++
		return escalation.Change{}, nil
	})
	if again.Changed || again.Opened || again.Incident != first.Incident {
		t.Fatalf("duplicate delivery = %+v, want nothing changed, naming incident %d", again, first.Incident)
	}
	if calls != 0 {
		t.Fatalf("decide ran %d times for a duplicate", calls)
	}
	if after := timeline(t, s, first.Incident); len(after) != len(before) {
		t.Fatalf("duplicate grew the timeline: %v → %v", kinds(before), kinds(after))
	}
	counts, _ := s.Counts(ctx(t))
	if counts[escalation.Open] != 1 {
		t.Fatalf("counts %v after a duplicate", counts)
	}
	// A new alert in the same group joins the open incident.
	n := Note("g", "firing")
	n.Alerts = append(n.Alerts, escalation.Alert{Fingerprint: "fp-2", Status: "firing", Labels: map[string]string{"alertname": "Y"}, StartsAt: now})
	res := ingest(t, s, n, NoDecide)
	if res.Incident != first.Incident || res.Opened || !res.Changed {
		t.Fatalf("new alert in the group = %+v, want incident %d changed", res, first.Incident)
	}
	inc, _ := s.Incident(ctx(t), first.Incident)
	if inc.Firing() != 2 {
		t.Fatalf("incident has %d firing alerts, want 2", inc.Firing())
	}
}

func testResolvedGroupReopens(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	res := ingest(t, s, Note("g", "resolved"), NoDecide)
	if res.Incident != 1 || !res.Resolved || !res.Changed {
		t.Fatalf("resolve = %+v", res)
	}
	inc, _ := s.Incident(ctx(t), 1)
	if inc.State != escalation.Resolved || !inc.ResolvedAt.Equal(now) {
		t.Fatalf("incident after resolve: state %s resolvedAt %s", inc.State, inc.ResolvedAt)
	}
	if got := kinds(timeline(t, s, 1)); got[len(got)-1] != escalation.EvResolved {
		t.Fatalf("timeline %v does not end resolved", got)
	}
	if again := ingest(t, s, Note("g", "resolved"), NoDecide); again.Changed {
		t.Fatalf("second resolve = %+v, want no change", again)
	}
	n := Note("g", "firing")
	n.Alerts[0].StartsAt = now.Add(time.Minute)
	if res := ingest(t, s, n, NoDecide); res.Incident != 2 || !res.Opened {
		t.Fatalf("firing after resolution = %+v, want incident 2 opened", res)
	}
}

func testStaleFiring(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	ingest(t, s, Note("g", "resolved"), NoDecide)
	if res := ingest(t, s, Note("g", "firing"), NoDecide); res.Changed || res.Incident != 0 {
		t.Fatalf("stale firing after resolution = %+v, want nothing", res)
	}
	if res := ingest(t, s, Note("other", "resolved"), NoDecide); res.Changed {
		t.Fatalf("resolved-only delivery for an unknown group = %+v, want nothing", res)
	}
	counts, _ := s.Counts(ctx(t))
	if counts[escalation.Open] != 0 || counts[escalation.Resolved] != 1 {
		t.Fatalf("counts %v", counts)
	}
}

func testDecideWithIngest(t *testing.T, s escalation.Store) {
	var seen []escalation.EventKind
	res := ingest(t, s, Note("g", "firing"), func(inc *escalation.Incident, pages []escalation.PageRecord, ev []escalation.Event) (escalation.Change, error) {
		seen = kinds(ev)
		if len(pages) != 0 {
			t.Errorf("a new incident has pages %v", pages)
		}
		inc.Escalation.Started = true
		inc.Escalation.NextAt = now.Add(5 * time.Minute)
		var ch escalation.Change
		ch.Note(now, escalation.EvStep, "step 1")
		ch.Pages = []escalation.PageRecord{{Channel: "matrix", Kind: notifiers.KindPage, Status: escalation.PagePending, Recipient: notifiers.Recipient{PersonID: "alice"}}}
		return ch, nil
	})
	if !slices.Equal(seen, []escalation.EventKind{escalation.EvOpened, escalation.EvAlertFiring}) {
		t.Fatalf("decide saw events %v", seen)
	}
	if got := kinds(timeline(t, s, res.Incident)); !slices.Equal(got, []escalation.EventKind{escalation.EvOpened, escalation.EvAlertFiring, escalation.EvStep}) {
		t.Fatalf("timeline %v: the notification's entries, then decide's", got)
	}
	inc, _ := s.Incident(ctx(t), res.Incident)
	if !inc.Escalation.Started || !inc.Escalation.NextAt.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("decide's incident changes were not kept: %+v", inc.Escalation)
	}
	pages, err := s.Pages(ctx(t), res.Incident)
	if err != nil || len(pages) != 1 || pages[0].ID != escalation.PageID(res.Incident, 1) || pages[0].Seq != 1 || pages[0].Incident != res.Incident {
		t.Fatalf("pages %+v %v", pages, err)
	}
}

func testDecideError(t *testing.T, s escalation.Store) {
	boom := errors.New("boom")
	_, err := escalation.Ingest(ctx(t), s, Note("g", "firing"), now, func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
		return escalation.Change{}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want decide's error", err)
	}
	if _, err := s.Incident(ctx(t), 1); !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("a failed ingest left incident 1 behind: %v", err)
	}
	// The group is not bound to a phantom incident: a retry opens incident 1.
	if res := ingest(t, s, Note("g", "firing"), NoDecide); res.Incident != 1 || !res.Opened {
		t.Fatalf("retry after a failed ingest = %+v, want incident 1 opened", res)
	}
}

func testQuietRefresh(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	before := timeline(t, s, 1)
	n := Note("g", "firing")
	n.Alerts[0].Annotations = map[string]string{"summary": "new words"}
	res := ingest(t, s, n, NoDecide)
	if !res.Changed || res.Incident != 1 || res.Opened {
		t.Fatalf("refresh = %+v", res)
	}
	inc, _ := s.Incident(ctx(t), 1)
	if inc.Alerts[0].Annotations["summary"] != "new words" {
		t.Fatalf("refreshed annotations not kept: %v", inc.Alerts[0].Annotations)
	}
	if after := timeline(t, s, 1); len(after) != len(before) {
		t.Fatalf("a quiet refresh wrote timeline entries: %v", kinds(after))
	}
}

func testUpdateNoChange(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	before := timeline(t, s, 1)
	inc, ch, err := escalation.Update(ctx(t), s, 1, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.Title = "changed in memory only"
		return escalation.Change{}, escalation.ErrNoChange
	})
	if err != nil || !ch.Empty() || inc.ID != 1 || inc.Title == "changed in memory only" {
		t.Fatalf("no-change update = %+v %+v %v", inc, ch, err)
	}
	stored, _ := s.Incident(ctx(t), 1)
	if stored.Title == "changed in memory only" {
		t.Fatal("ErrNoChange wrote the incident")
	}
	if after := timeline(t, s, 1); len(after) != len(before) {
		t.Fatal("ErrNoChange wrote the timeline")
	}
}

func testUpdateUnknown(t *testing.T, s escalation.Store) {
	_, _, err := escalation.Update(ctx(t), s, 7, note(escalation.EvNote, "x"))
	if !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func testUpdateError(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	boom := errors.New("boom")
	_, _, err := escalation.Update(ctx(t), s, 1, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.State = escalation.Acknowledged
		return escalation.Change{Events: []escalation.Event{{At: now, Kind: escalation.EvNote}}}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	inc, _ := s.Incident(ctx(t), 1)
	if inc.State != escalation.Open || len(timeline(t, s, 1)) != 2 {
		t.Fatalf("a failed update wrote something: state %s, %d entries", inc.State, len(timeline(t, s, 1)))
	}
}

func testOutbox(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	_, ch := update(t, s, 1, func(inc *escalation.Incident, pages []escalation.PageRecord) (escalation.Change, error) {
		return escalation.Change{Pages: []escalation.PageRecord{
			{Channel: "matrix", Kind: notifiers.KindPage, Status: escalation.PagePending, Recipient: notifiers.Recipient{PersonID: "alice"}},
			{Channel: "phone", Kind: notifiers.KindPage, Status: escalation.PagePending, Recipient: notifiers.Recipient{PersonID: "bob"}},
		}}, nil
	})
	if len(ch.Pages) != 2 || ch.Pages[0].ID != "1-1" || ch.Pages[1].ID != "1-2" || ch.Pages[1].Incident != 1 {
		t.Fatalf("returned change does not carry the assigned ids: %+v", ch.Pages)
	}
	update(t, s, 1, func(inc *escalation.Incident, pages []escalation.PageRecord) (escalation.Change, error) {
		if len(pages) != 2 {
			t.Errorf("fn sees %d pages, want 2", len(pages))
		}
		p := pages[0]
		p.Status, p.Attempts, p.ProviderID = escalation.PageSent, 1, "evt-1"
		return escalation.Change{Pages: []escalation.PageRecord{p, {Channel: "pagerduty", Kind: notifiers.KindPage, Status: escalation.PagePending}}}, nil
	})
	pages, err := s.Pages(ctx(t), 1)
	if err != nil || len(pages) != 3 {
		t.Fatalf("pages %+v %v", pages, err)
	}
	if pages[0].Status != escalation.PageSent || pages[0].ProviderID != "evt-1" || pages[2].ID != "1-3" || pages[2].Channel != "pagerduty" {
		t.Fatalf("outbox after update: %+v", pages)
	}
	if other, err := s.Pages(ctx(t), 9); err != nil || len(other) != 0 {
		t.Fatalf("pages of an unknown incident: %v %v", other, err)
	}
}

func testManualResolve(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	inc, _ := update(t, s, 1, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.State, inc.ResolvedAt = escalation.Resolved, now
		var ch escalation.Change
		ch.Note(now, escalation.EvResolved, "by hand")
		return ch, nil
	})
	if inc.State != escalation.Resolved {
		t.Fatalf("returned incident %s", inc.State)
	}
	n := Note("g", "firing")
	n.Alerts[0].StartsAt = now.Add(time.Minute)
	if res := ingest(t, s, n, NoDecide); res.Incident != 2 || !res.Opened {
		t.Fatalf("firing after a manual resolve = %+v, want a new incident", res)
	}
}
