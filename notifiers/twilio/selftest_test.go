package twilio

import (
	"context"
	"strings"
	"testing"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestSelfTest(t *testing.T) {
	tests := []struct {
		name     string
		mods     func(*Config)
		setup    func(*env)
		status   notifiers.Status
		willFail bool
		reason   string
	}{
		{"healthy", nil, nil, notifiers.Up, false, "account active"},
		{"trial", nil, func(e *env) { e.fake.SetTrial(true) }, notifiers.Degraded, true, "verified numbers"},
		{"low balance", nil, func(e *env) { e.fake.SetBalance(3.2) }, notifiers.Degraded, true, "balance 3.20 USD is below 5.00"},
		{"custom threshold", func(c *Config) { c.MinBalance = 50 }, nil, notifiers.Degraded, true, "below 50.00"},
		{"threshold disabled", func(c *Config) { c.MinBalance = -1 }, func(e *env) { e.fake.SetBalance(0) }, notifiers.Up, false, ""},
		{"trial and low balance", nil, func(e *env) { e.fake.SetTrial(true); e.fake.SetBalance(1) }, notifiers.Degraded, true, "; balance 1.00"},
		{"suspended", nil, func(e *env) { e.fake.SetAccountStatus("suspended") }, notifiers.Down, false, "account suspended"},
		{"closed", nil, func(e *env) { e.fake.SetAccountStatus("closed") }, notifiers.Down, false, "account closed"},
		{"released number", nil, func(e *env) { e.fake.ReleaseNumber(faketwilio.DefaultFrom) }, notifiers.Down, false, "no longer owned"},
		{"number cannot call", nil, func(e *env) { e.fake.OwnNumber(faketwilio.DefaultFrom, false, true) }, notifiers.Down, false, "cannot make voice calls"},
		{"number cannot text", nil, func(e *env) { e.fake.OwnNumber(faketwilio.DefaultFrom, true, false) }, notifiers.Down, false, "cannot send SMS"},
		{"bad token", func(c *Config) { c.AuthToken = "wrongToken0123456789" }, nil, notifiers.Down, false, "code 20003"},
		{"API down", nil, func(e *env) { e.fake.FailNext(1, 503, 20503) }, notifiers.Down, false, "20503"},
		{"balance unavailable", nil, func(e *env) { e.fake.FailNextOn("Balance", 1, 404, 20404) }, notifiers.Degraded, false, "balance unknown"},
		{"number list unavailable", nil, func(e *env) { e.fake.FailNextOn("IncomingPhoneNumbers", 1, 500, 20500) }, notifiers.Down, false, "20500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*Config)
			if tc.mods != nil {
				mods = append(mods, tc.mods)
			}
			e := newEnv(t, mods...)
			if tc.setup != nil {
				tc.setup(e)
			}
			h := e.tw.SelfTest(context.Background())
			if h.Status != tc.status || h.WillFail != tc.willFail || !strings.Contains(h.Reason, tc.reason) {
				t.Errorf("health %+v, want %s willFail=%v reason ~%q", h, tc.status, tc.willFail, tc.reason)
			}
			noSecret(t, "reason", h.Reason)
		})
	}
}

func TestPerChannelSelfTests(t *testing.T) {
	e := newEnv(t)
	e.fake.OwnNumber(faketwilio.DefaultFrom, true, false) // can call, cannot text
	voice := e.tw.Voice().(notifiers.SelfTester).SelfTest(context.Background())
	sms := e.tw.SMS().(notifiers.SelfTester).SelfTest(context.Background())
	if voice.Status != notifiers.Up || sms.Status != notifiers.Down {
		t.Errorf("voice %+v, sms %+v; want up, down", voice, sms)
	}
	// With a messaging service, texts do not need the from-number.
	e2 := newEnv(t, func(c *Config) { c.MessagingServiceSID = faketwilio.NewSID("MG") })
	e2.fake.OwnNumber(faketwilio.DefaultFrom, true, false)
	if h := e2.tw.SMS().(notifiers.SelfTester).SelfTest(context.Background()); h.Status != notifiers.Up {
		t.Errorf("sms via messaging service: %+v", h)
	}
}
