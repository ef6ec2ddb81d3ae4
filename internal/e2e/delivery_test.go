package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// matrixConfirmWithin is the Matrix confirmation deadline the test gives
// Klaxon (the default is 30 s).
const matrixConfirmWithin = 3 * time.Second

// deliverySlack is what the phone may take beyond the deadline: the
// engine's wake, the call's send and the fake's ring, on a busy machine.
const deliverySlack = 20 * time.Second

// TestMatrixThatSwallowsPages replays the night Klaxon exists for against
// a real Dendrite behind a proxy that answers every send with 200 and a
// made-up event id, relays nothing, and stalls /sync and /messages, while
// the account checks (token, room, power levels) still pass. The Matrix
// page is not seen back within its deadline: the phone rings at once
// instead of after the step's hour, and an alarm names Matrix. When the
// proxy heals, the next page is seen back and the alarm clears by itself.
func TestMatrixThatSwallowsPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Dendrite and klaxon serve")
	}
	d := harness.StartDendrite(t)
	bot := d.CreateUser(t, "klaxon")
	alice := d.CreateUser(t, "alice")
	room := bot.CreateRoom(t, "alerts", alice.UserID)
	alice.Join(t, room)
	proxy := harness.StartMatrixProxy(t, d.URL())

	tw := faketwilio.New(t, twilioToken)
	addr := harness.FreeAddr(t)
	env := []string{"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
		"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL=" + tw.URL(), "KLAXON_PUBLIC_URL=http://" + addr,
		"KLAXON_MATRIX_HOMESERVER=" + proxy.URL(), "KLAXON_MATRIX_USER_ID=" + string(bot.UserID),
		"KLAXON_MATRIX_ACCESS_TOKEN=" + bot.AccessToken, "KLAXON_MATRIX_ROOM=" + string(room),
		"KLAXON_MATRIX_CONFIRM_WITHIN=" + matrixConfirmWithin.String()}
	// Pages try Matrix for an hour, then the phone; Klaxon's own alarms
	// are texted.
	rota := writeRotaSelftest(t, d.ServerName(), `
      - {notify: primary, via: matrix, wait: 1h}
      - {notify: primary, via: phone, wait: 1h}`, `
      - {notify: primary, via: sms, wait: 1h}`)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Rota: rota, WebhookToken: "am-token", Env: env,
		Args: []string{"--selftest-interval", "1s"}})
	post := func(group string) {
		t.Helper()
		if code, err := k.Do(context.Background(), "POST", "/webhook/alertmanager", webhookBody(group), nil); err != nil || code != 200 {
			t.Fatalf("webhook %s: %d %v", group, code, err)
		}
	}
	incidentOf := func(group string) incidentJSON {
		t.Helper()
		for _, i := range incidents(t, k, "") {
			if i.GroupKey == group {
				return getIncident(t, k, i.ID)
			}
		}
		return incidentJSON{}
	}

	// A healthy homeserver: the page comes back through the bot's /sync.
	post("healthy")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		inc := incidentOf("healthy")
		return timelineHas(inc, "via matrix: delivered"), textOf(inc)
	})

	// The homeserver starts swallowing: the page is "sent", but never seen back.
	proxy.Break()
	start := time.Now()
	post("swallowed")
	call := tw.Phone("+15555550101").ExpectCall(t)
	if took := time.Since(start); took > matrixConfirmWithin+deliverySlack {
		t.Fatalf("the phone rang %s after the page, want within %s + %s", took, matrixConfirmWithin, deliverySlack)
	}
	call.NoAnswer()
	inc := incidentOf("swallowed")
	for _, want := range []string{"via matrix: sent", "posted to Matrix but not seen back within 3 s: the homeserver may not be delivering",
		"escalating at once"} {
		if !timelineHas(inc, want) {
			t.Fatalf("timeline lacks %q:\n%s", want, textOf(inc))
		}
	}
	if proxy.Swallowed() == 0 {
		t.Fatal("the proxy swallowed nothing")
	}

	// A second page that is not seen back (or the stalled /sync) makes
	// Matrix degraded: an alarm, texted, names it.
	post("swallowed-again")
	var alarm incidentJSON
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		alarm = matrixAlarm(t, k)
		return alarm.ID != 0, "no alarm names Matrix"
	})
	if !strings.Contains(alarm.Title, "accepts pages but does not deliver them") {
		t.Fatalf("alarm title %q", alarm.Title)
	}
	sms := tw.Phone("+15555550101").ExpectSMS(t)
	if !strings.Contains(sms.Body, "Matrix") {
		t.Fatalf("the alarm's text says %q", sms.Body)
	}
	var status struct {
		Channels []struct {
			Channel, Status, Reason string
			NotDelivering           bool `json:"not_delivering"`
		}
	}
	if code, err := k.Do(context.Background(), "GET", "/api/v1/channels", nil, &status); err != nil || code != 200 {
		t.Fatalf("status: %d %v", code, err)
	}
	if s := fmt.Sprint(status.Channels); !strings.Contains(s, "matrix degraded") || !strings.Contains(s, "does not deliver") {
		t.Fatalf("status says %s", s)
	}

	// The homeserver heals: the next page is seen back, and the alarm clears.
	proxy.Heal()
	post("healed")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		inc := incidentOf("healed")
		return timelineHas(inc, "via matrix: delivered"), textOf(inc)
	})
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		a := getIncident(t, k, alarm.ID)
		return a.State == "resolved", "alarm " + a.State + ":\n" + textOf(a)
	})
	if strings.Contains(k.Logs(), bot.AccessToken) {
		t.Fatal("the bot's access token appears in Klaxon's log")
	}
}

