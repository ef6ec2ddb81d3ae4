package twilio

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func smsPage(id string) notifiers.Page {
	p := page(id, alice)
	p.Channel = notifiers.SMS
	return p
}

func TestSMSPageAndReplies(t *testing.T) {
	tests := []struct {
		reply      string
		wantAction notifiers.Action // "" → no response
		wantAnswer string
	}{
		{"1", notifiers.Ack, "Klaxon: Incident 42 acknowledged by Alice."},
		{" Ack ", notifiers.Ack, "Klaxon: Incident 42 acknowledged by Alice."},
		{"ACK!", notifiers.Ack, "Klaxon: Incident 42 acknowledged by Alice."},
		{"2", notifiers.Escalate, "Klaxon: Incident 42 acknowledged by Alice."},
		{"escalate", notifiers.Escalate, "Klaxon: Incident 42 acknowledged by Alice."},
		{"what?", "", "Klaxon #42: reply 1 to ack, 2 to escalate."},
		{"", "", "Klaxon #42: reply 1 to ack, 2 to escalate."},
		{"STOP", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.reply, func(t *testing.T) {
			e := newEnv(t)
			rc, err := e.tw.SMS().Notify(context.Background(), smsPage("s1"))
			if err != nil {
				t.Fatal(err)
			}
			ph := e.fake.Phone(alice)
			m := ph.ExpectSMS(t)
			if m.Sid != rc.ProviderID || m.From != faketwilio.DefaultFrom {
				t.Errorf("sms %+v, receipt %+v", m, rc)
			}
			if want := "Klaxon #42 CRITICAL: Disk full on db-1. Reply 1 to ack, 2 to escalate."; m.Body != want {
				t.Errorf("body %q, want %q", m.Body, want)
			}
			answer := ph.ReplySMS(tc.reply)
			if answer != tc.wantAnswer {
				t.Errorf("answer %q, want %q", answer, tc.wantAnswer)
			}
			got := e.resp.responses()
			if tc.wantAction == "" {
				if len(got) != 0 {
					t.Errorf("responses %v, want none", got)
				}
				return
			}
			want := notifiers.Response{Action: tc.wantAction, Incident: 42, PageID: "s1", Channel: notifiers.SMS, From: alice, At: testNow}
			if len(got) != 1 || got[0] != want {
				t.Errorf("responses %+v, want %+v", got, want)
			}
		})
	}
}

func TestSMSReplyFromUnknownNumberIsRefused(t *testing.T) {
	e := newEnv(t)
	if _, err := e.tw.SMS().Notify(context.Background(), smsPage("s1")); err != nil {
		t.Fatal(err)
	}
	answer := e.fake.Phone("+15559999999").SendSMS(faketwilio.DefaultFrom, "1")
	if answer != "Klaxon: this number is not on the rota." {
		t.Errorf("answer %q", answer)
	}
	if n := len(e.resp.responses()); n != 0 {
		t.Errorf("%d responses from an unknown number", n)
	}
}

