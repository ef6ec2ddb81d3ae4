package twilio

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
)

const (
	testToken = "s3cr3tAuthToken0123456789abcdef"
	alice     = "+15550100001"
	bob       = "+15550100002"
)

var testNow = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

// recResponder records responses and answers with a configurable outcome.
type recResponder struct {
	mu   sync.Mutex
	got  []notifiers.Response
	out  notifiers.Outcome
	err  error
	hook func(notifiers.Response) (notifiers.Outcome, error)
}

func (r *recResponder) Respond(_ context.Context, resp notifiers.Response) (notifiers.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, resp)
	if r.hook != nil {
		return r.hook(resp)
	}
	return r.out, r.err
}

func (r *recResponder) responses() []notifiers.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notifiers.Response(nil), r.got...)
}

// env is a notifier wired to a fake Twilio, with its callbacks served on loopback.
type env struct {
	fake *faketwilio.Server
	tw   *Twilio
	resp *recResponder
	rep  *recorder.Reports
	logs *recorder.LogBuffer
	hook *httptest.Server
}

func newEnv(t testing.TB, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{
		fake: faketwilio.New(t, testToken),
		resp: &recResponder{out: notifiers.Outcome{Incident: 42, Applied: true, By: "Alice", Message: "Incident 42 acknowledged by Alice"}},
		rep:  &recorder.Reports{},
		logs: &recorder.LogBuffer{},
	}
	mux := http.NewServeMux()
	e.hook = httptest.NewServer(mux)
	t.Cleanup(e.hook.Close)
	cfg := Config{
		AccountSID: e.fake.AccountSID(),
		AuthToken:  testToken,
		From:       faketwilio.DefaultFrom,
		PublicURL:  e.hook.URL,
		APIURL:     e.fake.URL(),
		HTTPClient: &http.Client{Timeout: 5 * time.Second},
		Responder:  e.resp,
		Reporter:   e.rep,
		Logger:     slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        func() time.Time { return testNow },
	}
	for _, m := range mods {
		m(&cfg)
	}
	tw, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.tw = tw
	mux.Handle("/webhook/twilio/", tw.Handler())
	e.fake.SetSMSURL(faketwilio.DefaultFrom, e.hook.URL+"/webhook/twilio/sms")
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), testToken) {
			t.Errorf("auth token appears in the logs")
		}
	})
	return e
}

func page(id string, to string) notifiers.Page {
	return notifiers.Page{
		ID: id, Kind: notifiers.KindPage, Incident: 42, IncidentKey: "k42", Channel: notifiers.Phone,
		Recipient: notifiers.Recipient{PersonID: "alice", Name: "Alice", Phone: to},
		Title:     "Disk full on db-1", Severity: "critical",
	}
}

// call pages alice by phone and returns the ringing call.
func (e *env) call(t *testing.T, id string) *faketwilio.Call {
	t.Helper()
	rc, err := e.tw.Voice().Notify(context.Background(), page(id, alice))
	if err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if !strings.HasPrefix(rc.ProviderID, "CA") {
		t.Fatalf("receipt %+v has no call SID", rc)
	}
	c := e.fake.Phone(alice).ExpectCall(t)
	if c.Sid != rc.ProviderID {
		t.Fatalf("call %s rang, receipt says %s", c.Sid, rc.ProviderID)
	}
	return c
}

func noSecret(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, testToken) {
		t.Errorf("%s contains the auth token: %s", what, s)
	}
}
