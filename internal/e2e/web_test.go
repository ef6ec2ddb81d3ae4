package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/internal/web"
)

// webKlaxon starts klaxon serve paging through the fake Twilio, with the
// public URL the links are made on. The harness passes the webhook and admin
// API tokens; people sign in with their own API tokens (Klaxon.PersonToken).
func webKlaxon(t *testing.T, tw *faketwilio.Server, steps string, args ...string) *harness.Klaxon {
	t.Helper()
	addr := harness.FreeAddr(t)
	return harness.StartKlaxon(t, harness.KlaxonConfig{
		Listen: addr, Rota: writeRota(t, "example.org", steps), Args: args,
		Env: []string{
			"KLAXON_TWILIO_ACCOUNT_SID=" + tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN=" + twilioToken,
			"KLAXON_TWILIO_FROM=" + faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL=" + tw.URL(),
			"KLAXON_PUBLIC_URL=http://" + addr,
		},
	})
}

var linkInText = regexp.MustCompile(`https?://\S+/l/\S+`)

// fireDiskFull posts a realistic alert straight to the webhook.
func fireDiskFull(t *testing.T, k *harness.Klaxon, group, instance string) {
	t.Helper()
	body := fmt.Appendf(nil, `{"version":"4","groupKey":%q,"status":"firing","receiver":"klaxon","groupLabels":{"alertname":"DiskFull"},
"commonLabels":{"alertname":"DiskFull","severity":"critical","instance":%q,"cluster":"eu-1"},
"commonAnnotations":{"summary":"Disk full on %s"},"externalURL":"http://alertmanager.example.org",
"alerts":[{"status":"firing","labels":{"alertname":"DiskFull","severity":"critical","instance":%q,"cluster":"eu-1"},
"annotations":{"summary":"Disk full on %s","description":"/var/lib/postgresql is 99%% full","runbook_url":"https://runbooks.example.org/disk-full"},
"startsAt":%q,"generatorURL":"http://prometheus.example.org/graph?g0.expr=disk","fingerprint":"fp-%s"}]}`,
		group, instance, instance, instance, instance, time.Now().Add(-3*time.Minute).UTC().Format(time.RFC3339), group)
	if code, err := k.Do(context.Background(), "POST", "/webhook/alertmanager", body, nil); err != nil || code != 200 {
		t.Fatalf("webhook: %d %v", code, err)
	}
}

// answers counts the timeline's acknowledgements, escalations and resolutions.
func answers(inc incidentJSON) int {
	n := 0
	for _, e := range inc.Timeline {
		switch e.Kind {
		case "acknowledged", "unacknowledged", "escalated", "resolved":
			n++
		}
	}
	return n
}

