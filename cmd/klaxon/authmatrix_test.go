package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/auth"
	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// Credentials of the auth matrix's server.
const (
	amWebhookToken = "matrix-webhook-token"
	amAPIToken     = "matrix-api-token"
	amMetricsToken = "matrix-metrics-token"
	amPDSecret     = "matrix-pagerduty-signing-secret"
	amTwilioToken  = "matrixTwilioAuthToken0123456789a"
	amPublicURL    = "https://klaxon.example.org"
)

// cred is one of the four ways the matrix calls every route.
type cred int

const (
	none    cred = iota // no credentials at all
	wrong               // a credential of the right kind with a wrong value
	right               // the credential the route needs
	another             // a real credential, but for another purpose
)

var credNames = [...]string{"none", "wrong", "right", "another purpose"}

// probe is how the matrix calls a route: build makes the request for a
// credential case; want is the status for none, wrong, right, another.
type probe struct {
	build func(t *testing.T, base string, c cred) *http.Request
	want  [4]int
}

// TestAuthMatrix walks every route the running server registered and calls
// each with no credentials, wrong ones, the right ones and the right ones
// for another purpose. A route without an entry here fails the test: a new
// route must say what it needs.
func TestAuthMatrix(t *testing.T) {
	data := t.TempDir()
	pd := fakepd.New(t)
	tw := faketwilio.New(t, amTwilioToken)
	for k, v := range map[string]string{
		"KLAXON_WEBHOOK_TOKEN": amWebhookToken, "KLAXON_API_TOKEN": amAPIToken, "KLAXON_METRICS_TOKEN": amMetricsToken,
		"KLAXON_PAGERDUTY_ROUTING_KEY": pd.RoutingKey(), "KLAXON_PAGERDUTY_API_TOKEN": pd.APIToken(),
		"KLAXON_PAGERDUTY_EVENTS_URL": pd.URL(), "KLAXON_PAGERDUTY_API_URL": pd.URL(), "KLAXON_PAGERDUTY_WEBHOOK_SECRET": amPDSecret,
		"KLAXON_TWILIO_ACCOUNT_SID": tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN": amTwilioToken,
		"KLAXON_TWILIO_FROM": faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL": tw.URL(), "KLAXON_PUBLIC_URL": amPublicURL,
	} {
		t.Setenv(k, v)
	}
	feedToken, _, err := auth.Create(filepath.Join(data, tokensFile), auth.Feed, auth.Scope{Person: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	aliceToken, _, err := auth.Create(filepath.Join(data, tokensFile), auth.API, auth.Scope{Person: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--data", data, "--rota", filepath.Join(testtools.Root(), "rota.yaml")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan started, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil)), serveHooks{ready: func(s started) { ready <- s }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	var st started
	select {
	case st = <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	base := "http://" + st.addr

	// An incident to act on.
	firing, err := os.ReadFile(filepath.Join(testtools.Root(), "internal", "server", "testdata", "firing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if resp := send(t, bearer(newReq(t, "POST", base+"/webhook/alertmanager", firing), amWebhookToken)); resp != 200 {
		t.Fatalf("seeding an incident: %d", resp)
	}

	// bearerProbe calls with a bearer token: the right one, or another
	// purpose's real token.
	bearerProbe := func(method, path string, body []byte, rightTok, otherTok string, want [4]int) probe {
		return probe{want: want, build: func(t *testing.T, base string, c cred) *http.Request {
			r := newReq(t, method, base+path, body)
			switch c {
			case wrong:
				bearer(r, rightTok+"x")
			case right:
				bearer(r, rightTok)
			case another:
				bearer(r, otherTok)
			}
			return r
		}}
	}
	api := func(method, path string, ok int) probe {
		return bearerProbe(method, path, nil, amAPIToken, amWebhookToken, [4]int{401, 401, ok, 401})
	}
	public := func(path string, ok int) probe {
		return bearerProbe("GET", path, nil, amAPIToken, amWebhookToken, [4]int{ok, ok, ok, ok})
	}
	pdBody := []byte(`{"event":{"id":"EVTMATRIX","event_type":"incident.annotated","resource_type":"incident","occurred_at":"` +
		time.Now().UTC().Format(time.RFC3339) + `","data":{"id":"PX","type":"incident"}}}`)
	smsForm := url.Values{"From": {"+15555550199"}, "To": {faketwilio.DefaultFrom}, "Body": {"1"}, "MessageSid": {"SMmatrix"}, "AccountSid": {tw.AccountSID()}}

	table := map[string]probe{
		"/webhook/alertmanager":                bearerProbe("POST", "/webhook/alertmanager", firing, amWebhookToken, amAPIToken, [4]int{401, 401, 200, 401}),
		"GET /api/v1/incidents":                api("GET", "/api/v1/incidents", 200),
		"GET /api/v1/incidents/{id}":           api("GET", "/api/v1/incidents/1", 200),
		"POST /api/v1/incidents/{id}/{action}": api("POST", "/api/v1/incidents/1/escalate", 200),
		"GET /api/v1/oncall":                   api("GET", "/api/v1/oncall", 200),
		"GET /api/v1/rota":                     api("GET", "/api/v1/rota", 200),
		"GET /api/v1/channels":                 api("GET", "/api/v1/channels", 200),
		"GET /healthz":                         public("/healthz", 200),
		"GET /readyz":                          public("/readyz", 0), // 200 or 503 by channel health; the same for everyone
		"GET /metrics":                         bearerProbe("GET", "/metrics", nil, amMetricsToken, amAPIToken, [4]int{401, 401, 200, 401}),
		"GET /rota.ics": {want: [4]int{401, 401, 200, 401}, build: func(t *testing.T, base string, c cred) *http.Request {
			tok := map[cred]string{none: "", wrong: feedToken + "x", right: feedToken, another: aliceToken}[c]
			path := "/rota.ics"
			if tok != "" {
				path += "?token=" + url.QueryEscape(tok)
			}
			return newReq(t, "GET", base+path, nil)
		}},
		"/webhook/pagerduty": {want: [4]int{400, 403, 202, 403}, build: func(t *testing.T, base string, c cred) *http.Request {
			r := newReq(t, "POST", base+"/webhook/pagerduty", pdBody)
			r.Header.Set("Content-Type", "application/json")
			switch c {
			case wrong:
				r.Header.Set("X-PagerDuty-Signature", fakepd.Sign(pdBody, amPDSecret+"x"))
			case right:
				r.Header.Set("X-PagerDuty-Signature", fakepd.Sign(pdBody, amPDSecret))
			case another:
				r.Header.Set("X-PagerDuty-Signature", fakepd.Sign(pdBody, amWebhookToken))
				bearer(r, amWebhookToken)
			}
			return r
		}},
		"/webhook/twilio/": {want: [4]int{403, 403, 200, 403}, build: func(t *testing.T, base string, c cred) *http.Request {
			r := newReq(t, "POST", base+"/webhook/twilio/sms", []byte(smsForm.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			switch c {
			case wrong:
				r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amTwilioToken+"x", amPublicURL+"/webhook/twilio/sms", smsForm))
			case right:
				r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amTwilioToken, amPublicURL+"/webhook/twilio/sms", smsForm))
			case another:
				r.Header.Set("X-Twilio-Signature", faketwilio.Signature(amPDSecret, amPublicURL+"/webhook/twilio/sms", smsForm))
				bearer(r, amAPIToken)
			}
			return r
		}},
	}

	routes := st.srv.Routes()
	seen := map[string]bool{}
	for _, rt := range routes {
		seen[rt.Pattern] = true
		p, ok := table[rt.Pattern]
		if !ok {
			t.Errorf("route %q (%s) has no entry in the auth matrix: add one saying what it needs", rt.Pattern, rt.Access)
			continue
		}
		t.Run(rt.Pattern, func(t *testing.T) {
			got := [4]int{}
			for c := none; c <= another; c++ {
				got[c] = send(t, p.build(t, base, c))
			}
			if p.want[0] == 0 { // public: the same answer whatever is sent, never an auth failure
				for c := range got {
					if got[c] != got[0] || got[c] == 401 || got[c] == 403 {
						t.Fatalf("public route answers %v by credentials", got)
					}
				}
				return
			}
			for c := none; c <= another; c++ {
				if got[c] != p.want[c] {
					t.Errorf("%s credentials: %d, want %d (all: %v)", credNames[c], got[c], p.want[c], got)
				}
			}
		})
	}
	for pattern := range table {
		if !seen[pattern] {
			t.Errorf("the auth matrix lists %q, which the server does not register", pattern)
		}
	}
	for _, secret := range []string{amWebhookToken, amAPIToken, amMetricsToken, amPDSecret, amTwilioToken, feedToken, aliceToken} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a secret appears in the log")
		}
	}
}

func newReq(t *testing.T, method, u string, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func bearer(r *http.Request, tok string) *http.Request {
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func send(t *testing.T, r *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
