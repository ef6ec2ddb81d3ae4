package fakepagerduty

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PagerDuty/go-pagerduty/webhookv3"
)

func postEvent(t *testing.T, s *Server, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(s.URL()+"/v2/enqueue", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func trigger(key, dedup string) string {
	b, _ := json.Marshal(map[string]any{"routing_key": key, "event_action": "trigger", "dedup_key": dedup,
		"payload": map[string]any{"summary": "disk full", "source": "db-1", "severity": "critical"}})
	return string(b)
}

func TestEventsValidation(t *testing.T) {
	s := New(t)
	key := s.RoutingKey()
	cases := []struct {
		name   string
		body   string
		status int
		error  string
	}{
		{"valid trigger", trigger(key, "k1"), 202, ""},
		{"not JSON", "{", 400, "not valid JSON"},
		{"no routing key", `{"event_action":"trigger"}`, 400, "'routing_key' is missing"},
		{"short routing key", trigger("abc", "k"), 400, "Length of 'routing_key' is incorrect (should be 32 characters)"},
		{"unknown routing key", trigger(strings.Repeat("x", 32), "k"), 400, "Invalid routing key"},
		{"bad action", `{"routing_key":"` + key + `","event_action":"fire"}`, 400, "'event_action' is invalid"},
		{"trigger without payload", `{"routing_key":"` + key + `","event_action":"trigger"}`, 400, "'payload' is missing"},
		{"trigger without summary", `{"routing_key":"` + key + `","event_action":"trigger","payload":{"source":"a","severity":"info"}}`, 400, "'payload.summary' is missing"},
		{"trigger without source", `{"routing_key":"` + key + `","event_action":"trigger","payload":{"summary":"a","severity":"info"}}`, 400, "'payload.source' is missing"},
		{"bad severity", `{"routing_key":"` + key + `","event_action":"trigger","payload":{"summary":"a","source":"b","severity":"high"}}`, 400, "'payload.severity' is invalid"},
		{"summary too long", `{"routing_key":"` + key + `","event_action":"trigger","payload":{"summary":"` + strings.Repeat("a", 1025) + `","source":"b","severity":"info"}}`, 400, "too long"},
		{"bad timestamp", `{"routing_key":"` + key + `","event_action":"trigger","payload":{"summary":"a","source":"b","severity":"info","timestamp":"noon"}}`, 400, "timestamp"},
		{"dedup key too long", trigger(key, strings.Repeat("d", 256)), 400, "'dedup_key' is too long"},
		{"acknowledge without dedup key", `{"routing_key":"` + key + `","event_action":"acknowledge"}`, 400, "'dedup_key' is missing"},
		{"acknowledge unknown incident", `{"routing_key":"` + key + `","event_action":"acknowledge","dedup_key":"nope"}`, 202, ""},
		{"oversized", `{"routing_key":"` + strings.Repeat("a", 600<<10) + `"}`, 413, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := postEvent(t, s, tc.body)
			if status != tc.status {
				t.Fatalf("status = %d, want %d (%v)", status, tc.status, out)
			}
			if tc.error != "" {
				errs, _ := json.Marshal(out["errors"])
				if out["status"] != "invalid event" || out["message"] != "Event object is invalid" || !strings.Contains(string(errs), tc.error) {
					t.Errorf("body = %v, want errors containing %q", out, tc.error)
				}
			}
		})
	}
	resp, err := http.Get(s.URL() + "/v2/enqueue")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v2/enqueue = %d", resp.StatusCode)
	}
}

func TestEventsLifecycleAndDedup(t *testing.T) {
	s := New(t)
	key := s.RoutingKey()
	for range 2 {
		if st, out := postEvent(t, s, trigger(key, "klaxon-1")); st != 202 || out["dedup_key"] != "klaxon-1" {
			t.Fatalf("trigger = %d %v", st, out)
		}
	}
	if inc, _ := s.Incident("klaxon-1"); inc.Alerts != 2 || inc.Status != StatusTriggered {
		t.Fatalf("incident = %+v", inc)
	}
	postEvent(t, s, `{"routing_key":"`+key+`","event_action":"resolve","dedup_key":"klaxon-1"}`)
	if inc, _ := s.Incident("klaxon-1"); inc.Status != StatusResolved {
		t.Fatalf("status = %q", inc.Status)
	}
	// A trigger after resolution opens a new incident.
	postEvent(t, s, trigger(key, "klaxon-1"))
	if n := len(s.Incidents()); n != 2 {
		t.Fatalf("%d incidents", n)
	}
	// A trigger without dedup key gets one.
	_, out := postEvent(t, s, trigger(key, ""))
	if k, _ := out["dedup_key"].(string); len(k) != 32 {
		t.Errorf("assigned dedup key %q", k)
	}
}

