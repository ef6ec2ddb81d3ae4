package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/canary"
	"github.com/klaxon-oncall/klaxon/internal/server"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/matrix"
	"github.com/klaxon-oncall/klaxon/notifiers/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers/twilio"
)

// channelFlags holds the delivery channels' configuration (flags and
// environment; secrets also as *_FILE). A channel with no configuration is off.
type channelFlags struct {
	pd     pagerduty.Config
	pdErr  error
	tw     twilio.Config
	twErr  error
	mx     matrix.Config
	mxDone func() error
	mxOn   bool
	// canary holds each channel's canary interval (0: off).
	canary map[notifiers.Channel]*time.Duration
}

// declare adds each channel's flags. Channel secrets come from the
// environment or *_FILE paths (docs/configuration.md), never from flags that
// ps shows.
func (c *channelFlags) declare(fs *flag.FlagSet, env map[string]string) {
	c.pd, c.pdErr = pagerduty.FromEnv(os.Getenv)
	c.pd.RegisterFlags(fs)
	c.twErr = c.tw.LoadEnv(os.Getenv)
	c.tw.RegisterFlags(fs)
	c.mxDone = c.mx.RegisterFlags(fs, os.Getenv)
	c.canary = map[notifiers.Channel]*time.Duration{}
	for _, k := range []struct {
		ch   notifiers.Channel
		what string
	}{
		{notifiers.PagerDuty, "a PagerDuty canary (a trigger on the canary routing key, confirmed by a notify log entry, then resolved; notifies whoever that service's policy names)"},
		{notifiers.SMS, "an SMS canary (a text to the canary number that must come back to the SMS webhook; two texts billed per run)"},
		{notifiers.Matrix, "a Matrix canary (an m.notice to --matrix-canary-room, default the alert room, that must come back through the observer account's /sync, or the bot's own without an observer; notifies nobody)"},
	} {
		name := "canary-" + string(k.ch) + "-interval"
		envName := "KLAXON_CANARY_" + strings.ToUpper(string(k.ch)) + "_INTERVAL"
		c.canary[k.ch] = fs.Duration(name, 0, "run "+k.what+" this often; 0 is off (env "+envName+")")
		env[name] = envName
	}
}

func (c *channelFlags) resolve() error {
	if c.pdErr != nil {
		return fmt.Errorf("PagerDuty: %w", c.pdErr)
	}
	if c.twErr != nil {
		return fmt.Errorf("Twilio: %w", c.twErr)
	}
	for ch, d := range c.canary {
		if *d != 0 && *d < canary.MinInterval {
			return fmt.Errorf("--canary-%s-interval %v is below %v", ch, *d, canary.MinInterval)
		}
	}
	if *c.canary[notifiers.PagerDuty] > 0 && (c.pd.CanaryRoutingKey == "" || c.pd.APIToken == "") {
		return fmt.Errorf("--canary-pagerduty-interval needs %s and %s", pagerduty.EnvCanaryRoutingKey, pagerduty.EnvAPIToken)
	}
	if *c.canary[notifiers.SMS] > 0 && c.tw.CanaryTo == "" {
		return errors.New("--canary-sms-interval needs --twilio-canary-to (env KLAXON_TWILIO_CANARY_TO)")
	}
	c.mxOn = c.mx.Homeserver != "" || c.mx.UserID != "" || c.mx.Room != ""
	if c.mxOn {
		if err := c.mxDone(); err != nil {
			return err
		}
	}
	return nil
}

// channelDeps is what channels are built with.
type channelDeps struct {
	log       *slog.Logger
	store     notifiers.StateStore
	responder interface {
		notifiers.Responder
		notifiers.Reporter
	}
	publicURL string
	// delivery, if set, learns a channel's own evidence that pages cannot
	// be delivered (a stalled Matrix sync), as self-test evidence.
	delivery func(ch notifiers.Channel, confirmed bool, reason string)
}

// channelSet is the configured channels, wired for the engine and server.
type channelSet struct {
	notifiers []notifiers.Notifier
	testers   map[notifiers.Channel]notifiers.SelfTester
	handlers  map[string]http.Handler // pattern → provider callback handler
	runners   []func(context.Context) error
	// canaries runs the opted-in canaries (one of runners); serve wires its
	// Deliveries to the self-test monitor.
	canaries *canary.Runner
}

