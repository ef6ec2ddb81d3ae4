package twilio

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestCallIsPlacedWithDetectionAndCallbacks(t *testing.T) {
	e := newEnv(t)
	c := e.call(t, "p1")
	if c.To != alice || c.From != faketwilio.DefaultFrom {
		t.Errorf("call %s → %s, want %s → %s", c.From, c.To, faketwilio.DefaultFrom, alice)
	}
	if got := c.Params.Get("MachineDetection"); got != "DetectMessageEnd" {
		t.Errorf("MachineDetection = %q", got)
	}
	for _, k := range []string{"Url", "StatusCallback"} {
		u, err := url.Parse(c.Params.Get(k))
		if err != nil || !strings.HasPrefix(c.Params.Get(k), e.hook.URL+"/webhook/twilio/") {
			t.Fatalf("%s = %q", k, c.Params.Get(k))
		}
		if u.Query().Get("page") != "p1" || u.Query().Get("incident") != "42" {
			t.Errorf("%s query = %v, want page p1 incident 42", k, u.Query())
		}
	}
	said := c.Answer()
	for _, want := range []string{"Klaxon alert. Incident 42. Critical. Disk full on db-1.", "Press 1 to acknowledge", "Press 2 to escalate", "Press 9 to hear this again"} {
		if !strings.Contains(said, want) {
			t.Errorf("call said %q, missing %q", said, want)
		}
	}
	if !c.Waiting() {
		t.Fatalf("call is not waiting for a key (errors %v)", c.Errors())
	}
	// The TwiML itself: one Gather of one digit posting to the gather callback.
	doc, err := faketwilio.ParseTwiML(e.fake.LastCallback().Body)
	if err != nil {
		t.Fatal(err)
	}
	g := doc.Children[0]
	if g.XMLName.Local != "Gather" || g.Attr("numDigits") != "1" || !strings.Contains(g.Attr("action"), "/webhook/twilio/gather?") {
		t.Errorf("first verb = <%s numDigits=%q action=%q>", g.XMLName.Local, g.Attr("numDigits"), g.Attr("action"))
	}
	if len(e.resp.responses()) != 0 {
		t.Errorf("answering alone produced responses %v", e.resp.responses())
	}
}

func TestKeypress(t *testing.T) {
	tests := []struct {
		name       string
		key        string
		respErr    error
		outcome    notifiers.Outcome
		wantAction notifiers.Action
		wantSay    string
		wantEnded  bool
	}{
		{"press 1 acknowledges", "1", nil, notifiers.Outcome{Incident: 42, Applied: true, Message: "Incident 42 acknowledged"}, notifiers.Ack, "Incident 42 acknowledged. Thank you. Goodbye.", true},
		{"press 2 escalates", "2", nil, notifiers.Outcome{Incident: 42, Applied: true, Message: "Incident 42 escalated to Bob"}, notifiers.Escalate, "Incident 42 escalated to Bob. Goodbye.", true},
		{"already acknowledged", "1", nil, notifiers.Outcome{Incident: 42, Applied: false, Message: "Incident 42 was already acknowledged by Bob"}, notifiers.Ack, "Incident 42 was already acknowledged by Bob. Goodbye.", true},
		{"outcome without message", "1", nil, notifiers.Outcome{Incident: 42, Applied: true}, notifiers.Ack, "Incident 42 acknowledged. Thank you. Goodbye.", true},
		{"not on rota", "1", notifiers.ErrNotOnRota, notifiers.Outcome{}, notifiers.Ack, "Only people on the rota can acknowledge", true},
		{"unknown incident", "1", notifiers.ErrUnknownIncident, notifiers.Outcome{}, notifiers.Ack, "Klaxon does not know incident 42", true},
		{"engine failure lets them retry", "1", errors.New("disk on fire"), notifiers.Outcome{}, notifiers.Ack, "could not record your answer", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.resp.out, e.resp.err = tc.outcome, tc.respErr
			c := e.call(t, "p1")
			c.Answer()
			said := c.Press(tc.key)
			if !strings.Contains(said, tc.wantSay) {
				t.Errorf("after %s the call said %q, want %q", tc.key, said, tc.wantSay)
			}
			got := e.resp.responses()
			if len(got) != 1 {
				t.Fatalf("responses = %v, want one", got)
			}
			want := notifiers.Response{Action: tc.wantAction, Incident: 42, PageID: "p1", Channel: notifiers.Phone, From: alice, At: testNow}
			if got[0] != want {
				t.Errorf("response = %+v, want %+v", got[0], want)
			}
			if ended := c.Status() == "completed"; ended != tc.wantEnded {
				t.Errorf("call status %s, want ended=%v", c.Status(), tc.wantEnded)
			}
			if !tc.wantEnded {
				e.resp.err = nil
				c.Press("1")
				if n := len(e.resp.responses()); n != 2 {
					t.Errorf("retry after a failure: %d responses, want 2", n)
				}
			}
		})
	}
}

