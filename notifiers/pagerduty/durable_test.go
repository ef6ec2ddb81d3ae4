package pagerduty

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// restart builds a new notifier on the same config (and state store), as a
// restarted process would.
func (e *env) restart(t *testing.T) {
	t.Helper()
	n, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.n = n
}

func stateStore(t *testing.T) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func usersCalls(f *fakepd.Server) int {
	n := 0
	for _, c := range f.RESTCalls() {
		if c.Path == "/users/"+fakepd.DefaultUserID {
			n++
		}
	}
	return n
}

// TestWebhookReplayAfterRestartIsIgnored: a captured signed webhook replayed
// after a restart (within the age limit) is not applied a second time.
func TestWebhookReplayAfterRestartIsIgnored(t *testing.T) {
	st := stateStore(t)
	e := newEnv(t, func(c *Config) { c.State = st })
	body := webhookBody("EVT-captured", "incident.resolved", e.now.Now().Add(-time.Minute), "user_reference", "klaxon-42")
	sig := fakepd.Sign(body, testSecret)
	if rec := post(e.n.WebhookHandler(), body, sig); rec.Code != http.StatusAccepted {
		t.Fatalf("first delivery: %d", rec.Code)
	}
	e.restart(t)
	e.now.Advance(30 * time.Minute)
	if rec := post(e.n.WebhookHandler(), body, sig); rec.Code != http.StatusAccepted {
		t.Fatalf("replay: %d", rec.Code)
	}
	if got := e.responder.all(); len(got) != 1 {
		t.Fatalf("the replay after a restart was applied: %d responses", len(got))
	}
	// Expired ids are swept at start; the age limit still refuses the event.
	e.now.Advance(2 * time.Hour)
	e.restart(t)
	if v, _ := st.GetState(context.Background(), bucketEvents, "EVT-captured"); v != nil {
		t.Error("an expired event id was kept")
	}
	post(e.n.WebhookHandler(), body, sig)
	if got := e.responder.all(); len(got) != 1 {
		t.Fatalf("a 2h-old replay was applied")
	}
}

// TestTrackedIncidentsSurviveRestart: an incident paged for before a restart
// is still polled after it, and its last seen status is kept.
func TestTrackedIncidentsSurviveRestart(t *testing.T) {
	st := stateStore(t)
	e := newEnv(t, func(c *Config) { c.State = st; c.WebhookSecret = "" })
	if _, err := e.n.Notify(context.Background(), page(42)); err != nil {
		t.Fatal(err)
	}
	e.restart(t)
	if _, ok := e.n.tracked.get("klaxon-42"); !ok {
		t.Fatal("the tracked incident was lost in the restart")
	}
	e.now.Advance(time.Minute)
	if _, err := e.fake.Acknowledge("klaxon-42", fakepd.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	if err := e.n.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.responder.all(); len(got) != 1 || got[0].Action != notifiers.Ack {
		t.Fatalf("responses after restart and ack: %+v", got)
	}
	e.restart(t) // the acknowledged status is remembered: no second report
	if err := e.n.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.responder.all(); len(got) != 1 {
		t.Fatalf("the acknowledgement was reported again after a restart: %+v", got)
	}
}

// TestUserEmailIsLookedUpOnceAndCached: the email behind a PagerDuty user id
// is fetched with GET /users/{id} once and then read from the store.
func TestUserEmailIsLookedUpOnceAndCached(t *testing.T) {
	st := stateStore(t)
	e := newEnv(t, func(c *Config) { c.State = st })
	for i, id := range []string{"EVT1", "EVT2"} {
		body := webhookBody(id, "incident.acknowledged", e.now.Now(), "user_reference", "klaxon-42")
		post(e.n.WebhookHandler(), body, fakepd.Sign(body, testSecret))
		if i == 0 {
			e.restart(t)
		}
	}
	got := e.responder.all()
	if len(got) != 2 || got[1].Alias != "alice@example.org" {
		t.Fatalf("responses %+v", got)
	}
	if n := usersCalls(e.fake); n != 1 {
		t.Fatalf("GET /users/%s called %d times, want once", fakepd.DefaultUserID, n)
	}
	// Without an API token nothing is looked up.
	e2 := newEnv(t, func(c *Config) { c.APIToken = "" })
	body := webhookBody("EVT3", "incident.acknowledged", e2.now.Now(), "user_reference", "klaxon-42")
	post(e2.n.WebhookHandler(), body, fakepd.Sign(body, testSecret))
	if r := e2.responder.all(); len(r) != 1 || r[0].Alias != "" {
		t.Fatalf("responses without a token: %+v", r)
	}
}

// TestConfirmationSurvivesARestart: a page still waiting for PagerDuty's
// evidence when the process stops is checked again after the restart, by
// its original deadline, and reported once.
func TestConfirmationSurvivesARestart(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(e *env)
		status notifiers.DeliveryStatus
	}{
		{"notified", func(*env) {}, notifiers.Delivered},
		{"nobody on call", func(e *env) { e.fake.SetOnCall(fakepd.DefaultServiceID) }, notifiers.Unconfirmed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := stateStore(t)
			e := newEnv(t, func(c *Config) { c.State = st })
			tc.setup(e)
			p := page(42)
			if _, err := e.n.Notify(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			sent := e.now.Now()
			e.restart(t)
			if e.n.Pending() != 1 {
				t.Fatalf("%d pages wait after the restart, want the one sent before", e.n.Pending())
			}
			r, _, ok := e.judgeUntil(t, p.ID, time.Second, 3*time.Minute)
			if !ok || r.Status != tc.status || r.PageID != p.ID || r.Incident != 42 {
				t.Fatalf("report %+v, want %s for page %s", r, tc.status, p.ID)
			}
			if tc.status == notifiers.Unconfirmed && r.At.Sub(sent) > DefaultConfirmWithin+time.Second {
				t.Errorf("unconfirmed %v after the send: the restart moved the deadline", r.At.Sub(sent))
			}
			e.restart(t)
			if e.n.Pending() != 0 {
				t.Fatal("a judged page waits again after another restart")
			}
		})
	}
}

// TestRunPollsWhatAnotherReplicaTracked: replicas share the state store; one
// started before another paged for an incident, and when it becomes the
// leader (its Run starts) it polls that incident, as the old leader did.
func TestRunPollsWhatAnotherReplicaTracked(t *testing.T) {
	st := stateStore(t)
	e := newEnv(t, func(c *Config) { c.State = st; c.WebhookSecret = "" })
	next, err := New(e.cfg) // a replica started before the page
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.n.Notify(context.Background(), page(42)); err != nil {
		t.Fatal(err)
	}
	tick, polled, done := make(chan time.Time), make(chan struct{}), make(chan error, 1)
	next.newTicker = func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} }
	next.polled = func() { polled <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- next.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	e.now.Advance(time.Minute)
	if _, err := e.fake.Acknowledge("klaxon-42", fakepd.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	tick <- e.now.Now()
	<-polled
	if got := e.responder.all(); len(got) != 1 || got[0].Action != notifiers.Ack {
		t.Fatalf("responses after the new leader's first poll: %+v, want the ack", got)
	}
}
