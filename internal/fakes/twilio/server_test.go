package faketwilio

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/twilio/twilio-go/client"
)

const token = "fakeToken0123456789abcdef"

func TestSignatureMatchesTwilioLibrary(t *testing.T) {
	// Twilio's documented example.
	params := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+12349013030"}, "Digits": {"1234"}, "From": {"+12349013030"}, "To": {"+18005551212"}}
	u := "https://mycompany.com/myapp.php?foo=1&bar=2"
	if got, want := Signature("12345", u, params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ="; got != want {
		t.Errorf("Signature = %s, want Twilio's documented %s", got, want)
	}
	v := client.NewRequestValidator(token)
	m := map[string]string{}
	for k := range params {
		m[k] = params.Get(k)
	}
	if !v.Validate(u, m, Signature(token, u, params)) {
		t.Error("twilio-go's validator rejects the fake's signature")
	}
	if v.Validate(u, m, Signature("other", u, params)) {
		t.Error("validator accepts a signature made with another token")
	}
}

func api(t *testing.T, s *Server, method, path, user, pass string, form url.Values) (int, map[string]any) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, s.URL()+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestAPIAuthAndValidation(t *testing.T) {
	s := New(t, token)
	calls := "/2010-04-01/Accounts/" + s.AccountSID() + "/Calls.json"
	msgs := "/2010-04-01/Accounts/" + s.AccountSID() + "/Messages.json"
	good := url.Values{"To": {"+15550100001"}, "From": {DefaultFrom}, "Url": {"https://k.example.org/voice"}}
	with := func(k, v string) url.Values {
		f := cloneValues(good)
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	sms := url.Values{"To": {"+15550100001"}, "From": {DefaultFrom}, "Body": {"hi"}}
	smsWith := func(k, v string) url.Values {
		f := cloneValues(sms)
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name       string
		method     string
		path       string
		user, pass string
		form       url.Values
		status     int
		code       float64
	}{
		{"no auth", "GET", "/2010-04-01/Accounts/" + s.AccountSID() + ".json", "", "", nil, 401, 20003},
		{"wrong token", "GET", "/2010-04-01/Accounts/" + s.AccountSID() + ".json", s.AccountSID(), "nope", nil, 401, 20003},
		{"other account", "GET", "/2010-04-01/Accounts/" + NewSID("AC") + ".json", s.AccountSID(), token, nil, 404, 20404},
		{"unknown resource", "GET", "/2010-04-01/Accounts/" + s.AccountSID() + "/Queues.json", s.AccountSID(), token, nil, 405, 20004},
		{"call ok", "POST", calls, s.AccountSID(), token, good, 201, 0},
		{"call no To", "POST", calls, s.AccountSID(), token, with("To", ""), 400, 21201},
		{"call bad To", "POST", calls, s.AccountSID(), token, with("To", "12345"), 400, 21211},
		{"call bad From", "POST", calls, s.AccountSID(), token, with("From", "abc"), 400, 21212},
		{"call From not owned", "POST", calls, s.AccountSID(), token, with("From", "+15559990000"), 400, 21210},
		{"call no Url", "POST", calls, s.AccountSID(), token, with("Url", ""), 400, 21205},
		{"call relative Url", "POST", calls, s.AccountSID(), token, with("Url", "/voice"), 400, 21205},
		{"call long Twiml", "POST", calls, s.AccountSID(), token, func() url.Values { f := with("Url", ""); f.Set("Twiml", strings.Repeat("x", 4001)); return f }(), 400, 21205},
		{"call bad detection", "POST", calls, s.AccountSID(), token, with("MachineDetection", "Yes"), 400, 20001},
		{"call bad timeout", "POST", calls, s.AccountSID(), token, with("Timeout", "601"), 400, 20001},
		{"call bad event", "POST", calls, s.AccountSID(), token, with("StatusCallbackEvent", "exploded"), 400, 20001},
		{"sms ok", "POST", msgs, s.AccountSID(), token, sms, 201, 0},
		{"sms no body", "POST", msgs, s.AccountSID(), token, smsWith("Body", ""), 400, 21602},
		{"sms long body", "POST", msgs, s.AccountSID(), token, smsWith("Body", strings.Repeat("x", 1601)), 400, 21617},
		{"sms no sender", "POST", msgs, s.AccountSID(), token, smsWith("From", ""), 400, 21603},
		{"sms bad service", "POST", msgs, s.AccountSID(), token, func() url.Values { f := smsWith("From", ""); f.Set("MessagingServiceSid", "MG1"); return f }(), 400, 21701},
		{"sms From not owned", "POST", msgs, s.AccountSID(), token, smsWith("From", "+15559990000"), 400, 21606},
		{"sms bad callback", "POST", msgs, s.AccountSID(), token, smsWith("StatusCallback", "nope"), 400, 21609},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := api(t, s, tc.method, tc.path, tc.user, tc.pass, tc.form)
			if status != tc.status {
				t.Fatalf("status %d %v, want %d", status, out, tc.status)
			}
			if tc.code != 0 && out["code"] != tc.code {
				t.Errorf("code %v, want %v (%v)", out["code"], tc.code, out)
			}
			if tc.status == 201 {
				sid, _ := out["sid"].(string)
				if len(sid) != 34 || out["status"] == nil {
					t.Errorf("created %v", out)
				}
			}
		})
	}
}