func TestPressNineRepeatsThenOneAcks(t *testing.T) {
	e := newEnv(t)
	c := e.call(t, "p1")
	c.Answer()
	again := c.Press("9")
	if !strings.Contains(again, "Disk full on db-1") || !strings.Contains(again, "Press 1 to acknowledge") {
		t.Errorf("9 said %q, want the alert again", again)
	}
	if n := len(e.resp.responses()); n != 0 {
		t.Fatalf("9 produced %d responses", n)
	}
	c.Press("1")
	if got := e.resp.responses(); len(got) != 1 || got[0].Action != notifiers.Ack {
		t.Errorf("responses = %v", got)
	}
	reps := e.rep.All()
	if len(reps) != 1 || reps[0].Status != notifiers.Delivered {
		t.Errorf("reports = %+v, want one Delivered", reps)
	}
}

func TestWrongKeyReprompts(t *testing.T) {
	e := newEnv(t)
	c := e.call(t, "p1")
	c.Answer()
	said := c.Press("5")
	if !strings.Contains(said, "not an option") || !c.Waiting() {
		t.Errorf("5 said %q (waiting %v)", said, c.Waiting())
	}
	said = c.Press("7")
	if !strings.Contains(said, "not an option") {
		t.Errorf("7 said %q", said)
	}
	said = c.Press("8")
	if !strings.Contains(said, "not acknowledged. Goodbye") || c.Status() != "completed" {
		t.Errorf("third wrong key said %q, status %s", said, c.Status())
	}
	if n := len(e.resp.responses()); n != 0 {
		t.Errorf("wrong keys produced %d responses", n)
	}
}

func TestNoKeypressIsNotAcknowledged(t *testing.T) {
	e := newEnv(t)
	c := e.call(t, "p1")
	c.Answer()
	var said string
	for i := 0; c.Waiting() && i < 10; i++ {
		said = c.NoKeypress()
	}
	if !strings.Contains(said, "Incident 42 is not acknowledged. Goodbye.") {
		t.Errorf("last words %q", said)
	}
	if c.Status() != "completed" {
		t.Errorf("status %s", c.Status())
	}
	if n := len(e.resp.responses()); n != 0 {
		t.Errorf("no keypress produced %d responses", n)
	}
	reps := e.rep.All()
	if len(reps) != 1 || reps[0].Status != notifiers.NoAnswer || !strings.Contains(reps[0].Detail, "no key pressed") || reps[0].PageID != "p1" || reps[0].Incident != 42 || reps[0].Channel != notifiers.Phone {
		t.Errorf("reports = %+v, want one NoAnswer 'no key pressed'", reps)
	}
}

