package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// weekRota is a rota whose primary rotation is Alice this week and Bob the
// next (handoffs Monday 09:00 UTC); overrides is YAML for primary's
// overrides, or "". Matrix ids live on server (none when server is "").
func weekRota(server, overrides, reminder string) string {
	start := lastMonday(time.Now().UTC())
	mx := func(who string) string {
		if server == "" {
			return ""
		}
		return fmt.Sprintf(`, matrix: "@%s:%s"`, who, server)
	}
	return fmt.Sprintf(`timezone: UTC
people:
  alice: {name: Alice Archer, phone: "+15555550101"%s}
  bob:   {name: Bob Baker, phone: "+15555550102"%s}
  carol: {name: Carol Chen, phone: "+15555550103"%s}
  dave:  {name: Dave Diaz, phone: "+15555550104"%s}
rotations:
  primary:
    members: [alice, bob]
    handoff: "%s 09:00"
    start: %s
    reminder: %s
%s
  secondary: {members: [dave], handoff: "%[5]s 09:00", start: %[6]s, reminder: off}
policies:
  default:
    steps:
      - {notify: primary, via: [matrix, sms], wait: 1h}
  selftest:
    steps:
      - {notify: primary, via: [matrix, sms], wait: 1h}
routes:
  - policy: default
owners: [alice]
`, mx("alice"), mx("bob"), mx("carol"), mx("dave"), strings.ToLower(start.Weekday().String()), start.Format("2006-01-02"), reminder, overrides)
}

// swapOverride has Carol take Bob's next week.
func swapOverride() (yaml string, from, to time.Time) {
	now := time.Now().UTC()
	from = now.AddDate(0, 0, int(7-(now.Weekday()+6)%7))
	from = time.Date(from.Year(), from.Month(), from.Day(), 9, 0, 0, 0, time.UTC)
	if from.Sub(now) > 7*24*time.Hour {
		from = from.AddDate(0, 0, -7)
	}
	to = from.AddDate(0, 0, 7)
	return fmt.Sprintf(`    overrides:
      - {who: carol, instead_of: bob, from: "%s", to: "%s", reason: swap with Bob}`,
		from.Format("2006-01-02 15:04"), to.Format("2006-01-02 15:04")), from, to
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as editors and deploy tools replace files
		t.Fatal(err)
	}
}

// editRota replaces the rota on disk until Klaxon's log shows want: the
// file watcher starts as serve starts listening, so a first edit may come
// before it watches; writing again is what the next edit would do anyway.
func editRota(t *testing.T, k *harness.Klaxon, path, data, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for attempt := (time.Time{}); ; {
		if strings.Contains(k.Logs(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("klaxon never logged %q after the rota edit", want)
		}
		if time.Since(attempt) > 2*time.Second || attempt.IsZero() {
			writeFile(t, path, data)
			attempt = time.Now()
		}
		time.Sleep(20 * time.Millisecond) // polling the log with a deadline
	}
}

// TestRotaEditTellsBothPeopleInMatrix: the weekly edit, on disk, under a
// running klaxon serve with a real Dendrite. Bob and Carol each get one
// message mentioning them in the alert room, in their own words; Alice and
// Dave get nothing. A broken edit before it sends nothing.
func TestRotaEditTellsBothPeopleInMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Dendrite and klaxon serve")
	}
	d := harness.StartDendrite(t)
	bot := d.CreateUser(t, "klaxon")
	carol := d.CreateUser(t, "carol")
	room := bot.CreateRoom(t, "alerts", carol.UserID)
	carol.Join(t, room)
	path := filepath.Join(t.TempDir(), "rota.yaml")
	writeFile(t, path, weekRota(d.ServerName(), "", "off"))
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Rota: path, Env: []string{
		"KLAXON_MATRIX_HOMESERVER=" + d.URL(), "KLAXON_MATRIX_USER_ID=" + string(bot.UserID),
		"KLAXON_MATRIX_ACCESS_TOKEN=" + bot.AccessToken, "KLAXON_MATRIX_ROOM=" + string(room)}})

	// A broken edit is refused and announces nothing.
	editRota(t, k, path, strings.Replace(weekRota(d.ServerName(), "", "off"), "members: [alice, bob]", "members: [alice, bobby]", 1), `unknown person \"bobby\"`)
	over, from, to := swapOverride()
	editRota(t, k, path, weekRota(d.ServerName(), over, "off"), "rota change notices queued")

	span := fmt.Sprintf("From %s to %s", from.Format("Mon 2 Jan 15:04"), to.Format("Mon 2 Jan 15:04"))
	roomSays(t, carol, room, 30*time.Second, "Carol Chen", span+" you are on call for primary, instead of Bob Baker (swap with Bob)")
	roomSays(t, carol, room, 30*time.Second, "Bob Baker", span+" you are no longer on call for primary: Carol Chen is (swap with Bob)")
	harness.Eventually(t, 15*time.Second, func() (bool, string) {
		n := strings.Count(k.Logs(), `"msg":"notice sent"`)
		return n == 2, fmt.Sprintf("%d notices sent", n)
	})
	// (The broken edit raised a rota alarm, an incident paged to Alice: that
	// is no notice.)
	var mentioned []string
	for _, e := range carol.Messages(t, room, 100) {
		if e.Type == event.EventMessage && e.Sender == bot.UserID && strings.Contains(e.Content.AsMessage().Body, "Rota change:") {
			if m := e.Content.AsMessage().Mentions; m != nil {
				for _, u := range m.UserIDs {
					mentioned = append(mentioned, string(u))
				}
			}
		}
	}
	slices.Sort(mentioned)
	want := []string{"@bob:" + d.ServerName(), "@carol:" + d.ServerName()}
	if !slices.Equal(mentioned, want) {
		t.Fatalf("the bot mentioned %q, want exactly %q", mentioned, want)
	}
	if strings.Count(k.Logs(), "rota change notices queued") != 1 {
		t.Fatalf("change notices queued other than once for the valid edit:\n%s", k.Logs())
	}
}

