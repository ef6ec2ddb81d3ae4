package e2e

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// rawPost posts body to Klaxon with the given headers and returns the status.
func rawPost(t *testing.T, u string, body []byte, headers map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func pdTriggers(pd *fakepagerduty.Server) int {
	n := 0
	for _, e := range pd.Events() {
		if e.Action == "trigger" {
			n++
		}
	}
	return n
}

// TestPagerDutyReplayAndForgery, through klaxon serve: a stranger's
// PagerDuty ack is recorded but escalation goes on; a rota person named by
// email in rota.yaml is matched through the REST API; a captured signed
// acknowledgement replayed after a restart changes nothing; an old event, a
// tampered body and a body signed with another secret change nothing either.
func TestPagerDutyReplayAndForgery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	pd := fakepagerduty.New(t)
	pd.AddUser(fakepagerduty.User{ID: "PALICE1", Name: "Alice Archer", Email: "alice@example.org"})
	pd.AddUser(fakepagerduty.User{ID: "PMALLORY", Name: "Mallory", Email: "mallory@example.org"})
	rota := writeRota(t, "example.org", `
      - {notify: primary, via: pagerduty, wait: 2s}
      - {notify: secondary, via: pagerduty, wait: 1h}`)
	b, _ := os.ReadFile(rota)
	os.WriteFile(rota, bytes.Replace(b, []byte("pagerduty: PALICE1"), []byte("pagerduty: alice@example.org"), 1), 0o600)
	const secret = "whsec-forgery-e2e"
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Rota: rota, Env: pagerdutyEnv(pd, secret)})
	pd.SetWebhook(k.URL()+"/webhook/pagerduty", secret)
	fire(t, k, "pd-forgery")
	harness.Eventually(t, defaultWait, func() (bool, string) {
		return pdKey(pd, 1) != "", "no PagerDuty incident yet"
	})
	key := pdKey(pd, 1) // "klaxon-<installation>-1"

	// A PagerDuty user who is not on the rota acknowledges: recorded, not taken.
	if d, err := pd.Acknowledge(key, "PMALLORY"); err != nil || d.Status != 202 {
		t.Fatalf("stranger's ack delivery: %+v %v", d, err)
	}
	inc := getIncident(t, k, 1)
	if inc.State != "open" || !timelineHas(inc, "Mallory, who is not on the rota") {
		t.Fatalf("after a stranger's ack: %s, timeline %s", inc.State, textOf(inc))
	}
	harness.Eventually(t, defaultWait, func() (bool, string) {
		return pdTriggers(pd) >= 2, "escalation did not go on to the next step"
	})

	// Alice, named by email in rota.yaml, acknowledges with her user id.
	ack, err := pd.Acknowledge(key, "PALICE1")
	if err != nil || ack.Status != 202 {
		t.Fatalf("alice's ack delivery: %+v %v", ack, err)
	}
	inc = waitState(t, k, 1, "acknowledged")
	if inc.AckedBy != "Alice Archer" {
		t.Fatalf("acknowledged by %q", inc.AckedBy)
	}

	// Withdraw it, restart, and replay the captured signed acknowledgement.
	if code, err := k.Do(context.Background(), "POST", "/api/v1/incidents/1/unack", nil, nil); err != nil || code != 200 {
		t.Fatalf("unack: %d %v", code, err)
	}
	k.Stop()
	k.Restart()
	pd.SetWebhook(k.URL()+"/webhook/pagerduty", secret)
	if d, err := pd.Redeliver(ack.EventID); err != nil || d.Status != 202 {
		t.Fatalf("replay: %+v %v", d, err)
	}
	if inc := getIncident(t, k, 1); inc.State != "open" {
		t.Fatalf("a replayed acknowledgement after a restart made the incident %s", inc.State)
	}

	hook := k.URL() + "/webhook/pagerduty"
	forged := bytes.Replace(ack.Body, []byte(ack.EventID), []byte(ack.EventID+"X"), 1)
	for _, tc := range []struct {
		name string
		body []byte
		sig  string
		want int
	}{
		{"tampered body, original signature", forged, ack.Signature, 403},
		{"signed with another secret", forged, fakepagerduty.Sign(forged, "not-the-secret"), 403},
		{"no signature", forged, "", 400},
	} {
		if got := rawPost(t, hook, tc.body, map[string]string{"Content-Type": "application/json", "X-PagerDuty-Signature": tc.sig}); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// An old (2h) but correctly signed event is ignored.
	pd.SetClock(func() time.Time { return time.Now().Add(-2 * time.Hour) })
	if d, err := pd.Acknowledge(key, "PALICE1"); err != nil || d.Status != 202 {
		t.Fatalf("old event delivery: %+v %v", d, err)
	}
	if inc := getIncident(t, k, 1); inc.State != "open" {
		t.Fatalf("a 2-hour-old event made the incident %s", inc.State)
	}
	if !strings.Contains(k.Logs(), "too old to be a retry") {
		t.Error("the old event was not recognised as too old")
	}
}

