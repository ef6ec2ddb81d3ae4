package escalation_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// TestPagerDutyAnswersOnlyFromTheRota: an acknowledgement or resolution made
// in PagerDuty counts only when it comes from a rota person (by user id, or
// by the email looked up for it); a stranger's is recorded and escalation
// goes on, unless the policy says pagerduty_acks: anyone.
func TestPagerDutyAnswersOnlyFromTheRota(t *testing.T) {
	tests := []struct {
		name    string
		anyone  bool
		resp    notifiers.Response
		taken   bool
		ackedBy string
	}{
		{"stranger ack", false, notifiers.Response{Action: notifiers.Ack, From: "PMALLORY", Name: "Mallory"}, false, ""},
		{"stranger resolve", false, notifiers.Response{Action: notifiers.Resolve, From: "PMALLORY", Name: "Mallory"}, false, ""},
		{"rota person by email alias", false, notifiers.Response{Action: notifiers.Ack, From: "PALICE1", Alias: "alice@test.example", Name: "A. PD"}, true, "Alice"},
		{"rota person by id", false, notifiers.Response{Action: notifiers.Ack, From: "alice@test.example"}, true, "Alice"},
		{"stranger ack, anyone may", true, notifiers.Response{Action: notifiers.Ack, From: "PMALLORY", Name: "Mallory"}, true, "Mallory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := defaultPolicy()
			p.PagerDutyAcksAnyone = tt.anyone
			w := newWorld(t, p)
			w.ingest(firing("g", "a"))
			r := tt.resp
			r.IncidentKey, r.Channel = "klaxon-1", notifiers.PagerDuty
			out, err := w.eng.Respond(w.ctx, r)
			inc := w.incident(1)
			if !tt.taken {
				if !errors.Is(err, notifiers.ErrNotOnRota) {
					t.Fatalf("err = %v, want ErrNotOnRota", err)
				}
				if inc.State != escalation.Open {
					t.Fatalf("a stranger's PagerDuty %s took effect: %s", r.Action, inc.State)
				}
				tl, _ := w.store.Timeline(w.ctx, 1)
				if last := tl[len(tl)-1]; last.Kind != escalation.EvIgnored || !strings.Contains(last.Text, "Mallory, who is not on the rota") {
					t.Fatalf("not recorded in the timeline: %+v", last)
				}
				before := len(w.paged())
				w.advance(6 * time.Minute)
				if len(w.paged()) <= before {
					t.Fatal("escalation stopped after a stranger's answer")
				}
				return
			}
			if err != nil || !out.Applied {
				t.Fatalf("Respond = %+v, %v", out, err)
			}
			if inc.State != escalation.Acknowledged || inc.AckedBy != tt.ackedBy {
				t.Fatalf("incident %s by %q, want acknowledged by %q", inc.State, inc.AckedBy, tt.ackedBy)
			}
		})
	}
}
