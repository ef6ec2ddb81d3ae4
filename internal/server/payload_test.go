package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseWebhookFields(t *testing.T) {
	b, err := os.ReadFile("testdata/am_firing.json")
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseWebhook(b)
	if err != nil {
		t.Fatal(err)
	}
	a := n.Alerts[0]
	if n.GroupKey != `{}:{alertname="KlaxonHarnessDiskFull"}` || n.Receiver != "klaxon" || n.Status != "firing" ||
		a.Fingerprint != "543e681ac75f8b98" || a.Labels["severity"] != "critical" || !a.EndsAt.IsZero() ||
		a.Annotations["summary"] != "Disk on db-1 is 97% full" || n.ExternalURL == "" {
		t.Fatalf("parsed %+v", n)
	}
}

func TestParseWebhookFingerprintFallback(t *testing.T) {
	body := `{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"a":"1","b":"2"},"startsAt":"2026-01-01T00:00:00Z"}]}`
	n1, err := ParseWebhook([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := ParseWebhook([]byte(strings.Replace(body, `"a":"1","b":"2"`, `"b":"2","a":"1"`, 1)))
	if n1.Alerts[0].Fingerprint == "" || n1.Alerts[0].Fingerprint != n2.Alerts[0].Fingerprint {
		t.Fatalf("fingerprints %q %q", n1.Alerts[0].Fingerprint, n2.Alerts[0].Fingerprint)
	}
	dup := `{"version":"4","groupKey":"g","alerts":[{"status":"firing","fingerprint":"x","labels":{"a":"1"},"startsAt":"2026-01-01T00:00:00Z"},{"status":"firing","fingerprint":"x","labels":{"a":"2"},"startsAt":"2026-01-01T00:00:00Z"}]}`
	if _, err := ParseWebhook([]byte(dup)); err == nil || !strings.Contains(err.Error(), "duplicate fingerprint") {
		t.Fatalf("duplicate fingerprints: %v", err)
	}
}

// FuzzParseWebhook checks the parser never panics, and that whatever it
// accepts is a valid notification. The seed corpus (real Alertmanager
// payloads and broken ones) runs in every normal test run.
func FuzzParseWebhook(f *testing.F) {
	for _, name := range []string{"testdata/am_firing.json", "testdata/am_resolved.json", "testdata/firing.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `null`, `{"version":"4"}`, `{"version":"4","groupKey":"g","alerts":[null]}`,
		`{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{"":""},"startsAt":"2026-01-01T00:00:00Z"}]}`,
		`{"version":"4","groupKey":"g","truncatedAlerts":-1,"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-01-01T00:00:00Z"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseWebhook(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if n.GroupKey == "" || len(n.Alerts) == 0 {
			t.Fatalf("accepted an empty notification: %+v", n)
		}
		seen := map[string]bool{}
		for _, a := range n.Alerts {
			if a.Fingerprint == "" || seen[a.Fingerprint] || (a.Status != "firing" && a.Status != "resolved") || len(a.Labels) == 0 || a.StartsAt.IsZero() {
				t.Fatalf("accepted an invalid alert: %+v", a)
			}
			seen[a.Fingerprint] = true
		}
	})
}

// TestWebhookAnswerIsWriteJSONs: the hand-written answer to a webhook is
// byte for byte what writeJSON writes for the same map.
func TestWebhookAnswerIsWriteJSONs(t *testing.T) {
	for _, tc := range []struct {
		outcome  string
		incident uint64
		opened   bool
	}{{"ok", 1, true}, {"ok", 41237, false}, {"unchanged", 0, false}, {"unchanged", ^uint64(0), false}} {
		want := httptest.NewRecorder()
		writeJSON(want, http.StatusOK, map[string]any{"status": tc.outcome, "incident": tc.incident, "opened": tc.opened})
		got := httptest.NewRecorder()
		writeWebhookAnswer(got, tc.outcome, tc.incident, tc.opened)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
			t.Errorf("%+v: got %d %v %q, want %d %v %q", tc, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}
