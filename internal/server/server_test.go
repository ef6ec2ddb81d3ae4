package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/metrics"
	"github.com/klaxon-oncall/klaxon/internal/server"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

const (
	webhookToken = "wh-s3cret-token"
	apiToken     = "api-s3cret-token"
	metricsToken = "metrics-s3cret-token"
)

type fixture struct {
	srv   *httptest.Server
	store *boltstore.Store
	logs  *bytes.Buffer
	alice string // alice's person API token
}

func newFixture(t *testing.T, eng server.Engine) *fixture {
	t.Helper()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if eng == nil {
		eng = escalation.New(escalation.Config{Store: st, Inline: true})
	}
	logs := &bytes.Buffer{}
	tokens := filepath.Join(t.TempDir(), "tokens")
	alice, _, err := auth.Create(tokens, auth.API, auth.Scope{Person: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(server.Config{Engine: eng, Store: st, Metrics: metrics.New(nil), WebhookToken: webhookToken,
		Auth: auth.NewFile(tokens, apiToken), MetricsToken: metricsToken,
		MaxBody: 64 << 10, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &fixture{srv: hs, store: st, logs: logs, alice: alice}
}

func (f *fixture) do(t *testing.T, method, path, token string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWebhookResponses(t *testing.T) {
	firing := readFile(t, "am_firing.json")
	tests := []struct {
		name    string
		method  string
		token   string
		body    []byte
		want    int
		wantErr string
	}{
		{"real Alertmanager payload", "POST", webhookToken, firing, 200, ""},
		{"missing token", "POST", "", firing, 401, "bearer token"},
		{"wrong token", "POST", "nope", firing, 401, "bearer token"},
		{"token prefix only", "POST", webhookToken[:5], firing, 401, "bearer token"},
		{"GET", "GET", webhookToken, nil, 405, "POST"},
		{"malformed JSON", "POST", webhookToken, []byte(`{"version":"4",`), 400, "malformed JSON"},
		{"not an object", "POST", webhookToken, []byte(`[1,2]`), 400, "malformed JSON"},
		{"trailing garbage", "POST", webhookToken, append(append([]byte{}, firing...), []byte(`{}`)...), 400, "trailing data"},
		{"a stray closing brace", "POST", webhookToken, append(append([]byte{}, firing...), '}'), 400, "trailing data"},
		{"truncated", "POST", webhookToken, firing[:len(firing)/2], 400, "unexpected EOF"},
		{"unknown version", "POST", webhookToken, []byte(`{"version":"3","groupKey":"g","alerts":[]}`), 400, "unsupported payload version"},
		{"missing version", "POST", webhookToken, []byte(`{"groupKey":"g"}`), 400, "missing version"},
		{"missing groupKey", "POST", webhookToken, []byte(`{"version":"4","alerts":[{}]}`), 400, "missing groupKey"},
		{"missing alerts", "POST", webhookToken, []byte(`{"version":"4","groupKey":"g"}`), 400, "missing alerts"},
		{"alert without status", "POST", webhookToken, []byte(`{"version":"4","groupKey":"g","alerts":[{"labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`), 400, "neither firing nor resolved"},
		{"alert without labels", "POST", webhookToken, []byte(`{"version":"4","groupKey":"g","alerts":[{"status":"firing","startsAt":"2026-01-01T00:00:00Z"}]}`), 400, "no labels"},
		{"alert without startsAt", "POST", webhookToken, []byte(`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"b"}}]}`), 400, "startsAt"},
		{"bad time", "POST", webhookToken, []byte(`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"yesterday"}]}`), 400, "malformed JSON"},
		{"oversized", "POST", webhookToken, append([]byte(`{"version":"4","groupKey":"`), bytes.Repeat([]byte("x"), 70<<10)...), 413, "larger than"},
	}
	f := newFixture(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := f.do(t, tt.method, "/webhook/alertmanager", tt.token, tt.body)
			if code != tt.want {
				t.Fatalf("status %d, want %d (%v)", code, tt.want, out)
			}
			if tt.wantErr != "" {
				msg, _ := out["error"].(string)
				if !strings.Contains(msg, tt.wantErr) || strings.Contains(msg, "\n") {
					t.Errorf("error %q, want one line containing %q", msg, tt.wantErr)
				}
			}
		})
	}
	if strings.Contains(f.logs.String(), webhookToken) {
		t.Error("the webhook token appears in the logs")
	}
}

func TestWebhookIsDurableAndIdempotent(t *testing.T) {
	f := newFixture(t, nil)
	firing, resolved := readFile(t, "am_firing.json"), readFile(t, "am_resolved.json")
	code, out := f.do(t, "POST", "/webhook/alertmanager", webhookToken, firing)
	if code != 200 || out["incident"] != float64(1) || out["opened"] != true {
		t.Fatalf("first delivery: %d %v", code, out)
	}
	// On disk when the 200 came back.
	inc, err := f.store.Incident(context.Background(), 1)
	if err != nil || inc.State != escalation.Open || len(inc.Alerts) != 1 {
		t.Fatalf("stored incident = %+v, %v", inc, err)
	}
	for range 3 { // retries and HA peers
		code, out = f.do(t, "POST", "/webhook/alertmanager", webhookToken, firing)
		if code != 200 || out["status"] != "unchanged" {
			t.Fatalf("duplicate: %d %v", code, out)
		}
	}
	tl, _ := f.store.Timeline(context.Background(), 1)
	before := len(tl)
	code, _ = f.do(t, "POST", "/webhook/alertmanager", webhookToken, resolved)
	if code != 200 {
		t.Fatalf("resolved: %d", code)
	}
	if inc, _ = f.store.Incident(context.Background(), 1); inc.State != escalation.Resolved {
		t.Fatalf("state %s after resolved webhook", inc.State)
	}
	// A stale firing copy arriving after the resolution (an HA peer) opens nothing.
	code, out = f.do(t, "POST", "/webhook/alertmanager", webhookToken, firing)
	if code != 200 || out["opened"] == true {
		t.Fatalf("stale firing after resolve: %d %v", code, out)
	}
	tl, _ = f.store.Timeline(context.Background(), 1)
	if len(tl) <= before {
		t.Error("resolution not in the timeline")
	}
}

type failingEngine struct{}

func (failingEngine) Ingest(context.Context, escalation.Notification) (escalation.IngestResult, error) {
	return escalation.IngestResult{}, errors.New("disk full")
}
func (failingEngine) Act(context.Context, uint64, notifiers.Action, string) (notifiers.Outcome, error) {
	return notifiers.Outcome{}, errors.New("disk full")
}

func TestStoreFailureAsksAlertmanagerToRetry(t *testing.T) {
	f := newFixture(t, failingEngine{})
	code, out := f.do(t, "POST", "/webhook/alertmanager", webhookToken, readFile(t, "am_firing.json"))
	if code != 503 {
		t.Fatalf("status %d (%v), want 503 so Alertmanager retries", code, out)
	}
}

func TestAPI(t *testing.T) {
	f := newFixture(t, nil)
	f.do(t, "POST", "/webhook/alertmanager", webhookToken, readFile(t, "am_firing.json"))
	tests := []struct {
		name, method, path, token string
		want                      int
	}{
		{"list", "GET", "/api/v1/incidents", apiToken, 200},
		{"list open", "GET", "/api/v1/incidents?state=open", apiToken, 200},
		{"list bad state", "GET", "/api/v1/incidents?state=sleeping", apiToken, 400},
		{"list bad limit", "GET", "/api/v1/incidents?limit=0", apiToken, 400},
		{"list without token", "GET", "/api/v1/incidents", "", 401},
		{"list with webhook token", "GET", "/api/v1/incidents", webhookToken, 401},
		{"get", "GET", "/api/v1/incidents/1", apiToken, 200},
		{"get missing", "GET", "/api/v1/incidents/99", apiToken, 404},
		{"get bad id", "GET", "/api/v1/incidents/abc", apiToken, 400},
		{"unknown action", "POST", "/api/v1/incidents/1/snooze", apiToken, 404},
		{"act without token", "POST", "/api/v1/incidents/1/ack", "", 401},
		{"ack missing", "POST", "/api/v1/incidents/99/ack", apiToken, 404},
		{"ack", "POST", "/api/v1/incidents/1/ack", apiToken, 200},
		{"healthz", "GET", "/healthz", "", 200},
		{"readyz", "GET", "/readyz", "", 200},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"metrics with API token", "GET", "/metrics", apiToken, 401},
		{"metrics", "GET", "/metrics", metricsToken, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out := f.do(t, tt.method, tt.path, tt.token, nil); code != tt.want {
				t.Fatalf("%s %s: %d, want %d (%v)", tt.method, tt.path, code, tt.want, out)
			}
		})
	}
	_, out := f.do(t, "GET", "/api/v1/incidents/1", apiToken, nil)
	if out["state"] != "acknowledged" || out["timeline"] == nil {
		t.Errorf("incident after ack: %v", out)
	}
	_, out = f.do(t, "GET", "/api/v1/incidents?state=acknowledged", apiToken, nil)
	if list, _ := out["incidents"].([]any); len(list) != 1 {
		t.Errorf("acknowledged list: %v", out)
	}
}

// TestWhoActed: a person token acts as its person and cannot claim to be
// anyone else; the admin token is recorded as "api".
func TestWhoActed(t *testing.T) {
	f := newFixture(t, nil)
	for _, g := range []string{"g1", "g2", "g3", "g4"} {
		body := bytes.Replace(readFile(t, "am_firing.json"), []byte(`"groupKey":"`), []byte(`"groupKey":"`+g), 1)
		if code, out := f.do(t, "POST", "/webhook/alertmanager", webhookToken, body); code != 200 {
			t.Fatalf("webhook: %d %v", code, out)
		}
	}
	tests := []struct {
		name, token, body string
		id                int
		want              int
		actor             string
	}{
		{"person forging by", f.alice, `{"by":"bob"}`, 1, 403, ""},
		{"person", f.alice, ``, 1, 200, "alice"},
		{"person naming itself", f.alice, `{"by":"alice"}`, 2, 200, "alice"},
		{"admin", apiToken, ``, 3, 200, "api"},
		{"admin claiming a name", apiToken, `{"by":"bob\n\u0007"}`, 4, 200, "api (as bob)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := f.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/ack", tt.id), tt.token, []byte(tt.body))
			if code != tt.want {
				t.Fatalf("status %d, want %d (%v)", code, tt.want, out)
			}
			inc, _ := f.store.Incident(context.Background(), uint64(tt.id))
			if tt.want != 200 {
				if inc.State != escalation.Open {
					t.Fatalf("refused action changed the incident: %s", inc.State)
				}
				return
			}
			if inc.AckedBy != tt.actor {
				t.Fatalf("recorded as %q, want %q", inc.AckedBy, tt.actor)
			}
		})
	}
}

func TestInsecureWaivesTokens(t *testing.T) {
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng := escalation.New(escalation.Config{Store: st, Inline: true})
	for _, insecure := range []bool{false, true} {
		hs := httptest.NewServer(server.New(server.Config{Engine: eng, Store: st, Insecure: insecure}))
		f := &fixture{srv: hs, store: st}
		want := map[bool]int{false: 401, true: 200}[insecure]
		if code, _ := f.do(t, "POST", "/webhook/alertmanager", "", readFile(t, "am_firing.json")); code != want {
			t.Errorf("insecure=%v: webhook without token %d, want %d", insecure, code, want)
		}
		if code, _ := f.do(t, "GET", "/api/v1/incidents", "", nil); code != want {
			t.Errorf("insecure=%v: API without token %d, want %d", insecure, code, want)
		}
		hs.Close()
	}
}