func TestVoicemailNeverAcknowledges(t *testing.T) {
	for _, md := range []string{"DetectMessageEnd", "Enable"} {
		t.Run(md, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.MachineDetection = md })
			c := e.call(t, "p1")
			heard := c.Voicemail()
			if strings.Contains(heard, "Press 1") {
				t.Errorf("voicemail was offered the menu: %q", heard)
			}
			if md == "DetectMessageEnd" && !strings.Contains(heard, "cannot acknowledge") {
				t.Errorf("voicemail message %q", heard)
			}
			if n := len(e.resp.responses()); n != 0 {
				t.Errorf("voicemail produced %d responses", n)
			}
			reps := e.rep.All()
			if len(reps) != 1 || reps[0].Status != notifiers.NoAnswer || !strings.Contains(reps[0].Detail, "voicemail") {
				t.Errorf("reports = %+v, want exactly one NoAnswer voicemail", reps)
			}
		})
	}
}

func TestUnansweredCallsAreReported(t *testing.T) {
	tests := []struct {
		name   string
		do     func(*faketwilio.Call)
		status notifiers.DeliveryStatus
		detail string
	}{
		{"busy", (*faketwilio.Call).Busy, notifiers.NoAnswer, "busy"},
		{"no answer", (*faketwilio.Call).NoAnswer, notifiers.NoAnswer, "no answer"},
		{"canceled", (*faketwilio.Call).Canceled, notifiers.NoAnswer, "canceled"},
		{"failed", (*faketwilio.Call).Failed, notifiers.Failed, "call failed"},
		{"hung up without a key", func(c *faketwilio.Call) { c.Answer(); c.Hangup() }, notifiers.NoAnswer, "answered, no key pressed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := e.call(t, "p1")
			tc.do(c)
			reps := e.rep.All()
			if len(reps) != 1 || reps[0].Status != tc.status || !strings.HasPrefix(reps[0].Detail, tc.detail) || reps[0].PageID != "p1" {
				t.Errorf("reports = %+v, want one %s %q", reps, tc.status, tc.detail)
			}
			if n := len(e.resp.responses()); n != 0 {
				t.Errorf("%d responses, want none", n)
			}
		})
	}
}

func TestRetriedCallbacksActOnce(t *testing.T) {
	e := newEnv(t)
	c := e.call(t, "p1")
	c.Answer()
	first := c.Press("1")
	var gather, status *faketwilio.Callback
	for _, cb := range c.Callbacks() {
		switch {
		case strings.Contains(cb.URL, "/gather?"):
			gather = cb
		case strings.Contains(cb.URL, "/status?"):
			status = cb
		}
	}
	if gather == nil || status == nil {
		t.Fatalf("callbacks %v: no gather or status", c.Callbacks())
	}
	for range 2 {
		again := e.fake.Resend(gather)
		if again.Status != 200 || again.Body != gather.Body {
			t.Errorf("retried gather answered %d %q, first answer %q", again.Status, again.Body, gather.Body)
		}
		if again := e.fake.Resend(status); again.Status/100 != 2 {
			t.Errorf("retried status answered %d", again.Status)
		}
	}
	if n := len(e.resp.responses()); n != 1 {
		t.Errorf("%d responses after retries, want 1", n)
	}
	if n := len(e.rep.All()); n != 1 {
		t.Errorf("%d reports after retries, want 1", n)
	}
	if !strings.Contains(first, "acknowledged") {
		t.Errorf("first answer %q", first)
	}
}

func TestNonPageKindsPlaceNoCall(t *testing.T) {
	e := newEnv(t)
	for _, k := range []notifiers.Kind{notifiers.KindAcknowledged, notifiers.KindResolved, notifiers.KindNotice, notifiers.KindEscalated, notifiers.KindUnacknowledged} {
		p := page("p-"+string(k), alice)
		p.Kind = k
		rc, err := e.tw.Voice().Notify(context.Background(), p)
		if err != nil || rc.ProviderID != "" || rc.Detail != "" || rc.State != nil {
			t.Errorf("%s: receipt %+v err %v, want nothing", k, rc, err)
		}
	}
	if n := e.fake.Requests(); n != 0 {
		t.Errorf("%d API requests for non-page kinds", n)
	}
	if e.fake.Phone(alice).PendingCalls() != 0 {
		t.Error("a call rang")
	}
}

