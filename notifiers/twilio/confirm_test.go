package twilio

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestSMSConfirmWithin(t *testing.T) {
	cases := []struct {
		name string
		set  time.Duration
		want time.Duration
	}{
		{"default", 0, DefaultSMSConfirmWithin},
		{"configured", 45 * time.Second, 45 * time.Second},
		{"off", -1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.SMSConfirmWithin = tc.set })
			c, ok := e.tw.SMS().(notifiers.Confirmer)
			if !ok {
				t.Fatal("the SMS channel does not promise confirmation")
			}
			if got := c.ConfirmWithin(); got != tc.want {
				t.Fatalf("ConfirmWithin = %v, want %v", got, tc.want)
			}
		})
	}
	// A call is confirmed by a keypress, but a person not answering is
	// normal: the phone channel promises no deadline.
	e := newEnv(t)
	if _, ok := e.tw.Voice().(notifiers.Confirmer); ok {
		t.Error("the phone channel promises a confirmation deadline")
	}
}

func TestSMSConfirmWithinFromEnvAndFlags(t *testing.T) {
	var c Config
	if err := c.LoadEnv(func(k string) string {
		return map[string]string{"KLAXON_TWILIO_SMS_CONFIRM_WITHIN": "off"}[k]
	}); err != nil || c.SMSConfirmWithin != -1 {
		t.Fatalf("env off: %v, %v", c.SMSConfirmWithin, err)
	}
	if err := (&Config{}).LoadEnv(func(k string) string {
		return map[string]string{"KLAXON_TWILIO_SMS_CONFIRM_WITHIN": "soon"}[k]
	}); err == nil || !strings.Contains(err.Error(), "KLAXON_TWILIO_SMS_CONFIRM_WITHIN") {
		t.Fatalf("bad env value: %v", err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-twilio-sms-confirm-within", "90s", "-twilio-canary-to", "+15005550009"}); err != nil {
		t.Fatal(err)
	}
	if c.SMSConfirmWithin != 90*time.Second || c.CanaryTo != "+15005550009" {
		t.Fatalf("flags: %v %q", c.SMSConfirmWithin, c.CanaryTo)
	}
}

// TestSMSReportsOnlyWhatTheReceiptSays: the SMS channel promises the
// engine an answer within its deadline but never makes one up: no receipt,
// or only "sent" (the carrier took it), is no report at all, so the
// engine's deadline counts the page unconfirmed; "delivered" confirms;
// "undelivered" with 30003 is a failure, as before.
func TestSMSReportsOnlyWhatTheReceiptSays(t *testing.T) {
	cases := []struct {
		name   string
		do     func(*faketwilio.SMS)
		status notifiers.DeliveryStatus // "" for no report
		detail string
	}{
		{"no receipt ever", func(*faketwilio.SMS) {}, "", ""},
		{"sent but no handset receipt", (*faketwilio.SMS).Sent, "", ""},
		{"delivered", func(m *faketwilio.SMS) { m.Sent(); m.Delivered() }, notifiers.Delivered, "delivered"},
		{"undelivered 30003", func(m *faketwilio.SMS) { m.Sent(); m.Undelivered(30003) }, notifiers.Failed, "sms undelivered: 30003 destination handset unreachable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if _, err := e.tw.SMS().Notify(context.Background(), smsPage("s1")); err != nil {
				t.Fatal(err)
			}
			tc.do(e.fake.Phone(alice).ExpectSMS(t))
			reps := e.rep.All()
			if tc.status == "" {
				if len(reps) != 0 {
					t.Fatalf("reports %+v, want none: only a receipt may speak", reps)
				}
				return
			}
			if len(reps) != 1 || reps[0].Status != tc.status || reps[0].Detail != tc.detail || reps[0].Permanent || reps[0].PageID != "s1" {
				t.Fatalf("reports %+v, want one %s %q", reps, tc.status, tc.detail)
			}
		})
	}
}

