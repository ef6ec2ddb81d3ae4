package pagerduty

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// webhookBody builds a v3 webhook body like PagerDuty's.
func webhookBody(id, eventType string, occurred time.Time, agentType, incidentKey string) []byte {
	data := map[string]any{"id": "PINC00001", "type": "incident", "number": 1, "status": "acknowledged",
		"title": "DiskFull", "assignees": []map[string]string{{"id": "PUSR002", "summary": "Bob"}}}
	if incidentKey != "" {
		data["incident_key"] = incidentKey
	}
	var agent any
	if agentType != "" {
		agent = map[string]string{"id": "PUSR001", "type": agentType, "summary": "Alice Example"}
	}
	b, _ := json.Marshal(map[string]any{"event": map[string]any{
		"id": id, "event_type": eventType, "resource_type": "incident",
		"occurred_at": occurred.UTC().Format(time.RFC3339Nano), "agent": agent, "data": data,
	}})
	return b
}

func post(h http.Handler, body []byte, sig string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/webhook/pagerduty", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-PagerDuty-Signature", sig)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestWebhookMapsEventsToResponses(t *testing.T) {
	cases := []struct {
		eventType string
		agentType string
		want      notifiers.Action // "" means no response
	}{
		{"incident.acknowledged", "user_reference", notifiers.Ack},
		{"incident.resolved", "user_reference", notifiers.Resolve},
		{"incident.unacknowledged", "service_reference", notifiers.Unack},
		{"incident.unacknowledged", "", notifiers.Unack},
		{"incident.acknowledged", "service_reference", ""}, // Klaxon's own acknowledge event
		{"incident.resolved", "service_reference", ""},
		{"incident.acknowledged", "", ""},
		{"incident.reassigned", "user_reference", ""},
		{"incident.triggered", "service_reference", ""},
		{"incident.annotated", "user_reference", ""},
		{"service.updated", "user_reference", ""},
	}
	for _, tc := range cases {
		t.Run(tc.eventType+"/"+tc.agentType, func(t *testing.T) {
			e := newEnv(t, nil)
			now := e.now.Now()
			body := webhookBody("EVT1", tc.eventType, now.Add(-time.Minute), tc.agentType, "klaxon-42")
			rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, testSecret))
			if rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d, want 202", rec.Code)
			}
			got := e.responder.all()
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("responses = %+v, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("responses = %+v, want one", got)
			}
			want := notifiers.Response{Action: tc.want, IncidentKey: "klaxon-42", Channel: notifiers.PagerDuty, At: now.Add(-time.Minute)}
			if tc.agentType != "" {
				want.From, want.Name = "PUSR001", "Alice Example"
				want.Alias = "alice@example.org" // looked up with GET /users/PUSR001
			}
			if got[0] != want {
				t.Errorf("response = %+v, want %+v", got[0], want)
			}
		})
	}
}

func TestWebhookRejectsBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	now := e.now.Now()
	good := webhookBody("EVT1", "incident.acknowledged", now, "user_reference", "klaxon-42")
	signed := func(b []byte) string { return fakepd.Sign(b, testSecret) }
	cases := []struct {
		name   string
		method string
		body   []byte
		sig    string
		want   int
	}{
		{"wrong method", http.MethodGet, nil, "", http.StatusMethodNotAllowed},
		{"forged signature", http.MethodPost, good, fakepd.Sign(good, "not-the-secret"), http.StatusForbidden},
		{"signature of another body", http.MethodPost, good, signed([]byte(`{"event":{}}`)), http.StatusForbidden},
		{"no signature", http.MethodPost, good, "", http.StatusBadRequest},
		{"malformed signature header", http.MethodPost, good, "v1=zz-not-hex", http.StatusBadRequest},
		{"empty body", http.MethodPost, []byte{}, "v1=00", http.StatusBadRequest},
		{"signed garbage", http.MethodPost, []byte("{not json"), signed([]byte("{not json")), http.StatusBadRequest},
		{"signed, no event", http.MethodPost, []byte(`{"x":1}`), signed([]byte(`{"x":1}`)), http.StatusBadRequest},
		{"signed, no event id", http.MethodPost, []byte(`{"event":{"event_type":"incident.acknowledged","occurred_at":"2026-03-29T01:29:00Z"}}`),
			signed([]byte(`{"event":{"event_type":"incident.acknowledged","occurred_at":"2026-03-29T01:29:00Z"}}`)), http.StatusBadRequest},
		{"signed, bad occurred_at", http.MethodPost, []byte(`{"event":{"id":"E","event_type":"incident.acknowledged","occurred_at":"yesterday"}}`),
			signed([]byte(`{"event":{"id":"E","event_type":"incident.acknowledged","occurred_at":"yesterday"}}`)), http.StatusBadRequest},
		{"oversized", http.MethodPost, []byte(`{"event":"` + strings.Repeat("a", maxWebhookBytes) + `"}`), "v1=00", http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/webhook/pagerduty", strings.NewReader(string(tc.body)))
			if tc.sig != "" {
				req.Header.Set("X-PagerDuty-Signature", tc.sig)
			}
			rec := httptest.NewRecorder()
			e.n.WebhookHandler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status = %d, want %d (%s)", rec.Code, tc.want, rec.Body)
			}
			if tc.want == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q", rec.Header().Get("Allow"))
			}
		})
	}
	if got := e.responder.all(); len(got) != 0 {
		t.Fatalf("bad requests produced responses: %+v", got)
	}
}

