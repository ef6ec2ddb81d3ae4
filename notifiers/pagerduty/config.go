package pagerduty

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// PagerDuty's public endpoints, by service region.
const (
	USEventsURL = "https://events.pagerduty.com"
	USAPIURL    = "https://api.pagerduty.com"
	EUEventsURL = "https://events.eu.pagerduty.com"
	EUAPIURL    = "https://api.eu.pagerduty.com"
)

// Defaults applied by New.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultHTTPTimeout  = 10 * time.Second
)

// Config configures the PagerDuty channel. Only RoutingKey and Responder are
// required. Secrets (RoutingKey, ExtraRoutingKeys, APIToken, WebhookSecret)
// never appear in logs or error messages.
type Config struct {
	// RoutingKey is the default Events API v2 integration key (32 characters).
	RoutingKey string
	// ExtraRoutingKeys are the routing keys policy steps name (Page.RoutingKey);
	// listing them here lets SelfTest check their services too.
	ExtraRoutingKeys []string
	// APIToken is a REST API token (read-only is enough), used by SelfTest, by
	// polling when there is no webhook secret, and to look up an incident's key
	// when a webhook lacks it. Optional.
	APIToken string
	// WebhookSecret is the v3 webhook subscription's signing secret. Optional:
	// without it the webhook endpoint refuses everything and, given an
	// APIToken, Run polls instead.
	WebhookSecret string
	// EventsURL is the Events API base URL (default USEventsURL; EU accounts
	// use EUEventsURL).
	EventsURL string
	// APIURL is the REST API base URL (default USAPIURL; EU: EUAPIURL).
	APIURL string
	// HTTPClient is used for every call; nil means a client with a
	// DefaultHTTPTimeout timeout.
	HTTPClient *http.Client
	// PollInterval is how often Run polls incidents (default DefaultPollInterval).
	PollInterval time.Duration
	// Responder takes acknowledgements coming back from PagerDuty.
	Responder notifiers.Responder
	// Reporter, if set, records PagerDuty-side events that are not responses
	// (an incident reassigned in PagerDuty).
	Reporter notifiers.Reporter
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KlaxonURL is Klaxon's public base URL, for links back to the incident.
	KlaxonURL string
	// WebhookMaxAge rejects webhooks whose occurred_at is older than this
	// (default 1h; see WebhookHandler).
	WebhookMaxAge time.Duration
	// State, if set, keeps handled webhook event ids, the incidents tracked
	// for polling and looked-up user emails across restarts. A store that
	// also implements notifiers.StateSweeper gets tracked incidents restored
	// at New and old event ids expired. Without it all of this is in memory.
	State notifiers.StateStore
	// ConfirmWithin is how long after a trigger PagerDuty must show that a
	// person was notified (a notify_log_entry) before the page is reported
	// unconfirmed (0: DefaultConfirmWithin; negative: no confirmation).
	// Confirmation needs APIToken and Reporter.
	ConfirmWithin time.Duration
	// CanaryRoutingKey is the integration key Canary triggers on: a service
	// whose escalation policy reaches a person (or a dummy user with a
	// contact method) but that pages nobody who must wake up. Optional.
	CanaryRoutingKey string
}

// Environment variables read by FromEnv. Each secret may instead be given as
// a file path in the variable with a _FILE suffix.
const (
	EnvRoutingKey       = "KLAXON_PAGERDUTY_ROUTING_KEY"
	EnvExtraRoutingKeys = "KLAXON_PAGERDUTY_EXTRA_ROUTING_KEYS" // comma-separated
	EnvAPIToken         = "KLAXON_PAGERDUTY_API_TOKEN"
	EnvWebhookSecret    = "KLAXON_PAGERDUTY_WEBHOOK_SECRET"
	EnvRegion           = "KLAXON_PAGERDUTY_REGION" // us | eu
	EnvEventsURL        = "KLAXON_PAGERDUTY_EVENTS_URL"
	EnvAPIURL           = "KLAXON_PAGERDUTY_API_URL"
	EnvPollInterval     = "KLAXON_PAGERDUTY_POLL_INTERVAL"
	EnvConfirmWithin    = "KLAXON_PAGERDUTY_CONFIRM_WITHIN"     // a duration, or off
	EnvCanaryRoutingKey = "KLAXON_PAGERDUTY_CANARY_ROUTING_KEY" // secret
)

// FromEnv reads a Config from environment variables through getenv
// (os.Getenv in production). Responder, Reporter, Logger and the clock are
// left for the caller to wire. Errors name the variable, never its value.
func FromEnv(getenv func(string) string) (Config, error) {
	var cfg Config
	var errs []error
	secret := func(name string) string {
		if v := getenv(name); v != "" {
			return strings.TrimSpace(v)
		}
		path := getenv(name + "_FILE")
		if path == "" {
			return ""
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_FILE: cannot read the file it names", name))
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	cfg.RoutingKey = secret(EnvRoutingKey)
	if extra := secret(EnvExtraRoutingKeys); extra != "" {
		for k := range strings.SplitSeq(extra, ",") {
			if k = strings.TrimSpace(k); k != "" {
				cfg.ExtraRoutingKeys = append(cfg.ExtraRoutingKeys, k)
			}
		}
	}
	cfg.APIToken = secret(EnvAPIToken)
	cfg.WebhookSecret = secret(EnvWebhookSecret)
	if err := cfg.SetRegion(getenv(EnvRegion)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvRegion, err))
	}
	if v := getenv(EnvEventsURL); v != "" {
		cfg.EventsURL = v
	}
	if v := getenv(EnvAPIURL); v != "" {
		cfg.APIURL = v
	}
	if v := getenv(EnvPollInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration like 30s", EnvPollInterval, v))
		}
		cfg.PollInterval = d
	}
	if v := getenv(EnvConfirmWithin); v != "" {
		if err := cfg.setConfirmWithin(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvConfirmWithin, err))
		}
	}
	cfg.CanaryRoutingKey = secret(EnvCanaryRoutingKey)
	return cfg, errors.Join(errs...)
}

