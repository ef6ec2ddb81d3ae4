package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// wantAlerts are Klaxon's alerts about itself; each needs a rule, firing and
// quiet unit tests, and a runbook page in docs/operations/runbooks/.
var wantAlerts = []string{"KlaxonDown", "KlaxonCannotPage", "KlaxonChannelDown", "KlaxonWatchdogSilent",
	"KlaxonRotaInvalid", "KlaxonWebhookErrors", "KlaxonPagesFailing", "KlaxonIncidentsExhausted", "KlaxonHeartbeatFailing",
	"KlaxonChannelNotDelivering"}

// promrules builds tools/prometheus/promrules: `promtool check rules` and
// `promtool test rules` on Prometheus's own rulefmt, promql and template
// packages, without the rest of promtool (service discovery, TSDB, notifier),
// which made promtool too heavy a build for CI. The test files stay in
// promtool's format: `promtool test rules deploy/prometheus/tests/*.yaml`
// runs them too.
func promrules(t *testing.T) string {
	return testtools.Tool(t, "prometheus", "klaxon-tools/prometheus/promrules")
}

// TestAlertingRulesPassPromtool runs `check rules` on the rules and
// `test rules` on every unit test file.
func TestAlertingRulesPassPromtool(t *testing.T) {
	pt := promrules(t)
	dir := path("deploy/prometheus")
	out := run(t, dir, nil, pt, "check", "rules", "klaxon-rules.yaml")
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(wantAlerts)); !strings.Contains(out, want) {
		t.Errorf("check rules: want %d rules, got\n%s", len(wantAlerts), out)
	}
	tests, err := filepath.Glob(filepath.Join(dir, "tests", "*.yaml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in deploy/prometheus/tests: %v", err)
	}
	args := append([]string{"test", "rules"}, tests...)
	out = run(t, dir, nil, pt, args...)
	if got := strings.Count(out, "  SUCCESS"); got != len(tests) {
		t.Errorf("test rules: %d of %d files passed:\n%s", got, len(tests), out)
	}
}

// brokenRuleTest writes the rules and one of their test files, each changed
// by one replacement, into a temporary copy of deploy/prometheus and runs
// `test rules` on it.
func brokenRuleTest(t *testing.T, test string, rulesOld, rulesNew, testOld, testNew string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []struct{ src, dst, old, new string }{
		{"deploy/prometheus/klaxon-rules.yaml", "klaxon-rules.yaml", rulesOld, rulesNew},
		{"deploy/prometheus/tests/" + test, "tests/" + test, testOld, testNew},
	} {
		b, err := os.ReadFile(path(f.src))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if f.old != "" {
			if !strings.Contains(s, f.old) {
				t.Fatalf("%s no longer holds %q; update this test", f.src, f.old)
			}
			s = strings.Replace(s, f.old, f.new, 1)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f.dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.dst), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return tryRun(dir, nil, promrules(t), "test", "rules", filepath.Join(dir, "tests", test))
}

// TestRuleTestsCatchMistakes proves the rule tests above can fail: a rule
// with a changed threshold, hold time or annotation, and a test file whose
// exp_alerts are wrong, each fail `test rules` and name the alert.
func TestRuleTestsCatchMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, test                           string
		rulesOld, rulesNew, testOld, testNew string
		alert                                string
	}{
		{name: "threshold", test: "klaxon-cannot-page.yaml", alert: "KlaxonCannotPage",
			rulesOld: `klaxon_channels_up{job="klaxon"} == 0`, rulesNew: `klaxon_channels_up{job="klaxon"} < 0`},
		{name: "hold time", test: "klaxon-webhook-errors.yaml", alert: "KlaxonWebhookErrors",
			rulesOld: "for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: Klaxon is rejecting",
			rulesNew: "for: 10m\n        labels:\n          severity: warning\n        annotations:\n          summary: Klaxon is rejecting"},
		{name: "annotation template", test: "klaxon-pages-failing.yaml", alert: "KlaxonPagesFailing",
			rulesOld: "humanizePercentage", rulesNew: "humanize"},
		{name: "expected alert missing a label", test: "klaxon-webhook-errors.yaml", alert: "KlaxonWebhookErrors",
			testOld: ", outcome: unauthorized}", testNew: "}"},
		{name: "expected alert where none fires", test: "klaxon-down.yaml", alert: "KlaxonDown",
			testOld: "{eval_time: 2m, alertname: KlaxonDown, exp_alerts: []}", testNew: "{eval_time: 2m, alertname: KlaxonDown, exp_alerts: *down}"},
		{name: "no alert expected where one fires", test: "klaxon-down.yaml", alert: "KlaxonDown",
			testOld: "{eval_time: 3m, alertname: KlaxonDown, exp_alerts: *down}", testNew: "{eval_time: 3m, alertname: KlaxonDown, exp_alerts: []}"},
		// Each boundary the rules promise is pinned by a test: move it and a test fails.
		{name: "down waits longer", test: "klaxon-down.yaml", alert: "KlaxonDown",
			rulesOld: "for: 3m", rulesNew: "for: 4m"},
		{name: "cannot-page fires sooner", test: "klaxon-cannot-page.yaml", alert: "KlaxonCannotPage",
			rulesOld: "for: 2m", rulesNew: "for: 1m"},
		{name: "pages failing needs more", test: "klaxon-pages-failing.yaml", alert: "KlaxonPagesFailing",
			rulesOld: "> 0.5", rulesNew: "> 0.9"},
		{name: "pages failing counts half", test: "klaxon-pages-failing.yaml", alert: "KlaxonPagesFailing",
			rulesOld: "> 0.5", rulesNew: ">= 0.5"},
		{name: "heartbeat tolerates more", test: "klaxon-heartbeat-failing.yaml", alert: "KlaxonHeartbeatFailing",
			rulesOld: "[15m])) > 2", rulesNew: "[15m])) > 5"},
		{name: "heartbeat tolerates less", test: "klaxon-heartbeat-failing.yaml", alert: "KlaxonHeartbeatFailing",
			rulesOld: "[15m])) > 2", rulesNew: "[15m])) > 1"},
		{name: "exhausted forgets sooner", test: "klaxon-incidents-exhausted.yaml", alert: "KlaxonIncidentsExhausted",
			rulesOld: "[30m]) > 0", rulesNew: "[3m]) > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := brokenRuleTest(t, tc.test, tc.rulesOld, tc.rulesNew, tc.testOld, tc.testNew)
			if err == nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "alertname: "+tc.alert) {
				t.Fatalf("test rules passed a broken %s (err %v):\n%s", tc.alert, err, out)
			}
		})
	}
	// The unchanged copy passes: the failures above come from the change.
	if out, err := brokenRuleTest(t, "klaxon-down.yaml", "", "", "", ""); err != nil {
		t.Fatalf("the unchanged copy fails: %v\n%s", err, out)
	}
}

