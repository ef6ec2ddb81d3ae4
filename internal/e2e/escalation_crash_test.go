package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
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
	if s, err := strconv.ParseUint(os.Getenv("KLAXON_CRASH_SEED"), 10, 64); err == nil {
		seed = s // replay a failing run's kill points
	}
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
		if pdKey(pd, id) == "" {
			t.Errorf("incident %d never reached PagerDuty", id)
		}
	}
	// At most one duplicate per page per crash (I5): a crash may interrupt
	// several sends in flight at once, each sent again after the restart.
	sms, calls := alice.PendingSMS(), alice.PendingCalls()
	texts, rings := map[uint64]int{}, map[uint64]int{}
	for range sms {
		m := alice.ExpectSMS(t)
		var id uint64
		if _, err := fmt.Sscanf(m.Body, "Klaxon #%d", &id); err != nil {
			t.Fatalf("text %q names no incident", m.Body)
		}
		texts[id]++
	}
	for range calls {
		c := alice.ExpectCall(t)
		u, err := url.Parse(c.Params.Get("Url"))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := strconv.ParseUint(u.Query().Get("incident"), 10, 64)
		rings[id]++
	}
	for id := uint64(1); id <= incidents; id++ {
		if texts[id] < 1 || texts[id] > 1+kills || rings[id] < 1 || rings[id] > 1+kills {
			t.Errorf("incident %d: %d texts and %d calls with %d crashes: want each in [1, %d]", id, texts[id], rings[id], kills, 1+kills)
		}
	}
	t.Logf("texts %v, calls %v, %d PagerDuty events for %d incidents across %d crashes", texts, rings, len(pd.Events()), incidents, kills)
}
