package escalation_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestEscalatesStepByStepUntilExhausted(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	res := w.ingest(firing("g", "a"))
	if !res.Opened || res.Incident != 1 {
		t.Fatalf("ingest = %+v, want incident 1 opened", res)
	}
	steps := []struct {
		after time.Duration
		want  []string
	}{
		{0, []string{"matrix:alice"}},
		{5 * time.Minute, []string{"matrix:alice", "pagerduty:alice"}},
		{5 * time.Minute, []string{"matrix:alice", "pagerduty:alice", "phone:alice"}},
		{5 * time.Minute, []string{"matrix:alice", "matrix:bob", "pagerduty:alice", "phone:alice", "phone:bob"}},
		// Fallback: carol on every channel she has (matrix only; no phone number).
		{10 * time.Minute, []string{"matrix:alice", "matrix:bob", "matrix:carol", "pagerduty:alice", "pagerduty:carol", "phone:alice", "phone:bob"}},
	}
	for i, s := range steps {
		w.advance(s.after)
		got := w.paged()
		slices.Sort(got)
		if !slices.Equal(got, s.want) {
			t.Fatalf("after step %d: paged %v, want %v\n%s", i, got, s.want, w.timeline(1))
		}
	}
	inc := w.incident(1)
	if inc.State != escalation.Open || !inc.Escalation.Exhausted {
		t.Fatalf("state %s exhausted=%v, want open and exhausted", inc.State, inc.Escalation.Exhausted)
	}
	if !strings.Contains(w.timeline(1), "skipped: Carol has no phone number for phone") {
		t.Errorf("timeline lacks the skipped phone page:\n%s", w.timeline(1))
	}
	// Exhausted is not silent: the fallback is paged again every RepageEvery.
	w.advance(escalation.DefaultRepageEvery)
	if n := len(w.paged()); n != 9 {
		t.Errorf("after %s an exhausted incident has %d pages, want the fallback's two again (9)\n%s", escalation.DefaultRepageEvery, n, w.timeline(1))
	}
	if !strings.Contains(w.timeline(1), "paging the fallback list again") {
		t.Errorf("timeline does not say it pages again:\n%s", w.timeline(1))
	}
}

// TestNobodyConfiguredWaitsInsteadOfExhausting: with no channel able to page,
// an incident must not run through its policy in the same second; it waits,
// and pages as soon as a channel is there.
func TestNobodyConfiguredWaitsInsteadOfExhausting(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.eng = escalation.New(escalation.Config{Store: w.store, Rota: func() escalation.Rota { return w.rota }, Clock: w.clock, Inline: true})
	w.ingest(firing("g", "a"))
	w.advance(time.Hour)
	inc := w.incident(1)
	if inc.Escalation.Exhausted || !inc.Escalation.Waiting || inc.State != escalation.Open {
		t.Fatalf("escalation %+v, want waiting and not exhausted\n%s", inc.Escalation, w.timeline(1))
	}
	// A channel appears (a restart with it configured): the incident is paged.
	w.restart()
	w.advance(time.Minute)
	if got := w.paged(); len(got) == 0 || got[0] != "matrix:alice" {
		t.Fatalf("paged %v after a channel appeared, want matrix:alice\n%s", got, w.timeline(1))
	}
}

// TestDownChannelIsPagedWhenNothingElseCan: health is advice. A step whose
// only channel is marked down pages on it anyway; a step with another
// channel up skips it.
func TestDownChannelIsPagedWhenNothingElseCan(t *testing.T) {
	p := &escalation.Policy{ID: "p", Steps: []escalation.Step{
		{Targets: []escalation.Target{{Rotation: "primary"}}, Channels: []notifiers.Channel{notifiers.Phone}, Wait: 5 * time.Minute},
		{Targets: []escalation.Target{{Rotation: "primary"}}, Channels: []notifiers.Channel{notifiers.Phone, notifiers.Matrix}, Wait: 5 * time.Minute},
	}}
	w := newWorld(t, p)
	var chans []notifiers.Notifier
	for _, c := range notifiers.Channels {
		chans = append(chans, w.rec[c])
	}
	w.eng = escalation.New(escalation.Config{Store: w.store, Rota: func() escalation.Rota { return w.rota }, Notifiers: chans, Clock: w.clock, Inline: true,
		Health: func(c notifiers.Channel) escalation.ChannelHealth {
			return escalation.ChannelHealth{Configured: true, Down: c == notifiers.Phone, Since: t0, Reason: "self-test failed"}
		}})
	w.ingest(firing("g", "a"))
	if got := w.paged(); !slices.Equal(got, []string{"phone:alice"}) {
		t.Fatalf("step 1 paged %v, want the down phone anyway", got)
	}
	w.advance(5 * time.Minute)
	got := w.paged()
	slices.Sort(got)
	if !slices.Equal(got, []string{"matrix:alice", "phone:alice"}) {
		t.Fatalf("after step 2 paged %v, want matrix only added (phone down skipped)\n%s", got, w.timeline(1))
	}
}

