package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// TestDownPhoneStillRings: the phone channel's self-test fails twice (Twilio
// answers 500 to account lookups), so Klaxon marks it down. An alert whose
// policy only has the phone arrives: health is advice, so it is not skipped
// to silence. Twilio recovers, and the phone rings for the alert.
func TestDownPhoneStillRings(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	tw := faketwilio.New(t, twilioToken)
	tw.FailNextOn("Account", 1000, 500, 20500)
	addr := harness.FreeAddr(t)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{
		Listen: addr,
		// Klaxon's own alarm about the phone goes by text, so every call is
		// about the alert.
		Rota: writeRotaSelftest(t, "example.org", `
      - {notify: primary, via: phone, wait: 1h}`, `
      - {notify: primary, via: sms, wait: 1h}`),
		Env: []string{
			"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(),
			"KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
			"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom,
			"KLAXON_TWILIO_API_URL=" + tw.URL(),
			"KLAXON_PUBLIC_URL=http://" + addr,
		},
		Args: []string{"--selftest-interval", "1s"},
	})
	// 1. Two failed self-tests: the phone is down.
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		var chans struct {
			Channels []struct {
				Channel, Status string
			} `json:"channels"`
		}
		code, err := k.Do(context.Background(), "GET", "/api/v1/channels", nil, &chans)
		for _, c := range chans.Channels {
			if c.Channel == "phone" && c.Status == "down" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("channels %d %v %+v", code, err, chans)
	})
	// 2. The alert arrives while the phone is marked down.
	fire(t, k, "down-phone")
	var alert uint64
	harness.Eventually(t, 15*time.Second, func() (bool, string) {
		for _, inc := range incidents(t, k, "") {
			if !strings.HasPrefix(inc.Title, "Klaxon") && !strings.Contains(inc.Title, "down") {
				alert = inc.ID
			}
		}
		return alert != 0, "no incident for the alert"
	})
	// 3. Twilio recovers.
	tw.ClearFailures()
	// 4. The phone rings for the alert, and the incident is not exhausted.
	call := tw.Phone("+15555550101").ExpectCall(t)
	if said := call.Answer(); !strings.Contains(said, fmt.Sprintf("Incident %d.", alert)) {
		t.Fatalf("the call said %q, want incident %d", said, alert)
	}
	inc := getIncident(t, k, alert)
	if inc.Escalation.Exhausted || inc.State != "open" {
		t.Fatalf("incident %d is %s (exhausted %v), want open and paging\n%s", alert, inc.State, inc.Escalation.Exhausted, textOf(inc))
	}
	if !timelineHas(inc, "paging on it anyway") {
		t.Errorf("the timeline does not say the down phone was paged anyway:\n%s", textOf(inc))
	}
}