// TestWebLinkFromATextAcknowledges is the 3 a.m. page: a text arrives with
// a link; a link preview fetches it (nothing happens); an altered or expired
// link is refused; Alice opens hers on her phone and taps Acknowledge; the
// store says acknowledged by her via web and the phone escalation stops.
func TestWebLinkFromATextAcknowledges(t *testing.T) {
	ctx := browser(t)
	tw := faketwilio.New(t, twilioToken)
	k := webKlaxon(t, tw, `
      - {notify: primary, via: sms, wait: 1h}
      - {notify: secondary, via: phone, wait: 1h}`)
	fireDiskFull(t, k, "web-1", "db-1")
	msg := tw.Phone("+15555550101").ExpectSMS(t)
	link := linkInText.FindString(msg.Body)
	if link == "" || !strings.HasPrefix(link, k.URL()+"/l/") || len([]rune(msg.Body)) > 300 {
		t.Fatalf("text without a usable link: %q", msg.Body)
	}

	// A chat app's or SMS scanner's link preview: a plain GET, twice.
	for range 2 {
		resp, err := http.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("preview GET: %d", resp.StatusCode)
		}
	}
	// The phone opens it: the incident with big buttons.
	run(t, ctx, "open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`button[value="ack"]`)))
	main := get(t, ctx, "read the page", chromedp.Text(chromedp.CSS(`main`)))
	if !strings.Contains(main, "Disk full on db-1") || !strings.Contains(main, "This link acts as Alice Archer") {
		t.Fatalf("the link page says:\n%s", main)
	}
	tap := get(t, ctx, "measure the button", chromedp.Evaluate[struct{ W, H float64 }](`(() => { const r = document.querySelector('button[value="ack"]').getBoundingClientRect(); return {W: r.width, H: r.height}; })()`))
	if tap.H < 44 || tap.W < 44 || tap.W > viewW {
		t.Fatalf("Acknowledge button is %.0fx%.0f px at a %dpx wide phone", tap.W, tap.H, viewW)
	}
	scrollW := get(t, ctx, "page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	if scrollW > viewW {
		t.Fatalf("the page is %dpx wide on a %dpx phone: it scrolls sideways", scrollW, viewW)
	}
	screenshot(t, ctx, "link")
	fitsAt360(t, ctx, "the link page")
	if after := getIncident(t, k, 1); after.State != "open" || answers(after) != 0 {
		t.Fatalf("GETs of the link changed the incident: %s, timeline:\n%s", after.State, textOf(after))
	}

	// Tampered and expired links are refused, and change nothing.
	key, err := web.LoadKey(k.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimPrefix(link, k.URL()+"/l/")
	claim, err := web.NewSigner(key).VerifyLink(tok, time.Now())
	if err != nil {
		t.Fatalf("the texted link does not verify: %v", err)
	}
	expired := k.URL() + "/l/" + web.NewSigner(key).LinkToken(claim.PageID, "alice", time.Now().Add(-time.Minute))
	tampered := k.URL() + "/l/" + strings.Replace(tok, ".alice", ".bob", 1)
	for _, bad := range []struct{ url, says, name string }{{expired, "expired", "link-expired"}, {tampered, "not valid", "link-tampered"}} {
		run(t, ctx, "open a bad link", chromedp.Navigate(bad.url))
		text := get(t, ctx, "read the page", chromedp.Text(chromedp.CSS(`main`)))
		if !strings.Contains(text, bad.says) || strings.Contains(text, "Disk full") {
			t.Fatalf("%s link page says:\n%s", bad.name, text)
		}
		buttons := get(t, ctx, "count buttons", chromedp.Evaluate[int](`document.querySelectorAll('button[value]').length`))
		if buttons != 0 {
			t.Fatalf("%s link page offers %d buttons", bad.name, buttons)
		}
		if bad.name == "link-expired" {
			screenshot(t, ctx, bad.name)
		}
	}
	if after := getIncident(t, k, 1); after.State != "open" || answers(after) != 0 {
		t.Fatalf("bad links changed the incident: %s, timeline:\n%s", after.State, textOf(after))
	}

	// Alice taps Acknowledge.
	run(t, ctx, "tap Acknowledge", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`button[value="ack"]`)),
		chromedp.Click(chromedp.CSS(`button[value="ack"]`)), chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	done := get(t, ctx, "read the page", chromedp.Text(chromedp.CSS(`main`)))
	if !strings.Contains(done, "Acknowledged by Alice Archer via web") {
		t.Fatalf("after the tap the page says:\n%s", done)
	}
	screenshot(t, ctx, "link-acknowledged")
	inc := waitState(t, k, 1, "acknowledged")
	if inc.AckedBy != "Alice Archer" || !timelineHas(inc, "acknowledged by Alice Archer via web") {
		t.Fatalf("acknowledged by %q; timeline:\n%s", inc.AckedBy, textOf(inc))
	}
	// The phone escalation stopped: nothing is due before the acknowledgement
	// times out, and Bob's phone never rang.
	if time.Until(inc.Escalation.NextAt) < time.Hour {
		t.Fatalf("escalation still due at %s", inc.Escalation.NextAt)
	}
	if n := tw.Phone("+15555550102").PendingCalls(); n != 0 || timelineHas(inc, "via phone") {
		t.Fatalf("the secondary was called (%d calls); timeline:\n%s", n, textOf(inc))
	}
	if strings.Contains(k.Logs(), tok) {
		t.Fatal("the link's token is in Klaxon's log")
	}
}