// setConfirmWithin parses a confirmation deadline: a duration, or "off".
func (c *Config) setConfirmWithin(v string) error {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "off") {
		c.ConfirmWithin = -1
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is not a positive duration like 2m, or off", v)
	}
	c.ConfirmWithin = d
	return nil
}

// SetRegion points EventsURL and APIURL at PagerDuty's US ("us" or "") or EU
// ("eu") service region.
func (c *Config) SetRegion(region string) error {
	switch strings.ToLower(strings.TrimSpace(region)) {
	case "", "us":
		c.EventsURL, c.APIURL = USEventsURL, USAPIURL
	case "eu":
		c.EventsURL, c.APIURL = EUEventsURL, EUAPIURL
	default:
		return fmt.Errorf("unknown PagerDuty region %q (want us or eu)", region)
	}
	return nil
}

// RegisterFlags adds command-line flags for the settings that are not
// secrets (secrets belong in the environment or files, not in ps output).
// Flag values override what is already in c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("pagerduty-region", "PagerDuty service region: us or eu", c.SetRegion)
	fs.StringVar(&c.EventsURL, "pagerduty-events-url", c.EventsURL, "PagerDuty Events API base URL (overrides -pagerduty-region)")
	fs.StringVar(&c.APIURL, "pagerduty-api-url", c.APIURL, "PagerDuty REST API base URL (overrides -pagerduty-region)")
	fs.DurationVar(&c.PollInterval, "pagerduty-poll-interval", c.PollInterval, "how often to poll PagerDuty incidents when no webhook secret is set")
	fs.StringVar(&c.KlaxonURL, "pagerduty-klaxon-url", c.KlaxonURL, "Klaxon's public base URL for links in PagerDuty incidents")
	fs.Func("pagerduty-confirm-within", "how long PagerDuty may take to show a person was notified before a page is unconfirmed, or off (default 2m; env "+EnvConfirmWithin+")", c.setConfirmWithin)
}

// withDefaults returns c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.EventsURL == "" {
		c.EventsURL = USEventsURL
	}
	if c.APIURL == "" {
		c.APIURL = USAPIURL
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.WebhookMaxAge == 0 {
		c.WebhookMaxAge = time.Hour
	}
	if c.ConfirmWithin == 0 {
		c.ConfirmWithin = DefaultConfirmWithin
	}
	c.EventsURL = strings.TrimRight(c.EventsURL, "/")
	c.APIURL = strings.TrimRight(c.APIURL, "/")
	c.KlaxonURL = strings.TrimRight(c.KlaxonURL, "/")
	return c
}

// validate checks c (after defaults). Messages never include secret values.
func (c Config) validate() error {
	var errs []error
	if err := checkRoutingKey(c.RoutingKey); err != nil {
		errs = append(errs, fmt.Errorf("routing key: %w", err))
	}
	if c.CanaryRoutingKey != "" {
		if err := checkRoutingKey(c.CanaryRoutingKey); err != nil {
			errs = append(errs, fmt.Errorf("canary routing key: %w", err))
		}
	}
	if c.ConfirmWithin > 0 && c.ConfirmWithin < 10*time.Second {
		errs = append(errs, fmt.Errorf("confirmation deadline %v is below 10s: PagerDuty notifies within seconds, but creates incidents asynchronously", c.ConfirmWithin))
	}
	for i, k := range c.ExtraRoutingKeys {
		if err := checkRoutingKey(k); err != nil {
			errs = append(errs, fmt.Errorf("extra routing key %d: %w", i+1, err))
		}
	}
	if strings.ContainsAny(c.APIToken, " \t\r\n") {
		errs = append(errs, errors.New("API token contains whitespace"))
	}
	if c.Responder == nil {
		errs = append(errs, errors.New("no Responder: acknowledgements from PagerDuty would be lost"))
	}
	for name, u := range map[string]string{"events URL": c.EventsURL, "API URL": c.APIURL} {
		if err := checkBaseURL(u); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if c.KlaxonURL != "" {
		if err := checkBaseURL(c.KlaxonURL); err != nil {
			errs = append(errs, fmt.Errorf("Klaxon URL: %w", err))
		}
	}
	if c.PollInterval < time.Second {
		errs = append(errs, fmt.Errorf("poll interval %v is below 1s", c.PollInterval))
	}
	if c.WebhookMaxAge < time.Minute {
		errs = append(errs, fmt.Errorf("webhook max age %v is below 1m", c.WebhookMaxAge))
	}
	return errors.Join(errs...)
}

// checkRoutingKey accepts what PagerDuty accepts: exactly 32 letters and
// digits (service integration keys; ruleset keys start with R).
func checkRoutingKey(k string) error {
	if k == "" {
		return errors.New("missing")
	}
	if len(k) != 32 {
		return fmt.Errorf("has %d characters, PagerDuty integration keys have 32", len(k))
	}
	for _, r := range k {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return errors.New("contains characters other than letters and digits")
		}
	}
	return nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a URL")
	}
	if u.User != nil {
		return errors.New("must not carry credentials")
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
