package escalation_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
)

// confirming is a recording channel that promises a confirmation within d.
type confirming struct {
	*recorder.Recorder
	d time.Duration
}

func (c confirming) ConfirmWithin() time.Duration { return c.d }

// deliveries records what the engine tells OnDelivery.
type deliveries struct {
	mu  sync.Mutex
	got []escalation.Delivery
}

func (d *deliveries) add(x escalation.Delivery) { d.mu.Lock(); d.got = append(d.got, x); d.mu.Unlock() }
func (d *deliveries) list() []escalation.Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]escalation.Delivery(nil), d.got...)
}

// confirmWorld is a world whose Matrix channel confirms within 30 s.
func confirmWorld(t *testing.T) (*world, *deliveries) {
	d := &deliveries{}
	w := newWorldWith(t, defaultPolicy(), nil)
	w.tweak = func(c *escalation.Config) {
		for i, n := range c.Notifiers {
			if n.Channel() == notifiers.Matrix {
				c.Notifiers[i] = confirming{w.rec[notifiers.Matrix], 30 * time.Second}
			}
		}
		c.OnDelivery = d.add
	}
	w.store.Close()
	w.open()
	return w, d
}

func (w *world) page(id uint64, ch notifiers.Channel) escalation.PageRecord {
	w.t.Helper()
	pages, err := w.store.Pages(w.ctx, id)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, p := range pages {
		if p.Kind == notifiers.KindPage && p.Channel == ch {
			return p
		}
	}
	w.t.Fatalf("no %s page for incident %d", ch, id)
	return escalation.PageRecord{}
}

// TestUnconfirmedPageMovesStepOnAtItsDeadline: a Matrix page accepted but
// not seen back within its 30 s deadline becomes unconfirmed, the timeline
// says so in words, and the policy's next step pages at once instead of
// after the step's 5 minutes.
func TestUnconfirmedPageMovesStepOnAtItsDeadline(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "running", true: "across a restart"}[restart], func(t *testing.T) {
			w, d := confirmWorld(t)
			w.ingest(firing("g", "a"))
			p := w.page(1, notifiers.Matrix)
			if p.Status != escalation.PageSent || !p.ConfirmBy.Equal(t0.Add(30*time.Second)) {
				t.Fatalf("matrix page %s, confirm by %s: want sent, due at +30s", p.Status, p.ConfirmBy)
			}
			if restart {
				w.restart()
			}
			w.advance(29 * time.Second)
			if got := w.paged(); len(got) != 1 {
				t.Fatalf("paged %v before the deadline: want matrix only", got)
			}
			w.advance(time.Second)
			if got := w.page(1, notifiers.Matrix).Status; got != escalation.PageUnconfirmed {
				t.Fatalf("matrix page %s at its deadline, want unconfirmed", got)
			}
			if got := w.paged(); len(got) != 2 || got[1] != "pagerduty:alice" {
				t.Fatalf("paged %v at the deadline: want the next step (pagerduty) at once\n%s", got, w.timeline(1))
			}
			tl := w.timeline(1)
			for _, want := range []string{"posted to Matrix but not seen back within 30 s: the homeserver may not be delivering",
				"no page of step 1 was delivered (failed, or not confirmed in time): escalating at once"} {
				if !strings.Contains(tl, want) {
					t.Errorf("timeline lacks %q:\n%s", want, tl)
				}
			}
			got := d.list()
			if len(got) != 1 || got[0].Confirmed || got[0].Channel != notifiers.Matrix || got[0].Cause != escalation.CauseDeadline {
				t.Fatalf("deliveries %+v: want one unconfirmed matrix page (deadline)", got)
			}
		})
	}
}

// TestConfirmedPageHoldsItsStep: a page confirmed before its deadline is
// delivered; the step waits its time as before and the confirmation is
// reported with how long it took.
func TestConfirmedPageHoldsItsStep(t *testing.T) {
	w, d := confirmWorld(t)
	w.ingest(firing("g", "a"))
	w.advance(4 * time.Second)
	p := w.rec[notifiers.Matrix].Pages()[0]
	if err := w.eng.Report(w.ctx, notifiers.Report{PageID: p.ID, Channel: notifiers.Matrix, Status: notifiers.Delivered}); err != nil {
		t.Fatal(err)
	}
	w.advance(4*time.Minute + 50*time.Second)
	if got := w.paged(); len(got) != 1 {
		t.Fatalf("paged %v within the step's wait: a confirmed page holds it", got)
	}
	if got := w.page(1, notifiers.Matrix).Status; got != escalation.PageDeliv {
		t.Fatalf("matrix page %s, want delivered", got)
	}
	got := d.list()
	if len(got) != 1 || !got[0].Confirmed || got[0].Took != 4*time.Second {
		t.Fatalf("deliveries %+v: want one confirmation after 4s", got)
	}
	w.advance(10 * time.Second)
	if got := w.paged(); len(got) != 2 {
		t.Fatalf("paged %v after the step's wait", got)
	}
}

