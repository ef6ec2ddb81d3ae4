package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

const twilioToken = "e2eTwilioAuthToken0123456789abcd"

// phoneKlaxon starts klaxon serve paging through the fake Twilio with steps.
func phoneKlaxon(t *testing.T, tw *faketwilio.Server, steps string) *harness.Klaxon {
	t.Helper()
	addr := harness.FreeAddr(t)
	return harness.StartKlaxon(t, harness.KlaxonConfig{
		Listen: addr,
		Rota:   writeRota(t, "example.org", steps),
		Env: []string{
			"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(),
			"KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
			"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom,
			"KLAXON_TWILIO_API_URL=" + tw.URL(),
			"KLAXON_PUBLIC_URL=http://" + addr,
		},
	})
}

// phoneWorld skips under -short, and starts a fake Twilio and a klaxon serve
// paging through it with the default policy's steps.
func phoneWorld(t *testing.T, steps string) (*faketwilio.Server, *harness.Klaxon) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	tw := faketwilio.New(t, twilioToken)
	return tw, phoneKlaxon(t, tw, steps)
}

func fire(t testing.TB, k *harness.Klaxon, group string) {
	t.Helper()
	if code, err := k.Do(context.Background(), "POST", "/webhook/alertmanager", webhookBody(group), nil); err != nil || code != 200 {
		t.Fatalf("webhook: %d %v", code, err)
	}
}

func waitState(t *testing.T, k *harness.Klaxon, id uint64, state string) incidentJSON {
	t.Helper()
	var inc incidentJSON
	harness.Eventually(t, 15*time.Second, func() (bool, string) {
		inc = getIncident(t, k, id)
		return inc.State == state, "incident is " + inc.State
	})
	return inc
}

func TestPhonePress1Acknowledges(t *testing.T) {
	tw, k := phoneWorld(t, `
      - {notify: primary, via: phone, wait: 1h}
      - {notify: secondary, via: phone, wait: 1h}`)
	fire(t, k, "phone-1")
	call := tw.Phone("+15555550101").ExpectCall(t)
	said := call.Answer()
	if !strings.Contains(said, "Incident 1") || !strings.Contains(strings.ToLower(said), "press 1 to acknowledge") {
		t.Fatalf("the call said %q", said)
	}
	if reply := call.Press("1"); !strings.Contains(reply, "acknowledged") {
		t.Fatalf("after pressing 1 the call said %q", reply)
	}
	inc := waitState(t, k, 1, "acknowledged")
	if inc.AckedBy != "Alice Archer" || !timelineHas(inc, "via phone") {
		t.Fatalf("acknowledged by %q; timeline %+v", inc.AckedBy, inc.Timeline)
	}
	if time.Until(inc.Escalation.NextAt) < time.Hour {
		t.Fatal("escalation did not stop at the acknowledgement")
	}
	if n := tw.Phone("+15555550102").PendingCalls(); n != 0 {
		t.Fatalf("the secondary got %d calls after the ack", n)
	}
}

func TestPhonePress2EscalatesNow(t *testing.T) {
	tw, k := phoneWorld(t, `
      - {notify: primary, via: phone, wait: 1h}
      - {notify: secondary, via: phone, wait: 1h}`)
	fire(t, k, "phone-2")
	call := tw.Phone("+15555550101").ExpectCall(t)
	call.Answer()
	call.Press("2")
	// Bob's phone rings now, not in an hour.
	bob := tw.Phone("+15555550102").ExpectCall(t)
	if said := bob.Answer(); !strings.Contains(said, "Incident 1") {
		t.Fatalf("the secondary's call said %q", said)
	}
}

func TestPhoneNoAnswerAndVoicemailDoNotAcknowledge(t *testing.T) {
	tw, k := phoneWorld(t, `
      - {notify: primary, via: phone, wait: 3s}
      - {notify: secondary, via: phone, wait: 1h}`)
	fire(t, k, "phone-3")
	tw.Phone("+15555550101").ExpectCall(t).Voicemail()
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		inc := getIncident(t, k, 1)
		return timelineHas(inc, "no-answer"), "voicemail not in the timeline"
	})
	if inc := getIncident(t, k, 1); inc.State != "open" {
		t.Fatalf("voicemail left the incident %s", inc.State)
	}
	// After the step's wait, the next step calls Bob, who does not answer.
	tw.Phone("+15555550102").ExpectCall(t).NoAnswer()
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		inc := getIncident(t, k, 1)
		return strings.Count(textOf(inc), "no-answer") >= 2, textOf(inc)
	})
}

func textOf(inc incidentJSON) string {
	var b strings.Builder
	for _, e := range inc.Timeline {
		b.WriteString(e.Text + "\n")
	}
	return b.String()
}

func TestSMSReplyAcknowledges(t *testing.T) {
	tw, k := phoneWorld(t, `
      - {notify: primary, via: sms, wait: 1h}`)
	tw.SetSMSURL(faketwilio.DefaultFrom, k.URL()+"/webhook/twilio/sms")
	fire(t, k, "sms-1")
	alice := tw.Phone("+15555550101")
	msg := alice.ExpectSMS(t)
	if !strings.Contains(msg.Body, "1") || !strings.Contains(strings.ToLower(msg.Body), "reply") {
		t.Fatalf("text %q lacks the reply codes", msg.Body)
	}
	// A stranger's reply is refused.
	if reply := tw.Phone("+15555550199").SendSMS(faketwilio.DefaultFrom, "1"); !strings.Contains(strings.ToLower(reply), "not on the rota") {
		t.Fatalf("a stranger's reply was answered %q", reply)
	}
	alice.ReplySMS("1")
	waitState(t, k, 1, "acknowledged")
}

func TestTwilioSuspendedMovesOnAtOnce(t *testing.T) {
	tw, k := phoneWorld(t, `
      - {notify: primary, via: phone, wait: 1h}
      - {notify: secondary, via: sms, wait: 1h}`)
	tw.SetAccountStatus("suspended")
	fire(t, k, "phone-4")
	harness.Eventually(t, 15*time.Second, func() (bool, string) {
		inc := getIncident(t, k, 1)
		return timelineHas(inc, "every page of step 1 failed: escalating at once"), textOf(inc)
	})
	if strings.Contains(k.Logs(), twilioToken) {
		t.Fatal("the Twilio auth token appears in Klaxon's log")
	}
}
