package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "time/tzdata" // resolve rota time zones on minimal machines

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/gctune"
	"github.com/klaxon-oncall/klaxon/internal/metrics"
	"github.com/klaxon-oncall/klaxon/internal/notices"
	"github.com/klaxon-oncall/klaxon/internal/selftest"
	"github.com/klaxon-oncall/klaxon/internal/server"
	"github.com/klaxon-oncall/klaxon/internal/web"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/matrix"
	"github.com/klaxon-oncall/klaxon/notifiers/twilio"
)

// serveConfig is everything `klaxon serve` is configured with.
type serveConfig struct {
	listen, rotaPath, dataDir, logFormat, logLevel, publicURL string
	maxBody                                                   int64
	webhookToken, apiToken, metricsToken                      string
	insecure                                                  bool
	channels                                                  channelFlags
	selftestInterval, watchdogTimeout, retention              time.Duration
	selftestPolicy, watchdogMatcher, heartbeatURL             string
	failuresToDown                                            int
	noticeDays                                                int
	webLinkTTL, webSessionTTL                                 time.Duration
	webAuthHeader                                             string
	webAuthProxies                                            []netip.Prefix
	store                                                     string
	etcd                                                      etcdConfig
	memoryLimit                                               int64 // bytes; 0: leave the Go runtime's
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
	fs.IntVar(&c.noticeDays, "notice-days", notices.DefaultDays, "a rota edit tells the people whose shifts change in this many days (env KLAXON_NOTICE_DAYS)")
	env["notice-days"] = "KLAXON_NOTICE_DAYS"
	for k, v := range map[string]string{"selftest-interval": "KLAXON_SELFTEST_INTERVAL", "selftest-policy": "KLAXON_SELFTEST_POLICY",
		"selftest-failures": "KLAXON_SELFTEST_FAILURES", "watchdog-matcher": "KLAXON_WATCHDOG_MATCHER", "watchdog-timeout": "KLAXON_WATCHDOG_TIMEOUT"} {
		env[k] = v
	}
	fs.DurationVar(&c.webLinkTTL, "web-link-ttl", web.DefaultLinkTTL, "how long the signed link in a page works (env KLAXON_WEB_LINK_TTL)")
	fs.DurationVar(&c.webSessionTTL, "web-session-ttl", web.DefaultSessionTTL, "how long a web sign-in lasts (env KLAXON_WEB_SESSION_TTL)")
	env["web-link-ttl"], env["web-session-ttl"] = "KLAXON_WEB_LINK_TTL", "KLAXON_WEB_SESSION_TTL"
	fs.StringVar(&c.webAuthHeader, "web-auth-header", "", "header an authenticating proxy sets to the signed-in person's email, e.g. X-Forwarded-Email; needs --web-auth-proxy (env KLAXON_WEB_AUTH_HEADER)")
	var proxies string
	fs.StringVar(&proxies, "web-auth-proxy", "", "comma-separated addresses or CIDR prefixes of the proxy whose --web-auth-header is believed (env KLAXON_WEB_AUTH_PROXY)")
	env["web-auth-header"], env["web-auth-proxy"] = "KLAXON_WEB_AUTH_HEADER", "KLAXON_WEB_AUTH_PROXY"
	hb := newSecret(fs, env, "heartbeat-url", "KLAXON_HEARTBEAT_URL", "URL fetched every minute so an outside monitor notices Klaxon's death")
	wt := newSecret(fs, env, "webhook-token", "KLAXON_WEBHOOK_TOKEN", "bearer token Alertmanager must send")
	at := newSecret(fs, env, "api-token", "KLAXON_API_TOKEN", "admin bearer token for the API and CLI")
	mt := newSecret(fs, env, "metrics-token", "KLAXON_METRICS_TOKEN", "bearer token /metrics requires (optional)")
	fs.BoolVar(&c.insecure, "insecure-no-auth", false, "waive the webhook and API tokens: anyone who reaches Klaxon can open and acknowledge incidents (env KLAXON_INSECURE_NO_AUTH)")
	env["insecure-no-auth"] = "KLAXON_INSECURE_NO_AUTH"
	c.channels.declare(fs, env)
	memLimit := fs.String("memory-limit", "80MiB", "soft memory limit of the Go runtime: garbage is collected harder as the heap nears it, so an alert storm does not swell Klaxon; 0 leaves Go's default; GOMEMLIMIT, if set, wins (env KLAXON_MEMORY_LIMIT)")
	env["memory-limit"] = "KLAXON_MEMORY_LIMIT"
	fs.StringVar(&c.store, "store", "bolt", "where incidents are kept: bolt (one file in --data) or etcd (several replicas, one leader) (env KLAXON_STORE)")
	env["store"] = "KLAXON_STORE"
	c.etcd.declare(fs, env)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := rejectSecretFlags(fs, hb, wt, at, mt); err != nil {
		return nil, err
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
	if c.metricsToken, err = mt.get(); err != nil {
		return nil, err
	}
	if c.selftestInterval < time.Second {
		return nil, fmt.Errorf("--selftest-interval %s is too short", c.selftestInterval)
	}
	if err := c.channels.resolve(); err != nil {
		return nil, err
	}
	if c.insecure && (c.webhookToken != "" || c.apiToken != "") {
		return nil, errors.New("--insecure-no-auth with a webhook or API token configured: choose one")
	}
	if c.retention != 0 && c.retention < time.Hour {
		return nil, fmt.Errorf("--retention %s is too short (at least 1h, or 0 to keep everything)", c.retention)
	}
	if c.noticeDays < 1 || c.noticeDays > 366 {
		return nil, fmt.Errorf("--notice-days %d: want 1 to 366", c.noticeDays)
	}
	if c.webAuthProxies, err = parseProxies(proxies); err != nil {
		return nil, err
	}
	if (c.webAuthHeader == "") != (len(c.webAuthProxies) == 0) {
		return nil, fmt.Errorf("--web-auth-header and --web-auth-proxy go together: the header is believed only from the proxy")
	}
	if c.webLinkTTL < time.Minute || c.webSessionTTL < time.Minute {
		return nil, fmt.Errorf("--web-link-ttl and --web-session-ttl must be at least a minute")
	}
	switch c.store {
	case "bolt":
	case "etcd":
		if err := c.etcd.resolve(c.listen); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("--store %q: want bolt or etcd", c.store)
	}
	if c.memoryLimit, err = parseBytes(*memLimit); err != nil {
		return nil, fmt.Errorf("--memory-limit: %w", err)
	}
	if c.memoryLimit != 0 && c.memoryLimit < 32<<20 {
		return nil, fmt.Errorf("--memory-limit %s is too small (at least 32MiB, or 0)", *memLimit)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		c.memoryLimit = 0 // the runtime read it at start
	}
	if c.maxBody < 1024 {
		return nil, fmt.Errorf("--max-body %d is too small (at least 1024 bytes)", c.maxBody)
	}
	return c, nil
}

// parseBytes parses a size: a number of bytes, or one with a B, KiB, MiB or
// GiB suffix (as GOMEMLIMIT does).
func parseBytes(orig string) (int64, error) {
	v := strings.TrimSpace(orig)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size like 80MiB", orig)
	}
	return n * mult, nil
}