func TestWebhookWithoutSecretRefusesEverything(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WebhookSecret = "" })
	body := webhookBody("EVT1", "incident.acknowledged", e.now.Now(), "user_reference", "klaxon-42")
	// Even a body "signed" with the empty secret.
	if rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, "")); rec.Code != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", rec.Code)
	}
	if len(e.responder.all()) != 0 {
		t.Fatal("responded without a secret")
	}
}

func TestWebhookAcceptsAnyOfRotatedSignatures(t *testing.T) {
	e := newEnv(t, nil)
	body := webhookBody("EVT1", "incident.acknowledged", e.now.Now(), "user_reference", "klaxon-42")
	if rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, "old-secret-000000", testSecret)); rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d", rec.Code)
	}
	if len(e.responder.all()) != 1 {
		t.Fatal("no response")
	}
}

func TestWebhookReplaysAreAppliedOnce(t *testing.T) {
	e := newEnv(t, nil)
	h := e.n.WebhookHandler()
	body := webhookBody("EVT-replay", "incident.acknowledged", e.now.Now(), "user_reference", "klaxon-42")
	sig := fakepd.Sign(body, testSecret)
	for i := range 3 {
		if rec := post(h, body, sig); rec.Code != http.StatusAccepted {
			t.Fatalf("delivery %d: status %d", i+1, rec.Code)
		}
		e.now.Advance(5 * time.Minute) // PagerDuty's retries spread over ~20 minutes
	}
	if got := e.responder.all(); len(got) != 1 {
		t.Fatalf("responses = %d, want 1", len(got))
	}
}

func TestWebhookStaleEventsAreIgnored(t *testing.T) {
	cases := []struct {
		name string
		age  time.Duration
		want int // responses
	}{
		{"fresh", time.Minute, 1},
		{"late retry", 50 * time.Minute, 1},
		{"older than max age", 61 * time.Minute, 0},
		{"captured last week", 7 * 24 * time.Hour, 0},
		{"from the future", -10 * time.Minute, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			body := webhookBody("EVT", "incident.acknowledged", e.now.Now().Add(-tc.age), "user_reference", "klaxon-42")
			if rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, testSecret)); rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d", rec.Code)
			}
			got := e.responder.all()
			if len(got) != tc.want {
				t.Fatalf("responses = %d, want %d", len(got), tc.want)
			}
			if tc.want == 1 && got[0].At.After(e.now.Now()) {
				t.Errorf("At %v is after now", got[0].At)
			}
		})
	}
}

func TestWebhookEngineFailureIsRetried(t *testing.T) {
	e := newEnv(t, nil)
	h := e.n.WebhookHandler()
	body := webhookBody("EVT-retry", "incident.acknowledged", e.now.Now(), "user_reference", "klaxon-42")
	sig := fakepd.Sign(body, testSecret)
	e.responder.setErr(errors.New("store unavailable"))
	if rec := post(h, body, sig); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status with failing engine = %d, want 503", rec.Code)
	}
	e.responder.setErr(nil)
	if rec := post(h, body, sig); rec.Code != http.StatusAccepted {
		t.Fatalf("retry status = %d", rec.Code)
	}
	if got := e.responder.all(); len(got) != 1 {
		t.Fatalf("responses = %d, want 1 (the retry)", len(got))
	}
}

func TestWebhookEngineVerdictsAreFinal(t *testing.T) {
	for _, err := range []error{notifiers.ErrUnknownIncident, notifiers.ErrNotOnRota} {
		t.Run(err.Error(), func(t *testing.T) {
			e := newEnv(t, nil)
			e.responder.setErr(err)
			body := webhookBody("EVT", "incident.acknowledged", e.now.Now(), "user_reference", "klaxon-42")
			if rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, testSecret)); rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d, want 202 (retrying cannot help)", rec.Code)
			}
		})
	}
}