func TestAcknowledgeStopsEscalationAndTellsChannels(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	w.advance(5 * time.Minute) // matrix, then pagerduty
	out, err := w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Ack, Incident: 1, Channel: notifiers.Matrix, From: "@alice:test"})
	if err != nil || !out.Applied || out.By != "Alice" {
		t.Fatalf("Respond = %+v, %v; want applied by Alice", out, err)
	}
	w.advance(time.Hour)
	if got := w.paged(); len(got) != 2 {
		t.Fatalf("paged after ack: %v, want only the two pages before it", got)
	}
	if w.count(notifiers.PagerDuty, notifiers.KindAcknowledged) != 1 || w.count(notifiers.Matrix, notifiers.KindAcknowledged) != 1 {
		t.Errorf("channels already used were not told of the acknowledgement")
	}
	inc := w.incident(1)
	if inc.State != escalation.Acknowledged || inc.AckedBy != "Alice" || inc.AckedVia != "matrix" {
		t.Errorf("incident = %s by %q via %q", inc.State, inc.AckedBy, inc.AckedVia)
	}
	// A second ack changes nothing.
	out, err = w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Ack, Incident: 1, Channel: notifiers.Phone, From: "+15555550102"})
	if err != nil || out.Applied {
		t.Errorf("second ack = %+v, %v; want not applied", out, err)
	}
}

func TestStrangerCannotAcknowledge(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	_, err := w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Ack, Incident: 1, Channel: notifiers.Matrix, From: "@mallory:test"})
	if !errors.Is(err, notifiers.ErrNotOnRota) {
		t.Fatalf("err = %v, want ErrNotOnRota", err)
	}
	if w.incident(1).State != escalation.Open {
		t.Fatal("a stranger's ack took effect")
	}
	if _, err := w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Ack, Incident: 99, Channel: notifiers.Matrix, From: "@alice:test"}); !errors.Is(err, notifiers.ErrUnknownIncident) {
		t.Fatalf("ack of unknown incident: err = %v", err)
	}
}

func TestPermanentFailureMovesOnAtOnce(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.rec[notifiers.Matrix].FailWith(func(notifiers.Page) error {
		return notifiers.Permanent("M_UNKNOWN_TOKEN", errors.New("token revoked"))
	})
	w.ingest(firing("g", "a"))
	// No time passes: matrix failed for good, so PagerDuty is paged at once.
	if got := w.paged(); !slices.Contains(got, "pagerduty:alice") {
		t.Fatalf("paged %v, want pagerduty at once after matrix failed permanently\n%s", got, w.timeline(1))
	}
	if !strings.Contains(w.timeline(1), "every page of step 1 failed: escalating at once") {
		t.Errorf("timeline:\n%s", w.timeline(1))
	}
}

// failFirst fails the first n sends temporarily (a rate limit), then lets
// every send through.
func failFirst(n int) func(notifiers.Page) error {
	return func(notifiers.Page) error {
		if n > 0 {
			n--
			return notifiers.Temporary("M_LIMIT_EXCEEDED", 0, errors.New("slow down"))
		}
		return nil
	}
}

func TestTemporaryFailureRetriesWithinStep(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.rec[notifiers.Matrix].FailWith(failFirst(2))
	w.ingest(firing("g", "a"))
	w.advance(4 * time.Second) // retries after 1s and 2s
	pages, _ := w.store.Pages(w.ctx, 1)
	if len(pages) != 1 || pages[0].Status != escalation.PageSent || pages[0].Attempts != 3 {
		t.Fatalf("pages = %+v, want one page sent on its third attempt", pages)
	}
	if slices.Contains(w.paged(), "pagerduty:alice") {
		t.Fatal("a temporary failure skipped the step")
	}
}

