package main

import (
	"bytes"
	"net/url"
	"testing"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// TestAttackTwilioCallbackOtherIncident: a Twilio callback whose page
// belongs to incident 1 but whose URL names incident 2 must not act on
// incident 2 (the web's ActAs already checks this; Respond did not).
func TestAttackTwilioCallbackOtherIncident(t *testing.T) {
	tw := faketwilio.New(t, amTwilioToken)
	const public = "https://klaxon.example.org"
	k := startKlaxon(t, "", nil, map[string]string{
		"KLAXON_TWILIO_ACCOUNT_SID": tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN": amTwilioToken,
		"KLAXON_TWILIO_FROM": faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL": tw.URL(), "KLAXON_PUBLIC_URL": public,
	})
	first, second := k.webhook(t, "g1", `"alertname":"g1"`), k.webhook(t, "g2", `"alertname":"g2"`)
	q := url.Values{"page": {first + "-1"}, "incident": {second}}
	path := "/webhook/twilio/gather?" + q.Encode()
	f := url.Values{"CallSid": {"CAattack"}, "Digits": {"1"}, "To": {"+15555550101"}, "From": {faketwilio.DefaultFrom}, "AccountSid": {tw.AccountSID()}}
	r := newReq(t, "POST", k.base+path, []byte(f.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amTwilioToken, public+path, f))
	resp, body := do(t, r)
	if resp.StatusCode != 200 {
		t.Fatalf("gather: %d %s", resp.StatusCode, body)
	}
	if st := k.incidentState(t, second); st != "open" {
		t.Fatalf("a callback for incident 1's page acted on incident 2: %s", st)
	}
	if !bytes.Contains([]byte(body), []byte("does not know incident "+second)) {
		t.Errorf("the caller is not told: %s", body)
	}
}