// TestRuleCheckRejectsInvalidRules: `check rules` fails on a rule file that
// Prometheus would refuse to load.
func TestRuleCheckRejectsInvalidRules(t *testing.T) {
	pt := promrules(t)
	for name, content := range map[string]string{
		"not YAML":       "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          summary: a: b\n",
		"bad expression": "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: sum(up\n",
		"unknown field":  "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up\n        severity: page\n",
		"no alert name":  "groups:\n  - name: x\n    rules:\n      - expr: up\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "rules.yaml")
			if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := tryRun(filepath.Dir(f), nil, pt, "check", "rules", f); err == nil || !strings.Contains(out, "FAILED") {
				t.Fatalf("check rules accepted it (err %v):\n%s", err, out)
			}
		})
	}
}

// TestEveryAlertHasTestsAndARunbook: each alert fires in some unit test, stays
// quiet in another, and links its runbook page, docs/operations/runbooks/
// NAME.md (KlaxonDown: klaxon-down.md), whose title is the alert's name.
// (internal/doclinks checks that every runbook_url resolves.)
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
	kebab := regexp.MustCompile(`([a-z])([A-Z])`)
	for _, a := range wantAlerts {
		if !fires[a] {
			t.Errorf("%s: no unit test where it fires", a)
		}
		if !quiet[a] {
			t.Errorf("%s: no unit test where it stays quiet", a)
		}
		page := "docs/operations/runbooks/" + strings.ToLower(kebab.ReplaceAllString(a, "$1-$2")) + ".md"
		if want := "https://github.com/klaxon-oncall/klaxon/blob/main/" + page; runbooks[a] != want {
			t.Errorf("%s: runbook_url %q, want %q", a, runbooks[a], want)
		}
		b, err := os.ReadFile(path(page))
		if err != nil {
			t.Errorf("%s: no runbook page: %v", a, err)
			continue
		}
		if !regexp.MustCompile(`\A# ` + a + `\n`).Match(b) {
			t.Errorf("%s: %s does not start with the heading %q", a, page, "# "+a)
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