// app is a tiny application serving fixed TwiML per path.
func app(t *testing.T, routes map[string]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, ok := routes[r.URL.Path]
		if !ok {
			http.Error(w, "no", 500)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, doc)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestInterpreter(t *testing.T) {
	a := app(t, map[string]string{
		"/start":  `<Response><Say>Hello.</Say><Redirect>/menu</Redirect></Response>`,
		"/menu":   `<Response><Gather numDigits="1" action="/keys"><Say>Press a key.</Say></Gather><Say>Nothing pressed.</Say></Response>`,
		"/keys":   `<Response><Say>Got it.</Say><Hangup/><Say>never said</Say></Response>`,
		"/bad":    `<Response><Dance/></Response>`,
		"/broken": `<Response><Say>unclosed</Response>`,
		"/empty":  `<Response><Gather actionOnEmptyResult="true" action="/keys"><Say>Anything?</Say></Gather></Response>`,
		"/loop":   `<Response><Redirect>/loop</Redirect></Response>`,
	})
	s := New(t, token)
	place := func(path string) *Call {
		t.Helper()
		st, out := api(t, s, "POST", "/2010-04-01/Accounts/"+s.AccountSID()+"/Calls.json", s.AccountSID(), token,
			url.Values{"To": {"+15550100009"}, "From": {DefaultFrom}, "Url": {a.URL + path}})
		if st != 201 {
			t.Fatalf("create: %d %v", st, out)
		}
		return s.Phone("+15550100009").ExpectCall(t)
	}
	t.Run("redirect gather press hangup", func(t *testing.T) {
		c := place("/start")
		if said := c.Answer(); said != "Hello. Press a key." || !c.Waiting() {
			t.Errorf("said %q waiting %v", said, c.Waiting())
		}
		if said := c.Press("5"); said != "Got it." || c.Status() != "completed" {
			t.Errorf("said %q status %s", said, c.Status())
		}
	})
	t.Run("gather timeout falls through", func(t *testing.T) {
		c := place("/menu")
		c.Answer()
		if said := c.NoKeypress(); said != "Nothing pressed." || c.Status() != "completed" {
			t.Errorf("said %q status %s", said, c.Status())
		}
	})
	t.Run("actionOnEmptyResult posts", func(t *testing.T) {
		c := place("/empty")
		c.Answer()
		if said := c.NoKeypress(); said != "Got it." {
			t.Errorf("said %q", said)
		}
		if d := c.Callbacks()[len(c.Callbacks())-1].Params.Get("Digits"); d != "" {
			t.Errorf("empty result carried Digits %q", d)
		}
	})
	for _, path := range []string{"/bad", "/broken", "/missing", "/loop"} {
		t.Run("application error "+path, func(t *testing.T) {
			c := place(path)
			said := c.Answer()
			if !strings.Contains(said, "an application error has occurred") || len(c.Errors()) == 0 || c.Status() != "completed" {
				t.Errorf("said %q errors %v status %s", said, c.Errors(), c.Status())
			}
		})
	}
	t.Run("inline Twiml", func(t *testing.T) {
		st, _ := api(t, s, "POST", "/2010-04-01/Accounts/"+s.AccountSID()+"/Calls.json", s.AccountSID(), token,
			url.Values{"To": {"+15550100009"}, "From": {DefaultFrom}, "Twiml": {`<Response><Say>Inline.</Say></Response>`}})
		if st != 201 {
			t.Fatal(st)
		}
		c := s.Phone("+15550100009").ExpectCall(t)
		if said := c.Answer(); said != "Inline." {
			t.Errorf("said %q", said)
		}
	})
}

func TestSwitches(t *testing.T) {
	s := New(t, token)
	acct := "/2010-04-01/Accounts/" + s.AccountSID()
	s.SetAccountStatus("suspended")
	s.SetTrial(true)
	if st, out := api(t, s, "GET", acct+".json", s.AccountSID(), token, nil); st != 200 || out["status"] != "suspended" || out["type"] != "Trial" {
		t.Errorf("account %d %v", st, out)
	}
	if st, out := api(t, s, "GET", acct+"/Balance.json", s.AccountSID(), token, nil); st != 401 || out["code"] != float64(20005) {
		t.Errorf("balance of a suspended account: %d %v", st, out)
	}
	s.SetAccountStatus("active")
	s.SetBalance(1.5)
	if _, out := api(t, s, "GET", acct+"/Balance.json", s.AccountSID(), token, nil); out["balance"] != "1.50" {
		t.Errorf("balance %v", out)
	}
	s.ReleaseNumber(DefaultFrom)
	if _, out := api(t, s, "GET", acct+"/IncomingPhoneNumbers.json?PhoneNumber="+url.QueryEscape(DefaultFrom), s.AccountSID(), token, nil); len(out["incoming_phone_numbers"].([]any)) != 0 {
		t.Errorf("released number still listed: %v", out)
	}
	s.FailNext(1, 429, 20429)
	req, _ := http.NewRequest("GET", s.URL()+acct+".json", nil)
	req.SetBasicAuth(s.AccountSID(), token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("injected 429: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
