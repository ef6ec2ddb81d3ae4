package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	_ "time/tzdata" // resolve rota time zones on minimal machines

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/metrics"
	"github.com/klaxon-oncall/klaxon/internal/selftest"
	"github.com/klaxon-oncall/klaxon/internal/server"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/matrix"
	"github.com/klaxon-oncall/klaxon/notifiers/twilio"
)

// serveConfig is everything `klaxon serve` is configured with.
type serveConfig struct {
	listen, rotaPath, dataDir, logFormat, logLevel, publicURL string
	maxBody                                                   int64
	webhookToken, apiToken                                    string
	channels                                                  channelFlags
	selftestInterval, watchdogTimeout, retention              time.Duration
	selftestPolicy, watchdogMatcher, heartbeatURL             string
	failuresToDown                                            int
}

func parseServe(args []string, stderr io.Writer) (*serveConfig, error) {
	fs := flag.NewFlagSet("klaxon serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &serveConfig{}
	env := map[string]string{
		"listen": "KLAXON_LISTEN", "rota": "KLAXON_ROTA", "data": "KLAXON_DATA", "log-format": "KLAXON_LOG_FORMAT",
		"log-level": "KLAXON_LOG_LEVEL", "max-body": "KLAXON_MAX_BODY", "public-url": "KLAXON_PUBLIC_URL",
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:9797", "address to listen on (env KLAXON_LISTEN)")
	fs.StringVar(&c.rotaPath, "rota", "./rota.yaml", "the on-call rota (env KLAXON_ROTA)")
	fs.StringVar(&c.dataDir, "data", "./data", "data directory holding klaxon.db (env KLAXON_DATA)")
	fs.StringVar(&c.logFormat, "log-format", "", "log format: text or json (default text on a terminal, json otherwise) (env KLAXON_LOG_FORMAT)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error (env KLAXON_LOG_LEVEL)")
	fs.Int64Var(&c.maxBody, "max-body", server.DefaultMaxBody, "largest webhook body accepted, in bytes (env KLAXON_MAX_BODY)")
	fs.StringVar(&c.publicURL, "public-url", "", "Klaxon's public base URL, for links and provider callbacks (env KLAXON_PUBLIC_URL)")
	fs.DurationVar(&c.selftestInterval, "selftest-interval", 5*time.Minute, "how often every channel's account and credentials are checked (env KLAXON_SELFTEST_INTERVAL)")
	fs.StringVar(&c.selftestPolicy, "selftest-policy", "selftest", "rota policy that pages Klaxon's own alarms (env KLAXON_SELFTEST_POLICY)")
	fs.IntVar(&c.failuresToDown, "selftest-failures", 2, "failed checks in a row before a channel is down and alarmed (env KLAXON_SELFTEST_FAILURES)")
	fs.StringVar(&c.watchdogMatcher, "watchdog-matcher", `alertname="Watchdog"`, "matcher of Alertmanager's always-firing Watchdog alert (env KLAXON_WATCHDOG_MATCHER)")
	fs.DurationVar(&c.watchdogTimeout, "watchdog-timeout", 10*time.Minute, "alarm when the Watchdog has not arrived for this long; negative disables (env KLAXON_WATCHDOG_TIMEOUT)")
	fs.DurationVar(&c.retention, "retention", 90*24*time.Hour, "how long resolved incidents and handled-callback keys are kept; 0 keeps everything (env KLAXON_RETENTION)")
	env["retention"] = "KLAXON_RETENTION"
	for k, v := range map[string]string{"selftest-interval": "KLAXON_SELFTEST_INTERVAL", "selftest-policy": "KLAXON_SELFTEST_POLICY",
		"selftest-failures": "KLAXON_SELFTEST_FAILURES", "watchdog-matcher": "KLAXON_WATCHDOG_MATCHER", "watchdog-timeout": "KLAXON_WATCHDOG_TIMEOUT"} {
		env[k] = v
	}
	hb := newSecret(fs, env, "heartbeat-url", "KLAXON_HEARTBEAT_URL", "URL fetched every minute so an outside monitor notices Klaxon's death")
	wt := newSecret(fs, env, "webhook-token", "KLAXON_WEBHOOK_TOKEN", "bearer token Alertmanager must send")
	at := newSecret(fs, env, "api-token", "KLAXON_API_TOKEN", "bearer token the API and CLI must send")
	c.channels.declare(fs, env)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := envFlags(fs, env); err != nil {
		return nil, err
	}
	var err error
	if c.webhookToken, err = wt.get(); err != nil {
		return nil, err
	}
	if c.apiToken, err = at.get(); err != nil {
		return nil, err
	}
	if c.heartbeatURL, err = hb.get(); err != nil {
		return nil, err
	}
	if c.selftestInterval < time.Second {
		return nil, fmt.Errorf("--selftest-interval %s is too short", c.selftestInterval)
	}
	if err := c.channels.resolve(); err != nil {
		return nil, err
	}
	if !isLoopback(c.listen) && (c.webhookToken == "" || c.apiToken == "") {
		return nil, fmt.Errorf("refusing to listen on %s without both --webhook-token and --api-token: anyone who can reach it could open or acknowledge incidents (set them, or listen on 127.0.0.1)", c.listen)
	}
	if c.retention != 0 && c.retention < time.Hour {
		return nil, fmt.Errorf("--retention %s is too short (at least 1h, or 0 to keep everything)", c.retention)
	}
	if c.maxBody < 1024 {
		return nil, fmt.Errorf("--max-body %d is too small (at least 1024 bytes)", c.maxBody)
	}
	return c, nil
}

// isLoopback reports whether a listen address only accepts local connections.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseServe(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "klaxon serve:", err)
		return 2
	}
	log, err := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "klaxon serve:", err)
		return 2
	}
	if err := serve(ctx, cfg, log, nil); err != nil {
		log.Error("klaxon stopped", "error", err)
		return 1
	}
	return 0
}