// parseProxies parses --web-auth-proxy: addresses and CIDR prefixes.
func parseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--web-auth-proxy: %q is not an address or CIDR prefix", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
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
	gc, _ := gctune.Apply(cfg.memoryLimit)
	log.Debug("garbage collector", "memory_limit", gc.Limit, "gc_percent", gc.Percent)
	if err := serve(ctx, cfg, log, serveHooks{}); err != nil {
		log.Error("klaxon stopped", "error", err)
		return 1
	}
	return 0
}

// Files in the data directory holding Klaxon's own credentials.
const (
	webhookTokenFile = "webhook-token" // generated when none is configured
	apiTokenFile     = "api-token"     // the admin API token, generated likewise
	tokensFile       = "tokens"        // named person and feed tokens (hashes)
)

// ensureTokens fills in the webhook and admin API tokens from files in the
// data directory, generating them (0600) on first start, unless auth is
// waived. It logs where they are, never what they are.
func ensureTokens(cfg *serveConfig, log *slog.Logger) error {
	if cfg.insecure {
		log.Warn("AUTHENTICATION DISABLED (--insecure-no-auth): anyone who can reach " + cfg.listen +
			" (or a proxy in front of it) can open, acknowledge and resolve incidents. Remove the flag to have tokens generated.")
		return nil
	}
	if cfg.store == "etcd" && (cfg.webhookToken == "" || cfg.apiToken == "") {
		// Tokens generated into one replica's data directory would work on
		// that replica alone: Alertmanager and the CLI talk to all of them.
		return errors.New("--store etcd needs the same webhook and API tokens on every replica: set KLAXON_WEBHOOK_TOKEN_FILE and KLAXON_API_TOKEN_FILE (or the variables)")
	}
	for _, t := range []struct {
		name, file, env string
		v               *string
	}{
		{"webhook", webhookTokenFile, "KLAXON_WEBHOOK_TOKEN", &cfg.webhookToken},
		{"API", apiTokenFile, "KLAXON_API_TOKEN", &cfg.apiToken},
	} {
		if *t.v != "" {
			continue
		}
		path := filepath.Join(cfg.dataDir, t.file)
		tok, created, err := auth.LoadOrCreate(path)
		if err != nil {
			return fmt.Errorf("%s token: %w (or set %s_FILE)", t.name, err, t.env)
		}
		*t.v = tok
		if created {
			log.Warn("generated the "+t.name+" token: read it from the file (cat it), or set "+t.env+"_FILE to use your own", "file", path)
		} else {
			log.Info("using the "+t.name+" token kept in the data directory", "file", path)
		}
	}
	return nil
}

