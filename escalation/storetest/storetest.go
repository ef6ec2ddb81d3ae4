// Package storetest is the contract every escalation.Store keeps, as one test
// suite that each implementation runs against itself (boltstore, etcdstore):
// storage semantics only. A transaction (Store.Write) reads its own writes
// and writes all or nothing, concurrent transactions are isolated (none
// loses another's write), ids increase, the timeline is append-only, and the
// outbox keeps its schedule index; then listings, counts, retention and the
// channels' state store. The rules of an incident's life written on top of
// the transaction (escalation.Ingest and Update) are tested once, in package
// escalation.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Open returns a new, empty store for one subtest. The suite closes it.
type Open func(t *testing.T) escalation.Store

// now is the suite's fixed clock.
// Now is the fixed time the suite's writes happen at.
var Now = time.Date(2026, 11, 26, 23, 33, 0, 0, time.UTC)

var now = Now

// Run runs the whole contract against stores made by open.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s escalation.Store)
	}{
		{"IngestOpensIncidentWithIncreasingIDs", testIncreasingIDs},
		{"TxReadsItsOwnWrites", testTxReadsOwnWrites},
		{"TxErrorWritesNothing", testTxError},
		{"UpdateAppendsTimelineInOrder", testTimelineAppendOnly},
		{"ScheduleIndex", testSchedule},
		{"ScheduleWakesForConfirmationDeadlines", testScheduleConfirmBy},
		{"IncidentsListingAndPaging", testIncidents},
		{"Counts", testCounts},
		{"ConcurrentIngestDistinctGroups", testConcurrentIngest},
		{"ConcurrentIngestSameGroupOpensOne", testConcurrentSameGroup},
		{"ConcurrentUpdatesLoseNothing", testConcurrentUpdates},
		{"ConcurrentUpdatesOfManyIncidents", testConcurrentUpdatesMany},
		{"StateStore", testStateStore},
		{"UpdateWritesChannelStateWithTheChange", testUpdateState},
		{"HeldCountsDeferredPages", testHeld},
		{"PruneDeletesWhatRetentionDropsOnly", testPrune},
		{"Ping", testPing},
		{"CanceledContext", testCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

// Note builds a one-alert notification for group with the given status.
func Note(group, status string) escalation.Notification {
	a := escalation.Alert{Fingerprint: "fp-" + group, Status: status, Labels: map[string]string{"alertname": "X", "g": group},
		Annotations: map[string]string{"summary": "s"}, StartsAt: now.Add(-time.Minute)}
	if status == "resolved" {
		a.EndsAt = now
	}
	return escalation.Notification{GroupKey: group, Status: status, Alerts: []escalation.Alert{a}}
}

// NoDecide leaves an ingested incident's escalation alone.
func NoDecide(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
	return escalation.Change{}, escalation.ErrNoChange
}

// Ctx is a test's context, ended after a minute or with the test.
func Ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// MustIngest runs escalation.Ingest at Now and fails the test on an error.
func MustIngest(t *testing.T, s escalation.Store, n escalation.Notification, d escalation.IngestFunc) escalation.IngestResult {
	t.Helper()
	res, err := escalation.Ingest(Ctx(t), s, n, Now, d)
	if err != nil {
		t.Fatalf("ingest %s: %v", n.GroupKey, err)
	}
	return res
}

// MustTimeline reads incident id's timeline and fails the test on an error.
func MustTimeline(t *testing.T, s escalation.Store, id uint64) []escalation.Event {
	t.Helper()
	ev, err := s.Timeline(Ctx(t), id)
	if err != nil {
		t.Fatalf("timeline %d: %v", id, err)
	}
	return ev
}

// Kinds lists the kinds of ev, in order.
func Kinds(ev []escalation.Event) []escalation.EventKind {
	var out []escalation.EventKind
	for _, e := range ev {
		out = append(out, e.Kind)
	}
	return out
}

// MustUpdate runs escalation.Update and fails the test on an error.
func MustUpdate(t *testing.T, s escalation.Store, id uint64, fn escalation.UpdateFunc) (escalation.Incident, escalation.Change) {
	t.Helper()
	inc, ch, err := escalation.Update(Ctx(t), s, id, fn)
	if err != nil {
		t.Fatalf("update %d: %v", id, err)
	}
	return inc, ch
}

// NoteAt is an update that only notes an event of kind with text, at Now.
func NoteAt(kind escalation.EventKind, text string) escalation.UpdateFunc {
	return func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		var ch escalation.Change
		ch.Note(Now, kind, "%s", text)
		return ch, nil
	}
}

// The suite's own short names for the helpers above.
var (
	ctx      = Ctx
	ingest   = MustIngest
	timeline = MustTimeline
	kinds    = Kinds
	update   = MustUpdate
	note     = NoteAt
)

func testIncreasingIDs(t *testing.T, s escalation.Store) {
	for i := 1; i <= 3; i++ {
		res := ingest(t, s, Note(fmt.Sprint("g", i), "firing"), NoDecide)
		if res.Incident != uint64(i) || !res.Opened || !res.Changed || res.Resolved {
			t.Fatalf("ingest %d = %+v, want incident %d opened", i, res, i)
		}
	}
	inc, err := s.Incident(ctx(t), 2)
	if err != nil || inc.ID != 2 || inc.GroupKey != "g2" || inc.State != escalation.Open || len(inc.Alerts) != 1 || !inc.OpenedAt.Equal(now) {
		t.Fatalf("incident 2 = %+v, %v", inc, err)
	}
	if _, err := s.Incident(ctx(t), 4); !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("incident 4: err %v, want ErrNotFound", err)
	}
	if _, err := s.Timeline(ctx(t), 4); !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("timeline 4: err %v, want ErrNotFound", err)
	}
}