func TestWebhookLooksUpMissingIncidentKey(t *testing.T) {
	e := newEnv(t, nil)
	e.serveWebhooks(t)
	e.fake.SetWebhookOmitsIncidentKey(true)
	if _, err := e.n.Notify(context.Background(), page(42)); err != nil {
		t.Fatal(err)
	}
	d, err := e.fake.Acknowledge("klaxon-42", fakepd.DefaultUserID)
	if err != nil || d.Status != http.StatusAccepted {
		t.Fatalf("delivery = %+v, %v", d, err)
	}
	if strings.Contains(string(d.Body), "incident_key") {
		t.Fatal("the fake sent the incident key anyway")
	}
	if r := e.responder.next(t); r.IncidentKey != "klaxon-42" || r.Action != notifiers.Ack {
		t.Fatalf("response = %+v", r)
	}
}

func TestWebhookMissingIncidentKeyWithoutToken(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.APIToken = "" })
	body := webhookBody("EVT", "incident.acknowledged", e.now.Now(), "user_reference", "")
	if rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, testSecret)); rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d", rec.Code)
	}
	if len(e.responder.all()) != 0 {
		t.Fatal("responded without knowing the incident")
	}
	if !strings.Contains(e.logs.String(), "no incident_key and no API token") {
		t.Error("not logged")
	}
}

func TestWebhookLookupOutageAsksForRetry(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.FailNext(1, http.StatusServiceUnavailable)
	body := webhookBody("EVT", "incident.acknowledged", e.now.Now(), "user_reference", "")
	h := e.n.WebhookHandler()
	if rec := post(h, body, fakepd.Sign(body, testSecret)); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", rec.Code)
	}
	// The incident id in the hand-made body is unknown to the fake: a 404 is final.
	if rec := post(h, body, fakepd.Sign(body, testSecret)); rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202", rec.Code)
	}
}

func TestWebhookReassignedIsReportedNotAcknowledged(t *testing.T) {
	e := newEnv(t, nil)
	e.serveWebhooks(t)
	if _, err := e.n.Notify(context.Background(), page(42)); err != nil {
		t.Fatal(err)
	}
	e.fake.AddUser(fakepd.User{ID: "PUSR002", Name: "Bob Example"})
	if d, err := e.fake.Reassign("klaxon-42", fakepd.DefaultUserID, "PUSR002"); err != nil || d.Status != http.StatusAccepted {
		t.Fatalf("delivery = %+v, %v", d, err)
	}
	if got := e.responder.all(); len(got) != 0 {
		t.Fatalf("reassignment produced responses: %+v", got)
	}
	reps := e.reporter.All()
	if len(reps) != 1 {
		t.Fatalf("reports = %+v", reps)
	}
	r := reps[0]
	if r.Incident != 42 || r.PageID != "out-7" || r.Status != notifiers.Delivered || r.Channel != notifiers.PagerDuty ||
		!strings.Contains(r.Detail, "Bob Example") || !strings.Contains(r.Detail, "Alice Example") {
		t.Errorf("report = %+v", r)
	}
}

func TestWebhookConcurrentDuplicateIsAskedToRetry(t *testing.T) {
	e := newEnv(t, nil)
	// Claim the event as if a first delivery were still being processed.
	if st := e.n.replays.begin("EVT-busy", e.now.Now()); st != replayNew {
		t.Fatal("fresh id not new")
	}
	body := webhookBody("EVT-busy", "incident.acknowledged", e.now.Now(), "user_reference", "klaxon-42")
	rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, testSecret))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status = %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if len(e.responder.all()) != 0 {
		t.Fatal("duplicate processed concurrently")
	}
}

func TestReplayCacheIsBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rc := newReplayCache(3, time.Hour)
	for _, id := range []string{"a", "b", "c", "d"} {
		rc.begin(id, now)
		rc.finish(id, true, now)
	}
	if len(rc.m) != 3 || rc.order.Len() != 3 {
		t.Fatalf("cache holds %d/%d entries, want 3", len(rc.m), rc.order.Len())
	}
	if rc.begin("d", now) != replayDone {
		t.Error("recent id forgotten")
	}
	if rc.begin("x", now.Add(2*time.Hour)) != replayNew || len(rc.m) != 1 {
		t.Errorf("expired entries kept: %d", len(rc.m))
	}
	rc.finish("x", false, now)
	if rc.begin("x", now) != replayNew {
		t.Error("an unhandled id must be processed again")
	}
}
