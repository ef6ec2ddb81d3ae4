package harness

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults StartAlertmanager uses for the zero fields of an AlertmanagerConfig.
// They are short so that a test sees a firing notification within a fraction
// of a second and a resolved one within about a second of resolving.
const (
	// DefaultAMGroupWait is the route's group_wait: the delay before a new
	// group's first notification.
	DefaultAMGroupWait = 200 * time.Millisecond
	// DefaultAMGroupInterval is the route's group_interval: the delay before a
	// changed group (e.g. a resolved alert) is notified again.
	DefaultAMGroupInterval = time.Second
	// DefaultAMRepeatInterval is the route's repeat_interval: the delay before an
	// unchanged firing group is notified again.
	DefaultAMRepeatInterval = time.Hour
	// DefaultAMResolveTimeout is global.resolve_timeout.
	DefaultAMResolveTimeout = 5 * time.Minute
	// DefaultAMReceiver is the receiver's name, the webhook's "receiver".
	DefaultAMReceiver = "klaxon"
	// DefaultAMReadyTimeout bounds the wait for /-/ready.
	DefaultAMReadyTimeout = 30 * time.Second
)

// AlertmanagerConfig is what StartAlertmanager writes into alertmanager.yml: one
// route whose only receiver posts webhooks (payload version "4", send_resolved
// true) to WebhookURL with an "Authorization: Bearer <BearerToken>" header.
type AlertmanagerConfig struct {
	// WebhookURL is the absolute http(s) URL Alertmanager posts notifications
	// to, e.g. Klaxon's http://127.0.0.1:PORT/webhook/alertmanager. Required.
	WebhookURL string
	// BearerToken is sent as the webhook's bearer token. It is written to a
	// credentials_file (mode 0600), never into alertmanager.yml, and never logged.
	// Empty means no Authorization header.
	BearerToken string
	// GroupWait, GroupInterval and RepeatInterval are the root route's timers;
	// zero selects DefaultAMGroupWait, DefaultAMGroupInterval and
	// DefaultAMRepeatInterval. Alertmanager counts in whole milliseconds.
	GroupWait, GroupInterval, RepeatInterval time.Duration
	// ResolveTimeout is global.resolve_timeout: how long an alert posted without
	// endsAt stays firing. Zero selects DefaultAMResolveTimeout.
	ResolveTimeout time.Duration
	// GroupBy lists the labels alerts are grouped by; nil selects ["alertname"].
	// The single entry "..." groups by all labels (one alert per group).
	GroupBy []string
	// Receiver names the receiver; it appears as "receiver" in every webhook.
	// Empty selects DefaultAMReceiver.
	Receiver string
	// MaxAlerts caps the alerts in one webhook (the rest are counted in
	// truncatedAlerts); zero means no limit.
	MaxAlerts uint64
	// ReadyTimeout bounds the wait for /-/ready after start; zero selects
	// DefaultAMReadyTimeout.
	ReadyTimeout time.Duration
	// ExtraArgs are appended to the command line, e.g. "--log.level=debug".
	ExtraArgs []string
}

// amLabelName is the classic Prometheus label-name syntax, which every
// Alertmanager version accepts in group_by.
var amLabelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// withDefaults returns c with its zero fields replaced by the defaults.
func (c AlertmanagerConfig) withDefaults() AlertmanagerConfig {
	if c.GroupWait == 0 {
		c.GroupWait = DefaultAMGroupWait
	}
	if c.GroupInterval == 0 {
		c.GroupInterval = DefaultAMGroupInterval
	}
	if c.RepeatInterval == 0 {
		c.RepeatInterval = DefaultAMRepeatInterval
	}
	if c.ResolveTimeout == 0 {
		c.ResolveTimeout = DefaultAMResolveTimeout
	}
	if c.GroupBy == nil {
		c.GroupBy = []string{"alertname"}
	}
	if c.Receiver == "" {
		c.Receiver = DefaultAMReceiver
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultAMReadyTimeout
	}
	return c
}