// serveHooks let tests watch serve from inside; all are optional.
type serveHooks struct {
	// ready receives the bound address (and the server) once it accepts connections.
	ready func(started)
	// opened receives the store serve opened.
	opened func(*boltstore.Store)
	// recovering, if set, is called before recovery reads its snapshot and
	// holds it until it returns.
	recovering func()
	// recovered is called once escalations are recovered.
	recovered func()
}

// openStore opens the store `klaxon serve` runs on: every commit is fsynced
// before it returns (boltstore's default; NoSync is for tests only).
func openStore(dir string, onCommit func(time.Duration), onResult func(error)) (*boltstore.Store, error) {
	return boltstore.Open(dir, boltstore.Options{OnCommit: onCommit, OnCommitResult: onResult})
}

// serve runs Klaxon until ctx ends. It listens, and accepts webhooks durably,
// while the engine recovers the escalations stored before the start.
func serve(ctx context.Context, cfg *serveConfig, log *slog.Logger, hooks serveHooks) error {
	rw, err := newRotaWatcher(cfg.rotaPath, log)
	if err != nil {
		return err
	}
	var m *metrics.Metrics
	observe := func(d time.Duration) {
		if m != nil {
			m.ObserveCommit(cfg.store, d)
		}
	}
	var store escalation.Store
	var bs *boltstore.Store
	var es *etcdstore.Store
	var el *election
	if cfg.store == "etcd" {
		cfg.etcd.warn(log)
		cli, err := cfg.etcd.client()
		if err != nil {
			return err
		}
		defer cli.Close()
		es = etcdstore.New(cli, etcdstore.Options{Prefix: cfg.etcd.prefix, Writer: "replica:" + cfg.etcd.replica, OnCommit: observe,
			MaxTxnOps: cfg.etcd.maxTxnOps, Logger: log})
		store = es
	} else {
		bs, err = openStore(cfg.dataDir, observe, func(err error) {
			if m != nil {
				m.ObserveCommitResult(err)
			}
		})
		if err != nil {
			return err
		}
		store = bs
	}
	defer store.Close()
	if err := ensureTokens(cfg, log); err != nil {
		return err
	}
	var snap *boltstore.ScheduleSnapshot
	if bs != nil {
		if hooks.opened != nil {
			hooks.opened(bs)
		}
		// Recovery reads the schedule as it is now, before anything can
		// write: webhooks accepted while it runs are escalated as they arrive.
		if snap, err = bs.SnapshotSchedule(); err != nil {
			return fmt.Errorf("reading the schedule: %w", err)
		}
	}
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
	var monitor atomic.Pointer[selftest.Monitor] // built after the channels it checks
	delivery := func(ch notifiers.Channel, confirmed bool, reason string) {
		if m := monitor.Load(); m != nil {
			m.Delivery(ch, confirmed, reason)
		}
	}
	chans, err := cfg.channels.build(channelDeps{log: log, store: store, responder: responder, publicURL: cfg.publicURL, delivery: delivery})
	if err != nil {
		return err
	}
	if len(chans.notifiers) == 0 {
		log.Error("no delivery channel is configured: incidents are recorded but nobody can be paged (see docs/channels/)")
	}
	watchdog, err := selftest.WatchdogMatcher(cfg.watchdogMatcher)
	if err != nil {
		return fmt.Errorf("--watchdog-matcher: %w", err)
	}
	configured := chans.channels()
	// scheduling is the engine that schedules and sends: the only one with
	// bolt, the leader's with etcd (nil while this replica follows).
	var scheduling atomic.Pointer[escalation.Engine]
	replan := func() {
		if e := scheduling.Load(); e != nil {
			e.Replan()
		}
	}
	var personProblem func(string, notifiers.Channel) string
	var notes *notices.Service // set below; the coverage check reads its undeliverable reminders
	// The self-tests' records and the rota notices are the leader's: with
	// etcd only the leading term writes them (fenced).
	lstate := &leaderState{StateStore: store, elected: es != nil}
	mon, err := selftest.New(selftest.Config{
		Testers: chans.testers, Configured: configured, State: lstate, Alarms: responder,
		Policy: cfg.selftestPolicy, Interval: cfg.selftestInterval, FailuresToDown: cfg.failuresToDown,
		WatchdogMatcher: watchdog, WatchdogTimeout: cfg.watchdogTimeout, HeartbeatURL: cfg.heartbeatURL,
		Owners:     func() []string { return rw.w.Current().Owners },
		RotaErrors: rw.w.Errors,
		Coverage: func(now time.Time, up func(notifiers.Channel) bool) []string {
			problems := selftest.PeopleCoverage(rw.w.Current(), now, selftest.DefaultCoverageHorizon, configured, up, personProblem)
			if notes != nil {
				problems = append(problems, notes.Problems(now)...)
			}
			return problems
		},
		OnChannelUp: replan,
		Logger:      log, Registerer: m.Registry,
		Follower: following(es, &el), Replica: cfg.etcd.replica,
	})
	if err != nil {
		return err
	}
	// Canary results feed health as unconfirmed pages do.
	chans.canaries.Deliveries = mon.Delivery
	personProblem = mon.PersonProblem
	monitor.Store(mon)
	for _, ch := range configured { // exported from the start, so rate() and increase() see the first one
		m.DeliverySeconds.WithLabelValues(string(ch))
		for _, cause := range []string{escalation.CauseDeadline, escalation.CauseReported} {
			m.Unconfirmed.WithLabelValues(string(ch), cause)
		}
	}
	installation, err := escalation.InstallationID(ctx, store)
	if err != nil {
		return err
	}
	// Named tokens and web sessions live in the store (every replica sees
	// one set): people's API tokens, which also sign them in to the web
	// interface, and calendar feed tokens. An earlier DATA/tokens moves in.
	tokens, err := openTokens(ctx, store, cfg.dataDir, cfg.apiToken, log)
	if err != nil {
		return err
	}
	key, err := webKey(ctx, cfg, store)
	if err != nil {
		return err
	}
	wb, err := web.New(web.Config{
		Store: store, Actor: responder, Rota: rw.w, Signer: web.NewSigner(key), Tokens: web.PersonTokens(tokens), Sessions: tokens,
		PublicURL: cfg.publicURL, LinkTTL: cfg.webLinkTTL, SessionTTL: cfg.webSessionTTL, Logger: log,
		AuthHeader: cfg.webAuthHeader, TrustedProxies: cfg.webAuthProxies,
		Health: func(ctx context.Context) web.Health { return webHealth(ctx, mon, rw.w.Current(), configured) },
	})
	if err != nil {
		return err
	}
	engineConfig := func(st escalation.Store, channels []notifiers.Notifier) escalation.Config {
		return escalation.Config{
			Store:        st,
			Rota:         rw.engineRota,
			Notifiers:    channels,
			Health:       mon.Health,
			Evidence:     mon.Evidence,
			OnRecipient:  mon.Recipient,
			Installation: installation,
			Logger:       log,
			BaseURL:      cfg.publicURL,
			Link:         wb.Link,
			OnPage: func(ch notifiers.Channel, result string, took time.Duration) {
				m.Pages.WithLabelValues(string(ch), result).Inc()
				m.PageSeconds.WithLabelValues(string(ch)).Observe(took.Seconds())
			},
			OnDelivery: func(d escalation.Delivery) {
				if d.Confirmed {
					m.DeliverySeconds.WithLabelValues(string(d.Channel)).Observe(d.Took.Seconds())
				} else {
					m.Unconfirmed.WithLabelValues(string(d.Channel), d.Cause).Inc()
				}
				mon.Delivery(d.Channel, d.Confirmed, d.Reason)
			},
			OnExhausted: func(escalation.Incident) { m.Exhausted.Inc() },
			OnChange:    func(uint64) { wb.Changed() },
		}
	}
	notes, err = notices.New(notices.Config{
		State: lstate, Notifiers: chans.notifiers, Usable: mon.Usable, Days: cfg.noticeDays, Logger: log,
		OpenIncidents: func(ctx context.Context) (int, error) {
			c, err := store.Counts(ctx)
			return c[escalation.Open] + c[escalation.Acknowledged], err
		},
		OnUndeliverable: func(ctx context.Context) { mon.CheckCoverage(ctx) },
	})
	if err != nil {
		return err
	}
	// Rota notices are the leader's work, like pages: startNotes announces
	// edits made while no leader ran, runNotes sends them and the reminders.
	startNotes := func(ctx context.Context) error { return notes.Start(ctx, rw.w.Current(), rw.w.Data()) }
	runNotes := func(ctx context.Context) {
		if err := notes.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("rota notices stopped", "error", err)
		}
	}
	leading := func() bool { return el == nil || el.Leading() }
	// A rota edit may name people or policies that can now be paged, and an
	// invalid edit is alarmed at once rather than at the next minute's check.
	rw.w.OnChange(func(_, r *rota.Rota) {
		replan()
		if !leading() {
			return // the leader announces it (or the next one, at its start)
		}
		if err := notes.RotaChanged(ctx, r, rw.w.Data()); err != nil {
			log.Error("rota change notices could not be written; they are computed again at the next reload or start", "error", err)
		}
	})
	rw.w.OnChange(func(_, r *rota.Rota) { endSessionsOffRota(ctx, tokens, r, log) })
	rw.w.OnReload(func(errs []string) { mon.RotaInvalid(context.WithoutCancel(ctx), errs) })
	// background is what runs beside the HTTP server: with bolt, the one
	// engine's recovery and scheduler, the self-tests, the notices and the
	// channels' loops; with etcd, the election, whose leader runs those.
	errc := make(chan error, 4)
	var background []func(ctx context.Context)
	var eng *escalation.Engine
	bound := func(h http.Handler) http.Handler { return h } // with etcd: reads answer within a bound
	readyCheck := mon.Ready
	status := func(context.Context) (leaderInfo, error) {
		return leaderInfo{Store: "bolt", Replica: cfg.listen, Leading: true, Leader: cfg.listen}, nil
	}
	if es == nil {
		// Edits made while Klaxon was down are announced now; later ones as they load.
		if err := startNotes(ctx); err != nil {
			return err
		}
		eng = escalation.New(engineConfig(recoverFrom{bs, snap, hooks.recovering}, chans.notifiers))
		m.Leader.Set(1)
		scheduling.Store(eng)
		background = append(background, func(ctx context.Context) {
			start := time.Now()
			nInc, nPages, err := eng.Recover(ctx)
			if err != nil {
				if ctx.Err() == nil {
					errc <- fmt.Errorf("recovering escalations: %w", err)
				}
				return
			}
			log.Info("escalations recovered", "incidents", nInc, "pending_pages", nPages, "took", time.Since(start).Round(time.Millisecond))
			if hooks.recovered != nil {
				hooks.recovered()
			}
			errc <- eng.Run(ctx)
		}, func(ctx context.Context) { runLeaderLoops(ctx, log, mon, chans.runners) }, runNotes)
		if cfg.retention > 0 {
			background = append(background, func(ctx context.Context) { prune(ctx, store, cfg.retention, log) })
		}
	} else {
		el = &election{cli: es.Client(), store: es, cfg: &cfg.etcd, log: log, m: m, chans: chans.notifiers}
		// Every replica records webhooks, API calls and callbacks; only the
		// leader schedules and sends, told of the work by watching etcd.
		rc := engineConfig(store, chans.notifiers)
		rc.RecordOnly = true
		rc.Health = func(ch notifiers.Channel) escalation.ChannelHealth {
			if el.Leading() {
				return mon.Health(ch)
			}
			return escalation.ChannelHealth{Configured: true}
		}
		eng = escalation.New(rc)
		readyCheck = func(ctx context.Context) error {
			if el.Leading() {
				return mon.Ready(ctx)
			}
			return nil // a follower is ready when it can reach the store (checked first)
		}
		health := newEtcdHealth(es.Client())
		background = append(background, health.run)
		status = (&knownInfo{el: el, health: health}).info
		bound = func(h http.Handler) http.Handler { return boundReads(h, cfg.etcd.readTimeout, health.unreachable) }
		lead := func(ctx context.Context, fenced *etcdstore.Store, writer string, gated []notifiers.Notifier) error {
			leng := escalation.New(engineConfig(fenced, gated))
			start := time.Now()
			nInc, nPages := 0, 0
			rev, err := fenced.ScheduleRev(ctx, func(d escalation.Due) error {
				nInc, nPages = nInc+1, nPages+len(d.Pages)
				leng.Track(d)
				return nil
			})
			if err != nil {
				return fmt.Errorf("recovering escalations: %w", err)
			}
			log.Info("escalations recovered", "incidents", nInc, "pending_pages", nPages, "took", time.Since(start).Round(time.Millisecond))
			scheduling.Store(leng)
			defer scheduling.Store(nil)
			lstate.fenced.Store(fenced)
			defer lstate.fenced.Store(nil)
			if err := startNotes(ctx); err != nil {
				log.Error("rota change notices could not be computed; trying again at the next reload", "error", err)
			}
			wctx, stop := context.WithCancelCause(ctx)
			retention := func() {
				if cfg.retention > 0 {
					prune(wctx, fenced, cfg.retention, log)
				}
			}
			runAll(
				retention,
				func() { _ = leng.Run(wctx) },
				func() {
					if err := fenced.WatchWork(wctx, rev+1, writer, leng.Track); wctx.Err() == nil {
						stop(err) // without the watch this leader would miss work: step down
					}
				},
				func() { runLeaderLoops(wctx, log, mon, chans.runners) },
				func() { runNotes(wctx) },
			)
			leng.Wait()
			stop(nil)
			return context.Cause(wctx)
		}
		background = append(background, func(ctx context.Context) { el.run(ctx, lead) })
	}
	responder.set(eng)

	srv := server.New(server.Config{
		Engine: intercepted{eng, mon}, Store: store, Metrics: m, WebhookToken: cfg.webhookToken, Auth: tokens, OnRota: onRota(rw.w.Current),
		MetricsToken: cfg.metricsToken, Insecure: cfg.insecure, MaxBody: cfg.maxBody, Logger: log, Ready: readyCheck,
	})
	rw.mount(srv, feedOnRota(tokens, rw.w.Current))
	mountTokenAPI(srv, tokens, rw.w.Current, log)
	chans.mount(srv)
	srv.Handle("GET /api/v1/channels", auth.APIToken, mon.Handler())
	srv.Handle("GET /api/v1/cluster", auth.APIToken, clusterHandler(status))
	wb.Register(srv)

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.listen, err)
	}
	hs := httpServer(bound(srv), log, defaultTimeouts)
	hs.RegisterOnShutdown(wb.Close) // browsers' event streams would hold a graceful shutdown
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { rw.run(runCtx) })
	for _, b := range background {
		wg.Go(func() { b(runCtx) })
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("klaxon serving", "listen", ln.Addr().String(), "rota", cfg.rotaPath, "data", cfg.dataDir, "store", cfg.store,
		"channels", strings.Join(chans.names(), ","), "version", version)
	if hooks.ready != nil {
		hooks.ready(started{addr: ln.Addr().String(), srv: srv})
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

// webKey is the key that signs the web interface's links and sessions: a
// file in the data directory with bolt; with etcd one key for all replicas,
// never in clear in the store (see sharedWebKey). KLAXON_WEB_KEY_FILE, when
// set, is the key with either.
func webKey(ctx context.Context, cfg *serveConfig, store escalation.Store) ([]byte, error) {
	if cfg.store != "etcd" {
		return localWebKey(os.Getenv(webKeyFileEnv), cfg.dataDir)
	}
	return sharedWebKey(ctx, os.Getenv(webKeyFileEnv), cfg.apiToken, store)
}

// started is what serve hands its ready callback.
type started struct {
	addr string
	srv  *server.Server
}

// runLeaderLoops runs the self-tests, the Watchdog, the heartbeat and the
// channels' own loops (PagerDuty polling, Matrix sync) until ctx ends.
func runLeaderLoops(ctx context.Context, log *slog.Logger, mon *selftest.Monitor, runners []func(context.Context) error) {
	fns := []func(){func() {
		if err := mon.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("self-test loop stopped", "error", err)
		}
	}}
	for _, r := range runners {
		fns = append(fns, func() {
			if err := r(ctx); err != nil && ctx.Err() == nil {
				log.Error("channel loop stopped", "error", err)
			}
		})
	}
	runAll(fns...)
}

// clusterHandler answers GET /api/v1/cluster: the replicas, the leader and its lease.
func clusterHandler(status func(context.Context) (leaderInfo, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		info, err := status(r.Context())
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "reading the election: " + err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(info)
	})
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

// recoverFrom is the store with the schedule snapshot taken at start: the
// engine's recovery reads the snapshot, everything else the store.
type recoverFrom struct {
	*boltstore.Store
	snap *boltstore.ScheduleSnapshot
	hold func() // tests: runs before the snapshot is read
}

// Schedule implements escalation.Store.
func (r recoverFrom) Schedule(ctx context.Context, fn func(escalation.Due) error) error {
	if r.hold != nil {
		r.hold()
	}
	return r.snap.Schedule(ctx, fn)
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

// ActAs implements web.Actor.
func (l *lateResponder) ActAs(ctx context.Context, id uint64, action notifiers.Action, person, via, pageID string) (notifiers.Outcome, error) {
	e, err := l.get()
	if err != nil {
		return notifiers.Outcome{}, err
	}
	return e.ActAs(ctx, id, action, person, via, pageID)
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
