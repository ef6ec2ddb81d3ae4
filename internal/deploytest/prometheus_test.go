package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// wantAlerts are the alerts the issue asks for; each needs a rule, firing and
// quiet unit tests, and a runbook section in the README.
var wantAlerts = []string{"KlaxonDown", "KlaxonCannotPage", "KlaxonChannelDown", "KlaxonWatchdogSilent",
	"KlaxonRotaInvalid", "KlaxonWebhookErrors", "KlaxonPagesFailing", "KlaxonIncidentsExhausted", "KlaxonHeartbeatFailing"}

// promtool builds promtool without its service-discovery plugins (AWS, Azure,
// GCE, Kubernetes, ...), which rule checks and tests never use and which are
// most of its build time.
func promtool(t *testing.T) string {
	return testtools.ToolWithTags(t, "prometheus", "github.com/prometheus/prometheus/cmd/promtool", "remove_all_sd")
}

// TestAlertingRulesPassPromtool runs `promtool check rules` on the rules and
// `promtool test rules` on every unit test file.
func TestAlertingRulesPassPromtool(t *testing.T) {
	pt := promtool(t)
	dir := path("deploy/prometheus")
	out := run(t, dir, nil, pt, "check", "rules", "klaxon-rules.yaml")
	if !strings.Contains(out, "SUCCESS: 9 rules found") {
		t.Errorf("promtool check rules: want 9 rules, got\n%s", out)
	}
	tests, err := filepath.Glob(filepath.Join(dir, "tests", "*.yaml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in deploy/prometheus/tests: %v", err)
	}
	args := append([]string{"test", "rules"}, tests...)
	run(t, dir, nil, pt, args...)
}

// TestPromtoolCatchesABrokenRule proves the check above can fail: the rules
// with one threshold changed fail their unit tests.
func TestPromtoolCatchesABrokenRule(t *testing.T) {
	pt := promtool(t)
	rules, err := os.ReadFile(path("deploy/prometheus/klaxon-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(rules), "klaxon_channels_up{job=\"klaxon\"} == 0", "klaxon_channels_up{job=\"klaxon\"} < 0", 1)
	if broken == string(rules) {
		t.Fatal("the KlaxonCannotPage expression moved; update this test")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "klaxon-rules.yaml"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "tests"), 0o755)
	test, err := os.ReadFile(path("deploy/prometheus/tests/klaxon-cannot-page.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tests", "t.yaml"), test, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := tryRun(dir, nil, pt, "test", "rules", filepath.Join(dir, "tests", "t.yaml"))
	if err == nil || !strings.Contains(out, "KlaxonCannotPage") {
		t.Fatalf("promtool test rules passed a broken KlaxonCannotPage rule:\n%s", out)
	}
}

// TestEveryAlertHasTestsAndARunbook: each alert fires in some unit test, stays
// quiet in another, links its runbook, and the README has that runbook.
func TestEveryAlertHasTestsAndARunbook(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, path("deploy/prometheus/klaxon-rules.yaml"), &rules)
	var got []string
	runbooks := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			got = append(got, r.Alert)
			runbooks[r.Alert] = r.Annotations["runbook_url"]
		}
	}
	slices.Sort(got)
	want := slices.Clone(wantAlerts)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("alerts in klaxon-rules.yaml:\n got %v\nwant %v", got, want)
	}

	fires, quiet := map[string]bool{}, map[string]bool{}
	files, _ := filepath.Glob(path("deploy/prometheus/tests/*.yaml"))
	for _, f := range files {
		var tf struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		readYAML(t, f, &tf)
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	readme, err := os.ReadFile(path("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range wantAlerts {
		if !fires[a] {
			t.Errorf("%s: no unit test where it fires", a)
		}
		if !quiet[a] {
			t.Errorf("%s: no unit test where it stays quiet", a)
		}
		anchor := strings.ToLower(a)
		if !strings.HasSuffix(runbooks[a], "#"+anchor) {
			t.Errorf("%s: runbook_url %q does not point at the README's #%s", a, runbooks[a], anchor)
		}
		if !regexp.MustCompile(`(?m)^#{2,4} ` + a + `$`).Match(readme) {
			t.Errorf("%s: README.md has no runbook heading %q", a, "#### "+a)
		}
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
