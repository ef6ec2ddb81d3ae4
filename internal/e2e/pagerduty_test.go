package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
)

func pagerdutyEnv(pd *fakepagerduty.Server, secret string) []string {
	env := []string{
		"KLAXON_PAGERDUTY_ROUTING_KEY=" + pd.RoutingKey(),
		"KLAXON_PAGERDUTY_API_TOKEN=" + pd.APIToken(),
		"KLAXON_PAGERDUTY_EVENTS_URL=" + pd.URL(),
		"KLAXON_PAGERDUTY_API_URL=" + pd.URL(),
	}
	if secret != "" {
		env = append(env, "KLAXON_PAGERDUTY_WEBHOOK_SECRET="+secret)
	}
	return env
}

func getIncident(t testing.TB, k *harness.Klaxon, id uint64) incidentJSON {
	t.Helper()
	var inc incidentJSON
	if code, err := k.Do(context.Background(), "GET", fmt.Sprintf("/api/v1/incidents/%d", id), nil, &inc); err != nil || code != 200 {
		t.Fatalf("incident %d: %d %v", id, code, err)
	}
	return inc
}

// pdKey is the PagerDuty dedup key Klaxon gave incident id
// ("klaxon-<installation>-<id>"), or "" while PagerDuty has none.
func pdKey(pd *fakepagerduty.Server, id uint64) string {
	for _, inc := range pd.Incidents() {
		if strings.HasPrefix(inc.DedupKey, "klaxon-") && strings.HasSuffix(inc.DedupKey, fmt.Sprintf("-%d", id)) {
			return inc.DedupKey
		}
	}
	return ""
}

func timelineHas(inc incidentJSON, s string) bool {
	for _, e := range inc.Timeline {
		if strings.Contains(e.Text, s) {
			return true
		}
	}
	return false
}

// TestPagerDutyAckStopsEscalation: an incident pages PagerDuty, the fake
// acknowledges and sends a signed webhook, and Klaxon stops escalating.
func TestPagerDutyAckStopsEscalation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	pd := fakepagerduty.New(t)
	pd.AddUser(fakepagerduty.User{ID: "PALICE1", Name: "Alice Archer", Email: "alice@example.org"})
	rota := writeRota(t, "example.org", `
      - {notify: primary, via: pagerduty, wait: 3s}
      - {notify: secondary, via: pagerduty, wait: 1h}`)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Rota: rota, WebhookToken: "wh", Env: pagerdutyEnv(pd, "whsec-e2e")})
	pd.SetWebhook(k.URL()+"/webhook/pagerduty", "whsec-e2e")

	if code, err := k.Do(context.Background(), "POST", "/webhook/alertmanager", webhookBody("pd-1"), nil); err != nil || code != 200 {
		t.Fatalf("webhook: %d %v", code, err)
	}
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return pdKey(pd, 1) != "", "no PagerDuty incident for incident 1 yet"
	})
	key := pdKey(pd, 1)
	if key == "klaxon-1" {
		t.Fatalf("dedup key %q is not unique to this installation", key)
	}
	d, err := pd.Acknowledge(key, "PALICE1")
	if err != nil || d.Status != 200 && d.Status != 202 && d.Status != 204 {
		t.Fatalf("signed webhook delivery: %+v %v", d, err)
	}
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		inc := getIncident(t, k, 1)
		return inc.State == "acknowledged", "incident is " + inc.State
	})
	if inc := getIncident(t, k, 1); !timelineHas(inc, "acknowledged by Alice Archer via pagerduty") {
		t.Errorf("timeline lacks the PagerDuty acknowledgement: %+v", inc.Timeline)
	}
	// A forged webhook (wrong secret) is rejected with 403.
	pd.SetWebhook(k.URL()+"/webhook/pagerduty", "not-the-secret")
	if d, _ := pd.Resolve(key, "PALICE1"); d.Status != 403 {
		t.Fatalf("forged webhook answered %d, want 403", d.Status)
	}
	if inc := getIncident(t, k, 1); inc.State != "acknowledged" {
		t.Fatalf("a forged webhook changed the incident to %s", inc.State)
	}
	// Escalation stopped: the next wake is the ack timeout (4h), not the
	// step's 3s wait, and PagerDuty got only the one trigger.
	if inc := getIncident(t, k, 1); time.Until(inc.Escalation.NextAt) < time.Hour {
		t.Fatalf("next escalation at %s: the acknowledgement did not stop the policy", inc.Escalation.NextAt)
	}
	triggers := 0
	for _, e := range pd.Events() {
		if e.Action == "trigger" {
			triggers++
		}
	}
	if triggers != 1 {
		t.Fatalf("PagerDuty got %d triggers, want 1", triggers)
	}
}

// TestPagerDutyLapsedAccountMovesOnAtOnce: a lapsed account makes the page
// fail permanently and the engine moves to the next step at once.
func TestPagerDutyLapsedAccountMovesOnAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	pd := fakepagerduty.New(t)
	pd.SetAccountExpired(true)
	pd.SetInvalidRoutingKey(false)
	rota := writeRota(t, "example.org", `
      - {notify: primary, via: pagerduty, wait: 1h}
      - {notify: secondary, via: sms, wait: 1h}`)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Rota: rota, Env: pagerdutyEnv(pd, "")})
	if code, err := k.Do(context.Background(), "POST", "/webhook/alertmanager", webhookBody("pd-2"), nil); err != nil || code != 200 {
		t.Fatalf("webhook: %d %v", code, err)
	}
	harness.Eventually(t, 15*time.Second, func() (bool, string) {
		inc := getIncident(t, k, 1)
		return timelineHas(inc, "every page of step 1 failed: escalating at once"), fmt.Sprintf("timeline %+v", inc.Timeline)
	})
}