func TestSMSReplyRoutesToLatestPage(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"s1", "s2"} {
		p := smsPage(id)
		if id == "s2" {
			p.Incident = 43
		}
		if _, err := e.tw.SMS().Notify(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	e.fake.Phone(alice).ReplySMS("1")
	got := e.resp.responses()
	if len(got) != 1 || got[0].PageID != "s2" || got[0].Incident != 43 {
		t.Errorf("responses %+v, want the latest page s2/43", got)
	}
}

func TestSMSReplyErrorsAndRetries(t *testing.T) {
	e := newEnv(t)
	e.tw.SMS().Notify(context.Background(), smsPage("s1"))
	ph := e.fake.Phone(alice)
	e.resp.err = notifiers.ErrNotOnRota
	if a := ph.ReplySMS("1"); a != "Klaxon: only people on the rota can acknowledge." {
		t.Errorf("not on rota answer %q", a)
	}
	e.resp.err = nil
	ph.ReplySMS("1")
	// Twilio retries the same message: one response only, same answer.
	first := e.fake.LastCallback()
	for range 3 {
		again := e.fake.Resend(first)
		if again.Body != first.Body {
			t.Errorf("retry answered %q, first %q", again.Body, first.Body)
		}
	}
	if n := len(e.resp.responses()); n != 2 {
		t.Errorf("%d responses, want 2 (one per distinct message)", n)
	}
}

func TestSMSNoticesAndIgnoredKinds(t *testing.T) {
	e := newEnv(t)
	ph := e.fake.Phone(alice)
	for _, tc := range []struct {
		kind notifiers.Kind
		text string
		want string
	}{
		{notifiers.KindAcknowledged, "acknowledged by Alice via phone", "Klaxon #42 acknowledged by Alice via phone."},
		{notifiers.KindResolved, "", "Klaxon #42 resolved."},
	} {
		p := smsPage("n-" + string(tc.kind))
		p.Kind, p.Text = tc.kind, tc.text
		if _, err := e.tw.SMS().Notify(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		if m := ph.ExpectSMS(t); m.Body != tc.want {
			t.Errorf("%s: body %q, want %q", tc.kind, m.Body, tc.want)
		}
	}
	for _, k := range []notifiers.Kind{notifiers.KindNotice, notifiers.KindEscalated, notifiers.KindUnacknowledged} {
		p := smsPage("x")
		p.Kind = k
		if rc, err := e.tw.SMS().Notify(context.Background(), p); err != nil || rc.ProviderID != "" || rc.Detail != "" || rc.State != nil {
			t.Errorf("%s: %+v %v", k, rc, err)
		}
	}
	if ph.PendingSMS() != 0 {
		t.Errorf("ignored kinds sent texts")
	}
	// Notices do not route replies: a reply finds no page.
	if a := ph.ReplySMS("1"); a != "Klaxon: this number is not on the rota." {
		t.Errorf("reply after notices only: %q", a)
	}
}

func TestSMSBodyIsBounded(t *testing.T) {
	p := smsPage("s1")
	p.Title = strings.Repeat("very long title ", 100)
	b := smsPageBody(p)
	if n := len([]rune(b)); n > maxSMS || !strings.HasSuffix(b, "Reply 1 to ack, 2 to escalate.") {
		t.Errorf("body of %d runes: %q", n, b)
	}
}

func TestSMSCarriesTheLinkWhole(t *testing.T) {
	link := "https://klaxon.example.org/l/42-3.alice.mabcdef.AAAAAAAAAAAAAAAAAAAAAA"
	tests := []struct {
		name, title, link string
		want              bool
	}{
		{"short title", "Disk full on db-1", link, true},
		{"long title is cut, not the link", strings.Repeat("very long title ", 100), link, true},
		{"no link", "Disk full", "", false},
		{"not http", "Disk full", "javascript:alert(1)", false},
		{"spaces", "Disk full", "https://k.example.org/l/a b", false},
		{"too long to fit", "Disk full", "https://k.example.org/" + strings.Repeat("x", maxSMS), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := smsPage("s1")
			p.Title, p.Link = tc.title, tc.link
			b := smsPageBody(p)
			if n := len([]rune(b)); n > maxSMS {
				t.Fatalf("body of %d runes: %q", n, b)
			}
			if !strings.Contains(b, "Reply 1 to ack, 2 to escalate.") {
				t.Fatalf("reply codes missing: %q", b)
			}
			if got := tc.link != "" && strings.HasSuffix(b, " "+tc.link); got != tc.want {
				t.Fatalf("link at the end = %v, want %v: %q", got, tc.want, b)
			}
		})
	}
}

func TestSMSDeliveryReports(t *testing.T) {
	tests := []struct {
		name      string
		do        func(*faketwilio.SMS)
		status    notifiers.DeliveryStatus
		permanent bool
		detail    string
	}{
		{"delivered", (*faketwilio.SMS).Delivered, notifiers.Delivered, false, "delivered"},
		{"landline", func(m *faketwilio.SMS) { m.Undelivered(30006) }, notifiers.Failed, true, "sms undelivered: 30006"},
		{"unreachable", func(m *faketwilio.SMS) { m.Undelivered(30003) }, notifiers.Failed, false, "sms undelivered: 30003"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.tw.SMS().Notify(context.Background(), smsPage("s1"))
			m := e.fake.Phone(alice).ExpectSMS(t)
			tc.do(m)
			e.fake.RetryLastCallback()
			reps := e.rep.All()
			if len(reps) != 1 || reps[0].Status != tc.status || reps[0].Permanent != tc.permanent || !strings.HasPrefix(reps[0].Detail, tc.detail) || reps[0].Channel != notifiers.SMS || reps[0].PageID != "s1" {
				t.Errorf("reports %+v", reps)
			}
		})
	}
}

