package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// TestKillDuringEscalation kills klaxon serve with SIGKILL at random points
// while several incidents escalate through PagerDuty, SMS and a phone call,
// restarting it each time on the same data. Every incident must still walk
// every step in order, with every channel paged, and at most one duplicate
// phone call or text per crash.
func TestKillDuringEscalation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const incidents = 4
	pd := fakepagerduty.New(t)
	tw := faketwilio.New(t, twilioToken)
	addr := harness.FreeAddr(t)
	env := append(pagerdutyEnv(pd, ""),
		"KLAXON_TWILIO_ACCOUNT_SID="+tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN="+twilioToken,
		"KLAXON_TWILIO_FROM="+faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL="+tw.URL(), "KLAXON_PUBLIC_URL=http://"+addr)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Env: env, Rota: writeRota(t, "example.org", `
      - {notify: primary, via: pagerduty, wait: 2s}
      - {notify: primary, via: sms, wait: 2s}
      - {notify: primary, via: phone, wait: 2s}`)})
	for i := range incidents {
		fire(t, k, fmt.Sprint("esc-", i))
	}
	alice := tw.Phone("+15555550101")
	progress := func() int { return len(pd.Events()) + alice.PendingSMS() + alice.PendingCalls() }
	const kills = 3
	for c := range kills {
		// Kill once the providers have seen a random amount more work.
		// (Capped by the work there is: 3 pages per incident.)
		target := min(progress()+1+rng.IntN(incidents), 3*incidents)
		harness.Eventually(t, 30*time.Second, func() (bool, string) {
			return progress() >= target, fmt.Sprintf("crash %d: provider progress %d of %d", c+1, progress(), target)
		})
		k.Kill()
		k.Restart()
	}
	// Every incident runs its policy to the end.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for id := uint64(1); id <= incidents; id++ {
			inc := getIncident(t, k, id)
			if !inc.Escalation.Exhausted {
				return false, fmt.Sprintf("incident %d still escalating: %s", id, textOf(inc))
			}
		}
		return true, ""
	})
	for id := uint64(1); id <= incidents; id++ {
		text := textOf(getIncident(t, k, id))
		last := -1
		for _, step := range []string{"step 1 of 3", "step 2 of 3", "step 3 of 3", "escalation exhausted"} {
			i := strings.Index(text, step)
			if i < 0 || i < last {
				t.Fatalf("incident %d: %q missing or out of order:\n%s", id, step, text)
			}
			last = i
		}
		if _, ok := pd.Incident(fmt.Sprintf("klaxon-%d", id)); !ok {
			t.Errorf("incident %d never reached PagerDuty", id)
		}
	}
	// I5: each page reaches the provider at least once and at most once
	// more per crash. (Several pages may be in flight at one crash, so the
	// bound is per page, not for all of them together.)
	texts, calls := map[int]int{}, map[int]int{}
	for alice.PendingSMS() > 0 {
		var id int
		if _, err := fmt.Sscanf(alice.ExpectSMS(t).Body, "Klaxon #%d", &id); err != nil {
			t.Fatalf("a text without its incident: %v", err)
		}
		texts[id]++
	}
	for alice.PendingCalls() > 0 {
		u, err := url.Parse(alice.ExpectCall(t).Params.Get("StatusCallback"))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := strconv.Atoi(u.Query().Get("incident"))
		calls[id]++
	}
	for id := 1; id <= incidents; id++ {
		if texts[id] < 1 || texts[id] > 1+kills || calls[id] < 1 || calls[id] > 1+kills {
			t.Errorf("incident %d: alice got %d texts and %d calls across %d crashes: want each in [1, %d]", id, texts[id], calls[id], kills, 1+kills)
		}
	}
	t.Logf("texts %v, calls %v, %d PagerDuty events for %d incidents across %d crashes", texts, calls, len(pd.Events()), incidents, kills)
}
