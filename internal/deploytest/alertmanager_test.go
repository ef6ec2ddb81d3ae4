package deploytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// TestExampleAlertmanagerConfigPassesAmtool runs `amtool check-config` on
// deploy/alertmanager.yml and checks it sends to Klaxon as docs/alertmanager.md says:
// the webhook path, resolved notifications, a token file and the Watchdog route.
func TestExampleAlertmanagerConfigPassesAmtool(t *testing.T) {
	amtool := testtools.Tool(t, "alertmanager", "github.com/prometheus/alertmanager/cmd/amtool")
	out := run(t, root, nil, amtool, "check-config", path("deploy/alertmanager.yml"))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("amtool check-config:\n%s", out)
	}
	var cfg struct {
		Route struct {
			Receiver string `yaml:"receiver"`
			Routes   []struct {
				Receiver       string   `yaml:"receiver"`
				Matchers       []string `yaml:"matchers"`
				RepeatInterval string   `yaml:"repeat_interval"`
			} `yaml:"routes"`
		} `yaml:"route"`
		Receivers []struct {
			Name           string `yaml:"name"`
			WebhookConfigs []struct {
				URL          string `yaml:"url"`
				SendResolved bool   `yaml:"send_resolved"`
				HTTPConfig   struct {
					Authorization struct {
						CredentialsFile string `yaml:"credentials_file"`
					} `yaml:"authorization"`
				} `yaml:"http_config"`
			} `yaml:"webhook_configs"`
		} `yaml:"receivers"`
	}
	readYAML(t, path("deploy/alertmanager.yml"), &cfg)
	if cfg.Route.Receiver != "klaxon" {
		t.Errorf("default receiver %q, want klaxon", cfg.Route.Receiver)
	}
	watchdog := false
	for _, r := range cfg.Route.Routes {
		if r.Receiver == "klaxon" && len(r.Matchers) == 1 && r.Matchers[0] == `alertname="Watchdog"` && r.RepeatInterval == "1m" {
			watchdog = true
		}
	}
	if !watchdog {
		t.Error(`no route sending alertname="Watchdog" to klaxon every minute`)
	}
	found := false
	for _, r := range cfg.Receivers {
		for _, w := range r.WebhookConfigs {
			if r.Name == "klaxon" && strings.HasSuffix(w.URL, "/webhook/alertmanager") && w.SendResolved && w.HTTPConfig.Authorization.CredentialsFile != "" {
				found = true
			}
		}
	}
	if !found {
		t.Error("no klaxon receiver posting to /webhook/alertmanager with send_resolved and a token file")
	}
}

// TestAmtoolRejectsABrokenConfig proves the check above can fail.
func TestAmtoolRejectsABrokenConfig(t *testing.T) {
	amtool := testtools.Tool(t, "alertmanager", "github.com/prometheus/alertmanager/cmd/amtool")
	b, err := os.ReadFile(path("deploy/alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(b), "  receiver: klaxon\n", "  receiver: klaxonn\n", 1)
	f := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(f, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := tryRun(root, nil, amtool, "check-config", f); err == nil {
		t.Fatalf("amtool accepted a route to an undefined receiver:\n%s", out)
	}
}
