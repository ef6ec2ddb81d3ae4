package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"

	"github.com/klaxon-oncall/klaxon/internal/auth"
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
}

// declare adds each channel's flags. Channel secrets come from the
// environment or *_FILE paths (see README), never from flags that ps shows.
func (c *channelFlags) declare(fs *flag.FlagSet, env map[string]string) {
	c.pd, c.pdErr = pagerduty.FromEnv(os.Getenv)
	c.pd.RegisterFlags(fs)
	c.twErr = c.tw.LoadEnv(os.Getenv)
	c.tw.RegisterFlags(fs)
	c.mxDone = c.mx.RegisterFlags(fs, os.Getenv)
}

func (c *channelFlags) resolve() error {
	if c.pdErr != nil {
		return fmt.Errorf("PagerDuty: %w", c.pdErr)
	}
	if c.twErr != nil {
		return fmt.Errorf("Twilio: %w", c.twErr)
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
}

func (c *channelFlags) build(d channelDeps) (*channelSet, error) {
	s := &channelSet{testers: map[notifiers.Channel]notifiers.SelfTester{}, handlers: map[string]http.Handler{}}
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
	return s, nil
}

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
