package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// TestCanaryAndConfirmationSettings checks the canary intervals and the
// confirmation deadlines as flags and environment, and the canary runner
// the channels are built with.
func TestCanaryAndConfirmationSettings(t *testing.T) {
	const (
		routingKey = "R0123456789abcdefghijklmnopqrstu"
		canaryKey  = "C0123456789abcdefghijklmnopqrstu"
		authToken  = "tok0123456789abcdef0123456789ab"
		accountSID = "AC0123456789abcdef0123456789abcdef"
	)
	twilioEnv := map[string]string{"KLAXON_TWILIO_ACCOUNT_SID": accountSID, "KLAXON_TWILIO_AUTH_TOKEN": authToken,
		"KLAXON_TWILIO_FROM": "+15005550006", "KLAXON_TWILIO_PUBLIC_URL": "https://klaxon.example.org"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		wantErr  string
		canaries map[notifiers.Channel]time.Duration
		check    func(*testing.T, *serveConfig)
	}{
		{name: "no canaries by default", env: twilioEnv, canaries: map[notifiers.Channel]time.Duration{}},
		{name: "sms canary from the environment", env: with(twilioEnv, "KLAXON_CANARY_SMS_INTERVAL", "15m", "KLAXON_TWILIO_CANARY_TO", "+15005550010"),
			canaries: map[notifiers.Channel]time.Duration{notifiers.SMS: 15 * time.Minute}},
		{name: "flag beats environment", args: []string{"--canary-sms-interval", "1h", "--twilio-canary-to", "+15005550010"},
			env: with(twilioEnv, "KLAXON_CANARY_SMS_INTERVAL", "15m"), canaries: map[notifiers.Channel]time.Duration{notifiers.SMS: time.Hour}},
		{name: "sms canary without a canary number", args: []string{"--canary-sms-interval", "1h"}, env: twilioEnv, wantErr: "needs --twilio-canary-to"},
		{name: "canary too often", args: []string{"--canary-sms-interval", "10s", "--twilio-canary-to", "+15005550010"}, env: twilioEnv, wantErr: "below 1m"},
		{name: "pagerduty canary", args: []string{"--canary-pagerduty-interval", "30m"},
			env:      map[string]string{"KLAXON_PAGERDUTY_ROUTING_KEY": routingKey, "KLAXON_PAGERDUTY_CANARY_ROUTING_KEY": canaryKey, "KLAXON_PAGERDUTY_API_TOKEN": authToken},
			canaries: map[notifiers.Channel]time.Duration{notifiers.PagerDuty: 30 * time.Minute}},
		{name: "pagerduty canary without its key", args: []string{"--canary-pagerduty-interval", "30m"},
			env: map[string]string{"KLAXON_PAGERDUTY_ROUTING_KEY": routingKey, "KLAXON_PAGERDUTY_API_TOKEN": authToken}, wantErr: "KLAXON_PAGERDUTY_CANARY_ROUTING_KEY"},
		{name: "canary for a channel not configured", args: []string{"--canary-pagerduty-interval", "30m"},
			env: map[string]string{"KLAXON_PAGERDUTY_CANARY_ROUTING_KEY": canaryKey, "KLAXON_PAGERDUTY_API_TOKEN": authToken}, wantErr: "not configured"},
		{name: "matrix canary in its own room", args: []string{"--canary-matrix-interval", "10m", "--matrix-canary-room", "#canary:example.org"},
			env: map[string]string{"KLAXON_MATRIX_HOMESERVER": "https://matrix.example.org", "KLAXON_MATRIX_USER_ID": "@klaxon:example.org",
				"KLAXON_MATRIX_ACCESS_TOKEN": authToken, "KLAXON_MATRIX_ROOM": "!alerts:example.org"},
			canaries: map[notifiers.Channel]time.Duration{notifiers.Matrix: 10 * time.Minute},
			check: func(t *testing.T, c *serveConfig) {
				if c.channels.mx.CanaryRoom != "#canary:example.org" {
					t.Errorf("canary room %q", c.channels.mx.CanaryRoom)
				}
			}},
		{name: "matrix canary room from the environment", args: []string{"--canary-matrix-interval", "10m"},
			env: map[string]string{"KLAXON_MATRIX_HOMESERVER": "https://matrix.example.org", "KLAXON_MATRIX_USER_ID": "@klaxon:example.org",
				"KLAXON_MATRIX_ACCESS_TOKEN": authToken, "KLAXON_MATRIX_ROOM": "!alerts:example.org", "KLAXON_MATRIX_CANARY_ROOM": "not a room"},
			wantErr: "canary room"},
		{name: "confirmation deadlines", args: []string{"--pagerduty-confirm-within", "3m", "--twilio-sms-confirm-within", "off"},
			env: with(twilioEnv, "KLAXON_PAGERDUTY_ROUTING_KEY", routingKey, "KLAXON_PAGERDUTY_API_TOKEN", authToken), canaries: map[notifiers.Channel]time.Duration{},
			check: func(t *testing.T, c *serveConfig) {
				if c.channels.pd.ConfirmWithin != 3*time.Minute || c.channels.tw.SMSConfirmWithin != -1 {
					t.Errorf("pagerduty %v, sms %v", c.channels.pd.ConfirmWithin, c.channels.tw.SMSConfirmWithin)
				}
			}},
		{name: "confirmation deadline from the environment", env: map[string]string{"KLAXON_PAGERDUTY_ROUTING_KEY": routingKey, "KLAXON_PAGERDUTY_CONFIRM_WITHIN": "off"},
			canaries: map[notifiers.Channel]time.Duration{}, check: func(t *testing.T, c *serveConfig) {
				if c.channels.pd.ConfirmWithin != -1 {
					t.Errorf("pagerduty %v", c.channels.pd.ConfirmWithin)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := parseServe(append([]string{"--insecure-no-auth"}, tc.args...), io.Discard)
			var chans *channelSet
			if err == nil {
				chans, err = c.channels.build(channelDeps{log: slog.New(slog.DiscardHandler), store: noState{}, responder: &lateResponder{}, publicURL: "https://klaxon.example.org"})
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				for _, s := range []string{canaryKey, authToken} {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("the error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[notifiers.Channel]time.Duration{}
			for _, ch := range chans.canaries.Checks {
				got[ch.Channel] = ch.Interval
			}
			if len(got) != len(tc.canaries) {
				t.Fatalf("canaries %v, want %v", got, tc.canaries)
			}
			for ch, d := range tc.canaries {
				if got[ch] != d {
					t.Fatalf("canaries %v, want %v", got, tc.canaries)
				}
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// noState is a StateStore that holds nothing: building channels reads none.
type noState struct{}

func (noState) GetState(context.Context, string, string) ([]byte, error) { return nil, nil }
func (noState) PutState(context.Context, string, string, []byte) error   { return nil }
