package pagerduty

import (
	"context"
	"strings"
	"testing"
	"time"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
)

// canaryEnv is an env with a canary service; the canary's waits advance
// the fake clock instead of sleeping.
func canaryEnv(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, nil)
	svc, key := e.fake.AddService("Klaxon canary")
	e.n.cfg.CanaryRoutingKey = key
	e.n.secrets = append(e.n.secrets, key)
	e.n.wait = func(ctx context.Context, d time.Duration) error {
		e.now.Advance(d)
		return ctx.Err()
	}
	return e, svc
}

func TestCanary(t *testing.T) {
	cases := []struct {
		name      string
		setup     func(e *env, svc string)
		confirmed bool
		reason    string
	}{
		{"a person is notified", func(*env, string) {}, true, "notified Alice Example (email)"},
		{"nobody on call", func(e *env, svc string) { e.fake.SetOnCall(svc) }, false, "assigned it to nobody"},
		{"user without contact methods", func(e *env, svc string) {
			e.fake.AddUser(fakepd.User{ID: "PUSR009", Name: "Dummy", NoContactMethods: true})
			e.fake.SetOnCall(svc, "PUSR009")
		}, false, "no contact methods"},
		{"service disabled", func(e *env, svc string) { e.fake.SetServiceDisabled(svc, true) }, false, "no incident appeared"},
		{"routing key refused", func(e *env, _ string) { e.fake.SetInvalidRoutingKey(true) }, false, "PagerDuty refused the canary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, svc := canaryEnv(t)
			tc.setup(e, svc)
			start := e.now.Now()
			ok, reason, err := e.n.Canary(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.confirmed || !strings.Contains(reason, tc.reason) {
				t.Fatalf("canary = %v %q, want %v with %q", ok, reason, tc.confirmed, tc.reason)
			}
			if waited := e.now.Now().Sub(start); waited > DefaultConfirmWithin {
				t.Errorf("canary waited %v, past its %v deadline", waited, DefaultConfirmWithin)
			}
			assertNoSecrets(t, "reason", reason, e.n.cfg.CanaryRoutingKey, e.fake.APIToken())
			for _, inc := range e.fake.Incidents() {
				if inc.Open() {
					t.Errorf("canary incident %s left open", inc.DedupKey)
				}
				if !strings.HasPrefix(inc.DedupKey, "klaxon-canary-") || inc.ServiceID != svc {
					t.Errorf("canary incident %+v not on the canary service with a canary key", inc)
				}
			}
			if len(e.reporter.All()) != 0 {
				t.Error("a canary reached the engine")
			}
		})
	}
}

func TestCanaryNeedsItsKeyAndAToken(t *testing.T) {
	e := newEnv(t, nil)
	if _, _, err := e.n.Canary(context.Background()); err == nil || !strings.Contains(err.Error(), "canary routing key") {
		t.Fatalf("err = %v", err)
	}
	e2, _ := canaryEnv(t)
	e2.n.cfg.APIToken = ""
	if _, _, err := e2.n.Canary(context.Background()); err == nil || !strings.Contains(err.Error(), "API token") {
		t.Fatalf("err = %v", err)
	}
}
