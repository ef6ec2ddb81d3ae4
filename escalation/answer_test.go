package escalation_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// TestAnswerTable checks what each action does to an incident in each state:
// the outcome, the incident after it, its timeline entries, and the pages
// canceled, told and planned. An action refused changes nothing.
func TestAnswerTable(t *testing.T) {
	now := t0.Add(2 * time.Minute)
	alice := notifiers.Recipient{PersonID: "alice", Name: "Alice", Phone: "+15555550101", MatrixID: "@alice:test", PagerDutyUser: "alice@test.example"}
	// Step 1 paged alice on matrix (sent) and on the phone (still pending).
	pages := func(gen uint64) []escalation.PageRecord {
		return []escalation.PageRecord{
			{ID: "1-1", Incident: 1, Seq: 1, Kind: notifiers.KindPage, Channel: notifiers.Matrix, Recipient: alice, Generation: gen, Status: escalation.PageSent},
			{ID: "1-2", Incident: 1, Seq: 2, Kind: notifiers.KindPage, Channel: notifiers.Phone, Recipient: alice, Generation: gen, Status: escalation.PagePending},
		}
	}
	open := func() escalation.Incident {
		inc := escalation.Incident{ID: 1, State: escalation.Open, Alerts: firing("g", "a").Alerts,
			Escalation: escalation.Escalation{Policy: "default", Started: true, Generation: 1, StepAt: t0, NextAt: t0.Add(5 * time.Minute)}}
		return inc
	}
	acked := func() escalation.Incident {
		inc := open()
		inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = escalation.Acknowledged, t0.Add(time.Minute), "Bob", "sms"
		inc.Escalation.Generation, inc.Escalation.NextAt = 2, t0.Add(time.Minute+4*time.Hour)
		return inc
	}
	resolvedInc := func() escalation.Incident {
		inc := open()
		inc.State, inc.ResolvedAt = escalation.Resolved, t0.Add(time.Minute)
		inc.Escalation.Generation, inc.Escalation.NextAt = 2, time.Time{}
		return inc
	}
	exhausted := func() escalation.Incident {
		inc := open()
		inc.Escalation.Step, inc.Escalation.Exhausted, inc.Escalation.Fallback = 3, true, true
		return inc
	}
	type want struct {
		err     error // ErrNoChange, nil, or errOther
		applied bool
		message string
		state   escalation.State
		gen     uint64
		step    int
		ackedBy string
		events  []escalation.EventKind
		pages   []string // "<id or new> <kind> <channel> <status>"
	}
	errOther := errors.New("another error")
	// An open incident escalated moves to step 2: PagerDuty.
	escalated := want{applied: true, message: "Incident 1 escalated to the next step.", state: escalation.Open, gen: 2, step: 1,
		events: []escalation.EventKind{escalation.EvEscalated, escalation.EvEscalated, escalation.EvStep},
		pages:  []string{"new escalated matrix pending via matrix", "1-2 page phone canceled", "new page pagerduty pending"}}
	cases := []struct {
		name string
		inc  escalation.Incident
		act  escalation.Act
		want want
	}{
		{"ack open", open(), escalation.Act{Action: notifiers.Ack, By: "Alice", Via: "matrix"}, want{
			applied: true, message: "Incident 1 acknowledged by Alice.", state: escalation.Acknowledged, gen: 2, ackedBy: "Alice",
			events: []escalation.EventKind{escalation.EvAcknowledged},
			pages:  []string{"1-2 page phone canceled", "new acknowledged matrix pending via matrix"}}},
		{"ack acknowledged", acked(), escalation.Act{Action: notifiers.Ack, By: "Alice", Via: "matrix"}, want{
			err: escalation.ErrNoChange, message: "Incident 1 was already acknowledged by Bob."}},
		{"ack resolved", resolvedInc(), escalation.Act{Action: notifiers.Ack, By: "Alice", Via: "matrix"}, want{
			err: escalation.ErrNoChange, message: "Incident 1 is already resolved."}},
		{"unack acknowledged", acked(), escalation.Act{Action: notifiers.Unack, By: "Alice", Via: "api"}, want{
			applied: true, message: "Incident 1 un-acknowledged: paging again.", state: escalation.Open, gen: 3,
			events: []escalation.EventKind{escalation.EvUnack, escalation.EvStep},
			pages:  []string{"new unacknowledged matrix pending", "new page matrix pending"}}},
		{"unack open", open(), escalation.Act{Action: notifiers.Unack, By: "Alice", Via: "api"}, want{
			err: escalation.ErrNoChange, message: "Incident 1 is not acknowledged."}},
		{"unack resolved", resolvedInc(), escalation.Act{Action: notifiers.Unack, By: "Alice", Via: "api"}, want{
			err: escalation.ErrNoChange, message: "Incident 1 is not acknowledged."}},
		{"escalate open", open(), escalation.Act{Action: notifiers.Escalate, By: "Alice", Via: "matrix"}, escalated},
		{"escalate as of the current page", open(), escalation.Act{Action: notifiers.Escalate, By: "Alice", Via: "matrix", PageID: "1-1"}, escalated},
		{"escalate as of an older page", acked(), escalation.Act{Action: notifiers.Escalate, By: "Alice", Via: "matrix", PageID: "1-1"}, want{
			err: escalation.ErrNoChange, message: "Incident 1 has already moved on since that page."}},
		{"escalate acknowledged", acked(), escalation.Act{Action: notifiers.Escalate, By: "Alice", Via: "web"}, want{
			applied: true, message: "Incident 1 escalated to the next step.", state: escalation.Open, gen: 3, step: 1,
			events: []escalation.EventKind{escalation.EvEscalated, escalation.EvEscalated, escalation.EvStep},
			pages:  []string{"new escalated matrix pending", "1-2 page phone canceled", "new page pagerduty pending"}}},
		{"escalate exhausted", exhausted(), escalation.Act{Action: notifiers.Escalate, By: "Alice", Via: "api"}, want{
			applied: true, message: "Incident 1 has used up its policy: paging the fallback again now.", state: escalation.Open, gen: 2, step: 3,
			events: []escalation.EventKind{escalation.EvEscalated, escalation.EvRepaged},
			pages:  []string{"new escalated matrix pending", "1-2 page phone canceled", "new page matrix pending", "new page pagerduty pending"}}},
		{"escalate resolved", resolvedInc(), escalation.Act{Action: notifiers.Escalate, By: "Alice", Via: "api", PageID: "1-1"}, want{
			err: escalation.ErrNoChange, message: "Incident 1 is already resolved."}},
		{"resolve open", open(), escalation.Act{Action: notifiers.Resolve, By: "Alice", Via: "sms"}, want{
			applied: true, message: "Incident 1 resolved by Alice.", state: escalation.Resolved, gen: 2,
			events: []escalation.EventKind{escalation.EvResolved},
			pages:  []string{"1-2 page phone canceled", "new resolved matrix pending via sms"}}},
		{"resolve acknowledged", acked(), escalation.Act{Action: notifiers.Resolve, By: "Alice", Via: "api"}, want{
			applied: true, message: "Incident 1 resolved by Alice.", state: escalation.Resolved, gen: 3, ackedBy: "Bob",
			events: []escalation.EventKind{escalation.EvResolved},
			pages:  []string{"1-2 page phone canceled", "new resolved matrix pending"}}},
		{"resolve resolved", resolvedInc(), escalation.Act{Action: notifiers.Resolve, By: "Alice", Via: "api"}, want{
			err: escalation.ErrNoChange, message: "Incident 1 is already resolved."}},
		{"unknown action", open(), escalation.Act{Action: "snooze", By: "Alice", Via: "api"}, want{err: errOther}},
	}
	p := defaultPolicy()
	s := escalation.Situation{Policy: p, Rota: newRota(p), Now: now}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inc := tc.inc
			before := inc
			ch, out, err := escalation.Answer(&inc, pages(1), tc.act, s)
			switch {
			case tc.want.err == errOther && (err == nil || errors.Is(err, escalation.ErrNoChange)):
				t.Fatalf("err = %v, want an error of its own", err)
			case tc.want.err != errOther && !errors.Is(err, tc.want.err):
				t.Fatalf("err = %v, want %v", err, tc.want.err)
			}
			if out.Applied != tc.want.applied || out.Message != tc.want.message || out.Incident != 1 || out.By != tc.act.By {
				t.Errorf("outcome = %+v, want applied=%v message %q by %s", out, tc.want.applied, tc.want.message, tc.act.By)
			}
			if !tc.want.applied {
				if !reflect.DeepEqual(inc, before) || !ch.Empty() {
					t.Errorf("refused, yet changed:\n incident %+v\n change %+v", inc, ch)
				}
				return
			}
			if inc.State != tc.want.state || inc.Escalation.Generation != tc.want.gen || inc.Escalation.Step != tc.want.step || inc.AckedBy != tc.want.ackedBy {
				t.Errorf("incident %s generation %d step %d acked by %q, want %s %d %d %q",
					inc.State, inc.Escalation.Generation, inc.Escalation.Step, inc.AckedBy, tc.want.state, tc.want.gen, tc.want.step, tc.want.ackedBy)
			}
			var kinds []escalation.EventKind
			for _, ev := range ch.Events {
				if ev.Kind != escalation.EvSkipped && ev.Kind != escalation.EvNote {
					kinds = append(kinds, ev.Kind)
				}
			}
			if !slices.Equal(kinds, tc.want.events) {
				t.Errorf("events %v, want %v", kinds, tc.want.events)
			}
			if ev := ch.Events[0]; ev.Actor != tc.act.By || ev.Channel != tc.act.Via || ev.PageID != tc.act.PageID || !ev.At.Equal(now) {
				t.Errorf("first event %+v does not name the act %+v", ev, tc.act)
			}
			var got []string
			for _, p := range ch.Pages {
				id := p.ID
				if id == "" {
					id = "new"
				}
				line := fmt.Sprintf("%s %s %s %s", id, p.Kind, p.Channel, p.Status)
				if p.Via != "" {
					line += " via " + string(p.Via)
				}
				got = append(got, line)
			}
			if !slices.Equal(got, tc.want.pages) {
				t.Errorf("pages\n %q\nwant\n %q", got, tc.want.pages)
			}
		})
	}
}