// serve runs Klaxon until ctx ends. ready, if not nil, receives the bound
// address once the server accepts connections (tests).
func serve(ctx context.Context, cfg *serveConfig, log *slog.Logger, ready func(addr string)) error {
	rw, err := newRotaWatcher(cfg.rotaPath, log)
	if err != nil {
		return err
	}
	var m *metrics.Metrics
	store, err := boltstore.Open(cfg.dataDir, boltstore.Options{OnCommit: func(d time.Duration) {
		if m != nil {
			m.ObserveCommit(d)
		}
	}})
	if err != nil {
		return err
	}
	defer store.Close()
	m = metrics.New(func(ctx context.Context) (map[string]int, error) {
		c, err := store.Counts(ctx)
		out := map[string]int{}
		for k, v := range c {
			out[string(k)] = v
		}
		return out, err
	})
	m.Registry.MustRegister(metrics.NewBuildInfo(version))
	rw.register(m)

	responder := &lateResponder{}
	chans, err := cfg.channels.build(channelDeps{log: log, store: store, responder: responder, publicURL: cfg.publicURL})
	if err != nil {
		return err
	}
	if len(chans.notifiers) == 0 {
		log.Error("no delivery channel is configured: incidents are recorded but nobody can be paged (see README: Channels)")
	}
	watchdog, err := selftest.WatchdogMatcher(cfg.watchdogMatcher)
	if err != nil {
		return fmt.Errorf("--watchdog-matcher: %w", err)
	}
	configured := chans.channels()
	var eng *escalation.Engine
	var personProblem func(string, notifiers.Channel) string
	mon, err := selftest.New(selftest.Config{
		Testers: chans.testers, Configured: configured, State: store, Alarms: responder,
		Policy: cfg.selftestPolicy, Interval: cfg.selftestInterval, FailuresToDown: cfg.failuresToDown,
		WatchdogMatcher: watchdog, WatchdogTimeout: cfg.watchdogTimeout, HeartbeatURL: cfg.heartbeatURL,
		Owners:     func() []string { return rw.w.Current().Owners },
		RotaErrors: rw.w.Errors,
		Coverage: func(now time.Time, up func(notifiers.Channel) bool) []string {
			return selftest.PeopleCoverage(rw.w.Current(), now, selftest.DefaultCoverageHorizon, configured, up, personProblem)
		},
		OnChannelUp: func() {
			if eng != nil {
				eng.Replan()
			}
		},
		Logger: log, Registerer: m.Registry,
	})
	if err != nil {
		return err
	}
	personProblem = mon.PersonProblem
	installation, err := escalation.InstallationID(ctx, store)
	if err != nil {
		return err
	}
	eng = escalation.New(escalation.Config{
		Store:        store,
		Rota:         rw.engineRota,
		Notifiers:    chans.notifiers,
		Health:       mon.Health,
		Evidence:     mon.Evidence,
		OnRecipient:  mon.Recipient,
		Installation: installation,
		Logger:       log,
		BaseURL:      cfg.publicURL,
		OnPage: func(ch notifiers.Channel, result string, took time.Duration) {
			m.Pages.WithLabelValues(string(ch), result).Inc()
			m.PageSeconds.WithLabelValues(string(ch)).Observe(took.Seconds())
		},
		OnExhausted: func(escalation.Incident) { m.Exhausted.Inc() },
	})
	responder.set(eng)
	// A rota edit may name people or policies that can now be paged, and an
	// invalid edit is alarmed at once rather than at the next minute's check.
	rw.w.OnChange(func(*rota.Rota) { eng.Replan() })
	rw.w.OnReload(func(errs []string) { mon.RotaInvalid(context.WithoutCancel(ctx), errs) })
	start := time.Now()
	nInc, nPages, err := eng.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recovering escalations: %w", err)
	}
	log.Info("escalations recovered", "incidents", nInc, "pending_pages", nPages, "took", time.Since(start).Round(time.Millisecond))

	srv := server.New(server.Config{
		Engine: intercepted{eng, mon}, Store: store, Metrics: m, WebhookToken: cfg.webhookToken, APIToken: cfg.apiToken,
		MaxBody: cfg.maxBody, Logger: log, Ready: mon.Ready,
	})
	rw.mount(srv)
	chans.mount(srv)
	srv.Handle("GET /api/v1/channels", srv.ProtectAPI(mon.Handler()))

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.listen, err)
	}
	hs := httpServer(srv, log, defaultTimeouts)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Go(func() { errc <- eng.Run(runCtx) })
	wg.Go(func() { rw.run(runCtx) })
	if cfg.retention > 0 {
		wg.Go(func() { prune(runCtx, store, cfg.retention, log) })
	}
	wg.Go(func() {
		if err := mon.Run(runCtx); err != nil && runCtx.Err() == nil {
			log.Error("self-test loop stopped", "error", err)
		}
	})
	for _, r := range chans.runners {
		wg.Go(func() {
			if err := r(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("channel loop stopped", "error", err)
			}
		})
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("klaxon serving", "listen", ln.Addr().String(), "rota", cfg.rotaPath, "data", cfg.dataDir,
		"channels", strings.Join(chans.names(), ","), "version", version)
	if ready != nil {
		ready(ln.Addr().String())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	cancel()
	wg.Wait()
	return runErr
}

// pruneEvery is how often retention runs (and a minute after start).
const pruneEvery = 24 * time.Hour

// prune deletes what the retention no longer keeps, daily, so the store
// stays bounded under steady load: resolved incidents with their timelines
// and pages, and the channels' keys that grow with every page and callback.
func prune(ctx context.Context, store escalation.Store, retention time.Duration, log *slog.Logger) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cut := time.Now().Add(-retention)
		p := escalation.Prune{ResolvedBefore: cut}
		for _, b := range append(slices.Clone(twilio.ExpiringBuckets), escalation.ExpiringState...) {
			p.State = append(p.State, escalation.StatePrune{Bucket: b, Before: cut})
		}
		p.State = append(p.State, escalation.StatePrune{Bucket: matrix.StateBucket, Prefix: matrix.EventKeyPrefix, Before: cut})
		start := time.Now()
		n, err := store.Prune(ctx, p)
		if err != nil {
			log.Error("retention: pruning old incidents failed; trying again tomorrow", "error", err)
		} else {
			log.Info("retention: pruned", "incidents", n.Incidents, "groups", n.Groups, "state_keys", n.StateKeys, "older_than", cut.Format(time.RFC3339), "took", time.Since(start).Round(time.Millisecond))
		}
		t.Reset(pruneEvery)
	}
}

