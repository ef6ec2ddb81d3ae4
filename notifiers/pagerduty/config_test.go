package pagerduty

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	goodKey   = "0123456789abcdef0123456789ABCDEF"
	goodToken = "u+TOKENtoken-123456789"
)

func TestNewValidates(t *testing.T) {
	base := func() Config {
		return Config{RoutingKey: goodKey, APIToken: goodToken, WebhookSecret: testSecret, Responder: newResponder()}
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		words  string // "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"valid EU", func(c *Config) { _ = c.SetRegion("eu") }, ""},
		{"no routing key", func(c *Config) { c.RoutingKey = "" }, "routing key: missing"},
		{"short routing key", func(c *Config) { c.RoutingKey = goodKey[:31] }, "has 31 characters"},
		{"routing key with symbols", func(c *Config) { c.RoutingKey = goodKey[:31] + "-" }, "other than letters and digits"},
		{"bad extra key", func(c *Config) { c.ExtraRoutingKeys = []string{goodKey, "short-secret-key"} }, "extra routing key 2"},
		{"token with newline", func(c *Config) { c.APIToken = goodToken + "\n" }, "whitespace"},
		{"no responder", func(c *Config) { c.Responder = nil }, "no Responder"},
		{"events URL not http", func(c *Config) { c.EventsURL = "ftp://events" }, "events URL"},
		{"API URL with credentials", func(c *Config) { c.APIURL = "https://user:" + goodToken + "@api.example" }, "must not carry credentials"},
		{"Klaxon URL garbage", func(c *Config) { c.KlaxonURL = "::" }, "Klaxon URL"},
		{"poll interval too short", func(c *Config) { c.PollInterval = time.Millisecond }, "poll interval"},
		{"webhook max age too short", func(c *Config) { c.WebhookMaxAge = time.Second }, "webhook max age"},
		{"bad canary key", func(c *Config) { c.CanaryRoutingKey = "canary-key-too-short" }, "canary routing key"},
		{"confirmation deadline too short", func(c *Config) { c.ConfirmWithin = time.Second }, "below 10s"},
		{"confirmation off", func(c *Config) { c.ConfirmWithin = -1 }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mutate(&cfg)
			n, err := New(cfg)
			if tc.words == "" {
				if err != nil || n == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.words)
			}
			assertNoSecrets(t, "error", err.Error(), append([]string{cfg.RoutingKey, cfg.APIToken, cfg.WebhookSecret, goodToken, "short-secret-key", cfg.CanaryRoutingKey}, cfg.ExtraRoutingKeys...)...)
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.EventsURL != USEventsURL || c.APIURL != USAPIURL || c.PollInterval != DefaultPollInterval ||
		c.HTTPClient == nil || c.HTTPClient.Timeout != DefaultHTTPTimeout || c.Now == nil || c.Logger == nil || c.WebhookMaxAge != time.Hour {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(goodToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
		words string
	}{
		{"all set, EU", map[string]string{
			EnvRoutingKey: goodKey, EnvExtraRoutingKeys: goodKey + ", " + strings.ToLower(goodKey), EnvAPIToken: goodToken,
			EnvWebhookSecret: testSecret, EnvRegion: "EU", EnvPollInterval: "45s",
		}, func(t *testing.T, c Config) {
			if c.RoutingKey != goodKey || len(c.ExtraRoutingKeys) != 2 || c.APIToken != goodToken || c.WebhookSecret != testSecret ||
				c.EventsURL != EUEventsURL || c.APIURL != EUAPIURL || c.PollInterval != 45*time.Second {
				t.Errorf("config = %+v", c)
			}
		}, ""},
		{"secret from file, URL override", map[string]string{
			EnvRoutingKey: goodKey, EnvAPIToken + "_FILE": tokenFile, EnvAPIURL: "http://127.0.0.1:9",
		}, func(t *testing.T, c Config) {
			if c.APIToken != goodToken || c.APIURL != "http://127.0.0.1:9" || c.EventsURL != USEventsURL {
				t.Errorf("config = %+v", c)
			}
		}, ""},
		{"unreadable secret file", map[string]string{EnvAPIToken + "_FILE": filepath.Join(dir, "missing")}, nil, EnvAPIToken + "_FILE"},
		{"bad region", map[string]string{EnvRegion: "mars"}, nil, "unknown PagerDuty region"},
		{"bad duration", map[string]string{EnvPollInterval: "often"}, nil, EnvPollInterval},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromEnv(func(k string) string { return tc.env[k] })
			if tc.words != "" {
				if err == nil || !strings.Contains(err.Error(), tc.words) {
					t.Fatalf("err = %v, want %q", err, tc.words)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	c := Config{PollInterval: time.Minute}
	fs := flag.NewFlagSet("klaxon", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-pagerduty-region=eu", "-pagerduty-poll-interval=2m", "-pagerduty-klaxon-url=https://k.example"}); err != nil {
		t.Fatal(err)
	}
	if c.EventsURL != EUEventsURL || c.APIURL != EUAPIURL || c.PollInterval != 2*time.Minute || c.KlaxonURL != "https://k.example" {
		t.Fatalf("config = %+v", c)
	}
	fs = flag.NewFlagSet("klaxon", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-pagerduty-region=mars"}); err == nil {
		t.Fatal("bad region accepted")
	}
	for _, name := range []string{"pagerduty-routing-key", "pagerduty-api-token", "pagerduty-webhook-secret"} {
		if fs.Lookup(name) != nil {
			t.Errorf("secret flag %s exists: secrets must not be on the command line", name)
		}
	}
}

func TestFromEnvConfirmationAndCanary(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "canary")
	if err := os.WriteFile(keyFile, []byte(goodKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		env    map[string]string
		within time.Duration
		canary string
		err    string
	}{
		{"unset", nil, 0, "", ""},
		{"a duration", map[string]string{EnvConfirmWithin: "3m"}, 3 * time.Minute, "", ""},
		{"off", map[string]string{EnvConfirmWithin: "OFF"}, -1, "", ""},
		{"garbage", map[string]string{EnvConfirmWithin: "soon"}, 0, "", EnvConfirmWithin},
		{"negative", map[string]string{EnvConfirmWithin: "-2m"}, 0, "", EnvConfirmWithin},
		{"canary key from a file", map[string]string{EnvCanaryRoutingKey + "_FILE": keyFile}, 0, goodKey, ""},
		{"canary key file missing", map[string]string{EnvCanaryRoutingKey + "_FILE": filepath.Join(dir, "nope")}, 0, "", EnvCanaryRoutingKey + "_FILE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := FromEnv(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil || cfg.ConfirmWithin != tc.within || cfg.CanaryRoutingKey != tc.canary {
				t.Fatalf("cfg confirm %v canary %q, err %v", cfg.ConfirmWithin, cfg.CanaryRoutingKey, err)
			}
		})
	}
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-pagerduty-confirm-within", "off"}); err != nil || c.ConfirmWithin != -1 {
		t.Fatalf("flag off: %v %v", c.ConfirmWithin, err)
	}
	if err := fs.Parse([]string{"-pagerduty-confirm-within", "0s"}); err == nil {
		t.Fatal("a zero deadline was accepted")
	}
}
