package pagerduty

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// pollEnv is a notifier without a webhook secret, whose polling ticks are
// driven by the test.
type pollEnv struct {
	*env
	tick    chan time.Time
	polled  chan struct{}
	done    chan error
	stopped chan struct{}
}

func newPollEnv(t *testing.T) *pollEnv {
	t.Helper()
	// Delivery confirmation off: these tests count the acknowledgement polls.
	e := newEnv(t, func(c *Config) { c.WebhookSecret = ""; c.PollInterval = time.Minute; c.ConfirmWithin = -1 })
	pe := &pollEnv{env: e, tick: make(chan time.Time), polled: make(chan struct{}), done: make(chan error, 1), stopped: make(chan struct{})}
	var gotInterval time.Duration
	e.n.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		gotInterval = d
		return pe.tick, func() { close(pe.stopped) }
	}
	e.n.polled = func() { pe.polled <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	go func() { pe.done <- e.n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-pe.done; err != nil {
			t.Errorf("Run: %v", err)
		}
		<-pe.stopped
		if gotInterval != time.Minute {
			t.Errorf("ticker interval %v, want the configured 1m", gotInterval)
		}
	})
	return pe
}

// poll makes Run poll once and returns after that poll completed.
func (pe *pollEnv) poll(t *testing.T) {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	select {
	case pe.tick <- pe.now.Now():
	case <-timeout.C:
		t.Fatal("Run is not taking ticks")
	}
	select {
	case <-pe.polled:
	case <-timeout.C:
		t.Fatal("poll did not finish")
	}
}

func (pe *pollEnv) incidentCalls() int {
	n := 0
	for _, c := range pe.fake.RESTCalls() {
		if c.Path == "/incidents" {
			n++
		}
	}
	return n
}