// TestTwilioForgeryAndReplay, through klaxon serve: a callback signed for
// another URL, or with parameters changed after signing, is refused; the
// same parameters in another order are accepted (Twilio signs them sorted);
// a captured "press 1" replayed, even after a restart, acknowledges nothing.
func TestTwilioForgeryAndReplay(t *testing.T) {
	tw, k := phoneWorld(t, `
      - {notify: primary, via: phone, wait: 1h}`)
	fire(t, k, "tw-forgery")
	call := tw.Phone("+15555550101").ExpectCall(t)
	call.Answer()
	call.Press("1")
	var press *faketwilio.Callback
	for _, cb := range call.Callbacks() {
		if strings.Contains(cb.URL, "/gather") && cb.Params.Get("Digits") == "1" {
			press = cb
		}
	}
	if press == nil {
		t.Fatal("no gather callback for the keypress")
	}
	waitState(t, k, 1, "acknowledged")
	if code, err := k.Do(context.Background(), "POST", "/api/v1/incidents/1/unack", nil, nil); err != nil || code != 200 {
		t.Fatalf("unack: %d %v", code, err)
	}
	if again := tw.Resend(press); again.Status != 200 || !strings.Contains(again.Body, "<Response") {
		t.Fatalf("replayed keypress answered %d", again.Status)
	}
	if inc := getIncident(t, k, 1); inc.State != "open" {
		t.Fatalf("a replayed keypress made the incident %s", inc.State)
	}
	k.Stop()
	k.Restart()
	tw.Resend(press)
	if inc := getIncident(t, k, 1); inc.State != "open" {
		t.Fatalf("a keypress replayed after a restart made the incident %s", inc.State)
	}

	smsURL := k.URL() + "/webhook/twilio/sms"
	form := url.Values{"From": {"+15555550199"}, "To": {faketwilio.DefaultFrom}, "Body": {"1"}, "MessageSid": {faketwilio.NewSID("SM")}, "AccountSid": {tw.AccountSID()}}
	sig := faketwilio.Signature(twilioToken, smsURL, form)
	post := func(body, sig string) int {
		return rawPost(t, smsURL, []byte(body), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig})
	}
	reordered := "Body=1&To=" + url.QueryEscape(faketwilio.DefaultFrom) + "&AccountSid=" + tw.AccountSID() +
		"&MessageSid=" + form.Get("MessageSid") + "&From=" + url.QueryEscape("+15555550199")
	if got := post(reordered, sig); got != 200 {
		t.Errorf("the same parameters in another order: %d, want 200", got)
	}
	swapped := url.Values{"From": {faketwilio.DefaultFrom}, "To": {"+15555550199"}, "Body": {"1"}, "MessageSid": form["MessageSid"], "AccountSid": form["AccountSid"]}
	if got := post(swapped.Encode(), sig); got != 403 {
		t.Errorf("parameters changed after signing: %d, want 403", got)
	}
	if got := post(form.Encode(), faketwilio.Signature(twilioToken, "https://evil.example/webhook/twilio/sms", form)); got != 403 {
		t.Errorf("signed for another URL: %d, want 403", got)
	}
	if got := post(form.Encode(), faketwilio.Signature("NotTheAuthToken0123456789abcdefg", smsURL, form)); got != 403 {
		t.Errorf("signed with another auth token: %d, want 403", got)
	}
}