// matrixAlarm returns the open alarm about Matrix, if any.
func matrixAlarm(t *testing.T, k *harness.Klaxon) incidentJSON {
	t.Helper()
	var out struct{ Incidents []incidentJSON }
	if code, err := k.Do(context.Background(), "GET", "/api/v1/incidents", nil, &out); err != nil || code != 200 {
		t.Fatalf("listing incidents: %d %v", code, err)
	}
	for _, inc := range out.Incidents {
		if strings.HasPrefix(inc.GroupKey, "klaxon-alarm:") && strings.Contains(inc.Title, "Matrix") && inc.State != "resolved" {
			return inc
		}
	}
	return incidentJSON{}
}

// TestMatrixObserverConfirms: with an observer account configured, only
// its /sync confirms a page. An observer in the alert room sees the page
// and it is delivered; an observer that is not in the room cannot see it,
// so the page is unconfirmed and the phone rings, although the bot's own
// /sync returned the event.
func TestMatrixObserverConfirms(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Dendrite and klaxon serve")
	}
	d := harness.StartDendrite(t)
	bot := d.CreateUser(t, "klaxon")
	alice := d.CreateUser(t, "alice")
	watcher := d.CreateUser(t, "watcher")
	room := bot.CreateRoom(t, "alerts", alice.UserID, watcher.UserID)
	alice.Join(t, room)
	for _, inRoom := range []bool{false, true} { // outside first: joining is for good
		t.Run(map[bool]string{true: "observer in the room", false: "observer outside the room"}[inRoom], func(t *testing.T) {
			if inRoom {
				watcher.Join(t, room)
			}
			tw := faketwilio.New(t, twilioToken)
			addr := harness.FreeAddr(t)
			tokenFile := t.TempDir() + "/observer-token"
			if err := os.WriteFile(tokenFile, []byte(watcher.AccessToken+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			env := []string{"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
				"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL=" + tw.URL(), "KLAXON_PUBLIC_URL=http://" + addr,
				"KLAXON_MATRIX_HOMESERVER=" + d.URL(), "KLAXON_MATRIX_USER_ID=" + string(bot.UserID),
				"KLAXON_MATRIX_ACCESS_TOKEN=" + bot.AccessToken, "KLAXON_MATRIX_ROOM=" + string(room),
				"KLAXON_MATRIX_CONFIRM_WITHIN=" + matrixConfirmWithin.String(),
				"KLAXON_MATRIX_OBSERVER_USER_ID=" + string(watcher.UserID), "KLAXON_MATRIX_OBSERVER_ACCESS_TOKEN_FILE=" + tokenFile}
			rota := writeRotaSelftest(t, d.ServerName(), `
      - {notify: primary, via: matrix, wait: 1h}
      - {notify: primary, via: phone, wait: 1h}`, `
      - {notify: primary, via: sms, wait: 1h}`)
			k := harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Rota: rota, WebhookToken: "am-token", Env: env})
			group := fmt.Sprintf("observed-%v", inRoom)
			if code, err := k.Do(context.Background(), "POST", "/webhook/alertmanager", webhookBody(group), nil); err != nil || code != 200 {
				t.Fatalf("webhook: %d %v", code, err)
			}
			var inc incidentJSON
			harness.Eventually(t, 30*time.Second, func() (bool, string) {
				for _, i := range incidents(t, k, "") {
					if i.GroupKey == group {
						inc = getIncident(t, k, i.ID)
					}
				}
				if inRoom {
					return timelineHas(inc, "via matrix: delivered (seen in the alert room by the observer account)"), textOf(inc)
				}
				return timelineHas(inc, "not seen back within 3 s"), textOf(inc)
			})
			if !inRoom {
				tw.Phone("+15555550101").ExpectCall(t).NoAnswer()
			}
			if strings.Contains(k.Logs(), watcher.AccessToken) {
				t.Fatal("the observer's token appears in Klaxon's log")
			}
		})
	}
}
