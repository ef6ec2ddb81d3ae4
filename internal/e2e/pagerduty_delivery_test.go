package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// pdConfirmWithin is the PagerDuty confirmation deadline the tests give
// Klaxon: the smallest it accepts (the default is 2 min).
const pdConfirmWithin = 10 * time.Second

// pdStepWait is the PagerDuty step's own wait: long, so that a phone call
// well before it can only be the unconfirmed page moving the policy on.
const pdStepWait = 10 * time.Minute

// pdWorld is a klaxon serve paging PagerDuty (the fake, confirming within
// pdConfirmWithin) for pdStepWait, then the phone (the fake Twilio) for
// an hour; Klaxon's own alarms are texted.
type pdWorld struct {
	pd *fakepagerduty.Server
	tw *faketwilio.Server
	k  *harness.Klaxon
}

func startPDWorld(t *testing.T, setup func(pd *fakepagerduty.Server)) *pdWorld {
	t.Helper()
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	pd := fakepagerduty.New(t)
	setup(pd)
	tw := faketwilio.New(t, twilioToken)
	addr := harness.FreeAddr(t)
	env := append(pagerdutyEnv(pd, ""),
		"KLAXON_PAGERDUTY_CONFIRM_WITHIN="+pdConfirmWithin.String(),
		"KLAXON_TWILIO_ACCOUNT_SID="+tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN="+twilioToken,
		"KLAXON_TWILIO_FROM="+faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL="+tw.URL(), "KLAXON_PUBLIC_URL=http://"+addr)
	rota := writeRotaSelftest(t, "example.org", fmt.Sprintf(`
      - {notify: primary, via: pagerduty, wait: %s}
      - {notify: primary, via: phone, wait: 1h}`, pdStepWait), `
      - {notify: primary, via: sms, wait: 1h}`)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Rota: rota, Env: env})
	return &pdWorld{pd: pd, tw: tw, k: k}
}

// post fires an incident for group and returns when Klaxon took it.
func (w *pdWorld) post(t *testing.T, group string) {
	t.Helper()
	if code, err := w.k.Do(context.Background(), "POST", "/webhook/alertmanager", webhookBody(group), nil); err != nil || code != 200 {
		t.Fatalf("webhook %s: %d %v", group, code, err)
	}
}

// incident returns the incident for group, with its timeline.
func (w *pdWorld) incident(t *testing.T, group string) incidentJSON {
	t.Helper()
	for _, i := range incidents(t, w.k, "") {
		if i.GroupKey == group {
			return getIncident(t, w.k, i.ID)
		}
	}
	return incidentJSON{}
}

// pageUnconfirmedMovesOn fires an incident for group and checks that the
// phone rings at the PagerDuty page's confirmation deadline, not at the
// step's wait, and that the timeline says why in words (want).
func (w *pdWorld) pageUnconfirmedMovesOn(t *testing.T, group string, want ...string) {
	t.Helper()
	start := time.Now()
	w.post(t, group)
	alice := w.tw.Phone("+15555550101")
	// The fake's ExpectCall waits less than the deadline: wait for the
	// ring here, with the deadline and slack.
	harness.Eventually(t, pdConfirmWithin+deliverySlack, func() (bool, string) {
		return alice.PendingCalls() > 0, "the phone has not rung"
	})
	took := time.Since(start)
	call := alice.ExpectCall(t)
	call.NoAnswer()
	if took > pdConfirmWithin+deliverySlack {
		t.Fatalf("the phone rang %s after the page, want within %s + %s (the step waits %s)", took, pdConfirmWithin, deliverySlack, pdStepWait)
	}
	inc := w.incident(t, group)
	if !timelineHas(inc, "via pagerduty: sent") {
		t.Fatalf("PagerDuty was not paged:\n%s", textOf(inc))
	}
	if took < pdConfirmWithin-time.Second {
		t.Fatalf("the phone rang %s after the page, before PagerDuty's %s to confirm it:\n%s", took, pdConfirmWithin, textOf(inc))
	}
	for _, s := range append([]string{"via pagerduty: unconfirmed", "no page of step 1 was delivered (failed, or not confirmed in time): escalating at once"}, want...) {
		if !timelineHas(inc, s) {
			t.Fatalf("timeline lacks %q:\n%s", s, textOf(inc))
		}
	}
}

// TestPagerDutyNotifiesNobody: PagerDuty accepts the trigger (202) and
// opens the incident, but the service's escalation policy has nobody on
// call. The page is unconfirmed at its 10 s deadline, the phone rings then
// instead of after the step's 10 minutes, and the timeline says why.
func TestPagerDutyNotifiesNobody(t *testing.T) {
	w := startPDWorld(t, func(pd *fakepagerduty.Server) { pd.SetOnCall(fakepagerduty.DefaultServiceID) })
	w.pageUnconfirmedMovesOn(t, "pd-nobody", "assigned it to nobody and notified nobody", "its escalation policy has nobody on call")
	if key := pdKey(w.pd, 1); key == "" || len(w.pd.LogEntries(key)) == 0 {
		t.Fatalf("PagerDuty logged nothing for the page (key %q)", key)
	}
}