func TestPollReportsAcknowledgementOnce(t *testing.T) {
	pe := newPollEnv(t)
	ctx := context.Background()
	if _, err := pe.n.Notify(ctx, page(42)); err != nil {
		t.Fatal(err)
	}
	pe.poll(t) // triggered: nothing to say
	if got := pe.responder.all(); len(got) != 0 {
		t.Fatalf("responses before any acknowledgement: %+v", got)
	}
	pe.now.Advance(time.Minute)
	if _, err := pe.fake.Acknowledge("klaxon-42", fakepd.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	pe.poll(t)
	got := pe.responder.all()
	want := notifiers.Response{Action: notifiers.Ack, IncidentKey: "klaxon-42", Channel: notifiers.PagerDuty,
		From: fakepd.DefaultUserID, Alias: "alice@example.org", Name: "Alice Example", At: pe.now.Now().Truncate(time.Second)}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("responses = %+v, want [%+v]", got, want)
	}
	pe.poll(t)
	if n := len(pe.responder.all()); n != 1 {
		t.Fatalf("acknowledgement reported %d times", n)
	}

	if _, err := pe.fake.Resolve("klaxon-42", fakepd.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	pe.poll(t)
	got = pe.responder.all()
	if len(got) != 2 || got[1].Action != notifiers.Resolve {
		t.Fatalf("responses = %+v, want a resolve", got)
	}
	before := pe.incidentCalls()
	pe.poll(t)
	if pe.incidentCalls() != before {
		t.Error("a resolved incident is still polled")
	}
}

func TestPollIgnoresKlaxonsOwnAcknowledgement(t *testing.T) {
	pe := newPollEnv(t)
	ctx := context.Background()
	p := page(5)
	if _, err := pe.n.Notify(ctx, p); err != nil {
		t.Fatal(err)
	}
	p.Kind = notifiers.KindAcknowledged // acknowledged in Matrix; Klaxon tells PagerDuty
	if _, err := pe.n.Notify(ctx, p); err != nil {
		t.Fatal(err)
	}
	pe.poll(t)
	if got := pe.responder.all(); len(got) != 0 {
		t.Fatalf("Klaxon's own acknowledge came back as a response: %+v", got)
	}
	// PagerDuty's acknowledgement timeout returns it to triggered.
	if _, err := pe.fake.Unacknowledge("klaxon-5"); err != nil {
		t.Fatal(err)
	}
	pe.poll(t)
	if got := pe.responder.all(); len(got) != 1 || got[0].Action != notifiers.Unack {
		t.Fatalf("responses = %+v, want one unack", got)
	}
}

func TestPollRetriesWhenTheEngineFails(t *testing.T) {
	pe := newPollEnv(t)
	if _, err := pe.n.Notify(context.Background(), page(6)); err != nil {
		t.Fatal(err)
	}
	if _, err := pe.fake.Acknowledge("klaxon-6", fakepd.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	pe.responder.setErr(errors.New("disk full"))
	pe.poll(t)
	pe.responder.setErr(nil)
	pe.poll(t)
	if got := pe.responder.all(); len(got) != 1 {
		t.Fatalf("responses = %+v, want the acknowledgement after the engine recovered", got)
	}
}

func TestPollSurvivesPagerDutyErrors(t *testing.T) {
	pe := newPollEnv(t)
	if _, err := pe.n.Notify(context.Background(), page(8)); err != nil {
		t.Fatal(err)
	}
	if _, err := pe.fake.Acknowledge("klaxon-8", fakepd.DefaultUserID); err != nil {
		t.Fatal(err)
	}
	pe.fake.FailNext(1, 500)
	pe.poll(t)
	pe.poll(t)
	if got := pe.responder.all(); len(got) != 1 {
		t.Fatalf("responses = %+v", got)
	}
}

func TestRunReturnsAtOnceWhenNotPolling(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
	}{
		{"webhooks configured, confirmation off", func(c *Config) { c.ConfirmWithin = -1 }},
		{"no token", func(c *Config) { c.WebhookSecret, c.APIToken = "", "" }},
		{"webhooks configured, no reporter", func(c *Config) { c.Reporter = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mutate)
			e.n.newTicker = func(time.Duration) (<-chan time.Time, func()) {
				t.Error("ticker started")
				return nil, func() {}
			}
			if err := e.n.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPollOddResponses(t *testing.T) {
	cases := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"garbage", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"incidents":[{"status":`))
		}},
		{"wrong shape", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"incidents":"acknowledged"}`))
		}},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			e := newEnv(t, func(c *Config) { c.WebhookSecret = ""; c.APIURL = srv.URL })
			if _, err := e.n.Notify(context.Background(), page(1)); err != nil {
				t.Fatal(err)
			}
			if err := e.n.Poll(context.Background()); err == nil {
				t.Fatal("Poll succeeded on a broken answer")
			}
			if got := e.responder.all(); len(got) != 0 {
				t.Fatalf("responses from a broken answer: %+v", got)
			}
			if _, ok := e.n.tracked.get("klaxon-1"); !ok {
				t.Error("incident no longer tracked after a failed poll")
			}
		})
	}
}

func TestPollAnswersWithStrangeIncidents(t *testing.T) {
	// An acknowledged incident with the key, acknowledged by an unknown kind
	// of agent, and a resolved one from long ago.
	body := `{"incidents":[
		{"id":"POLD","status":"resolved","incident_key":"klaxon-1","created_at":"2020-01-01T00:00:00Z",
		 "last_status_change_by":{"id":"PUSR009","type":"user_reference"}},
		{"id":"PNEW","status":"acknowledged","incident_key":"klaxon-1","created_at":"2026-03-29T01:30:00Z",
		 "acknowledgements":[{"at":"not a time","acknowledger":{"id":"PUSR001","type":"user_reference","summary":"Alice"}}]}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t, func(c *Config) { c.WebhookSecret = ""; c.APIURL = srv.URL })
	if _, err := e.n.Notify(context.Background(), page(1)); err != nil {
		t.Fatal(err)
	}
	if err := e.n.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := e.responder.all()
	if len(got) != 1 || got[0].Action != notifiers.Ack || got[0].From != "PUSR001" || !got[0].At.Equal(e.now.Now()) {
		t.Fatalf("responses = %+v; want one ack at now (unparseable time)", got)
	}
}
