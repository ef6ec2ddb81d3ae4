package pagerduty

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// checkingResponder checks every response a webhook produces and answers
// like the engine would.
type checkingResponder struct {
	mu  sync.Mutex
	bad string
}

func (c *checkingResponder) Respond(_ context.Context, r notifiers.Response) (notifiers.Outcome, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.Action != notifiers.Ack && r.Action != notifiers.Resolve && r.Action != notifiers.Unack:
		c.bad = "response with action " + string(r.Action)
	case r.IncidentKey == "" || r.Channel != notifiers.PagerDuty:
		c.bad = "response without incident key or channel"
	case r.At.IsZero():
		c.bad = "response without a time"
	}
	return notifiers.Outcome{Incident: 1, Applied: true}, nil
}

// FuzzWebhook feeds correctly signed arbitrary bodies to the PagerDuty
// webhook handler: it must never panic, answer only 202, 400 or 503, and
// turn only well-formed incident events into responses. Seeds are real v3
// payloads (testdata/webhook_*.json).
func FuzzWebhook(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "webhook_*.json"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"event":null}`))
	f.Add([]byte(`{"event":{"id":"x","event_type":"incident.resolved","occurred_at":"2026-03-29T01:29:00Z","data":[]}}`))
	f.Add([]byte(`[]`))
	resp := &checkingResponder{}
	e := newEnv(f, func(c *Config) { c.Responder = resp })
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(e.n.WebhookHandler(), body, fakepd.Sign(body, testSecret))
		switch rec.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusServiceUnavailable, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		resp.mu.Lock()
		defer resp.mu.Unlock()
		if resp.bad != "" {
			t.Fatalf("%s for %q", resp.bad, body)
		}
	})
}