func TestScript(t *testing.T) {
	tests := []struct {
		name string
		p    notifiers.Page
		want string
	}{
		{"full", notifiers.Page{Incident: 42, Severity: "critical", Title: "Disk full on db-1"}, "Klaxon alert. Incident 42. Critical. Disk full on db-1."},
		{"no severity, alert name", notifiers.Page{Incident: 7, Alerts: []notifiers.Alert{{Labels: map[string]string{"alertname": "HighLatency"}}}}, "Klaxon alert. Incident 7. HighLatency."},
		{"control characters", notifiers.Page{Incident: 1, Title: "bad\x00\ttitle\n\nhere!"}, "Klaxon alert. Incident 1. bad title here!"},
		{"synthetic", notifiers.Page{Incident: 2, Title: "PagerDuty down", Synthetic: true}, "Klaxon alert. Incident 2. PagerDuty down. This is an alarm about Klaxon itself."},
		{"huge title is cut", notifiers.Page{Incident: 3, Title: strings.Repeat("x", 5000)}, "Klaxon alert. Incident 3. " + strings.Repeat("x", 200) + "."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := script(tc.p); got != tc.want {
				t.Errorf("script = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConcurrentRetriesActOnce(t *testing.T) {
	e := newEnv(t)
	c := e.call(t, "p1")
	c.Answer()
	c.Press("1")
	var gather *faketwilio.Callback
	for _, cb := range c.Callbacks() {
		if strings.Contains(cb.URL, "/gather?") {
			gather = cb
		}
	}
	// Replay the same keypress five times at once against a fresh call
	// state: only one may reach the engine.
	e2 := newEnv(t)
	c2 := e2.call(t, "p1")
	c2.Answer()
	params := url.Values{}
	for k, v := range gather.Params {
		params[k] = v
	}
	params.Set("CallSid", c2.Sid)
	target := strings.Replace(gather.URL, e.hook.URL, e2.hook.URL, 1)
	sig := faketwilio.Signature(testToken, target, params)
	// The first Respond holds the door open for a while: without
	// serialisation a concurrent duplicate gets in during that window.
	second := make(chan struct{}, 5)
	var calls int
	e2.resp.hook = func(notifiers.Response) (notifiers.Outcome, error) {
		calls++ // under recResponder's lock
		if calls == 1 {
			e2.resp.mu.Unlock()
			select {
			case <-second:
			case <-time.After(300 * time.Millisecond):
			}
			e2.resp.mu.Lock()
		} else {
			second <- struct{}{}
		}
		return notifiers.Outcome{Incident: 42, Applied: true, Message: "Incident 42 acknowledged"}, nil
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", target, strings.NewReader(params.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Twilio-Signature", sig)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(e2.resp.responses()); n != 1 {
		t.Errorf("%d responses from 5 concurrent deliveries, want 1", n)
	}
}

// TestFoldedSummaryIsSpokenAndTexted: pages held back by a rate limit ride
// along in the next call and text, so the phone must say them.
func TestFoldedSummaryIsSpokenAndTexted(t *testing.T) {
	p := notifiers.Page{Kind: notifiers.KindPage, Incident: 42, Severity: "critical", Title: "Disk full on db-1", Text: "3 incidents need you: 42, 41, 40"}
	if got := script(p); !strings.Contains(got, "3 incidents need you: 42, 41, 40.") {
		t.Errorf("call script %q does not say the folded incidents", got)
	}
	if got := smsPageBody(p); !strings.Contains(got, "3 incidents need you: 42, 41, 40.") || !strings.HasSuffix(got, "Reply 1 to ack, 2 to escalate.") {
		t.Errorf("text %q does not carry the folded incidents and the reply codes", got)
	}
}