func TestLateEscalateAppliesAsOfItsPage(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	first := w.rec[notifiers.Matrix].Pages()[0].ID
	out, err := w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Escalate, PageID: first, Channel: notifiers.Matrix, From: "@alice:test"})
	if err != nil || !out.Applied {
		t.Fatalf("escalate = %+v, %v", out, err)
	}
	if !slices.Contains(w.paged(), "pagerduty:alice") {
		t.Fatalf("escalate did not move to the next step: %v", w.paged())
	}
	// The same answer again (a retried callback, a second reply) does nothing.
	out, err = w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Escalate, PageID: first, Channel: notifiers.Matrix, From: "@alice:test"})
	if err != nil || out.Applied {
		t.Fatalf("late escalate = %+v, %v; want not applied", out, err)
	}
	if slices.Contains(w.paged(), "phone:alice") {
		t.Fatal("a late escalate escalated twice")
	}
}

func TestAckTimeoutRepagesFromFirstStep(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	if _, err := w.eng.Act(w.ctx, 1, notifiers.Ack, "alice"); err != nil {
		t.Fatal(err)
	}
	w.advance(4*time.Hour - time.Second)
	if n := len(w.paged()); n != 1 {
		t.Fatalf("paged %d times before the ack timeout", n)
	}
	w.advance(time.Second)
	if n := w.count(notifiers.Matrix, notifiers.KindPage); n != 2 {
		t.Fatalf("matrix pages = %d, want a re-page at the ack timeout\n%s", n, w.timeline(1))
	}
	if w.incident(1).State != escalation.Open {
		t.Fatal("incident not open again after the ack timeout")
	}
}

// TestRepageWithNobodyReachableWaits: an acknowledgement that times out
// starts a new escalation. If none of its pages can be handed to a channel,
// the incident waits for one instead of being exhausted on the strength of
// the pages sent before the acknowledgement.
func TestRepageWithNobodyReachableWaits(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	if len(w.paged()) == 0 {
		t.Fatal("nothing paged before the acknowledgement")
	}
	if _, err := w.eng.Act(w.ctx, 1, notifiers.Ack, "alice"); err != nil {
		t.Fatal(err)
	}
	w.tweak = func(c *escalation.Config) { c.Notifiers = nil } // restarted with no channel configured
	w.restart()
	w.advance(5 * time.Hour)
	inc := w.incident(1)
	if inc.Escalation.Exhausted || !inc.Escalation.Waiting || inc.State != escalation.Open {
		t.Fatalf("escalation %+v, want open and waiting, not exhausted\n%s", inc.Escalation, w.timeline(1))
	}
}

func TestResolveFromAlertmanagerStopsAndTells(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a", "b"))
	w.advance(5 * time.Minute)
	res := w.ingest(resolved("g", "a"))
	if res.Resolved {
		t.Fatal("resolved with one alert still firing")
	}
	res = w.ingest(resolved("g", "a", "b"))
	if !res.Resolved {
		t.Fatalf("ingest = %+v, want resolved", res)
	}
	w.advance(time.Hour)
	if got := w.paged(); len(got) != 2 {
		t.Fatalf("paged after resolution: %v", got)
	}
	if w.count(notifiers.PagerDuty, notifiers.KindResolved) != 1 || w.count(notifiers.Matrix, notifiers.KindResolved) != 1 {
		t.Error("channels used were not told of the resolution")
	}
	// The group fires again: a new incident.
	n := firing("g", "a")
	n.Alerts[0].StartsAt = t0.Add(2 * time.Hour)
	if res := w.ingest(n); !res.Opened || res.Incident != 2 {
		t.Fatalf("refire = %+v, want incident 2 opened", res)
	}
}

func TestNewAlertOnAcknowledgedIncidentIsAnnouncedNotPaged(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	w.eng.Act(w.ctx, 1, notifiers.Ack, "alice")
	before := len(w.paged())
	w.ingest(firing("g", "a", "b"))
	if len(w.paged()) != before {
		t.Fatal("a new alert on an acknowledged incident paged again")
	}
	if w.count(notifiers.Matrix, notifiers.KindNotice) != 1 {
		t.Fatalf("notices = %d, want the new alert announced in chat", w.count(notifiers.Matrix, notifiers.KindNotice))
	}
}

func TestRestartResumesFromStoredDeadlines(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	// Down for 7 minutes: the step-1 deadline passed while down.
	w.clock.Advance(7 * time.Minute)
	w.restart()
	if got := w.paged(); !slices.Contains(got, "pagerduty:alice") {
		t.Fatalf("after restart paged %v, want the passed deadline fired at start", got)
	}
	if slices.Contains(w.paged(), "phone:alice") {
		t.Fatal("a step was skipped at restart")
	}
}