// TestRestartBetweenReloadAndSend: the notices are on disk before they are
// sent. Texts fail while Klaxon is killed and restarted; after the restart
// each person gets exactly one text.
func TestRestartBetweenReloadAndSend(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	tw := faketwilio.New(t, twilioToken)
	path := filepath.Join(t.TempDir(), "rota.yaml")
	writeFile(t, path, weekRota("", "", "off"))
	addr := harness.FreeAddr(t)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Rota: path, Env: []string{
		"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
		"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL=" + tw.URL(), "KLAXON_PUBLIC_URL=http://" + addr}})
	tw.FailNextOn("Messages", 1000, 503, 20429)
	over, _, _ := swapOverride()
	editRota(t, k, path, weekRota("", over, "off"), "rota change notices queued")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(k.Logs(), "notice send failed; retrying"), "no failed send yet"
	})
	k.Kill()
	tw.ClearFailures()
	before := strings.Count(k.Logs(), `"msg":"notice sent"`)
	k.Restart()
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		n := strings.Count(k.Logs(), `"msg":"notice sent"`) - before // the retry waits out its backoff (at most 1m)
		return n == 2, fmt.Sprintf("%d notices sent after the restart", n)
	})
	bob, carol := tw.Phone("+15555550102").ExpectSMS(t), tw.Phone("+15555550103").ExpectSMS(t)
	if !strings.Contains(bob.Body, "you are no longer on call for primary: Carol Chen is") || !strings.Contains(carol.Body, "instead of Bob Baker") {
		t.Fatalf("texts: bob %q, carol %q", bob.Body, carol.Body)
	}
	for _, n := range []string{"+15555550101", "+15555550102", "+15555550103", "+15555550104"} {
		if p := tw.Phone(n).PendingSMS(); p != 0 {
			t.Errorf("%s got %d more texts", n, p)
		}
	}
}

// TestReminderThroughServe: a rotation whose first shift starts at the next
// whole minute plus one, with a reminder lead that ends a few seconds from
// now: Alice's reminder arrives by text.
func TestReminderThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	tw := faketwilio.New(t, twilioToken)
	harness.KlaxonBinary(t) // built before the clock starts to count
	now := time.Now().UTC()
	at := now.Truncate(time.Minute).Add(2 * time.Minute)
	lead := at.Sub(now) - 3*time.Second
	rota := strings.NewReplacer(
		"members: [alice, bob]", "members: [alice, bob]\n    shift: 1h",
	).Replace(weekRota("", "", fmt.Sprintf("%ds", int(lead.Seconds()))))
	rota = strings.Replace(rota, fmt.Sprintf(`handoff: "%s 09:00"`, strings.ToLower(lastMonday(now).Weekday().String())), fmt.Sprintf(`handoff: "%s"`, at.Format("15:04")), 1)
	rota = strings.Replace(rota, "start: "+lastMonday(now).Format("2006-01-02")+"\n    reminder", "start: "+at.Format("2006-01-02")+"\n    reminder", 1)
	path := filepath.Join(t.TempDir(), "rota.yaml")
	writeFile(t, path, rota)
	addr := harness.FreeAddr(t)
	harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Rota: path, Env: []string{
		"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
		"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL=" + tw.URL(), "KLAXON_PUBLIC_URL=http://" + addr}})
	sms := tw.Phone("+15555550101").ExpectSMS(t)
	want := fmt.Sprintf("Klaxon: You are on call for primary from %s until %s; open incidents: ", at.Format("15:04"), at.Add(time.Hour).Format("Mon 2 Jan 15:04"))
	if !strings.HasPrefix(sms.Body, want) {
		t.Fatalf("reminder %q, want %q...", sms.Body, want)
	}
	if got := time.Now(); got.Before(at.Add(-lead)) {
		t.Fatalf("the reminder arrived at %s, before its time %s", got, at.Add(-lead))
	}
}

// lastMonday is the Monday 09:00 UTC weekRota starts on.
func lastMonday(now time.Time) time.Time {
	start := now.AddDate(0, 0, -int((now.Weekday()+6)%7))
	start = time.Date(start.Year(), start.Month(), start.Day(), 9, 0, 0, 0, time.UTC)
	if start.After(now) {
		start = start.AddDate(0, 0, -7)
	}
	return start
}
