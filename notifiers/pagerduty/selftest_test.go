package pagerduty

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestSelfTest(t *testing.T) {
	unknownKey := strings.Repeat("b", 32)
	cases := []struct {
		name     string
		mutate   func(*Config)
		setup    func(e *env)
		status   notifiers.Status
		willFail bool
		words    []string
	}{
		{"healthy", nil, nil, notifiers.Up, false, []string{"OK"}},
		{"revoked token", func(c *Config) { c.APIToken = "revoked-token-0000000" }, nil, notifiers.Down, false,
			[]string{"token rejected", "401", "Authentication failed"}},
		{"expired account", nil, func(e *env) { e.fake.SetAccountExpired(true) }, notifiers.Down, false,
			[]string{"account expired", "402", "Your account is expired and cannot use the API."}},
		{"disabled service", nil, func(e *env) { e.fake.SetServiceDisabled(fakepd.DefaultServiceID, true) }, notifiers.Down, false,
			[]string{`service "Klaxon"`, "disabled"}},
		{"maintenance", nil, func(e *env) { e.fake.SetMaintenance(fakepd.DefaultServiceID, true) }, notifiers.Degraded, true,
			[]string{"maintenance", "no incidents"}},
		{"extra routing key of a deleted integration", func(c *Config) { c.ExtraRoutingKeys = []string{unknownKey} }, nil, notifiers.Down, false,
			[]string{"extra routing key 1 matches no service"}},
		{"extra routing key disabled", nil, func(e *env) {
			id, key := e.fake.AddService("DB")
			e.fake.SetServiceDisabled(id, true)
			e.cfg.ExtraRoutingKeys = []string{key}
			e.n, _ = New(e.cfg)
		}, notifiers.Down, false, []string{`service "DB" (extra routing key 1) is disabled`}},
		{"ruleset key", func(c *Config) { c.ExtraRoutingKeys = []string{"R" + strings.Repeat("0", 31)} }, nil, notifiers.Up, false, nil},
		{"PagerDuty API down", nil, func(e *env) { e.fake.FailNext(1, http.StatusBadGateway) }, notifiers.Degraded, false,
			[]string{"unavailable", "502"}},
		{"no token", func(c *Config) { c.APIToken = "" }, nil, notifiers.Degraded, false, []string{"no PagerDuty API token"}},
		{"no token and no secret", func(c *Config) { c.APIToken, c.WebhookSecret = "", "" }, nil, notifiers.Degraded, false,
			[]string{"cannot reach Klaxon", "no PagerDuty API token"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mutate)
			if tc.setup != nil {
				tc.setup(e)
			}
			h := e.n.SelfTest(context.Background())
			if h.Status != tc.status || h.WillFail != tc.willFail {
				t.Fatalf("health = %+v, want %s willFail=%v", h, tc.status, tc.willFail)
			}
			for _, w := range tc.words {
				if !strings.Contains(h.Reason, w) {
					t.Errorf("reason %q lacks %q", h.Reason, w)
				}
			}
			assertNoSecrets(t, "reason", h.Reason, append([]string{e.cfg.RoutingKey, e.cfg.APIToken, e.secret, unknownKey}, e.cfg.ExtraRoutingKeys...)...)
		})
	}
}

func TestSelfTestSeesManyServices(t *testing.T) {
	e := newEnv(t, nil)
	var last string
	for range 130 { // more than one page of 100
		_, last = e.fake.AddService("svc")
	}
	e.cfg.ExtraRoutingKeys = []string{last}
	n, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if h := n.SelfTest(context.Background()); h.Status != notifiers.Up {
		t.Fatalf("health = %+v", h)
	}
}

func TestSelfTestOddResponses(t *testing.T) {
	cases := []struct {
		name    string
		handler http.HandlerFunc
		status  notifiers.Status
		words   string
	}{
		{"200 with garbage", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{{{"))
		}, notifiers.Degraded, "unavailable"},
		{"401 with HTML", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("<h1>no</h1>"))
		}, notifiers.Down, "token rejected"},
		{"401 with code 2012", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"message":"Your account is expired and cannot use the API.","code":2012}}`))
		}, notifiers.Down, "account expired"},
		{"403 account locked", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":{"message":"Account Locked","code":2008}}`))
		}, notifiers.Down, "account locked"},
		{"huge body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"abilities":["`))
			chunk := []byte(strings.Repeat("a", 1<<20))
			for range 6 {
				_, _ = w.Write(chunk)
			}
		}, notifiers.Degraded, "unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			e := newEnv(t, func(c *Config) { c.APIURL = srv.URL })
			h := e.n.SelfTest(context.Background())
			if h.Status != tc.status || !strings.Contains(h.Reason, tc.words) {
				t.Fatalf("health = %+v, want %s mentioning %q", h, tc.status, tc.words)
			}
		})
	}
}

func TestSelfTestSlowAPI(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	e := newEnv(t, func(c *Config) { c.APIURL = srv.URL })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if h := e.n.SelfTest(ctx); h.Status != notifiers.Degraded {
		t.Fatalf("health = %+v, want degraded (nothing known about the account)", h)
	}
}