func (c *channelFlags) build(d channelDeps) (*channelSet, error) {
	s := &channelSet{testers: map[notifiers.Channel]notifiers.SelfTester{}, handlers: map[string]http.Handler{},
		canaries: &canary.Runner{Logger: d.log.With("component", "canary")}}
	if c.pd.RoutingKey != "" {
		cfg := c.pd
		cfg.Responder, cfg.Reporter, cfg.State = d.responder, d.responder, d.store
		cfg.Logger = d.log.With("channel", "pagerduty")
		if cfg.KlaxonURL == "" {
			cfg.KlaxonURL = d.publicURL
		}
		n, err := pagerduty.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("PagerDuty: %w", err)
		}
		s.add(n, n)
		s.handlers["/webhook/pagerduty"] = n.WebhookHandler()
		s.runners = append(s.runners, n.Run)
	}
	if c.mxOn {
		cfg := c.mx
		cfg.Responder, cfg.Reporter, cfg.State = d.responder, d.responder, d.store
		cfg.Logger = d.log.With("channel", "matrix")
		if d.delivery != nil {
			cfg.SyncStalled = func(reason string) { d.delivery(notifiers.Matrix, false, reason) }
		}
		mx, err := matrix.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("Matrix: %w", err)
		}
		s.add(mx, mx)
		s.runners = append(s.runners, mx.Run)
	}
	if c.tw.AccountSID != "" {
		cfg := c.tw
		cfg.Responder, cfg.Reporter, cfg.State = d.responder, d.responder, d.store
		cfg.Logger = d.log.With("channel", "twilio")
		if cfg.PublicURL == "" {
			cfg.PublicURL = d.publicURL
		}
		tw, err := twilio.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("Twilio: %w", err)
		}
		voice, sms := tw.Voice(), tw.SMS()
		s.add(voice, selfTester(voice))
		s.add(sms, selfTester(sms))
		s.handlers["/webhook/twilio/"] = tw.Handler()
	}
	for _, n := range s.notifiers {
		every := c.canary[n.Channel()]
		if every == nil || *every == 0 {
			continue
		}
		// Every channel with a --canary-*-interval flag is a Prober (see
		// the assertions below); the runner's Validate refuses a nil one.
		p, _ := n.(canary.Prober)
		s.canaries.Checks = append(s.canaries.Checks, canary.Check{Channel: n.Channel(), Prober: p, Interval: *every})
	}
	for ch, every := range c.canary {
		if *every > 0 && !slices.ContainsFunc(s.notifiers, func(n notifiers.Notifier) bool { return n.Channel() == ch }) {
			return nil, fmt.Errorf("--canary-%s-interval: the %s channel is not configured", ch, ch)
		}
	}
	if len(s.canaries.Checks) > 0 {
		if err := s.canaries.Validate(); err != nil {
			return nil, err
		}
		s.runners = append(s.runners, s.canaries.Run)
	}
	return s, nil
}

// The channels with a --canary-*-interval flag run canaries.
var (
	_ canary.Prober = (*pagerduty.Notifier)(nil)
	_ canary.Prober = (*matrix.Notifier)(nil)
)

// selfTester returns n's self-test, if it has one.
func selfTester(n notifiers.Notifier) notifiers.SelfTester {
	t, _ := n.(notifiers.SelfTester)
	return t
}

// add registers a channel and its self-test.
func (s *channelSet) add(n notifiers.Notifier, t notifiers.SelfTester) {
	s.notifiers = append(s.notifiers, n)
	if t != nil {
		s.testers[n.Channel()] = t
	}
}

func (s *channelSet) names() []string {
	var out []string
	for _, n := range s.notifiers {
		out = append(out, string(n.Channel()))
	}
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}

// channels lists the configured channels.
func (s *channelSet) channels() []notifiers.Channel {
	var out []notifiers.Channel
	for _, n := range s.notifiers {
		out = append(out, n.Channel())
	}
	return out
}

func (s *channelSet) mount(srv *server.Server) {
	for p, h := range s.handlers {
		srv.Handle(p, auth.Signature, h) // each provider checks its own signature
	}
}