// TestWebPagesLiveAndStatus signs in on the phone, watches the incident list
// update by itself when Alertmanager fires a new alert, visits every page,
// and sees the status page report the channel the fake made fail.
func TestWebPagesLiveAndStatus(t *testing.T) {
	ctx := browser(t)
	tw := faketwilio.New(t, twilioToken)
	k := webKlaxon(t, tw, `
      - {notify: primary, via: sms, wait: 1h}
      - {notify: secondary, via: phone, wait: 1h}`, "--selftest-interval", "1s", "--selftest-failures", "1")
	am := harness.StartAlertmanager(t, harness.AlertmanagerConfig{WebhookURL: k.URL() + "/webhook/alertmanager", BearerToken: k.WebhookToken(),
		GroupBy: []string{"alertname", "instance"}})
	fireDiskFull(t, k, "web-2", "db-1")
	waitState(t, k, 1, "open")

	// Alice signs in with her own API token, as `klaxon token create
	// --person alice` printed it. The admin API token belongs to nobody: it
	// signs nobody in.
	aliceToken := k.PersonToken("alice")
	form := url.Values{"token": {k.APIToken()}}.Encode()
	resp, err := http.Post(k.URL()+"/signin", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("sign-in with the admin API token: %d, cookies %v; want 401 and none", resp.StatusCode, resp.Cookies())
	}

	// Everything but a link needs a session: the list sends us to sign in.
	run(t, ctx, "open /", chromedp.Navigate(k.URL()+"/"), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	screenshot(t, ctx, "signin")
	run(t, ctx, "sign in", chromedp.SendKeys(chromedp.CSS(`#token`), aliceToken),
		chromedp.Click(chromedp.CSS(`form.signin button`)), chromedp.WaitVisible(chromedp.CSS(`#incident-1`)))
	h1 := get(t, ctx, "read the heading", chromedp.Text(chromedp.CSS(`h1`)))
	if h1 != "Incidents" {
		t.Fatalf("after sign-in the page is %q", h1)
	}
	// Mark this page: a reload would lose the mark.
	get(t, ctx, "mark the page", chromedp.Evaluate[int](`window.klaxonMark = 42`))
	am.PostAlerts(t, harness.AMAlert{Labels: map[string]string{"alertname": "ReplicationLag", "severity": "warning", "instance": "db-2"},
		Annotations: map[string]string{"summary": "Replica db-2 is 5 minutes behind"}})
	ctxLive, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctxLive, chromedp.WaitVisible(chromedp.CSS(`#incident-2`))); err != nil {
		t.Fatalf("the list did not show Alertmanager's new alert by itself within 30s: %v", err)
	}
	mark := get(t, ctx, "check the mark", chromedp.Evaluate[int](`window.klaxonMark || 0`))
	if mark != 42 {
		t.Fatal("the page reloaded instead of updating live")
	}
	screenshot(t, ctx, "incidents")
	fitsAt360(t, ctx, "/")
	// A phone in dark mode gets a dark page.
	run(t, ctx, "dark mode", colorScheme("dark"))
	bg := get(t, ctx, "background", chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
	if bg != "rgb(15, 17, 21)" {
		t.Fatalf("in dark mode the page's background is %s", bg)
	}
	screenshot(t, ctx, "incidents-dark")
	run(t, ctx, "light mode", colorScheme("light"))

	for _, p := range []struct{ path, name, wait string }{
		{"/incidents/1", "incident", "table.pages"},
		{"/oncall", "oncall", "ul.oncall"},
		{"/rota", "rota", "ol.shifts"},
	} {
		run(t, ctx, "open "+p.path, chromedp.Navigate(k.URL()+p.path), chromedp.WaitVisible(chromedp.CSS(p.wait)))
		scrollW := get(t, ctx, "page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		if scrollW > viewW {
			t.Errorf("%s is %dpx wide on a %dpx phone", p.path, scrollW, viewW)
		}
		screenshot(t, ctx, p.name)
		fitsAt360(t, ctx, p.path)
	}
	run(t, ctx, "open /oncall", chromedp.Navigate(k.URL()+"/oncall"))
	oncall := get(t, ctx, "read on call", chromedp.Text(chromedp.CSS(`main`)))
	if !strings.Contains(oncall, "Alice Archer") || !strings.Contains(oncall, "+15555550101") {
		t.Fatalf("on-call page:\n%s", oncall)
	}

	// The fake suspends the Twilio account: the status page shows it.
	tw.SetAccountStatus("suspended")
	var status string
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		run(t, ctx, "open /status", chromedp.Navigate(k.URL()+"/status"), chromedp.WaitVisible(chromedp.CSS(`#channel-sms`)))
		status = get(t, ctx, "read the sms channel", chromedp.Text(chromedp.CSS(`#channel-sms`)))
		return strings.Contains(status, "down") && strings.Contains(status, "suspended"), "sms on the status page: " + status
	})
	screenshot(t, ctx, "status")
	fitsAt360(t, ctx, "/status")
	if strings.Contains(k.Logs(), aliceToken) || strings.Contains(k.Logs(), k.APIToken()) {
		t.Fatal("the sign-in token is in Klaxon's log")
	}
}
