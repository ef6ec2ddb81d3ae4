package deploytest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
)

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	labelValues  = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[a-zA-Z_]+\s*\)\s*$`)
	promKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "Inf", "NaN"}
)

// metricNames returns the metric names a PromQL expression (or a Grafana
// label_values() query) reads: identifiers that are not functions, keywords,
// labels inside {} or grouping clauses, or template variables.
func metricNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = regexp.MustCompile(`\$\{?[a-zA-Z_]+\}?`).ReplaceAllString(s, " ")
	var names []string
	for _, m := range promIdent.FindAllStringSubmatchIndex(s, -1) {
		tok := s[m[0]:m[1]]
		if m[2] >= 0 { // followed by "(": a function or aggregation
			continue
		}
		if m[0] > 0 && (s[m[0]-1] >= '0' && s[m[0]-1] <= '9' || s[m[0]-1] == '.') { // 1e3, 0.5
			continue
		}
		if slices.Contains(promKeywords, tok) || slices.Contains(names, tok) {
			continue
		}
		names = append(names, tok)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`klaxon_channels_up{job=~"$job", instance=~"$instance"}`, []string{"klaxon_channels_up"}},
		{`sum by (outcome) (rate(klaxon_webhooks_total{job="k"}[$__rate_interval]))`, []string{"klaxon_webhooks_total"}},
		{`histogram_quantile(0.99, sum by (channel, le) (rate(klaxon_page_seconds_bucket[5m])))`, []string{"klaxon_page_seconds_bucket"}},
		{`time() - klaxon_watchdog_last_seen_timestamp_seconds`, []string{"klaxon_watchdog_last_seen_timestamp_seconds"}},
		{`a / on (instance) group_left (version) b > 1e3 and c offset 5m`, []string{"a", "b", "c"}},
		{`label_values(klaxon_build_info{job=~"$job"}, instance)`, []string{"klaxon_build_info"}},
		{`count(up{job="a,b"}) or vector(0)`, []string{"up"}},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%s) = %v, want %v", c.expr, got, c.want)
		}
	}
}

// dashboardQueries returns every PromQL expression of the dashboard: panel
// targets (rows nest panels) and query variables.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	var d struct {
		Panels     []json.RawMessage
		Templating struct {
			List []struct {
				Type  string
				Query any
			}
		}
	}
	mustJSON(t, readFile(t, path("deploy/grafana/klaxon.json")), &d)
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p struct {
				Targets []struct{ Expr string }
				Panels  []json.RawMessage
			}
			mustJSON(t, raw, &p)
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		switch q := v.Query.(type) {
		case string:
			exprs = append(exprs, q)
		case map[string]any:
			exprs = append(exprs, fmt.Sprint(q["query"]))
		}
	}
	return exprs
}

// TestDashboardQueriesOnlyMetricsKlaxonExports starts klaxon serve with a
// channel (the fake PagerDuty), a heartbeat and Alertmanager's Watchdog, lets
// it page once, and checks that every metric the Grafana dashboard queries is
// in its /metrics, so the dashboard cannot drift from the code.
func TestDashboardQueriesOnlyMetricsKlaxonExports(t *testing.T) {
	want := map[string][]string{} // metric → the expressions using it
	queries := dashboardQueries(t)
	for _, q := range queries {
		for _, m := range metricNames(q) {
			want[m] = append(want[m], q)
		}
	}
	if len(queries) < 20 || len(want) < 15 {
		t.Fatalf("found only %d queries over %d metrics in the dashboard: is the parser broken?", len(queries), len(want))
	}
	for _, topic := range []string{"klaxon_webhooks_total", "klaxon_incidents", "klaxon_pages_total", "klaxon_page_seconds_bucket",
		"klaxon_channel_up", "klaxon_watchdog_silent", "klaxon_store_commit_seconds_bucket"} {
		if _, ok := want[topic]; !ok {
			t.Errorf("the dashboard does not show %s", topic)
		}
	}

	heartbeat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer heartbeat.Close()
	pd := fakepagerduty.New(t)
	rota := filepath.Join(t.TempDir(), "rota.yaml")
	if err := os.WriteFile(rota, []byte(`timezone: UTC
people:
  alice: {name: Alice Archer, phone: "+15555550101", pagerduty: PALICE1}
rotations:
  primary: {members: [alice], shift: 7d, handoff: "monday 09:00", start: 2026-01-05}
policies:
  default:
    steps:
      - {notify: primary, via: pagerduty, wait: 1h}
  selftest:
    steps:
      - {notify: primary, via: pagerduty, wait: 1h}
routes:
  - policy: default
owners: [alice]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	k := harness.StartKlaxon(t, harness.KlaxonConfig{Rota: rota, WebhookToken: "dash-webhook", APIToken: "dash-api", Env: []string{
		"KLAXON_PAGERDUTY_ROUTING_KEY=" + pd.RoutingKey(), "KLAXON_PAGERDUTY_API_TOKEN=" + pd.APIToken(),
		"KLAXON_PAGERDUTY_EVENTS_URL=" + pd.URL(), "KLAXON_PAGERDUTY_API_URL=" + pd.URL(),
		"KLAXON_HEARTBEAT_URL=" + heartbeat.URL + "/ping/dashboard-test",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, alert := range []string{"Watchdog", "DiskFull"} {
		body := fmt.Appendf(nil, `{"version":"4","groupKey":"group-%[1]s","status":"firing","receiver":"klaxon",
"groupLabels":{"alertname":%[1]q},"commonLabels":{"alertname":%[1]q},"alerts":[{"status":"firing","labels":{"alertname":%[1]q},
"startsAt":"2026-11-26T23:33:00Z","fingerprint":"fp-%[1]s"}]}`, alert)
		if code, err := k.Do(ctx, "POST", "/webhook/alertmanager", body, nil); err != nil || code != 200 {
			t.Fatalf("webhook %s: %d %v", alert, code, err)
		}
	}

	var missing []string
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		have, err := scrape(ctx, k.URL()+"/metrics")
		if err != nil {
			return false, err.Error()
		}
		missing = missing[:0]
		for m := range want {
			if !have[m] {
				missing = append(missing, m)
			}
		}
		slices.Sort(missing)
		var why strings.Builder
		for _, m := range missing {
			fmt.Fprintf(&why, "\n  %s (queried by %s)", m, want[m][0])
		}
		return len(missing) == 0, "the dashboard queries metrics klaxon serve does not export:" + why.String()
	})
}

// scrape returns the metric names in a Prometheus text exposition.
func scrape(ctx context.Context, url string) (map[string]bool, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("/metrics answered %d: %s", resp.StatusCode, b)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	return names, sc.Err()
}
