package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/metrics"
	"github.com/klaxon-oncall/klaxon/internal/rotaapi"
	"github.com/klaxon-oncall/klaxon/internal/rotawatch"
	"github.com/klaxon-oncall/klaxon/internal/server"
)

// rotaWatcher keeps the rota in force for the engine: reloaded on file change
// and SIGHUP, swapped only when valid.
type rotaWatcher struct {
	w   *rotawatch.Watcher
	log *slog.Logger

	mu     sync.Mutex
	for_   *rota.Rota
	engine escalation.Rota
}

func newRotaWatcher(path string, log *slog.Logger) (*rotaWatcher, error) {
	w, err := rotawatch.NewWatcher(path, log)
	if err != nil {
		return nil, err
	}
	return &rotaWatcher{w: w, log: log}, nil
}

// engineRota returns the engine's view of the rota in force.
func (r *rotaWatcher) engineRota() escalation.Rota {
	cur := r.w.Current()
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur != r.for_ {
		r.for_, r.engine = cur, rota.ForEngine(cur)
	}
	return r.engine
}

func (r *rotaWatcher) register(m *metrics.Metrics) { m.Registry.MustRegister(r.w) }

func (r *rotaWatcher) mount(s *server.Server, feed rotaapi.FeedAuth) {
	rotaapi.Register(s, r.w, feed, time.Now)
}

// run watches the file and SIGHUP until ctx ends.
func (r *rotaWatcher) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.log.Info("SIGHUP: reloading the rota")
				_ = r.w.Reload()
			}
		}
	}()
	if err := r.w.Run(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("rota file watch stopped; SIGHUP still reloads", "error", err)
	}
}
