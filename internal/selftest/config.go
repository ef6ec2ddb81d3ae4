package selftest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Defaults applied by New to a zero Config field.
const (
	DefaultPolicy            = "selftest"
	DefaultInterval          = 5 * time.Minute
	DefaultFailuresToDown    = 2
	DefaultWatchdogTimeout   = 10 * time.Minute
	DefaultTestTimeout       = 30 * time.Second
	DefaultHeartbeatInterval = time.Minute
	DefaultCoverageInterval  = 24 * time.Hour
	DefaultCoverageHorizon   = 7 * 24 * time.Hour
	// jitter is the fraction by which each self-test interval is varied either way.
	jitter = 0.10
	// stateBucket holds the Monitor's durable state in the StateStore.
	stateBucket = StateBucket
)

// Alarm keys the Monitor raises and clears.
const (
	KeyWatchdog = "watchdog"
	KeyRota     = "rota"
	KeyCoverage = "coverage"
)

// ChannelKey is the alarm key for a channel ("channel:pagerduty").
func ChannelKey(ch notifiers.Channel) string { return "channel:" + string(ch) }

// Alarmer raises and clears alarms; *escalation.Engine implements it.
type Alarmer interface {
	Raise(ctx context.Context, key, title, policy string, labels map[string]string) (escalation.IngestResult, error)
	Clear(ctx context.Context, key, text string) (escalation.IngestResult, error)
}

// Config configures a Monitor. Testers, Configured, State and Alarms are
// required; everything else has a default.
type Config struct {
	// Testers are the configured channels that can test themselves.
	Testers map[notifiers.Channel]notifiers.SelfTester
	// Configured lists every configured channel; one without a tester is
	// taken to be up (a failed send still counts against it, see Evidence).
	Configured []notifiers.Channel
	// State keeps channel verdicts, the Watchdog deadline and raised alarms
	// across restarts (bucket "selftest").
	State notifiers.StateStore
	// Alarms raises and clears alarms (the escalation engine).
	Alarms Alarmer
	// Policy is the escalation policy of channel and Watchdog alarms (default "selftest").
	Policy string
	// OwnersPolicy is the policy of rota and coverage alarms, which are for the
	// rota's owners (default: Policy).
	OwnersPolicy string
	// Interval between self-test rounds (default 5m), varied by ±10%.
	Interval time.Duration
	// Rand varies the interval; tests seed it (default: randomly seeded).
	Rand *rand.Rand
	// TestTimeout bounds each SelfTest call (default 30s).
	TestTimeout time.Duration
	// FailuresToDown is how many failures in a row mark a channel down (default 2).
	FailuresToDown int
	// WatchdogMatcher picks the Watchdog alert out of a webhook (default
	// alertname="Watchdog"). Matching alerts never open an incident.
	WatchdogMatcher func(labels map[string]string) bool
	// WatchdogTimeout is how long Alertmanager may stay silent (default 10m);
	// negative disables the dead man's switch (Watchdog alerts are still dropped).
	WatchdogTimeout time.Duration
	// HeartbeatURL, if set, is fetched every HeartbeatInterval (healthchecks.io
	// style). It is treated as a secret: logs show only its host.
	HeartbeatURL string
	// HeartbeatInterval defaults to one minute.
	HeartbeatInterval time.Duration
	// HTTPClient sends heartbeats (default: a client with a 10s timeout).
	HTTPClient *http.Client
	// Owners returns the rota owners' person ids, named in rota and coverage alarms.
	Owners func() []string
	// Coverage, if set, reports who on call soon cannot be reached given which
	// channels are up (see RotaCoverage); run daily and when a channel's
	// usability changes. Problems raise the "coverage" alarm.
	Coverage func(now time.Time, up func(notifiers.Channel) bool) []string
	// OnChannelUp, if set, is called when a channel becomes usable again, so
	// incidents nobody could be paged for are planned at once.
	OnChannelUp func()
	// CoverageInterval defaults to 24h.
	CoverageInterval time.Duration
	// RotaErrors, if set, is polled every minute for the errors of the last rota
	// reload (nil: valid), e.g. (*rotawatch.Watcher).Errors.
	RotaErrors func() []string
	// Clock defaults to escalation.RealClock.
	Clock escalation.Clock
	// Location formats times in alarm titles (default time.Local).
	Location *time.Location
	Logger   *slog.Logger
	// Registerer, if set, receives the Monitor's metrics.
	Registerer prometheus.Registerer
	// Follower, if set, runs the Monitor as one of several replicas: while
	// it reports true another replica (the leader) runs the checks, and
	// StatusContext answers from the view that replica recorded in State.
	// The replica whose Run runs records its view there.
	Follower func() bool
	// Replica names this replica in the view it records (with Follower).
	Replica string
}

func (c *Config) defaults() error {
	if c.State == nil {
		return errors.New("selftest: Config.State is required")
	}
	if c.Alarms == nil {
		return errors.New("selftest: Config.Alarms is required")
	}
	for ch := range c.Testers {
		if !ch.Valid() {
			return fmt.Errorf("selftest: unknown channel %q", ch)
		}
	}
	seen := map[notifiers.Channel]bool{}
	var conf []notifiers.Channel
	for _, ch := range c.Configured {
		if !ch.Valid() {
			return fmt.Errorf("selftest: unknown channel %q", ch)
		}
		if !seen[ch] {
			seen[ch] = true
			conf = append(conf, ch)
		}
	}
	for ch := range c.Testers { // a tester implies the channel is configured
		if !seen[ch] {
			seen[ch] = true
			conf = append(conf, ch)
		}
	}
	c.Configured = sortChannels(conf)
	if c.Policy == "" {
		c.Policy = DefaultPolicy
	}
	if c.OwnersPolicy == "" {
		c.OwnersPolicy = c.Policy
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if c.TestTimeout <= 0 {
		c.TestTimeout = DefaultTestTimeout
	}
	if c.FailuresToDown <= 0 {
		c.FailuresToDown = DefaultFailuresToDown
	}
	if c.WatchdogMatcher == nil {
		c.WatchdogMatcher = func(l map[string]string) bool { return l["alertname"] == "Watchdog" }
	}
	if c.WatchdogTimeout == 0 {
		c.WatchdogTimeout = DefaultWatchdogTimeout
	}
	if c.HeartbeatURL != "" {
		u, err := url.Parse(c.HeartbeatURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The URL is a secret: do not repeat it.
			return errors.New("selftest: heartbeat URL must be an absolute http or https URL")
		}
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.CoverageInterval <= 0 {
		c.CoverageInterval = DefaultCoverageInterval
	}
	if c.Clock == nil {
		c.Clock = escalation.RealClock{}
	}
	if c.Location == nil {
		c.Location = time.Local
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// WatchdogMatcher builds a Config.WatchdogMatcher from Alertmanager-style
// matchers (`alertname="Watchdog"`, `severity=~"none|info"`); an alert is the
// Watchdog when it matches all of them.
func WatchdogMatcher(specs ...string) (func(labels map[string]string) bool, error) {
	if len(specs) == 0 {
		return nil, errors.New("watchdog matcher: at least one matcher is needed")
	}
	ms := make([]rota.Matcher, 0, len(specs))
	for _, s := range specs {
		m, err := rota.ParseMatcher(s)
		if err != nil {
			return nil, fmt.Errorf("watchdog matcher: %w", err)
		}
		ms = append(ms, m)
	}
	return func(labels map[string]string) bool {
		for _, m := range ms {
			if !m.Matches(labels) {
				return false
			}
		}
		return true
	}, nil
}