func TestSwitches(t *testing.T) {
	cases := []struct {
		name     string
		set      func(s *Server)
		status   int
		dropped  bool
		restCode int
	}{
		{"account expired", func(s *Server) { s.SetAccountExpired(true) }, 202, true, 402},
		{"service disabled", func(s *Server) { s.SetServiceDisabled(DefaultServiceID, true) }, 202, true, 200},
		{"maintenance", func(s *Server) { s.SetMaintenance(DefaultServiceID, true) }, 202, true, 200},
		{"invalid routing key", func(s *Server) { s.SetInvalidRoutingKey(true) }, 400, false, 200},
		{"rate limited", func(s *Server) { s.FailNext(2, 429) }, 429, false, 429},
		{"server error", func(s *Server) { s.FailNext(2, 503) }, 503, false, 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(t)
			tc.set(s)
			status, _ := postEvent(t, s, trigger(s.RoutingKey(), "k"))
			if status != tc.status {
				t.Fatalf("event status = %d, want %d", status, tc.status)
			}
			ev := s.Events()[0]
			if ev.Dropped != tc.dropped || ev.Status != tc.status {
				t.Errorf("event = %+v", ev)
			}
			if _, ok := s.Incident("k"); ok == (tc.dropped || tc.status != 202) {
				t.Errorf("incident exists = %v", ok)
			}
			req, _ := http.NewRequest(http.MethodGet, s.URL()+"/abilities", nil)
			req.Header.Set("Authorization", "Token token="+s.APIToken())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.restCode {
				t.Errorf("REST status = %d, want %d (%s)", resp.StatusCode, tc.restCode, body)
			}
			if tc.restCode == 402 && !bytes.Contains(body, []byte(`"code":2012`)) {
				t.Errorf("lapsed account body = %s", body)
			}
			// Switching back restores service.
			s.SetAccountExpired(false)
			s.SetServiceDisabled(DefaultServiceID, false)
			s.SetMaintenance(DefaultServiceID, false)
			s.SetInvalidRoutingKey(false)
			if status, _ := postEvent(t, s, trigger(s.RoutingKey(), "k2")); status != 202 {
				t.Errorf("after reset: %d", status)
			}
			if _, ok := s.Incident("k2"); !ok {
				t.Error("after reset: no incident")
			}
		})
	}
}

func TestRESTAuthAndPaging(t *testing.T) {
	s := New(t)
	for range 30 {
		s.AddService("svc")
	}
	get := func(path, auth string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
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
	good := "Token token=" + s.APIToken()
	cases := []struct {
		name, path, auth string
		status           int
	}{
		{"no auth", "/abilities", "", 401},
		{"wrong token", "/abilities", "Token token=nope", 401},
		{"bearer instead of token", "/abilities", "Bearer " + s.APIToken(), 401},
		{"abilities", "/abilities", good, 200},
		{"missing ability", "/abilities/teleport", good, 402},
		{"service", "/services/" + DefaultServiceID, good, 200},
		{"unknown service", "/services/PNOPE", good, 404},
		{"bad limit", "/services?limit=x", good, 400},
		{"bad status filter", "/incidents?statuses[]=sleeping", good, 400},
		{"unknown path", "/teams", good, 404},
	}
	for _, tc := range cases {
		if status, out := get(tc.path, tc.auth); status != tc.status {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, status, tc.status, out)
		}
	}
	_, first := get("/services?limit=25&include[]=integrations", good)
	if first["more"] != true || len(first["services"].([]any)) != 25 {
		t.Fatalf("first page = more %v, %d services", first["more"], len(first["services"].([]any)))
	}
	integ := first["services"].([]any)[0].(map[string]any)["integrations"].([]any)[0].(map[string]any)
	if integ["integration_key"] != s.RoutingKey() {
		t.Errorf("integration = %v", integ)
	}
	_, last := get("/services?offset=25&limit=25", good)
	if last["more"] != false || len(last["services"].([]any)) != 6 {
		t.Fatalf("last page = more %v, %d services", last["more"], len(last["services"].([]any)))
	}
	if _, ok := last["services"].([]any)[0].(map[string]any)["integrations"].([]any)[0].(map[string]any)["integration_key"]; ok {
		t.Error("integration keys listed without include[]=integrations")
	}
}