// TestPagerDutyNoContactMethods: the incident is assigned to a user who has
// no contact methods, so PagerDuty notifies nobody. The same: the phone
// rings at the deadline, and the timeline names the user and the likely cause.
func TestPagerDutyNoContactMethods(t *testing.T) {
	w := startPDWorld(t, func(pd *fakepagerduty.Server) {
		pd.AddUser(fakepagerduty.User{ID: "PMUTE01", Name: "Mute Mallory", Email: "mallory@example.org", NoContactMethods: true})
		pd.SetOnCall(fakepagerduty.DefaultServiceID, "PMUTE01")
	})
	w.pageUnconfirmedMovesOn(t, "pd-mute", "assigned it to Mute Mallory, but notified nobody", "no contact methods")
}

// TestPagerDutyDegradedAndHeals: two unconfirmed PagerDuty pages in a row
// make the channel degraded ("accepts pages but does not deliver them") in
// GET /api/v1/channels, and an alarm names PagerDuty. When PagerDuty
// notifies somebody again, the next page is confirmed, and the degraded
// state and the alarm clear by themselves.
func TestPagerDutyDegradedAndHeals(t *testing.T) {
	w := startPDWorld(t, func(pd *fakepagerduty.Server) { pd.SetOnCall(fakepagerduty.DefaultServiceID) })
	pagerdutyChannel := func() string {
		t.Helper()
		var status struct {
			Channels []struct{ Channel, Status, Reason string }
		}
		if code, err := w.k.Do(context.Background(), "GET", "/api/v1/channels", nil, &status); err != nil || code != 200 {
			t.Fatalf("channels: %d %v", code, err)
		}
		for _, c := range status.Channels {
			if c.Channel == "pagerduty" {
				return c.Status + ": " + c.Reason
			}
		}
		return fmt.Sprintf("no pagerduty channel in %+v", status.Channels)
	}
	pdAlarm := func() incidentJSON {
		t.Helper()
		var out struct{ Incidents []incidentJSON }
		if code, err := w.k.Do(context.Background(), "GET", "/api/v1/incidents", nil, &out); err != nil || code != 200 {
			t.Fatalf("listing incidents: %d %v", code, err)
		}
		for _, inc := range out.Incidents {
			if strings.HasPrefix(inc.GroupKey, "klaxon-alarm:") && strings.Contains(inc.Title, "PagerDuty") && inc.State != "resolved" {
				return inc
			}
		}
		return incidentJSON{}
	}

	// One unconfirmed page is not yet a pattern.
	w.pageUnconfirmedMovesOn(t, "pd-first")
	if s := pagerdutyChannel(); strings.Contains(s, "does not deliver") {
		t.Fatalf("one unconfirmed page made PagerDuty %s", s)
	}
	// The second in a row is.
	w.pageUnconfirmedMovesOn(t, "pd-second")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		s := pagerdutyChannel()
		return strings.HasPrefix(s, "degraded: ") && strings.Contains(s, "accepts pages but does not deliver them"), "pagerduty is " + s
	})
	var alarm incidentJSON
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		alarm = pdAlarm()
		return alarm.ID != 0, "no open alarm names PagerDuty"
	})
	if !strings.Contains(alarm.Title, "accepts pages but does not deliver them") {
		t.Fatalf("alarm title %q", alarm.Title)
	}
	if sms := w.tw.Phone("+15555550101").ExpectSMS(t); !strings.Contains(sms.Body, "PagerDuty") {
		t.Fatalf("the alarm's text says %q", sms.Body)
	}

	// PagerDuty notifies somebody again: the next page is confirmed, and
	// the channel and the alarm clear.
	w.pd.SetOnCall(fakepagerduty.DefaultServiceID, fakepagerduty.DefaultUserID)
	w.post(t, "pd-healed")
	harness.Eventually(t, pdConfirmWithin+deliverySlack, func() (bool, string) {
		inc := w.incident(t, "pd-healed")
		return timelineHas(inc, "via pagerduty: delivered"), textOf(inc)
	})
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		s := pagerdutyChannel()
		return !strings.Contains(s, "does not deliver"), "pagerduty is still " + s
	})
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		a := getIncident(t, w.k, alarm.ID)
		return a.State == "resolved", "alarm " + a.State + ":\n" + textOf(a)
	})
	if strings.Contains(w.k.Logs(), w.pd.APIToken()) || strings.Contains(w.k.Logs(), w.pd.RoutingKey()) {
		t.Fatal("a PagerDuty secret appears in Klaxon's log")
	}
}
