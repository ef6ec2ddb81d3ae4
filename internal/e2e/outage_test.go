package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// roomSays waits until someone in room has posted a message whose body
// contains every one of words (case-insensitive), and returns it.
func roomSays(t *testing.T, u *harness.DendriteUser, room id.RoomID, within time.Duration, words ...string) string {
	t.Helper()
	var found string
	harness.Eventually(t, within, func() (bool, string) {
		var bodies []string
		for _, e := range u.Messages(t, room, 100) {
			if e.Type != event.EventMessage {
				continue
			}
			body := e.Content.AsMessage().Body
			bodies = append(bodies, body)
			ok := true
			for _, w := range words {
				if !strings.Contains(strings.ToLower(body), strings.ToLower(w)) {
					ok = false
				}
			}
			if ok {
				found = body
				return true, ""
			}
		}
		return false, fmt.Sprintf("no message with %q among:\n%s", words, strings.Join(bodies, "\n---\n"))
	})
	return found
}

// TestOutageNight replays the night Klaxon exists for. The PagerDuty account
// lapsed long ago: Klaxon's self-test finds it and tells the on-call through
// Matrix. At 23:33 an alert fires in a real Alertmanager; nobody answers in
// Matrix; PagerDuty is skipped; the phone rings; the on-call presses 1; the
// incident is acknowledged; Alertmanager resolves it and Klaxon posts the
// resolution. Then Alertmanager dies, and the Watchdog's silence is an alarm.
func TestOutageNight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Alertmanager, Dendrite and klaxon serve")
	}
	d := harness.StartDendrite(t)
	bot := d.CreateUser(t, "klaxon")
	alice := d.CreateUser(t, "alice")
	room := bot.CreateRoom(t, "alerts", alice.UserID)
	alice.Join(t, room)

	pd := fakepagerduty.New(t)
	pd.SetAccountExpired(true) // the trial lapsed months ago
	tw := faketwilio.New(t, twilioToken)
	addr := harness.FreeAddr(t)
	env := append(pagerdutyEnv(pd, ""),
		"KLAXON_TWILIO_ACCOUNT_SID="+tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN="+twilioToken,
		"KLAXON_TWILIO_FROM="+faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL="+tw.URL(), "KLAXON_PUBLIC_URL=http://"+addr,
		"KLAXON_MATRIX_HOMESERVER="+d.URL(), "KLAXON_MATRIX_USER_ID="+string(bot.UserID),
		"KLAXON_MATRIX_ACCESS_TOKEN="+bot.AccessToken, "KLAXON_MATRIX_ROOM="+string(room))
	rota := writeRotaSelftest(t, d.ServerName(), `
      - {notify: primary, via: matrix, wait: 3s}
      - {notify: primary, via: pagerduty, wait: 3s}
      - {notify: primary, via: phone, wait: 1h}`, `
      - {notify: primary, via: matrix, wait: 1h}`)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Rota: rota, WebhookToken: "am-token", Env: env,
		Args: []string{"--selftest-interval", "1s", "--watchdog-timeout", "8s"}})
	am := harness.StartAlertmanager(t, harness.AlertmanagerConfig{WebhookURL: k.URL() + "/webhook/alertmanager",
		BearerToken: "am-token", GroupBy: []string{"alertname"}, GroupInterval: time.Second, RepeatInterval: 2 * time.Second})
	am.PostAlerts(t, harness.AMAlert{Labels: map[string]string{"alertname": "Watchdog", "severity": "none"}, EndsAt: time.Now().Add(time.Hour)})

	// Before any incident: the self-test finds the lapsed account and says so in Matrix.
	alarm := roomSays(t, alice, room, 60*time.Second, "PagerDuty down since")
	t.Logf("alarm in Matrix: %s", firstLine(alarm))

	// 23:33: the homeserver's database locks up; monitoring fires.
	am.PostAlerts(t, harness.AMAlert{Labels: map[string]string{"alertname": "MessageDeliveryStalled", "severity": "critical", "instance": "synapse-1"},
		Annotations: map[string]string{"summary": "No messages delivered for 2 minutes"}})
	roomSays(t, alice, room, 30*time.Second, "MessageDeliveryStalled", "No messages delivered")
	// Nobody answers in Matrix. PagerDuty, marked down, is the step's only
	// channel: it is tried anyway (a verdict may be stale), fails at once for
	// the lapsed account, and the phone rings.
	call := tw.Phone("+15555550101").ExpectCall(t)
	if said := call.Answer(); !strings.Contains(said, "Incident") {
		t.Fatalf("the call said %q", said)
	}
	call.Press("1")

	var inc incidentJSON
	harness.Eventually(t, 15*time.Second, func() (bool, string) {
		for _, i := range incidents(t, k, "") {
			if i.Alerts[0].Labels["alertname"] == "MessageDeliveryStalled" {
				inc = getIncident(t, k, i.ID)
			}
		}
		return inc.State == "acknowledged", "incident is " + inc.State
	})
	if !timelineHas(inc, "pagerduty is down since") || !timelineHas(inc, "paging on it anyway") ||
		!timelineHas(inc, "every page of step 2 failed: escalating at once") || inc.AckedBy != "Alice Archer" {
		t.Fatalf("acknowledged by %q; timeline:\n%s", inc.AckedBy, textOf(inc))
	}

	// The database recovers; Alertmanager resolves the alert; Klaxon says so.
	am.Resolve(t, map[string]string{"alertname": "MessageDeliveryStalled", "severity": "critical", "instance": "synapse-1"})
	waitState(t, k, inc.ID, "resolved")
	roomSays(t, alice, room, 30*time.Second, "resolved", fmt.Sprintf("%d", inc.ID))

	// Later, Alertmanager itself dies: the Watchdog stops and that is an alarm too.
	am.Stop()
	roomSays(t, alice, room, 30*time.Second, "Alertmanager", "silent")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// TestEveryChannelDown: when nothing can page anyone, /readyz fails and the
// log says so, every minute.
func TestEveryChannelDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	pd := fakepagerduty.New(t)
	pd.SetAccountExpired(true)
	tw := faketwilio.New(t, twilioToken)
	tw.SetAccountStatus("suspended")
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Rota: writeRota(t, "example.org", `
      - {notify: primary, via: [pagerduty, phone, sms], wait: 1m}`),
		Env: append(pagerdutyEnv(pd, ""), "KLAXON_TWILIO_ACCOUNT_SID="+tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN="+twilioToken,
			"KLAXON_TWILIO_FROM="+faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL="+tw.URL(), "KLAXON_PUBLIC_URL=http://127.0.0.1:1"),
		Args: []string{"--selftest-interval", "1s"}})
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		code, err := k.Do(context.Background(), "GET", "/readyz", nil, nil)
		return err == nil && code == 503 && strings.Contains(k.Logs(), "CANNOT PAGE ANYONE"), fmt.Sprintf("readyz %d %v", code, err)
	})
	if strings.Contains(k.Logs(), twilioToken) || strings.Contains(k.Logs(), pd.APIToken()) || strings.Contains(k.Logs(), pd.RoutingKey()) {
		t.Fatal("a secret appears in Klaxon's log")
	}
}
