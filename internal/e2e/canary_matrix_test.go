package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// TestMatrixCanaryThroughObserver runs klaxon serve with a Matrix canary in
// a room of its own against a real Dendrite behind the swallowing proxy,
// with an observer account. Healthy, the canary's m.notice comes back
// through the observer's /sync and is confirmed; once the proxy swallows
// sends (200 and a made-up event id, relayed to nobody), the next canary is
// not seen back within the deadline and says so. The canary runs at its
// shortest interval (1 minute), so this test takes over two minutes.
func TestMatrixCanaryThroughObserver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Dendrite and klaxon serve")
	}
	d := harness.StartDendrite(t)
	bot := d.CreateUser(t, "klaxon")
	alice := d.CreateUser(t, "alice")
	watcher := d.CreateUser(t, "watcher")
	room := bot.CreateRoom(t, "alerts", alice.UserID, watcher.UserID)
	alice.Join(t, room)
	watcher.Join(t, room)
	canaryRoom := bot.CreateRoom(t, "canary", watcher.UserID)
	watcher.Join(t, canaryRoom)
	proxy := harness.StartMatrixProxy(t, d.URL())

	tokenFile := t.TempDir() + "/observer-token"
	if err := os.WriteFile(tokenFile, []byte(watcher.AccessToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tw := faketwilio.New(t, twilioToken)
	addr := harness.FreeAddr(t)
	env := []string{"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
		"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL=" + tw.URL(), "KLAXON_PUBLIC_URL=http://" + addr,
		"KLAXON_MATRIX_HOMESERVER=" + proxy.URL(), "KLAXON_MATRIX_USER_ID=" + string(bot.UserID),
		"KLAXON_MATRIX_ACCESS_TOKEN=" + bot.AccessToken, "KLAXON_MATRIX_ROOM=" + string(room),
		"KLAXON_MATRIX_CONFIRM_WITHIN=" + matrixConfirmWithin.String(),
		"KLAXON_MATRIX_OBSERVER_USER_ID=" + string(watcher.UserID), "KLAXON_MATRIX_OBSERVER_ACCESS_TOKEN_FILE=" + tokenFile,
		"KLAXON_MATRIX_CANARY_ROOM=" + string(canaryRoom), "KLAXON_CANARY_MATRIX_INTERVAL=1m"}
	rota := writeRotaSelftest(t, d.ServerName(), `
      - {notify: primary, via: matrix, wait: 1h}
      - {notify: primary, via: phone, wait: 1h}`, `
      - {notify: primary, via: sms, wait: 1h}`)
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Rota: rota, WebhookToken: "am-token", Env: env})

	seen := "canary seen in " + string(canaryRoom) + " by the observer account"
	harness.Eventually(t, 150*time.Second, func() (bool, string) {
		return strings.Contains(k.Logs(), seen), "no confirmed canary in the log"
	})

	proxy.Break()
	lost := "canary posted to " + string(canaryRoom) + " but not seen back by the observer account within 3s: the homeserver may not be delivering"
	harness.Eventually(t, 150*time.Second, func() (bool, string) {
		return strings.Contains(k.Logs(), lost), "no unconfirmed canary in the log"
	})
	if proxy.Swallowed() == 0 {
		t.Fatal("the proxy swallowed nothing")
	}
	for _, secret := range []string{bot.AccessToken, watcher.AccessToken} {
		if strings.Contains(k.Logs(), secret) {
			t.Fatal("an access token appears in Klaxon's log")
		}
	}
}