func TestPendingRetrySurvivesRestartWithSameID(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	// The matrix send "crashes": it fails temporarily and the process stops
	// before the retry.
	w.rec[notifiers.Matrix].FailWith(func(notifiers.Page) error { return notifiers.Temporary("", 0, errors.New("connection reset")) })
	w.ingest(firing("g", "a"))
	id := w.rec[notifiers.Matrix].Pages()[0].ID
	w.rec[notifiers.Matrix].FailWith(nil)
	w.restart()
	w.advance(time.Second) // the stored retry time
	pages := w.rec[notifiers.Matrix].Pages()
	if len(pages) != 2 || pages[1].ID != id {
		t.Fatalf("pages after restart: %+v, want a retry with id %s", pages, id)
	}
}

func TestRateLimitFoldsPages(t *testing.T) {
	p := &escalation.Policy{ID: "phone", Steps: []escalation.Step{{Targets: []escalation.Target{{Person: "alice"}}, Channels: []notifiers.Channel{notifiers.Phone}, Wait: time.Hour}}}
	w := newWorld(t, p)
	w.rota.limits = map[notifiers.Channel][2]int64{notifiers.Phone: {2, int64(15 * time.Minute)}}
	for _, g := range []string{"g1", "g2", "g3", "g4"} {
		w.ingest(firing(g, "a"))
	}
	if n := w.count(notifiers.Phone, notifiers.KindPage); n != 2 {
		t.Fatalf("calls = %d, want 2 (the limit)", n)
	}
	w.advance(15 * time.Minute)
	calls := w.rec[notifiers.Phone].Pages()
	if len(calls) != 3 {
		t.Fatalf("calls after the window = %d, want one folded call", len(calls))
	}
	if !strings.Contains(calls[2].Text, "2 incidents need you; newest: 3, 4") {
		t.Errorf("folded call text = %q", calls[2].Text)
	}
	want := map[uint64]escalation.PageStatus{3: escalation.PageSent, 4: escalation.PageFolded}
	for id := uint64(3); id <= 4; id++ {
		pages, _ := w.store.Pages(w.ctx, id)
		if pages[0].Status != want[id] {
			t.Errorf("incident %d page %s, want %s: never dropped", id, pages[0].Status, want[id])
		}
	}
	if pages, _ := w.store.Pages(w.ctx, 4); pages[0].FoldedInto != calls[2].ID {
		t.Errorf("incident 4 folded into %q, want the carrier %q", pages[0].FoldedInto, calls[2].ID)
	}
}

// failingReads is a store whose count of held pages, or whose incident
// reads, fail while set (an etcd read timing out).
type failingReads struct {
	escalation.Store
	held, incident atomic.Bool
}

var errReadInjected = errors.New("injected: the store read timed out")

func (s *failingReads) Held(ctx context.Context, person string, ch notifiers.Channel, newest int) (escalation.Held, error) {
	if s.held.Load() {
		return escalation.Held{}, errReadInjected
	}
	return s.Store.Held(ctx, person, ch, newest)
}

func (s *failingReads) Incident(ctx context.Context, id uint64) (escalation.Incident, error) {
	if s.incident.Load() {
		return escalation.Incident{}, errReadInjected
	}
	return s.Store.Incident(ctx, id)
}

// TestRetryReadErrorReschedules: a page whose retry cannot read the store is
// retried again later, as wake and releaseHeld do, never dropped.
func TestRetryReadErrorReschedules(t *testing.T) {
	var fr *failingReads
	w := newWorldWith(t, defaultPolicy(), func(cfg *escalation.Config) { fr = &failingReads{Store: cfg.Store}; cfg.Store = fr })
	w.rec[notifiers.Matrix].FailWith(failFirst(1))
	w.ingest(firing("g", "a")) // fails once: retried in a second
	fr.incident.Store(true)
	w.advance(2 * time.Second) // the retry cannot read its incident
	fr.incident.Store(false)
	w.advance(time.Minute) // well within the step's wait
	if pages, _ := w.store.Pages(w.ctx, 1); len(pages) != 1 || pages[0].Status != escalation.PageSent || pages[0].Attempts != 2 {
		t.Fatalf("pages = %+v, want the page sent on its second attempt", pages)
	}
}