func TestSMSThroughMessagingService(t *testing.T) {
	svc := faketwilio.NewSID("MG")
	e := newEnv(t, func(c *Config) { c.MessagingServiceSID = svc })
	if _, err := e.tw.SMS().Notify(context.Background(), smsPage("s1")); err != nil {
		t.Fatal(err)
	}
	m := e.fake.Phone(alice).ExpectSMS(t)
	if m.MessagingServiceSid != svc {
		t.Errorf("sent via %q, want %q", m.MessagingServiceSid, svc)
	}
}

// TestSMSMessage: a message outside any incident is texted as it is, with no
// status callback (there is no page to report on), and a reply to it answers
// nothing.
func TestSMSMessage(t *testing.T) {
	e := newEnv(t)
	p := notifiers.Page{ID: "notice-1", Kind: notifiers.KindMessage, Channel: notifiers.SMS,
		Recipient: notifiers.Recipient{PersonID: "alice", Name: "Alice", Phone: alice},
		Text:      "You are on call for primary from 09:00 until Mon 9 Mar 09:00; open incidents: 2."}
	if _, err := e.tw.SMS().Notify(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	m := e.fake.Phone(alice).ExpectSMS(t)
	if want := "Klaxon: " + p.Text; m.Body != want || m.StatusCallback != "" {
		t.Fatalf("sms %+v, want body %q and no status callback", m, want)
	}
	e.fake.Phone(alice).ReplySMS("1")
	if got := e.resp.responses(); len(got) != 0 {
		t.Fatalf("a reply to a message answered %v", got)
	}
	p.Recipient.Phone = ""
	if _, err := e.tw.SMS().Notify(context.Background(), p); !notifiers.IsPermanent(err) {
		t.Fatalf("no phone number: %v", err)
	}
}

// watchedState is a StateStore that notes every write and what the fake
// Twilio had received when it happened.
type watchedState struct {
	*memState
	fake   *faketwilio.Server
	mu     sync.Mutex
	writes []string // "bucket key texts-received-so-far"
}

func (w *watchedState) PutState(ctx context.Context, bucket, key string, value []byte) error {
	w.mu.Lock()
	w.writes = append(w.writes, fmt.Sprintf("%s %s %d", bucket, key, w.fake.Phone(alice).PendingSMS()))
	w.mu.Unlock()
	return w.memState.PutState(ctx, bucket, key, value)
}

// No store write sits between the engine's commit and the request to
// Twilio, nor after it: Notify writes nothing, and the text's reply routing
// rides in the receipt for the engine's own commit.
func TestSMSNotifyWritesNothing(t *testing.T) {
	var ws *watchedState
	e := newEnv(t, func(c *Config) {
		ws = &watchedState{memState: newMemState()}
		c.State = ws
	})
	ws.fake = e.fake
	rc, err := e.tw.SMS().Notify(context.Background(), smsPage("s1"))
	if err != nil {
		t.Fatal(err)
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if len(ws.writes) != 0 {
		t.Errorf("Notify wrote to the store itself: %v", ws.writes)
	}
	if len(rc.State) != 1 || !strings.Contains(string(rc.State[0].Value), `"page_id":"s1"`) {
		t.Errorf("receipt state %+v, want the route to s1", rc.State)
	}
}

// A reply that arrives while Klaxon still waits for Twilio's answer (the
// route is not on disk yet) reaches the page.
func TestSMSReplyBeforeTwilioAnswers(t *testing.T) {
	e := newEnv(t)
	var answer string
	e.fake.OnMessage(func(m *faketwilio.SMS) { answer = e.fake.Phone(m.To).ReplySMS("1") })
	if _, err := e.tw.SMS().Notify(context.Background(), smsPage("s1")); err != nil {
		t.Fatal(err)
	}
	if answer != "Klaxon: Incident 42 acknowledged by Alice." {
		t.Errorf("answer %q", answer)
	}
	if got := e.resp.responses(); len(got) != 1 || got[0].PageID != "s1" || got[0].Action != notifiers.Ack {
		t.Errorf("responses %+v, want an ack of s1", got)
	}
}

// commitReceipt does what the engine and its store do with a sent page's
// receipt: write its channel state, each write as its Replaces allows.
func commitReceipt(t *testing.T, st notifiers.StateStore, rc notifiers.Receipt) {
	t.Helper()
	ctx := context.Background()
	for _, w := range rc.State {
		old, err := st.GetState(ctx, w.Bucket, w.Key)
		if err != nil {
			t.Fatal(err)
		}
		if w.Replaces == nil || w.Replaces(old) {
			if err := st.PutState(ctx, w.Bucket, w.Key, w.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Notify writes nothing itself: the route rides in the receipt, which the
// engine writes in the transaction recording the page as sent. After that a
// restart still routes replies (a crash before it leaves the page in flight,
// and it is texted again).
func TestSMSReplyRoutesAfterARestart(t *testing.T) {
	state := newMemState()
	withState := func(c *Config) { c.State = state }
	first := newEnv(t, withState)
	rc, err := first.tw.SMS().Notify(context.Background(), smsPage("s1"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := state.GetState(context.Background(), bucketSMSRoute, alice); b != nil {
		t.Fatalf("Notify wrote the route itself (a commit before the engine's): %q", b)
	}
	if len(rc.State) != 1 || rc.State[0].Bucket != bucketSMSRoute || rc.State[0].Key != alice {
		t.Fatalf("receipt state %+v, want alice's route", rc.State)
	}
	commitReceipt(t, state, rc)
	if b, _ := state.GetState(context.Background(), bucketSMSRoute, alice); !strings.Contains(string(b), `"page_id":"s1"`) {
		t.Fatalf("route not saved with the receipt: %q", b)
	}
	// A new process: same store, nothing in memory, same Twilio account.
	second := newEnv(t, withState, func(c *Config) {
		c.AccountSID, c.APIURL = first.fake.AccountSID(), first.fake.URL()
	})
	first.fake.SetSMSURL(faketwilio.DefaultFrom, second.hook.URL+"/webhook/twilio/sms")
	if answer := first.fake.Phone(alice).ReplySMS("1"); answer != "Klaxon: Incident 42 acknowledged by Alice." {
		t.Errorf("answer after restart %q", answer)
	}
	if got := second.resp.responses(); len(got) != 1 || got[0].PageID != "s1" {
		t.Errorf("responses after restart %+v, want an ack of s1", got)
	}
}

// Two texts to one number whose results are recorded out of order: the later
// text keeps the route, in memory and on disk.
func TestSMSOlderTextFinishingLastKeepsNoRoute(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	older := e.tw.routes.begin(alice, "s1", 41, testNow)
	newer := e.tw.routes.begin(alice, "s2", 42, testNow) // same clock reading: still later
	for _, rt := range []smsRoute{newer, older} {
		commitReceipt(t, e.tw.state, notifiers.Receipt{State: []notifiers.StateWrite{e.tw.routeWrite(alice, rt)}})
	}
	rt, ok, err := e.tw.route(ctx, alice)
	if err != nil || !ok || rt.PageID != "s2" {
		t.Fatalf("route %+v %v %v, want s2", rt, ok, err)
	}
	var saved smsRoute
	if _, err := e.tw.getJSON(ctx, bucketSMSRoute, alice, &saved); err != nil || saved.PageID != "s2" {
		t.Fatalf("saved route %+v %v, want s2", saved, err)
	}
}

// A burst of texts reuses the connections of the burst before instead of
// setting up new ones (http.DefaultTransport keeps only two idle, so about 18
// of 20 would be new). A few may still be new: a connection goes back to the
// idle pool just after its response is read, and the next burst can be faster.
func TestBurstsOfTextsReuseConnections(t *testing.T) {
	e := newEnv(t)
	burst := func() {
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				if _, err := e.tw.SMS().Notify(context.Background(), smsPage(fmt.Sprint("s", i))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	burst()
	fewest := 20
	for range 3 { // the fewest of three, so one racy burst does not decide
		before := e.fake.Connections()
		burst()
		fewest = min(fewest, e.fake.Connections()-before)
	}
	if fewest > 4 {
		t.Fatalf("every later burst of 20 texts opened new connections, at least %d", fewest)
	}
}
