package pagerduty

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
)

// TestSecretsNeverLeak drives every failure path with logging at debug level
// and checks that no secret appears in errors, health reasons or logs, even
// when PagerDuty echoes one back.
func TestSecretsNeverLeak(t *testing.T) {
	stepKey := strings.Repeat("S", 32)
	// A PagerDuty that quotes whatever routing key and token it was sent.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, 4096)
		n, _ := r.Body.Read(body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"status":"invalid event","message":"Event object is invalid","errors":["got ` +
			strings.ReplaceAll(string(body[:n]), `"`, `'`) + ` with ` + r.Header.Get("Authorization") + `"],
			"error":{"code":2001,"message":"token ` + r.Header.Get("Authorization") + `"}}`))
	}))
	t.Cleanup(echo.Close)

	e := newEnv(t, nil)
	secrets := []string{e.cfg.RoutingKey, e.cfg.APIToken, e.secret, stepKey}
	ctx := context.Background()
	var texts []string
	collect := func(err error) {
		if err != nil {
			texts = append(texts, err.Error())
		}
	}

	// Events API failures, default and step routing keys.
	e.fake.SetInvalidRoutingKey(true)
	_, err := e.n.Notify(ctx, page(1))
	collect(err)
	p := page(2)
	p.RoutingKey = stepKey
	_, err = e.n.Notify(ctx, p)
	collect(err)
	e.fake.SetInvalidRoutingKey(false)
	e.fake.FailNext(1, 503)
	_, err = e.n.Notify(ctx, page(3))
	collect(err)

	// Lapsed account, self-tests.
	e.fake.SetAccountExpired(true)
	_, err = e.n.Notify(ctx, page(4))
	collect(err)
	texts = append(texts, e.n.SelfTest(ctx).Reason)
	e.fake.SetAccountExpired(false)

	// A PagerDuty echoing secrets, for events and REST.
	echoing, err := New(func() Config {
		c := e.cfg
		c.EventsURL, c.APIURL = echo.URL, echo.URL
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	_, err = echoing.Notify(ctx, p)
	collect(err)
	texts = append(texts, echoing.SelfTest(ctx).Reason)

	// Webhooks: forged, malformed, and the lookup path.
	body := webhookBody("EVT", "incident.acknowledged", e.now.Now(), "user_reference", "")
	post(e.n.WebhookHandler(), body, fakepd.Sign(body, "wrong"))
	post(e.n.WebhookHandler(), []byte("{"), fakepd.Sign([]byte("{"), e.secret))
	post(echoing.WebhookHandler(), body, fakepd.Sign(body, e.secret))

	// Config errors.
	bad := e.cfg
	bad.RoutingKey = e.cfg.RoutingKey[:20]
	_, err = New(bad)
	collect(err)

	if len(texts) < 8 {
		t.Fatalf("only %d texts collected: the test lost its coverage", len(texts))
	}
	for _, s := range texts {
		assertNoSecrets(t, "error or reason", s, secrets...)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "PagerDuty event failed") || !strings.Contains(logs, "bad signature") {
		t.Fatalf("logs do not cover the failures:\n%s", logs)
	}
	assertNoSecrets(t, "logs", logs, secrets...)
	if !strings.Contains(strings.Join(texts, "\n"), "[redacted]") {
		t.Error("the echoing PagerDuty's secrets were not visibly redacted")
	}
}