// TestUncountedCarrierFoldsNothing: when the store cannot count the pages
// held for a person, the page that finds room goes out without a summary and
// nothing is folded into it: each held page still reaches the person itself.
func TestUncountedCarrierFoldsNothing(t *testing.T) {
	p := &escalation.Policy{ID: "phone", Steps: []escalation.Step{{Targets: []escalation.Target{{Person: "alice"}}, Channels: []notifiers.Channel{notifiers.Phone}, Wait: time.Hour}}}
	var fr *failingReads
	w := newWorldWith(t, p, func(cfg *escalation.Config) { fr = &failingReads{Store: cfg.Store}; cfg.Store = fr })
	w.rota.limits = map[notifiers.Channel][2]int64{notifiers.Phone: {2, int64(15 * time.Minute)}}
	for _, g := range []string{"g1", "g2", "g3", "g4"} {
		w.ingest(firing(g, "a"))
	}
	fr.held.Store(true)
	w.advance(15 * time.Minute)
	calls := w.rec[notifiers.Phone].Pages()
	if len(calls) != 4 {
		t.Fatalf("calls after the window = %d, want each held page called on its own (4)", len(calls))
	}
	for _, c := range calls[2:] {
		if c.Text != "" {
			t.Errorf("call %s says %q, yet nothing could be counted", c.ID, c.Text)
		}
	}
	for id := uint64(3); id <= 4; id++ {
		if pages, _ := w.store.Pages(w.ctx, id); pages[0].Status != escalation.PageSent {
			t.Errorf("incident %d page %s (folded into %q), want sent: folded into a call that never mentioned it", id, pages[0].Status, pages[0].FoldedInto)
		}
	}
}

func TestUnackRepagesAndResolveByHand(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	w.eng.Act(w.ctx, 1, notifiers.Ack, "alice")
	if out, _ := w.eng.Act(w.ctx, 1, notifiers.Unack, "alice"); !out.Applied {
		t.Fatal("unack not applied")
	}
	if n := w.count(notifiers.Matrix, notifiers.KindPage); n != 2 {
		t.Fatalf("matrix pages = %d, want a re-page after unack", n)
	}
	if out, _ := w.eng.Act(w.ctx, 1, notifiers.Resolve, "alice"); !out.Applied {
		t.Fatal("resolve not applied")
	}
	w.advance(time.Hour)
	if n := len(w.paged()); n != 2 {
		t.Fatalf("paged after resolve: %d", n)
	}
	// Alertmanager still sends the group as firing an hour after the
	// by-hand resolve: that is not stale, it pages again in a new incident
	// (see TestResolvedByHandStillFiringPagesAgain).
	if res := w.ingest(firing("g", "a")); !res.Opened || res.Incident != 2 {
		t.Fatalf("still firing an hour after a by-hand resolve: %+v, want incident 2", res)
	}
}