// testTxReadsOwnWrites: within one Write, reads see the writes made before
// them: ids allocated in turn, a group, an incident, its pages (with the
// index of unfinished pages) and its timeline appended twice.
func testTxReadsOwnWrites(t *testing.T, s escalation.Store) {
	err := s.Write(ctx(t), func(tx escalation.Tx) error {
		a, err := tx.NextID()
		if err != nil {
			return err
		}
		b, err := tx.NextID()
		if err != nil || a != 1 || b != 2 {
			return fmt.Errorf("NextID twice = %d, %d (%v), want 1, 2", a, b, err)
		}
		if g, err := tx.Group("g"); err != nil || g.Open != 0 {
			return fmt.Errorf("unknown group = %+v %v, want the zero Group", g, err)
		}
		if err := tx.PutGroup("g", &escalation.Group{Open: b}); err != nil {
			return err
		}
		if g, err := tx.Group("g"); err != nil || g.Open != b {
			return fmt.Errorf("group after PutGroup = %+v %v", g, err)
		}
		if _, err := tx.Incident(b); !errors.Is(err, escalation.ErrNotFound) {
			return fmt.Errorf("incident before PutIncident: %v, want ErrNotFound", err)
		}
		inc := &escalation.Incident{ID: b, GroupKey: "g", State: escalation.Open, Title: "t", OpenedAt: now}
		if err := tx.PutIncident(inc); err != nil {
			return err
		}
		if got, err := tx.Incident(b); err != nil || got.Title != "t" {
			return fmt.Errorf("incident after PutIncident = %+v %v", got, err)
		}
		for seq := 1; seq <= 2; seq++ {
			p := &escalation.PageRecord{ID: escalation.PageID(b, seq), Incident: b, Seq: seq, Channel: "sms", Status: escalation.PagePending}
			if err := tx.PutPage(p); err != nil {
				return err
			}
		}
		if pages, err := tx.Pages(b); err != nil || len(pages) != 2 || pages[1].Seq != 2 {
			return fmt.Errorf("pages after PutPage = %+v %v", pages, err)
		}
		if err := tx.AppendEvents(b, []escalation.Event{{At: now, Kind: escalation.EvOpened, Text: "1"}}); err != nil {
			return err
		}
		return tx.AppendEvents(b, []escalation.Event{{At: now, Kind: escalation.EvNote, Text: "2"}, {At: now, Kind: escalation.EvNote, Text: "3"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, e := range timeline(t, s, 2) {
		texts = append(texts, e.Text)
	}
	if !slices.Equal(texts, []string{"1", "2", "3"}) {
		t.Fatalf("timeline %v, want 1 2 3", texts)
	}
	var due []escalation.Due
	if err := s.Schedule(ctx(t), func(d escalation.Due) error { due = append(due, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].Incident != 2 || len(due[0].Pages) != 2 {
		t.Fatalf("schedule %+v, want incident 2 with 2 unfinished pages", due)
	}
	if res := ingest(t, s, Note("h", "firing"), NoDecide); res.Incident != 3 {
		t.Fatalf("next incident %d, want 3: both ids were allocated", res.Incident)
	}
}

// testTxError: a Write whose function fails keeps nothing it wrote.
func testTxError(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	boom := errors.New("boom")
	err := s.Write(ctx(t), func(tx escalation.Tx) error {
		id, err := tx.NextID()
		if err != nil {
			return err
		}
		inc, err := tx.Incident(1)
		if err != nil {
			return err
		}
		inc.State = escalation.Acknowledged
		for _, w := range []func() error{
			func() error { return tx.PutIncident(inc) },
			func() error { return tx.PutIncident(&escalation.Incident{ID: id, State: escalation.Open}) },
			func() error { return tx.PutGroup("g", &escalation.Group{Open: id}) },
			func() error { return tx.AppendEvents(1, []escalation.Event{{At: now, Kind: escalation.EvNote}}) },
			func() error {
				return tx.PutPage(&escalation.PageRecord{ID: "1-1", Incident: 1, Seq: 1, Status: escalation.PagePending})
			},
			func() error { return tx.PutState(notifiers.StateWrite{Bucket: "b", Key: "k", Value: []byte("v")}) },
		} {
			if err := w(); err != nil {
				return err
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want the function's error", err)
	}
	inc, _ := s.Incident(ctx(t), 1)
	pages, _ := s.Pages(ctx(t), 1)
	st, _ := s.GetState(ctx(t), "b", "k")
	if inc.State != escalation.Open || len(timeline(t, s, 1)) != 2 || len(pages) != 0 || st != nil {
		t.Fatalf("a failed Write kept something: state %s, %d entries, pages %v, state key %q", inc.State, len(timeline(t, s, 1)), pages, st)
	}
	if _, err := s.Incident(ctx(t), 2); !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("a failed Write left incident 2: %v", err)
	}
	// The group still names incident 1: a duplicate is one.
	if res := ingest(t, s, Note("g", "firing"), NoDecide); res.Incident != 1 || res.Changed {
		t.Fatalf("duplicate after a failed Write = %+v, want incident 1 unchanged", res)
	}
}

func testTimelineAppendOnly(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	ingest(t, s, Note("h", "firing"), NoDecide)
	for i := range 20 {
		update(t, s, 1, note(escalation.EvNote, fmt.Sprint("n", i)))
		if i%3 == 0 {
			update(t, s, 2, note(escalation.EvNote, fmt.Sprint("other", i)))
		}
	}
	ev := timeline(t, s, 1)
	if len(ev) != 22 {
		t.Fatalf("timeline has %d entries, want 22", len(ev))
	}
	for i, e := range ev[2:] {
		if e.Text != fmt.Sprint("n", i) {
			t.Fatalf("entry %d = %q, want n%d: the timeline is not in append order", i+2, e.Text, i)
		}
	}
	for _, e := range timeline(t, s, 2) {
		if e.Kind == escalation.EvNote && e.Text[:5] != "other" {
			t.Fatalf("incident 2's timeline holds %q", e.Text)
		}
	}
}

func testSchedule(t *testing.T, s escalation.Store) {
	for _, g := range []string{"a", "b", "c"} {
		ingest(t, s, Note(g, "firing"), NoDecide)
	}
	next := now.Add(3 * time.Minute)
	retry := now.Add(30 * time.Second)
	update(t, s, 1, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.Escalation.NextAt = next
		return escalation.Change{Pages: []escalation.PageRecord{
			{Channel: "matrix", Kind: notifiers.KindPage, Status: escalation.PagePending, Recipient: notifiers.Recipient{PersonID: "alice"}},
			{Channel: "phone", Kind: notifiers.KindPage, Status: escalation.PageTempFail, NextTry: retry, Recipient: notifiers.Recipient{PersonID: "bob"}},
			{Channel: "sms", Kind: notifiers.KindPage, Status: escalation.PageDeferred, Recipient: notifiers.Recipient{PersonID: "carol"}},
			{Channel: "pagerduty", Kind: notifiers.KindPage, Status: escalation.PageSent},
		}}, nil
	})
	update(t, s, 2, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.State, inc.Escalation.NextAt = escalation.Acknowledged, time.Time{}
		return escalation.Change{Events: []escalation.Event{{At: now, Kind: escalation.EvAcknowledged}}}, nil
	})
	ingest(t, s, Note("c", "resolved"), NoDecide)
	var got []escalation.Due
	if err := s.Schedule(ctx(t), func(d escalation.Due) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Incident != 1 || got[1].Incident != 2 {
		t.Fatalf("schedule %+v: want incidents 1 and 2 in id order, not the resolved 3", got)
	}
	d := got[0]
	if d.State != escalation.Open || !d.NextAt.Equal(next) {
		t.Fatalf("incident 1 due %+v", d)
	}
	want := []escalation.DuePage{
		{ID: "1-1", Person: "alice", Channel: "matrix"},
		{ID: "1-2", NextTry: retry, Person: "bob", Channel: "phone"},
		{ID: "1-3", Deferred: true, Person: "carol", Channel: "sms"},
	}
	if len(d.Pages) != len(want) {
		t.Fatalf("unfinished pages %+v, want %+v", d.Pages, want)
	}
	for i := range want {
		if p := d.Pages[i]; p.ID != want[i].ID || !p.NextTry.Equal(want[i].NextTry) || p.Deferred != want[i].Deferred || p.Person != want[i].Person || p.Channel != want[i].Channel {
			t.Fatalf("page %d = %+v, want %+v", i, p, want[i])
		}
	}
	if got[1].State != escalation.Acknowledged || !got[1].NextAt.IsZero() || len(got[1].Pages) != 0 {
		t.Fatalf("incident 2 due %+v", got[1])
	}
	// Finishing a page takes it out of the index.
	update(t, s, 1, func(inc *escalation.Incident, pages []escalation.PageRecord) (escalation.Change, error) {
		p := pages[0]
		p.Status = escalation.PageSent
		return escalation.Change{Pages: []escalation.PageRecord{p}}, nil
	})
	got = nil
	stop := errors.New("stop")
	err := s.Schedule(ctx(t), func(d escalation.Due) error { got = append(got, d); return stop })
	if !errors.Is(err, stop) || len(got) != 1 {
		t.Fatalf("fn's error must end the walk: %v after %d", err, len(got))
	}
	if len(got[0].Pages) != 2 || got[0].Pages[0].ID != "1-2" {
		t.Fatalf("after finishing 1-1: %+v", got[0].Pages)
	}
}

// testScheduleConfirmBy checks that the schedule index keeps an incident's
// wake (Escalation.WakeAt), not only its next decision: a page's
// confirmation deadline earlier than the step's wait must fire after a
// restart too, or an unconfirmed page holds its step to the end (I6).
func testScheduleConfirmBy(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("a", "firing"), NoDecide)
	step, confirm := now.Add(5*time.Minute), now.Add(30*time.Second)
	update(t, s, 1, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.Escalation.NextAt, inc.Escalation.ConfirmBy = step, confirm
		return escalation.Change{Events: []escalation.Event{{At: now, Kind: escalation.EvPaged}}}, nil
	})
	for _, want := range []time.Time{confirm, step} {
		var got []escalation.Due
		if err := s.Schedule(ctx(t), func(d escalation.Due) error { got = append(got, d); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].NextAt.Equal(want) {
			t.Fatalf("schedule %+v: want incident 1 due at %s", got, want)
		}
		update(t, s, 1, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
			inc.Escalation.ConfirmBy = time.Time{} // the deadline was handled
			return escalation.Change{Events: []escalation.Event{{At: now, Kind: escalation.EvNote}}}, nil
		})
	}
}

func testIncidents(t *testing.T, s escalation.Store) {
	const n = 12
	for i := 1; i <= n; i++ {
		ingest(t, s, Note(fmt.Sprint("g", i), "firing"), NoDecide)
	}
	for _, i := range []int{2, 5, 9} {
		ingest(t, s, Note(fmt.Sprint("g", i), "resolved"), NoDecide)
	}
	update(t, s, 7, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.State = escalation.Acknowledged
		return escalation.Change{}, nil
	})
	list := func(f escalation.Filter) []uint64 {
		t.Helper()
		l, err := s.Incidents(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, inc := range l {
			ids = append(ids, inc.ID)
		}
		return ids
	}
	cases := []struct {
		f    escalation.Filter
		want []uint64
	}{
		{escalation.Filter{}, []uint64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{escalation.Filter{Limit: 3}, []uint64{12, 11, 10}},
		{escalation.Filter{Limit: 3, Before: 10}, []uint64{9, 8, 7}},
		{escalation.Filter{Before: 100}, []uint64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{escalation.Filter{State: escalation.Resolved}, []uint64{9, 5, 2}},
		{escalation.Filter{State: escalation.Open, Limit: 4}, []uint64{12, 11, 10, 8}},
		{escalation.Filter{State: escalation.Open, Before: 8}, []uint64{6, 4, 3, 1}},
		{escalation.Filter{State: escalation.Acknowledged}, []uint64{7}},
		{escalation.Filter{State: escalation.Resolved, Before: 5}, []uint64{2}},
	}
	for _, c := range cases {
		if got := list(c.f); !slices.Equal(got, c.want) {
			t.Errorf("Incidents(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
}

func testCounts(t *testing.T, s escalation.Store) {
	counts, err := s.Counts(ctx(t))
	want := map[escalation.State]int{escalation.Open: 0, escalation.Acknowledged: 0, escalation.Resolved: 0}
	if err != nil || !maps.Equal(counts, want) {
		t.Fatalf("empty store counts %v %v", counts, err)
	}
	for i := range 5 {
		ingest(t, s, Note(fmt.Sprint("g", i), "firing"), NoDecide)
	}
	ingest(t, s, Note("g0", "resolved"), NoDecide)
	update(t, s, 2, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.State = escalation.Acknowledged
		return escalation.Change{}, nil
	})
	counts, _ = s.Counts(ctx(t))
	want = map[escalation.State]int{escalation.Open: 3, escalation.Acknowledged: 1, escalation.Resolved: 1}
	if !maps.Equal(counts, want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}
}

func testConcurrentIngest(t *testing.T, s escalation.Store) {
	IngestBurst(t, s, ctx(t), 40, "g")
}

// IngestBurst ingests n new groups (prefix0, prefix1, ...) at once and
// checks that they opened incidents 1..n, each once.
func IngestBurst(t *testing.T, s escalation.Store, c context.Context, n int, prefix string) {
	t.Helper()
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := escalation.Ingest(c, s, Note(fmt.Sprint(prefix, i), "firing"), now, NoDecide)
			if err != nil {
				t.Errorf("webhook %d: %v", i, err)
			}
			ids[i] = res.Incident
		})
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("ids %v: want 1..%d each once", ids, n)
		}
	}
}

func testConcurrentSameGroup(t *testing.T, s escalation.Store) {
	const n = 20
	opened := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := escalation.Ingest(ctx(t), s, Note("same", "firing"), now, NoDecide)
			if err != nil {
				t.Error(err)
			}
			opened[i] = res.Opened
		})
	}
	wg.Wait()
	if c := len(slices.DeleteFunc(opened, func(b bool) bool { return !b })); c != 1 {
		t.Fatalf("%d deliveries opened an incident, want exactly 1", c)
	}
	counts, _ := s.Counts(ctx(t))
	if counts[escalation.Open] != 1 || counts[escalation.Resolved] != 0 {
		t.Fatalf("counts %v", counts)
	}
	if got := len(timeline(t, s, 1)); got != 2 {
		t.Fatalf("timeline has %d entries, want 2 (duplicates wrote nothing)", got)
	}
}

func testConcurrentUpdates(t *testing.T, s escalation.Store) {
	ingest(t, s, Note("g", "firing"), NoDecide)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, _, err := escalation.Update(ctx(t), s, 1, func(inc *escalation.Incident, pages []escalation.PageRecord) (escalation.Change, error) {
				inc.Escalation.Generation++
				return escalation.Change{
					Events: []escalation.Event{{At: now, Kind: escalation.EvNote, Text: fmt.Sprint(i)}},
					Pages:  []escalation.PageRecord{{Channel: "matrix", Status: escalation.PagePending}},
				}, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	inc, _ := s.Incident(ctx(t), 1)
	if inc.Escalation.Generation != n {
		t.Fatalf("generation %d after %d updates: an update was lost", inc.Escalation.Generation, n)
	}
	if got := len(timeline(t, s, 1)); got != n+2 {
		t.Fatalf("timeline has %d entries, want %d", got, n+2)
	}
	pages, _ := s.Pages(ctx(t), 1)
	for i, p := range pages {
		if p.Seq != i+1 {
			t.Fatalf("page seqs not 1..%d: %+v", n, pages)
		}
	}
	if len(pages) != n {
		t.Fatalf("%d pages, want %d", len(pages), n)
	}
}

// testConcurrentUpdatesMany: updates of many incidents at once (which a
// store may commit together) each apply exactly once, with their channel
// state; one that changes nothing writes nothing, and writes of one state key
// keep the latest by their Replaces check.
func testConcurrentUpdatesMany(t *testing.T, s escalation.Store) {
	const incidents, each = 30, 4
	for i := range incidents {
		ingest(t, s, Note(fmt.Sprint("g", i), "firing"), NoDecide)
	}
	newer := func(v int) func([]byte) bool {
		return func(old []byte) bool {
			n, err := strconv.Atoi(string(old))
			return old == nil || err != nil || n < v
		}
	}
	var wg sync.WaitGroup
	for i := range incidents {
		for j := range each + 1 {
			wg.Go(func() {
				id := uint64(i + 1)
				_, ch, err := escalation.Update(ctx(t), s, id, func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
					if j == each {
						inc.Title = "changed in memory only"
						return escalation.Change{}, escalation.ErrNoChange
					}
					inc.Escalation.Generation++
					v := i*each + j
					return escalation.Change{
						Events: []escalation.Event{{At: now, Kind: escalation.EvNote, Text: fmt.Sprint(v)}},
						State: []notifiers.StateWrite{
							{Bucket: "test", Key: "shared", Value: []byte(strconv.Itoa(v)), Replaces: newer(v)},
							{Bucket: "test", Key: fmt.Sprint("inc-", id), Value: []byte(strconv.Itoa(v)), Replaces: newer(v)},
						},
					}, nil
				})
				if err != nil {
					t.Error(err)
				}
				if j == each && !ch.Empty() {
					t.Errorf("an update that changed nothing returned %+v", ch)
				}
			})
		}
	}
	wg.Wait()
	for i := range incidents {
		id := uint64(i + 1)
		inc, err := s.Incident(ctx(t), id)
		if err != nil || inc.Escalation.Generation != each || inc.Title == "changed in memory only" {
			t.Fatalf("incident %d: generation %d, title %q, %v; want %d updates applied once, none in memory only", id, inc.Escalation.Generation, inc.Title, err, each)
		}
		if got := len(timeline(t, s, id)); got != each+2 { // the ingest wrote two
			t.Fatalf("incident %d: timeline has %d entries, want %d", id, got, each+2)
		}
		if v, _ := s.GetState(ctx(t), "test", fmt.Sprint("inc-", id)); string(v) != strconv.Itoa(i*each+each-1) {
			t.Fatalf("incident %d's state %q, want its latest write %d", id, v, i*each+each-1)
		}
	}
	if v, _ := s.GetState(ctx(t), "test", "shared"); string(v) != strconv.Itoa(incidents*each-1) {
		t.Fatalf("shared state %q, want the latest write %d", v, incidents*each-1)
	}
}

func testStateStore(t *testing.T, s escalation.Store) {
	c := ctx(t)
	if v, err := s.GetState(c, "matrix", "next_batch"); v != nil || err != nil {
		t.Fatalf("missing key = %q %v, want nil nil", v, err)
	}
	if err := s.PutState(c, "matrix", "next_batch", []byte("s42")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(c, "other", "next_batch", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetState(c, "matrix", "next_batch"); string(v) != "s42" || err != nil {
		t.Fatalf("get = %q %v", v, err)
	}
	if err := s.PutState(c, "matrix", "next_batch", []byte("s43")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetState(c, "matrix", "next_batch"); string(v) != "s43" {
		t.Fatalf("overwrite = %q", v)
	}
	if err := s.PutState(c, "matrix", "next_batch", nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetState(c, "matrix", "next_batch"); v != nil {
		t.Fatalf("after delete = %q", v)
	}
	if v, _ := s.GetState(c, "other", "next_batch"); string(v) != "x" {
		t.Fatalf("buckets are not separate: %q", v)
	}
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i)
	}
	if err := s.PutState(c, "b", "big", big); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetState(c, "b", "big"); !slices.Equal(v, big) {
		t.Fatal("binary value changed in the store")
	}
}

// testUpdateState: channel state carried by a change (a sent page's receipt)
// is written in the same update, only when the change is, and only when its
// Replaces check agrees with what the key holds.
func testUpdateState(t *testing.T, s escalation.Store) {
	c := ctx(t)
	id := ingest(t, s, Note("g", "firing"), NoDecide).Incident
	newer := func(old []byte) bool { return string(old) < "v2" } // versions compare as strings here
	withState := func(ws ...notifiers.StateWrite) escalation.UpdateFunc {
		return func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
			ch := escalation.Change{State: ws}
			ch.Note(now, escalation.EvNote, "page sent")
			return ch, nil
		}
	}
	get := func() string {
		t.Helper()
		v, err := s.GetState(c, "twilio.sms-route", "+15550001")
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	w := func(v string, replaces func([]byte) bool) notifiers.StateWrite {
		var b []byte
		if v != "" {
			b = []byte(v)
		}
		return notifiers.StateWrite{Bucket: "twilio.sms-route", Key: "+15550001", Value: b, Replaces: replaces}
	}
	update(t, s, id, withState(w("v1", nil)))
	if got := get(); got != "v1" {
		t.Fatalf("state after the update = %q, want v1", got)
	}
	if tl := timeline(t, s, id); tl[len(tl)-1].Text != "page sent" {
		t.Fatalf("the change itself was not written: %+v", tl[len(tl)-1])
	}
	update(t, s, id, withState(w("v2", newer)))
	update(t, s, id, withState(w("v0", newer))) // older: turned down
	if got := get(); got != "v2" {
		t.Fatalf("state = %q, want v2 (v0 does not replace it)", got)
	}
	// A change that is not written writes no state either.
	_, _, err := escalation.Update(c, s, id, func(*escalation.Incident, []escalation.PageRecord) (escalation.Change, error) {
		return escalation.Change{State: []notifiers.StateWrite{w("v3", nil)}}, errors.New("decided against it")
	})
	if err == nil {
		t.Fatal("the update's error was lost")
	}
	if got := get(); got != "v2" {
		t.Fatalf("state = %q after a failed update, want v2", got)
	}
	// A change of state alone is written.
	update(t, s, id, func(*escalation.Incident, []escalation.PageRecord) (escalation.Change, error) {
		return escalation.Change{State: []notifiers.StateWrite{w("v4", nil), {Bucket: "twilio.sms-route", Key: "+15550002", Value: []byte("x")}}}, nil
	})
	if got := get(); got != "v4" {
		t.Fatalf("state = %q, want v4", got)
	}
	update(t, s, id, withState(w("", nil))) // nil value: deleted
	if got := get(); got != "" {
		t.Fatalf("state = %q after deleting, want none", got)
	}
	if v, _ := s.GetState(c, "twilio.sms-route", "+15550002"); string(v) != "x" {
		t.Fatalf("other key = %q, want x", v)
	}
}

func testPing(t *testing.T, s escalation.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func testCanceled(t *testing.T, s escalation.Store) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := escalation.Ingest(c, s, Note("g", "firing"), now, NoDecide); err == nil {
		t.Fatal("ingest with a canceled context succeeded")
	}
	if err := s.Ping(c); err == nil {
		t.Fatal("ping with a canceled context succeeded")
	}
	if _, err := s.Incident(ctx(t), 1); !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("a canceled ingest wrote incident 1: %v", err)
	}
}

func testHeld(t *testing.T, s escalation.Store) {
	for _, g := range []string{"a", "b", "c"} {
		ingest(t, s, Note(g, "firing"), NoDecide)
	}
	hold := func(id uint64, person string, ch notifiers.Channel, st escalation.PageStatus) {
		update(t, s, id, func(*escalation.Incident, []escalation.PageRecord) (escalation.Change, error) {
			return escalation.Change{Pages: []escalation.PageRecord{{Channel: ch, Kind: notifiers.KindPage, Status: st, Recipient: notifiers.Recipient{PersonID: person}}}}, nil
		})
	}
	hold(1, "alice", "sms", escalation.PageDeferred)
	hold(2, "alice", "sms", escalation.PageDeferred)
	hold(2, "alice", "sms", escalation.PageDeferred)
	hold(3, "alice", "sms", escalation.PageDeferred)
	hold(3, "alice", "phone", escalation.PageDeferred) // another channel
	hold(3, "bob", "sms", escalation.PageDeferred)     // another person
	hold(3, "alice", "sms", escalation.PagePending)    // not held
	h, err := s.Held(ctx(t), "alice", "sms", 2)
	if err != nil || h.Count != 4 || !slices.Equal(h.Newest, []uint64{3, 2}) {
		t.Fatalf("Held(alice, sms, 2) = %+v %v, want 4 held, newest incidents [3 2]", h, err)
	}
	if h, _ := s.Held(ctx(t), "carol", "sms", 2); h.Count != 0 || len(h.Newest) != 0 {
		t.Fatalf("Held(carol) = %+v, want none", h)
	}
	// HeldPages lists the same pages by id, oldest first, in chunks.
	all, err := s.HeldPages(ctx(t), "alice", "sms", "", 100)
	if want := []string{"1-1", "2-1", "2-2", "3-1"}; err != nil || !slices.Equal(all, want) {
		t.Fatalf("HeldPages(alice, sms) = %v %v, want %v", all, err, want)
	}
	var chunked []string
	after := ""
	for range 10 {
		ids, err := s.HeldPages(ctx(t), "alice", "sms", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		chunked = append(chunked, ids...)
		if len(ids) < 3 {
			break
		}
		after = ids[len(ids)-1]
	}
	if !slices.Equal(chunked, all) {
		t.Fatalf("HeldPages in chunks of 3 = %v, want %v", chunked, all)
	}
	if ids, err := s.HeldPages(ctx(t), "alice", "sms", "2-1", 1); err != nil || !slices.Equal(ids, []string{"2-2"}) {
		t.Fatalf("HeldPages(after 2-1, 1) = %v %v, want [2-2]", ids, err)
	}
	if ids, err := s.HeldPages(ctx(t), "bob", "sms", "", 10); err != nil || !slices.Equal(ids, []string{"3-3"}) {
		t.Fatalf("HeldPages(bob) = %v %v, want [3-3]", ids, err)
	}
	if _, err := s.HeldPages(ctx(t), "alice", "sms", "nonsense", 10); err == nil {
		t.Fatal("HeldPages after a malformed page id: no error")
	}
}

func testPrune(t *testing.T, s escalation.Store) {
	day := 24 * time.Hour
	for i, g := range []string{"old", "recent", "open"} {
		at := now.Add(time.Duration(i) * day)
		n := Note(g, "firing")
		n.Alerts[0].StartsAt = at
		if _, err := escalation.Ingest(ctx(t), s, n, at, NoDecide); err != nil {
			t.Fatal(err)
		}
		if g != "open" {
			r := Note(g, "resolved")
			r.Alerts[0].StartsAt, r.Alerts[0].EndsAt = at, at.Add(time.Minute)
			if _, err := escalation.Ingest(ctx(t), s, r, at.Add(time.Minute), NoDecide); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"seen:1", "seen:2", "keep"} {
		if err := s.PutState(ctx(t), "twilio", k, []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Prune(ctx(t), escalation.Prune{ResolvedBefore: now.Add(day / 2),
		State: []escalation.StatePrune{{Bucket: "twilio", Prefix: "seen:", Before: time.Now().Add(time.Hour)}}})
	if err != nil || n.Incidents != 1 || n.Groups != 1 || n.StateKeys != 2 {
		t.Fatalf("Prune = %+v %v, want 1 incident, 1 group, 2 state keys", n, err)
	}
	if _, err := s.Incident(ctx(t), 1); !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("the old resolved incident is still there: %v", err)
	}
	if _, err := s.Timeline(ctx(t), 1); !errors.Is(err, escalation.ErrNotFound) {
		t.Fatalf("the old incident's timeline is still there: %v", err)
	}
	for _, id := range []uint64{2, 3} {
		if _, err := s.Incident(ctx(t), id); err != nil {
			t.Fatalf("incident %d was pruned: %v", id, err)
		}
	}
	if v, _ := s.GetState(ctx(t), "twilio", "keep"); v == nil {
		t.Fatal("a state key outside the prefix was pruned")
	}
	if v, _ := s.GetState(ctx(t), "twilio", "seen:1"); v != nil {
		t.Fatal("an expired state key is still there")
	}
	// The pruned group is forgotten: its next firing opens a new incident.
	if res := ingest(t, s, Note("old", "firing"), NoDecide); !res.Opened || res.Incident != 4 {
		t.Fatalf("firing of a pruned group = %+v, want incident 4 opened", res)
	}
}
