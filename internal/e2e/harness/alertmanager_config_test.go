package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestAlertmanagerConfigValidate(t *testing.T) {
	const secret = "amtokValidateSecret42"
	ok := AlertmanagerConfig{WebhookURL: "http://127.0.0.1:8080/webhook/alertmanager", BearerToken: secret}
	for _, tc := range []struct {
		name    string
		edit    func(*AlertmanagerConfig)
		wantErr string // "" means valid
	}{
		{"defaults", func(*AlertmanagerConfig) {}, ""},
		{"https and no token", func(c *AlertmanagerConfig) { c.WebhookURL = "https://klaxon.example/w"; c.BearerToken = "" }, ""},
		{"group by all", func(c *AlertmanagerConfig) { c.GroupBy = []string{"..."} }, ""},
		{"group by two labels", func(c *AlertmanagerConfig) { c.GroupBy = []string{"alertname", "team_2"} }, ""},
		{"missing URL", func(c *AlertmanagerConfig) { c.WebhookURL = "" }, "WebhookURL is required"},
		{"relative URL", func(c *AlertmanagerConfig) { c.WebhookURL = "/webhook" }, "absolute http or https"},
		{"other scheme", func(c *AlertmanagerConfig) { c.WebhookURL = "ftp://127.0.0.1/w" }, "absolute http or https"},
		{"unparsable URL", func(c *AlertmanagerConfig) { c.WebhookURL = "http://[::1/w" }, "WebhookURL"},
		{"user info in URL", func(c *AlertmanagerConfig) { c.WebhookURL = "http://u:p@127.0.0.1/w" }, "user info"},
		{"token with space", func(c *AlertmanagerConfig) { c.BearerToken = secret + " x" }, "BearerToken"},
		{"token with newline", func(c *AlertmanagerConfig) { c.BearerToken = secret + "\n" }, "BearerToken"},
		{"token with NUL", func(c *AlertmanagerConfig) { c.BearerToken = secret + "\x00" }, "BearerToken"},
		{"token with DEL", func(c *AlertmanagerConfig) { c.BearerToken = secret + "\x7f" }, "BearerToken"},
		{"negative group wait", func(c *AlertmanagerConfig) { c.GroupWait = -time.Second }, "GroupWait"},
		{"sub-millisecond interval", func(c *AlertmanagerConfig) { c.GroupInterval = 1500 * time.Microsecond }, "whole number of milliseconds"},
		{"negative repeat", func(c *AlertmanagerConfig) { c.RepeatInterval = -1 }, "RepeatInterval"},
		{"negative resolve timeout", func(c *AlertmanagerConfig) { c.ResolveTimeout = -time.Minute }, "ResolveTimeout"},
		{"negative ready timeout", func(c *AlertmanagerConfig) { c.ReadyTimeout = -time.Minute }, "ReadyTimeout"},
		{"empty group by", func(c *AlertmanagerConfig) { c.GroupBy = []string{} }, "GroupBy is empty"},
		{"bad label", func(c *AlertmanagerConfig) { c.GroupBy = []string{"alert-name"} }, "not a valid label name"},
		{"empty label", func(c *AlertmanagerConfig) { c.GroupBy = []string{""} }, "not a valid label name"},
		{"repeated label", func(c *AlertmanagerConfig) { c.GroupBy = []string{"a", "a"} }, "repeated"},
		{"... with others", func(c *AlertmanagerConfig) { c.GroupBy = []string{"...", "a"} }, "only entry"},
		{"receiver with space", func(c *AlertmanagerConfig) { c.Receiver = "on call" }, "Receiver"},
		{"positional extra arg", func(c *AlertmanagerConfig) { c.ExtraArgs = []string{"x"} }, "not a --flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.withDefaults().validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the bearer token: %v", err)
			}
		})
	}
}

func TestAlertmanagerConfigDefaults(t *testing.T) {
	c := AlertmanagerConfig{WebhookURL: "http://127.0.0.1:1/w"}.withDefaults()
	if c.GroupWait != 200*time.Millisecond || c.GroupInterval != time.Second || c.RepeatInterval != time.Hour ||
		c.ResolveTimeout != 5*time.Minute || c.Receiver != "klaxon" || c.ReadyTimeout != 30*time.Second ||
		len(c.GroupBy) != 1 || c.GroupBy[0] != "alertname" {
		t.Errorf("withDefaults() = %+v", c)
	}
	set := AlertmanagerConfig{GroupWait: 3 * time.Second, GroupBy: []string{"team"}, Receiver: "r"}.withDefaults()
	if set.GroupWait != 3*time.Second || set.GroupBy[0] != "team" || set.Receiver != "r" {
		t.Errorf("withDefaults() overrode set fields: %+v", set)
	}
}

