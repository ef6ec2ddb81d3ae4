package twilio

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// postSigned posts a form with the given signature header ("" for none).
func postSigned(t *testing.T, target string, params url.Values, sig string) *faketwilio.Callback {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(params.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set("X-Twilio-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &faketwilio.Callback{Method: "POST", URL: target, Params: params, Signature: sig, Status: resp.StatusCode, Body: string(b)}
}

func TestCallbackRequestsAreChecked(t *testing.T) {
	e := newEnv(t)
	gatherURL := e.hook.URL + "/webhook/twilio/gather?incident=42&page=p1"
	keypress := url.Values{"CallSid": {faketwilio.NewSID("CA")}, "Digits": {"1"}, "To": {alice}, "From": {faketwilio.DefaultFrom}}
	good := faketwilio.Signature(testToken, gatherURL, keypress)
	forgedIncident := e.hook.URL + "/webhook/twilio/gather?incident=43&page=p1"
	smsURL := e.hook.URL + "/webhook/twilio/sms"
	sms := url.Values{"MessageSid": {faketwilio.NewSID("SM")}, "From": {alice}, "Body": {"1"}}

	tests := []struct {
		name   string
		method string
		target string
		ctype  string
		body   string
		sig    string
		want   int
	}{
		{"valid signature", "POST", gatherURL, "", keypress.Encode(), good, 200},
		{"no signature", "POST", gatherURL, "", keypress.Encode(), "", 403},
		{"signed with another token", "POST", gatherURL, "", keypress.Encode(), faketwilio.Signature("wrongtoken", gatherURL, keypress), 403},
		{"query changed after signing", "POST", forgedIncident, "", keypress.Encode(), good, 403},
		{"body changed after signing", "POST", gatherURL, "", url.Values{"CallSid": keypress["CallSid"], "Digits": {"2"}, "To": {alice}, "From": {faketwilio.DefaultFrom}}.Encode(), good, 403},
		{"garbage signature", "POST", gatherURL, "", keypress.Encode(), "!!!not base64", 403},
		{"forged sms reply", "POST", smsURL, "", sms.Encode(), faketwilio.Signature(testToken, smsURL+"?x=1", sms), 403},
		{"GET", "GET", gatherURL, "", "", good, 405},
		{"JSON body", "POST", gatherURL, "application/json", `{"Digits":"1"}`, good, 415},
		{"malformed form", "POST", gatherURL, "", "Digits=%zz", good, 400},
		{"oversized", "POST", gatherURL, "", "Digits=" + strings.Repeat("1", maxCallbackBody+1), good, 413},
		{"unknown endpoint", "POST", e.hook.URL + "/webhook/twilio/nope", "", keypress.Encode(), good, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.sig != "" {
				req.Header.Set("X-Twilio-Signature", tc.sig)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, b, tc.want)
			}
			noSecret(t, "response", string(b))
		})
	}
	// Only the validly signed request reached the engine.
	if got := e.resp.responses(); len(got) != 1 || got[0].Incident != 42 {
		t.Errorf("responses %+v, want exactly the signed one", got)
	}
}

func TestSignedButMalformedQueries(t *testing.T) {
	e := newEnv(t)
	params := url.Values{"CallSid": {faketwilio.NewSID("CA")}, "CallStatus": {"busy"}}
	for _, q := range []string{"", "?page=p1", "?incident=42", "?page=p1&incident=-1", "?page=p1&incident=forty-two", "?page=p1&incident=99999999999999999999999"} {
		target := e.hook.URL + "/webhook/twilio/status" + q
		cb := postSigned(t, target, params, faketwilio.Signature(testToken, target, params))
		if cb.Status != 400 {
			t.Errorf("%q: status %d, want 400", q, cb.Status)
		}
	}
	if n := len(e.rep.All()); n != 0 {
		t.Errorf("%d reports from malformed callbacks", n)
	}
}

func TestSignedCallbacksWithMissingFields(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		endpoint string
		params   url.Values
		want     int
	}{
		{"status?incident=42&page=p1", url.Values{}, 204},
		{"status?incident=42&page=p1", url.Values{"CallSid": {"CA1"}, "CallStatus": {"ringing"}}, 204},
		{"sms-status?incident=42&page=p1", url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"sent"}}, 204},
		{"gather?incident=42&page=p1", url.Values{"Digits": {"1"}}, 200},
		{"voice?incident=42&page=unknown-page", url.Values{"CallSid": {"CA2"}}, 200},
		{"sms", url.Values{"Body": {"1"}}, 200},
	}
	for _, tc := range tests {
		target := e.hook.URL + "/webhook/twilio/" + tc.endpoint
		cb := postSigned(t, target, tc.params, faketwilio.Signature(testToken, target, tc.params))
		if cb.Status != tc.want {
			t.Errorf("%s %v: status %d (%s), want %d", tc.endpoint, tc.params, cb.Status, cb.Body, tc.want)
		}
	}
	if len(e.resp.responses()) != 0 || len(e.rep.All()) != 0 {
		t.Errorf("incomplete callbacks acted: %v %v", e.resp.responses(), e.rep.All())
	}
}

func TestUnknownPageStillGetsAMenu(t *testing.T) {
	// The state store lost the page (or never had it): the call still
	// offers the menu from the signed query, and a keypress still acts.
	e := newEnv(t)
	target := e.hook.URL + "/webhook/twilio/voice?incident=7&page=lost"
	params := url.Values{"CallSid": {"CA3"}, "To": {alice}}
	cb := postSigned(t, target, params, faketwilio.Signature(testToken, target, params))
	if cb.Status != 200 || !strings.Contains(cb.Body, "Incident 7.") || !strings.Contains(cb.Body, "Press 1") {
		t.Errorf("answer %d %s", cb.Status, cb.Body)
	}
}