func TestTwilioCannotTextANumberFromItself(t *testing.T) {
	e := newEnv(t)
	p := smsPage("s1")
	p.Recipient.Phone = faketwilio.DefaultFrom
	_, err := e.tw.SMS().Notify(context.Background(), p)
	var ne *notifiers.Error
	if err == nil || !strings.Contains(err.Error(), "21266") || !errors.As(err, &ne) || !ne.Permanent {
		t.Fatalf("err = %v, want a permanent 21266", err)
	}
	if _, err := New(Config{AccountSID: e.fake.AccountSID(), AuthToken: testToken, From: faketwilio.DefaultFrom,
		CanaryTo: faketwilio.DefaultFrom, PublicURL: "https://k.example.org", Responder: e.resp, Reporter: e.rep}); err == nil ||
		!strings.Contains(err.Error(), "canary number") {
		t.Fatalf("a canary to the from-number is accepted: %v", err)
	}
}

const canaryNumber = "+15005550010"

func canaryEnv(t *testing.T, within time.Duration) *env {
	e := newEnv(t, func(c *Config) { c.CanaryTo = canaryNumber; c.SMSConfirmWithin = within })
	e.fake.OwnNumber(canaryNumber, false, true)
	e.fake.SetSMSURL(canaryNumber, e.hook.URL+"/webhook/twilio/sms")
	return e
}

type canaryProber interface {
	Canary(ctx context.Context) (bool, string, error)
}

func TestSMSCanary(t *testing.T) {
	t.Run("comes back", func(t *testing.T) {
		e := canaryEnv(t, time.Minute)
		ok, reason, err := e.tw.SMS().(canaryProber).Canary(context.Background())
		if err != nil || !ok {
			t.Fatalf("canary = %v %q %v, want confirmed", ok, reason, err)
		}
		in := e.fake.Inbound()
		if len(in) != 1 || in[0].Status != 204 && in[0].Status != 200 {
			t.Fatalf("inbound webhooks %+v", in)
		}
		if strings.Contains(in[0].Body, "<Message") {
			t.Errorf("Klaxon answered the canary with a text: %s", in[0].Body)
		}
		if got := e.resp.responses(); len(got) != 0 {
			t.Errorf("a canary text became a response: %+v", got)
		}
		if reps := e.rep.All(); len(reps) != 0 {
			t.Errorf("a canary reached the engine: %+v", reps)
		}
	})
	t.Run("swallowed by the carrier", func(t *testing.T) {
		e := canaryEnv(t, 300*time.Millisecond)
		e.fake.SetDropInbound(true)
		ok, reason, err := e.tw.SMS().(canaryProber).Canary(context.Background())
		if err != nil || ok || !strings.Contains(reason, "not received back within 300ms") {
			t.Fatalf("canary = %v %q %v, want unconfirmed", ok, reason, err)
		}
	})
	t.Run("undelivered", func(t *testing.T) {
		e := canaryEnv(t, time.Minute)
		e.fake.SetDropInbound(true)
		type result struct {
			ok     bool
			reason string
			err    error
		}
		done := make(chan result, 1)
		go func() {
			ok, reason, err := e.tw.SMS().(canaryProber).Canary(context.Background())
			done <- result{ok, reason, err}
		}()
		e.fake.Phone(canaryNumber).ExpectSMS(t).Undelivered(30003)
		r := <-done
		if r.err != nil || r.ok || !strings.Contains(r.reason, "30003") {
			t.Fatalf("canary = %+v, want unconfirmed with 30003", r)
		}
		if reps := e.rep.All(); len(reps) != 0 {
			t.Errorf("a canary's status reached the engine: %+v", reps)
		}
	})
	t.Run("account suspended", func(t *testing.T) {
		e := canaryEnv(t, time.Minute)
		e.fake.SetAccountStatus("suspended")
		ok, reason, err := e.tw.SMS().(canaryProber).Canary(context.Background())
		if err != nil || ok || !strings.Contains(reason, "refused") {
			t.Fatalf("canary = %v %q %v, want unconfirmed: refused", ok, reason, err)
		}
		noSecret(t, "reason", reason)
	})
	t.Run("not configured", func(t *testing.T) {
		e := newEnv(t)
		if _, _, err := e.tw.SMS().(canaryProber).Canary(context.Background()); err == nil {
			t.Fatal("a canary ran with no canary number")
		}
	})
}