func TestRenderAMConfig(t *testing.T) {
	const secret = "amtokRenderSecret42"
	for _, tc := range []struct {
		name     string
		cfg      AlertmanagerConfig
		credPath string
		wantAuth bool
		wantErr  bool
	}{
		{"with token", AlertmanagerConfig{WebhookURL: "http://127.0.0.1:9/w?x=1&y=\"2\"", BearerToken: secret,
			GroupWait: 1500 * time.Millisecond, GroupBy: []string{"alertname", "team"}, MaxAlerts: 7}, "/tmp/x/cred", true, false},
		{"without token", AlertmanagerConfig{WebhookURL: "http://127.0.0.1:9/w"}, "", false, false},
		{"token but no file", AlertmanagerConfig{WebhookURL: "http://127.0.0.1:9/w", BearerToken: secret}, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.withDefaults()
			b, err := renderAMConfig(cfg, tc.credPath)
			if tc.wantErr {
				if err == nil {
					t.Fatal("renderAMConfig() succeeded, want an error")
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), secret) {
				t.Fatalf("alertmanager.yml holds the token:\n%s", b)
			}
			var got map[string]any
			if err := yaml.Unmarshal(b, &got); err != nil {
				t.Fatalf("rendered YAML does not parse: %v\n%s", err, b)
			}
			var f amFile
			if err := yaml.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			r := f.Route
			if r.Receiver != cfg.Receiver || r.GroupWait != amDuration(cfg.GroupWait) || r.GroupInterval != "1000ms" ||
				r.RepeatInterval != "3600000ms" || strings.Join(r.GroupBy, ",") != strings.Join(cfg.GroupBy, ",") ||
				f.Global.ResolveTimeout != "300000ms" {
				t.Errorf("route = %+v, global = %+v", r, f.Global)
			}
			if len(f.Receivers) != 1 || len(f.Receivers[0].WebhookConfigs) != 1 || f.Receivers[0].Name != cfg.Receiver {
				t.Fatalf("receivers = %+v", f.Receivers)
			}
			wh := f.Receivers[0].WebhookConfigs[0]
			if wh.URL != cfg.WebhookURL || !wh.SendResolved || wh.MaxAlerts != cfg.MaxAlerts {
				t.Errorf("webhook = %+v, want url %q, send_resolved, max_alerts %d", wh, cfg.WebhookURL, cfg.MaxAlerts)
			}
			if got := wh.HTTPConfig != nil; got != tc.wantAuth {
				t.Fatalf("http_config present = %v, want %v", got, tc.wantAuth)
			}
			if tc.wantAuth && (wh.HTTPConfig.Authorization.Type != "Bearer" || wh.HTTPConfig.Authorization.CredentialsFile != tc.credPath) {
				t.Errorf("authorization = %+v", wh.HTTPConfig.Authorization)
			}
		})
	}
}

func TestAMDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{time.Millisecond, "1ms"},
		{200 * time.Millisecond, "200ms"},
		{90 * time.Second, "90000ms"},
		{4 * time.Hour, "14400000ms"},
	} {
		if got := amDuration(tc.d); got != tc.want {
			t.Errorf("amDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestWriteAMFiles(t *testing.T) {
	const secret = "amtokWriteSecret42"
	for _, tc := range []struct {
		name  string
		token string
	}{{"token", secret}, {"no token", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := AlertmanagerConfig{WebhookURL: "http://127.0.0.1:9/w", BearerToken: tc.token}.withDefaults()
			path, err := writeAMFiles(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			yml, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cred := filepath.Join(dir, "webhook-bearer-token")
			b, err := os.ReadFile(cred)
			if tc.token == "" {
				if !os.IsNotExist(err) {
					t.Errorf("credentials file exists without a token (err %v)", err)
				}
				if strings.Contains(string(yml), "credentials_file") {
					t.Errorf("alertmanager.yml refers to a credentials file without a token:\n%s", yml)
				}
				return
			}
			if err != nil || string(b) != tc.token {
				t.Fatalf("credentials file = %q, %v; want exactly the token", b, err)
			}
			for _, p := range []string{cred, path} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
				}
			}
			if strings.Contains(string(yml), secret) || !strings.Contains(string(yml), cred) {
				t.Errorf("alertmanager.yml must name %s and not hold the token:\n%s", cred, yml)
			}
		})
	}
	t.Run("unwritable dir", func(t *testing.T) {
		_, err := writeAMFiles(filepath.Join(t.TempDir(), "missing"), AlertmanagerConfig{
			WebhookURL: "http://127.0.0.1:9/w", BearerToken: secret}.withDefaults())
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("writeAMFiles() = %v, want an error without the token", err)
		}
	})
}