// TestUnconfirmedReport: a channel's own word that a page reached nobody
// moves the step on at once; a cause about the person stays theirs.
func TestUnconfirmedReport(t *testing.T) {
	for _, recipient := range []bool{false, true} {
		t.Run(map[bool]string{false: "channel", true: "recipient"}[recipient], func(t *testing.T) {
			w, d := confirmWorld(t)
			var person []string
			w.tweak2(func(c *escalation.Config) {
				c.OnRecipient = func(who string, ch notifiers.Channel, err error) {
					if err != nil {
						person = append(person, who+":"+string(ch))
					}
				}
			})
			w.ingest(firing("g", "a"))
			p := w.rec[notifiers.Matrix].Pages()[0]
			if err := w.eng.Report(w.ctx, notifiers.Report{PageID: p.ID, Channel: notifiers.Matrix, Status: notifiers.Unconfirmed,
				Recipient: recipient, Detail: "nobody was notified"}); err != nil {
				t.Fatal(err)
			}
			if got := w.paged(); len(got) != 2 {
				t.Fatalf("paged %v: want the next step at once", got)
			}
			got := d.list()
			if recipient {
				if len(got) != 0 || len(person) != 1 || person[0] != "alice:matrix" {
					t.Fatalf("deliveries %+v, person %v: a cause about alice is hers", got, person)
				}
				return
			}
			if len(got) != 1 || got[0].Confirmed || got[0].Cause != escalation.CauseReported || got[0].Reason != "nobody was notified" {
				t.Fatalf("deliveries %+v", got)
			}
			// A late confirmation still moves the page on (states only move forward).
			if err := w.eng.Report(w.ctx, notifiers.Report{PageID: p.ID, Channel: notifiers.Matrix, Status: notifiers.Delivered}); err != nil {
				t.Fatal(err)
			}
			if got := w.page(1, notifiers.Matrix).Status; got != escalation.PageDeliv {
				t.Fatalf("late confirmation left the page %s", got)
			}
		})
	}
}

// tweak2 adds more to the world's tweak and reopens the engine.
func (w *world) tweak2(f func(*escalation.Config)) {
	old := w.tweak
	w.tweak = func(c *escalation.Config) { old(c); f(c) }
	w.store.Close()
	w.open()
}

// TestUnconfirmedReportAfterTheDeadlineKeepsTheReason: the engine's own
// deadline marks a page unconfirmed a moment before the channel's report
// (same deadline, a REST round trip later). The channel's reason is still
// kept on the page and said in the timeline; the state, the escalation and
// the one Delivery the deadline told stay as they were, and a retried
// report changes nothing.
func TestUnconfirmedReportAfterTheDeadlineKeepsTheReason(t *testing.T) {
	w, d := confirmWorld(t)
	w.ingest(firing("g", "a"))
	p := w.rec[notifiers.Matrix].Pages()[0]
	w.advance(30 * time.Second)
	if got := w.paged(); len(got) != 2 {
		t.Fatalf("paged %v at the deadline: want the next step", got)
	}
	const why = "PagerDuty triggered incident #7 but assigned it to nobody: nobody on call"
	for range 2 {
		if err := w.eng.Report(w.ctx, notifiers.Report{PageID: p.ID, Channel: notifiers.Matrix, Status: notifiers.Unconfirmed, Detail: why}); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.page(1, notifiers.Matrix); got.Status != escalation.PageUnconfirmed || got.LastError != why {
		t.Fatalf("page %s (%q): want unconfirmed with the channel's reason", got.Status, got.LastError)
	}
	if tl := w.timeline(1); strings.Count(tl, why) != 1 {
		t.Fatalf("timeline says the channel's reason %d times, want once:\n%s", strings.Count(tl, why), tl)
	}
	if got := w.paged(); len(got) != 2 {
		t.Fatalf("paged %v: the late report moved the policy again", got)
	}
	if got := d.list(); len(got) != 1 || got[0].Cause != escalation.CauseDeadline {
		t.Fatalf("deliveries %+v: want only the deadline's", got)
	}
}