// receiver records webhooks, verifying them as PagerDuty's library does.
type receiver struct {
	mu       sync.Mutex
	verified []map[string]any
	headers  []http.Header
	status   int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := webhookv3.VerifySignature(r, "s3cret"); err != nil {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.verified = append(rc.verified, body)
	rc.headers = append(rc.headers, r.Header.Clone())
	if rc.status != 0 {
		w.WriteHeader(rc.status)
	}
}

func TestWebhooksAreSignedOrderedAndRedeliverable(t *testing.T) {
	s := New(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s.SetWebhook(srv.URL, "rotated-old", "s3cret")

	postEvent(t, s, trigger(s.RoutingKey(), "klaxon-9"))
	d, err := s.Acknowledge("klaxon-9", DefaultUserID)
	if err != nil || d.Status != http.StatusOK || !strings.Contains(d.Signature, ",") {
		t.Fatalf("delivery = %+v, %v", d, err)
	}
	if _, err := s.Acknowledge("nope", DefaultUserID); err != ErrNoIncident {
		t.Errorf("acknowledging a missing incident: %v", err)
	}
	// Klaxon's own resolve event also produces a webhook, with a service agent.
	postEvent(t, s, `{"routing_key":"`+s.RoutingKey()+`","event_action":"resolve","dedup_key":"klaxon-9"}`)
	if _, err := s.Redeliver(d.EventID); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.verified) != 3 {
		t.Fatalf("%d webhooks verified, want 3", len(rc.verified))
	}
	ev := rc.verified[0]["event"].(map[string]any)
	data := ev["data"].(map[string]any)
	agent := ev["agent"].(map[string]any)
	if ev["event_type"] != "incident.acknowledged" || ev["occurred_at"] != "2026-05-01T12:00:00.000Z" ||
		data["incident_key"] != "klaxon-9" || data["status"] != "acknowledged" ||
		agent["id"] != DefaultUserID || agent["type"] != "user_reference" || agent["summary"] != "Alice Example" {
		t.Errorf("acknowledged webhook = %v", ev)
	}
	ev2 := rc.verified[1]["event"].(map[string]any)
	if ev2["event_type"] != "incident.resolved" || ev2["agent"].(map[string]any)["type"] != "service_reference" {
		t.Errorf("second webhook = %v", ev2)
	}
	if rc.verified[2]["event"].(map[string]any)["id"] != ev["id"] || rc.headers[2].Get("X-Webhook-Id") != rc.headers[0].Get("X-Webhook-Id") {
		t.Error("redelivery differs from the original")
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			postEvent(t, s, trigger(s.RoutingKey(), "same"))
			_ = s.Events()
			_, _ = s.Incident("same")
			if i%5 == 0 {
				_ = s.Deliveries()
				_ = s.RESTCalls()
			}
		}()
	}
	wg.Wait()
	if incs := s.Incidents(); len(incs) != 1 || incs[0].Alerts != 20 {
		t.Fatalf("incidents = %+v", incs)
	}
}

// restJSON GETs path with the fake's token and decodes the body.
func restJSON(t *testing.T, s *Server, path string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	req.Header.Set("Authorization", "Token token="+s.APIToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return out
}

func logTypes(t *testing.T, s *Server, dedup, query string) ([]string, map[string]any) {
	t.Helper()
	inc, ok := s.Incident(dedup)
	if !ok {
		t.Fatal("no incident")
	}
	body := restJSON(t, s, "/incidents/"+inc.ID+"/log_entries"+query)
	var types []string
	for _, e := range body["log_entries"].([]any) {
		types = append(types, e.(map[string]any)["type"].(string))
	}
	return types, body
}

func TestLogEntriesByScenario(t *testing.T) {
	cases := []struct {
		name  string
		setup func(s *Server)
		want  string
	}{
		{"somebody on call", func(*Server) {}, "trigger_log_entry assign_log_entry notify_log_entry"},
		{"nobody on call", func(s *Server) { s.SetOnCall(DefaultServiceID) }, "trigger_log_entry"},
		{"user without contact methods", func(s *Server) {
			s.AddUser(User{ID: "PUSR009", Name: "Bob", NoContactMethods: true})
			s.SetOnCall(DefaultServiceID, "PUSR009")
		}, "trigger_log_entry assign_log_entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(t)
			tc.setup(s)
			if st, _ := postEvent(t, s, trigger(s.RoutingKey(), "k1")); st != http.StatusAccepted {
				t.Fatal(st)
			}
			types, _ := logTypes(t, s, "k1", "")
			if got := strings.Join(types, " "); got != tc.want {
				t.Fatalf("log = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestLogEntryShapesAndPaging(t *testing.T) {
	s := New(t)
	now := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	s.SetNotifyDelay(time.Minute)
	postEvent(t, s, trigger(s.RoutingKey(), "k1"))
	if types, _ := logTypes(t, s, "k1", ""); strings.Join(types, " ") != "trigger_log_entry assign_log_entry" {
		t.Fatalf("a notification not yet due is listed: %v", types)
	}
	now = now.Add(time.Minute)
	types, body := logTypes(t, s, "k1", "?limit=2")
	if len(types) != 2 || body["more"] != true {
		t.Fatalf("first page %v more=%v, want 2 entries and more", types, body["more"])
	}
	types, body = logTypes(t, s, "k1", "?limit=2&offset=2")
	if len(types) != 1 || types[0] != "notify_log_entry" || body["more"] != false {
		t.Fatalf("second page %v more=%v", types, body["more"])
	}
	e := body["log_entries"].([]any)[0].(map[string]any)
	user := e["user"].(map[string]any)
	notification := e["channel"].(map[string]any)["notification"].(map[string]any)
	if user["id"] != DefaultUserID || user["type"] != "user_reference" || notification["type"] != "email" ||
		notification["address"] != "alice@example.org" || e["incident"].(map[string]any)["type"] != "incident_reference" {
		t.Fatalf("notify entry %v", e)
	}
	if types, _ := logTypes(t, s, "k1", "?is_overview=true"); strings.Join(types, " ") != "trigger_log_entry assign_log_entry" {
		t.Fatalf("overview lists notifications: %v", types)
	}
}