// validate reports the first problem with c (after withDefaults). Its messages
// never contain the bearer token.
func (c AlertmanagerConfig) validate() error {
	if c.WebhookURL == "" {
		return errors.New("alertmanager config: WebhookURL is required")
	}
	u, err := url.Parse(c.WebhookURL)
	if err != nil {
		return fmt.Errorf("alertmanager config: WebhookURL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("alertmanager config: WebhookURL %q: want an absolute http or https URL", c.WebhookURL)
	}
	if u.User != nil {
		return errors.New("alertmanager config: WebhookURL must not carry user info; use BearerToken")
	}
	if strings.TrimSpace(c.BearerToken) != c.BearerToken || strings.ContainsFunc(c.BearerToken, amIsControlOrSpace) {
		// Alertmanager trims the credentials file, and a header value cannot
		// hold control characters: such a token would silently change.
		return errors.New("alertmanager config: BearerToken must not contain spaces or control characters")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"GroupWait", c.GroupWait},
		{"GroupInterval", c.GroupInterval},
		{"RepeatInterval", c.RepeatInterval},
		{"ResolveTimeout", c.ResolveTimeout},
		{"ReadyTimeout", c.ReadyTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("alertmanager config: %s %v must be positive", d.name, d.v)
		}
		if d.v%time.Millisecond != 0 {
			return fmt.Errorf("alertmanager config: %s %v is not a whole number of milliseconds", d.name, d.v)
		}
	}
	if len(c.GroupBy) == 0 {
		return errors.New("alertmanager config: GroupBy is empty; leave it nil for [alertname] or use [\"...\"]")
	}
	seen := map[string]bool{}
	for i, l := range c.GroupBy {
		if l == "..." {
			if len(c.GroupBy) != 1 {
				return errors.New(`alertmanager config: GroupBy "..." must be the only entry`)
			}
			continue
		}
		if !amLabelName.MatchString(l) {
			return fmt.Errorf("alertmanager config: GroupBy[%d] %q is not a valid label name", i, l)
		}
		if seen[l] {
			return fmt.Errorf("alertmanager config: GroupBy[%d] %q is repeated", i, l)
		}
		seen[l] = true
	}
	if strings.ContainsFunc(c.Receiver, amIsControlOrSpace) {
		return fmt.Errorf("alertmanager config: Receiver %q must not contain spaces or control characters", c.Receiver)
	}
	for i, a := range c.ExtraArgs {
		if !strings.HasPrefix(a, "--") {
			return fmt.Errorf("alertmanager config: ExtraArgs[%d] %q is not a --flag", i, a)
		}
	}
	return nil
}

func amIsControlOrSpace(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// amDuration renders d the way Alertmanager's model.ParseDuration reads it.
func amDuration(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}

// The subset of Alertmanager's configuration file the harness writes.
type (
	amFile struct {
		Global    amGlobal     `yaml:"global"`
		Route     amRoute      `yaml:"route"`
		Receivers []amReceiver `yaml:"receivers"`
	}
	amGlobal struct {
		ResolveTimeout string `yaml:"resolve_timeout"`
	}
	amRoute struct {
		Receiver       string   `yaml:"receiver"`
		GroupBy        []string `yaml:"group_by"`
		GroupWait      string   `yaml:"group_wait"`
		GroupInterval  string   `yaml:"group_interval"`
		RepeatInterval string   `yaml:"repeat_interval"`
	}
	amReceiver struct {
		Name           string            `yaml:"name"`
		WebhookConfigs []amWebhookConfig `yaml:"webhook_configs"`
	}
	amWebhookConfig struct {
		URL          string        `yaml:"url"`
		SendResolved bool          `yaml:"send_resolved"`
		MaxAlerts    uint64        `yaml:"max_alerts"`
		HTTPConfig   *amHTTPConfig `yaml:"http_config,omitempty"`
	}
	amHTTPConfig struct {
		Authorization amAuthorization `yaml:"authorization"`
	}
	amAuthorization struct {
		Type            string `yaml:"type"`
		CredentialsFile string `yaml:"credentials_file"`
	}
)

// renderAMConfig returns alertmanager.yml for c (defaults applied). The bearer
// token, if any, is referred to by credentialsFile and never inlined.
func renderAMConfig(c AlertmanagerConfig, credentialsFile string) ([]byte, error) {
	wh := amWebhookConfig{URL: c.WebhookURL, SendResolved: true, MaxAlerts: c.MaxAlerts}
	if c.BearerToken != "" {
		if credentialsFile == "" {
			return nil, errors.New("alertmanager config: a bearer token needs a credentials file")
		}
		wh.HTTPConfig = &amHTTPConfig{Authorization: amAuthorization{Type: "Bearer", CredentialsFile: credentialsFile}}
	}
	f := amFile{
		Global: amGlobal{ResolveTimeout: amDuration(c.ResolveTimeout)},
		Route: amRoute{
			Receiver:       c.Receiver,
			GroupBy:        c.GroupBy,
			GroupWait:      amDuration(c.GroupWait),
			GroupInterval:  amDuration(c.GroupInterval),
			RepeatInterval: amDuration(c.RepeatInterval),
		},
		Receivers: []amReceiver{{Name: c.Receiver, WebhookConfigs: []amWebhookConfig{wh}}},
	}
	return yaml.Marshal(f)
}