func TestHangingProviderDoesNotStallOthers(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.rec[notifiers.Matrix].Block()
	defer w.rec[notifiers.Matrix].Unblock()
	// Inline engines send in the caller: use a background engine here.
	eng := escalation.New(escalation.Config{Store: w.store, Rota: func() escalation.Rota { return w.rota },
		Notifiers: []notifiers.Notifier{w.rec[notifiers.Matrix], w.rec[notifiers.PagerDuty]}, Clock: w.clock, SendTimeout: time.Hour})
	if _, err := eng.Ingest(w.ctx, firing("g1", "a")); err != nil {
		t.Fatal(err)
	}
	// Another incident's escalation goes on while matrix hangs.
	if _, err := eng.Ingest(w.ctx, firing("g2", "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Act(w.ctx, 2, notifiers.Escalate, "test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	if err := w.rec[notifiers.PagerDuty].WaitFor(ctx, notifiers.KindPage, 1); err != nil {
		t.Fatalf("PagerDuty was never paged while Matrix hung: %v", err)
	}
	w.rec[notifiers.Matrix].Unblock()
	eng.Wait()
}

func TestAlarmRaisedOnceOnItsPolicyAndCleared(t *testing.T) {
	p := defaultPolicy()
	w := newWorld(t, p)
	w.rota.policies["selftest"] = &escalation.Policy{ID: "selftest", Steps: []escalation.Step{
		{Targets: []escalation.Target{{Rotation: "secondary"}}, Channels: []notifiers.Channel{notifiers.Phone}, Wait: time.Minute}}}
	for range 3 { // raised on every failing check
		if _, err := w.eng.Raise(w.ctx, "channel:pagerduty", "PagerDuty down: account expired", "selftest", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.paged(); !slices.Equal(got, []string{"phone:bob"}) {
		t.Fatalf("alarm paged %v, want one call to the secondary on the selftest policy", got)
	}
	inc := w.incident(1)
	if !inc.Synthetic || inc.Escalation.Policy != "selftest" || !strings.Contains(inc.Title, "PagerDuty down") {
		t.Fatalf("alarm incident = %+v", inc)
	}
	if _, err := w.eng.Clear(w.ctx, "channel:pagerduty", "PagerDuty is back"); err != nil {
		t.Fatal(err)
	}
	if w.incident(1).State != escalation.Resolved {
		t.Fatal("alarm not resolved by Clear")
	}
	// A later outage raises a new alarm.
	w.clock.Advance(time.Hour)
	if res, _ := w.eng.Raise(w.ctx, "channel:pagerduty", "PagerDuty down again", "selftest", nil); !res.Opened {
		t.Fatal("second outage raised no alarm")
	}
}

func TestRefreshedAnnotationsAreKept(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	n := firing("g", "a")
	n.Alerts[0].Annotations = map[string]string{"summary": "disk 99% full on a"}
	if res := w.ingest(n); !res.Changed || res.Opened {
		t.Fatalf("refresh = %+v, want changed", res)
	}
	if inc := w.incident(1); !strings.Contains(inc.Title, "disk 99% full on a") {
		t.Fatalf("title %q lost the refreshed summary", inc.Title)
	}
	if n := len(w.paged()); n != 1 {
		t.Fatalf("a refresh paged again: %d pages", n)
	}
	// An open alarm raised again with new words shows them.
	w.eng.Raise(w.ctx, "channel:phone", "Phone will stop working: balance low", "", nil)
	res, _ := w.eng.Raise(w.ctx, "channel:phone", "Phone down since 03:10: account suspended", "", nil)
	if inc := w.incident(res.Incident); !strings.Contains(inc.Title, "Phone down since") {
		t.Fatalf("alarm title %q not updated", inc.Title)
	}
}

func TestUpdatesNameTheChannelTheAnswerCameThrough(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	w.advance(5 * time.Minute)
	if _, err := w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Ack, Incident: 1, Channel: notifiers.Matrix, From: "@alice:test"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []notifiers.Channel{notifiers.Matrix, notifiers.PagerDuty} {
		for _, p := range w.rec[c].Pages() {
			if p.Kind == notifiers.KindAcknowledged && p.Via != notifiers.Matrix {
				t.Errorf("%s update Via = %q, want matrix", c, p.Via)
			}
		}
	}
	w.eng.Act(w.ctx, 1, notifiers.Resolve, "alice")
	for _, p := range w.rec[notifiers.PagerDuty].Pages() {
		if p.Kind == notifiers.KindResolved && p.Via != "" {
			t.Errorf("resolve by API: Via = %q, want empty", p.Via)
		}
	}
}

// TestResolvedByHandStillFiringPagesAgain: a by-hand resolve must not
// silence an alert Alertmanager keeps delivering as firing: within the grace
// its deliveries are ignored, after it they open a new incident.
func TestResolvedByHandStillFiringPagesAgain(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	if _, err := w.eng.Act(w.ctx, 1, notifiers.Resolve, "alice"); err != nil {
		t.Fatal(err)
	}
	w.advance(time.Minute)
	if res := w.ingest(firing("g", "a")); res.Opened {
		t.Fatalf("a delivery within %s of the by-hand resolve opened incident %d", escalation.HandResolveGrace, res.Incident)
	}
	w.advance(escalation.HandResolveGrace)
	res := w.ingest(firing("g", "a"))
	if !res.Opened || res.Incident != 2 {
		t.Fatalf("Alertmanager still firing %s after a by-hand resolve: %+v, want incident 2 opened", escalation.HandResolveGrace, res)
	}
	if !strings.Contains(w.timeline(2), "resolved by hand: paging again") {
		t.Errorf("timeline of 2 does not say why:\n%s", w.timeline(2))
	}
	// A stale copy of an alert Alertmanager itself resolved stays dropped.
	w.ingest(resolved("g", "a"))
	w.advance(time.Hour)
	if res := w.ingest(firing("g", "a")); res.Opened {
		t.Errorf("a stale firing after Alertmanager's own resolution opened incident %d", res.Incident)
	}
}

// TestDuplicateDeliveryNamesItsIncident: a repeated webhook changes nothing
// and says which incident it belongs to.
func TestDuplicateDeliveryNamesItsIncident(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	w.ingest(firing("g", "a"))
	res := w.ingest(firing("g", "a"))
	if res.Changed || res.Incident != 1 {
		t.Errorf("duplicate delivery = %+v, want unchanged incident 1", res)
	}
}

// TestClearedAlarmSaysWhy: clearing one of Klaxon's own alarms does not
// claim Alertmanager resolved it.
func TestClearedAlarmSaysWhy(t *testing.T) {
	w := newWorld(t, defaultPolicy())
	if _, err := w.eng.Raise(w.ctx, "channel:pagerduty", "PagerDuty down", "default", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.eng.Clear(w.ctx, "channel:pagerduty", "PagerDuty works again"); err != nil {
		t.Fatal(err)
	}
	tl := w.timeline(1)
	if strings.Contains(tl, "Alertmanager") || !strings.Contains(tl, "resolved: PagerDuty works again") {
		t.Errorf("timeline:\n%s", tl)
	}
	for _, p := range w.rec[notifiers.Matrix].Pages() {
		if p.Kind == notifiers.KindResolved && (strings.Contains(p.Text, "Alertmanager") || !strings.Contains(p.Text, "PagerDuty works again")) {
			t.Errorf("resolved notice %q", p.Text)
		}
	}
}

// stateNotifier is a Matrix channel whose receipts carry channel state (as
// Twilio's carry a text's reply routing); during, if set, runs while a page
// is in flight.
type stateNotifier struct {
	during func(p notifiers.Page)
	err    error
}

func (n *stateNotifier) Channel() notifiers.Channel { return notifiers.Matrix }
func (n *stateNotifier) Notify(_ context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	if during := n.during; during != nil {
		n.during = nil
		during(p)
	}
	return notifiers.Receipt{ProviderID: "m-" + p.ID, State: []notifiers.StateWrite{
		{Bucket: "test.route", Key: p.Recipient.PersonID, Value: []byte(p.ID)}}}, n.err
}

// A sent page's receipt state is written with its result: the route of a
// page that went out is on disk once the page is recorded as sent, also when
// an acknowledgement canceled the page while it was in flight, or the
// provider's delivery report beat the send's answer (the result itself is
// then no news); a failed send writes none.
func TestReceiptStateIsWrittenWithThePagesResult(t *testing.T) {
	for _, tc := range []struct {
		name   string
		midway string // "ack", "delivered"
		err    error
		want   string
		wantTL string
	}{
		{"sent", "", nil, "1-1", "paged Alice via matrix: sent"},
		{"canceled while in flight", "ack", nil, "1-1", "acknowledged"},
		{"delivered before the send's answer", "delivered", nil, "1-1", "delivered"},
		{"failed", "", notifiers.Permanent("bad-token", errors.New("refused")), "", "failed-permanent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &stateNotifier{err: tc.err}
			w := newWorldWith(t, defaultPolicy(), func(c *escalation.Config) {
				c.Notifiers = append([]notifiers.Notifier{n}, c.Notifiers[1:]...)
			})
			switch tc.midway {
			case "ack":
				n.during = func(notifiers.Page) {
					if _, err := w.eng.Respond(w.ctx, notifiers.Response{Action: notifiers.Ack, Incident: 1, Channel: notifiers.Phone, From: "+15555550101"}); err != nil {
						t.Error(err)
					}
				}
			case "delivered":
				n.during = func(p notifiers.Page) {
					if err := w.eng.Report(w.ctx, notifiers.Report{PageID: p.ID, Incident: 1, Channel: notifiers.Matrix, Status: notifiers.Delivered}); err != nil {
						t.Error(err)
					}
				}
			}
			w.ingest(firing("g", "a"))
			v, err := w.store.GetState(w.ctx, "test.route", "alice")
			if err != nil || string(v) != tc.want {
				t.Fatalf("state = %q, %v; want %q\n%s", v, err, tc.want, w.timeline(1))
			}
			if tl := w.timeline(1); !strings.Contains(tl, tc.wantTL) {
				t.Fatalf("timeline without %q:\n%s", tc.wantTL, tl)
			}
		})
	}
}

// gatedStore lets the first free writes (the test's ingests) through and
// holds every later one (a page's result being recorded) until open is
// closed.
type gatedStore struct {
	escalation.Store
	free atomic.Int64
	open chan struct{}
}

func (s *gatedStore) Write(ctx context.Context, fn func(escalation.Tx) error) error {
	if s.free.Add(-1) < 0 {
		<-s.open
	}
	return s.Store.Write(ctx, fn)
}

// countingNotifier counts the sends inside Notify at once, and lets each
// one return only when the test says so.
type countingNotifier struct {
	ch      notifiers.Channel
	mu      sync.Mutex
	inside  int
	most    int
	sent    int
	proceed chan struct{}
	done    chan struct{} // a send returned (buffered)
}

func (n *countingNotifier) Channel() notifiers.Channel { return n.ch }

func (n *countingNotifier) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	n.mu.Lock()
	n.inside++
	n.most = max(n.most, n.inside)
	n.mu.Unlock()
	<-n.proceed
	n.mu.Lock()
	n.inside--
	n.sent++
	n.mu.Unlock()
	n.done <- struct{}{}
	return notifiers.Receipt{}, nil
}

func (n *countingNotifier) state() (inside, most, sent int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.inside, n.most, n.sent
}

// TestSlowRecordsDoNotHoldBackSends: at most MaxInFlight pages are with a
// channel's provider at once, and a page whose send returned waits for its
// durable record without holding a provider slot, so a slow disk does not
// stop the next pages going out.
func TestSlowRecordsDoNotHoldBackSends(t *testing.T) {
	const inFlight, pages = 2, 8 // 8: what the senders may hold unrecorded with 2 slots
	w := newWorld(t, defaultPolicy())
	gate := &gatedStore{Store: w.store, open: make(chan struct{})}
	gate.free.Store(pages) // the ingests: no send returns, so no result is recorded, before they are done
	n := &countingNotifier{ch: notifiers.Matrix, proceed: make(chan struct{}), done: make(chan struct{}, pages)}
	eng := escalation.New(escalation.Config{Store: gate, Rota: func() escalation.Rota { return w.rota },
		Notifiers: []notifiers.Notifier{n}, Clock: w.clock, MaxInFlight: inFlight, SendTimeout: time.Hour})
	defer eng.Wait()
	defer close(gate.open)
	defer close(n.proceed) // on failure, lets blocked sends return
	for i := range pages {
		if _, err := eng.Ingest(w.ctx, firing(fmt.Sprintf("g%d", i), "a")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		inside, most, sent := n.state()
		if most > inFlight {
			t.Fatalf("%d sends with the provider at once, want at most %d", most, inFlight)
		}
		if sent == pages {
			break
		}
		if inside == min(inFlight, pages-sent) {
			n.proceed <- struct{}{} // the provider answers one
			<-n.done
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pages sent while their records waited; %d with the provider", sent, pages, inside)
		}
		runtime.Gosched()
	}
}

// TestRunWakesForEarlierWork: Run sleeps until the earliest scheduled work.
// Work scheduled later than that need not wake it, but earlier work must: a
// page failing for a moment while Run sleeps until the next step (5 minutes
// away) is retried after its backoff (1 second), not at the step.
func TestRunWakesForEarlierWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, defaultPolicy())
		matrix := w.rec[notifiers.Matrix]
		failed := false
		matrix.FailWith(func(notifiers.Page) error {
			if !failed {
				failed = true
				return notifiers.Temporary("busy", 0, errors.New("try again"))
			}
			return nil
		})
		eng := escalation.New(escalation.Config{Store: w.store, Rota: func() escalation.Rota { return w.rota },
			Notifiers: []notifiers.Notifier{matrix}, Clock: escalation.RealClock{}})
		ctx, cancel := context.WithCancel(w.ctx)
		done := make(chan struct{})
		go func() { eng.Run(ctx); close(done) }()
		if _, err := eng.Ingest(ctx, firing("g", "a")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // the bubble's clock: the retry is due after 1 s
		synctest.Wait()
		if n := matrix.Count(notifiers.KindPage); n != 2 {
			t.Errorf("matrix asked %d times 3 s after a temporary failure, want 2 (the page and its retry)", n)
		}
		cancel()
		<-done
	})
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		hint time.Duration
		want time.Duration
	}{
		{0, 0, time.Second},
		{1, 0, time.Second},
		{2, 0, 2 * time.Second},
		{6, 0, 32 * time.Second},
		{7, 0, time.Minute},
		{40, 0, time.Minute},
		{1, 30 * time.Second, 30 * time.Second}, // the provider's Retry-After
		{1, time.Hour, 5 * time.Minute},
	} {
		if got := escalation.Backoff(tc.n, tc.hint); got != tc.want {
			t.Errorf("Backoff(%d, %s) = %s, want %s", tc.n, tc.hint, got, tc.want)
		}
	}
}
