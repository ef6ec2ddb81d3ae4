package pagerduty

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
)

// recordingResponder records responses and answers with a scripted outcome.
type recordingResponder struct {
	mu        sync.Mutex
	responses []notifiers.Response
	err       error
	got       chan notifiers.Response
}

func newResponder() *recordingResponder {
	return &recordingResponder{got: make(chan notifiers.Response, 100)}
}

func (r *recordingResponder) Respond(_ context.Context, resp notifiers.Response) (notifiers.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return notifiers.Outcome{}, r.err
	}
	r.responses = append(r.responses, resp)
	r.got <- resp
	return notifiers.Outcome{Incident: 42, Applied: true, By: resp.Name, Message: "Incident 42 acknowledged"}, nil
}

func (r *recordingResponder) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *recordingResponder) all() []notifiers.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notifiers.Response(nil), r.responses...)
}

// env is a notifier wired to a fake PagerDuty.
type env struct {
	fake      *fakepd.Server
	n         *Notifier
	responder *recordingResponder
	reporter  *recorder.Reports
	logs      *recorder.LogBuffer
	cfg       Config
	secret    string
	now       *clock
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const testSecret = "whsec-0123456789abcdef-signing"

// newEnv starts a fake PagerDuty and a notifier pointed at it. mutate edits
// the config before New.
func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	fake := fakepd.New(t)
	e := &env{fake: fake, responder: newResponder(), reporter: &recorder.Reports{}, logs: &recorder.LogBuffer{}, secret: testSecret,
		now: &clock{t: time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)}}
	fake.SetClock(e.now.Now)
	e.cfg = Config{
		RoutingKey:    fake.RoutingKey(),
		APIToken:      fake.APIToken(),
		WebhookSecret: testSecret,
		EventsURL:     fake.URL(),
		APIURL:        fake.URL(),
		HTTPClient:    &http.Client{Timeout: 5 * time.Second},
		Responder:     e.responder,
		Reporter:      e.reporter,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:           e.now.Now,
		KlaxonURL:     "https://klaxon.example.org",
	}
	if mutate != nil {
		mutate(&e.cfg)
	}
	n, err := New(e.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.n = n
	return e
}

// serveWebhooks mounts the notifier's webhook handler on a loopback server
// and points the fake's webhooks at it.
func (e *env) serveWebhooks(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/webhook/pagerduty", e.n.WebhookHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	url := srv.URL + "/webhook/pagerduty"
	e.fake.SetWebhook(url, e.secret)
	return url
}

func page(n uint64) notifiers.Page {
	return notifiers.Page{
		ID: "out-7", Kind: notifiers.KindPage, Incident: n, IncidentKey: "klaxon-" + itoa(n),
		Channel: notifiers.PagerDuty, Title: "DiskFull on db-1", Severity: "critical",
		Recipient: notifiers.Recipient{PersonID: "alice", Name: "Alice", PagerDutyUser: "PUSR001"},
		Alerts: []notifiers.Alert{{
			Fingerprint: "abc", Status: "firing",
			Labels:      map[string]string{"alertname": "DiskFull", "instance": "db-1:9100", "job": "node", "cluster": "eu1", "severity": "critical"},
			Annotations: map[string]string{"summary": "disk / is 99% full"},
			StartsAt:    time.Date(2026, 3, 29, 1, 20, 0, 0, time.UTC), GeneratorURL: "https://prom.example.org/graph?g0.expr=x",
		}},
		ExternalURL: "https://am.example.org",
	}
}

func itoa(n uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

// next waits for the responder's next response, failing after a deadline.
func (r *recordingResponder) next(t *testing.T) notifiers.Response {
	t.Helper()
	select {
	case resp := <-r.got:
		return resp
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a response")
		return notifiers.Response{}
	}
}

// assertNoSecrets fails if any secret appears in s.
func assertNoSecrets(t *testing.T, where, s string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("%s contains a secret: %q", where, s)
		}
	}
}