// timeouts bound how long a client may take, so a slow or stalled sender
// cannot hold a connection or a handler forever.
type timeouts struct{ header, read, write, idle time.Duration }

var defaultTimeouts = timeouts{header: 10 * time.Second, read: 30 * time.Second, write: 30 * time.Second, idle: 2 * time.Minute}

// httpServer wraps Klaxon's handler in an http.Server with those bounds.
func httpServer(h http.Handler, log *slog.Logger, t timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.header, ReadTimeout: t.read, WriteTimeout: t.write,
		IdleTimeout: t.idle, MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// intercepted takes Alertmanager's Watchdog out of webhooks before they reach
// the engine: it feeds the dead man's switch and never opens an incident.
type intercepted struct {
	*escalation.Engine
	mon *selftest.Monitor
}

// Ingest implements server.Engine.
func (e intercepted) Ingest(ctx context.Context, n escalation.Notification) (escalation.IngestResult, error) {
	rest, any, err := e.mon.Intercept(ctx, n)
	if err != nil || !any {
		return escalation.IngestResult{}, err
	}
	return e.Engine.Ingest(ctx, rest)
}

// lateResponder lets channels be built before the engine they answer to.
type lateResponder struct {
	mu  sync.RWMutex
	eng *escalation.Engine
}

func (l *lateResponder) set(e *escalation.Engine) { l.mu.Lock(); l.eng = e; l.mu.Unlock() }

func (l *lateResponder) get() (*escalation.Engine, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.eng == nil {
		return nil, errors.New("klaxon is starting")
	}
	return l.eng, nil
}

// Respond implements notifiers.Responder.
func (l *lateResponder) Respond(ctx context.Context, r notifiers.Response) (notifiers.Outcome, error) {
	e, err := l.get()
	if err != nil {
		return notifiers.Outcome{}, err
	}
	return e.Respond(ctx, r)
}

// Raise implements selftest.Alarmer.
func (l *lateResponder) Raise(ctx context.Context, key, title, policy string, labels map[string]string) (escalation.IngestResult, error) {
	e, err := l.get()
	if err != nil {
		return escalation.IngestResult{}, err
	}
	return e.Raise(ctx, key, title, policy, labels)
}

// Clear implements selftest.Alarmer.
func (l *lateResponder) Clear(ctx context.Context, key, text string) (escalation.IngestResult, error) {
	e, err := l.get()
	if err != nil {
		return escalation.IngestResult{}, err
	}
	return e.Clear(ctx, key, text)
}

// Report implements notifiers.Reporter.
func (l *lateResponder) Report(ctx context.Context, r notifiers.Report) error {
	e, err := l.get()
	if err != nil {
		return err
	}
	return e.Report(ctx, r)
}
