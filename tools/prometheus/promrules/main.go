// Command promrules is the part of promtool that Klaxon's CI needs, built on
// Prometheus's own packages without promtool's service-discovery, TSDB and
// notifier dependencies (which made promtool an eight-minute cold build):
//
//	promrules check rules FILE...   like `promtool check rules`
//	promrules test rules FILE...    like `promtool test rules`
//
// Rule files are parsed and validated by model/rulefmt, expressions evaluated
// by the promql engine and annotations expanded by the template package, so
// the results are Prometheus's own. What promtool's rules.Manager does around
// them is re-done here, following rules/alerting.go, rules/recording.go and
// rules/group.go of the same Prometheus version: the pending → firing state
// machine with `for` and `keep_firing_for`, rule and group labels, query
// offsets, group limits, and the ALERTS, ALERTS_FOR_STATE and recording-rule
// series written back (with stale markers) for later rules to read. Test files
// are promtool's format, decoded as strictly as promtool decodes them, so
// `promtool test rules` runs the same files.
//
// Checked against promtool v0.316.0 itself: the same output, line for line,
// on Klaxon's tests, on 19 mutations of its rules and tests, and on a test
// file using recording rules, ALERTS, keep_firing_for, query_offset, group
// labels, external labels and URL, template queries, start_timestamp and
// promql_expr_test.
//
// Not supported: native-histogram input series (rejected with an error: the
// TSDB would add counter-reset hints that this in-memory store does not), and
// promtool's flags (--run, --diff, --junit, ...).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/template"
)

const usage = `usage: promrules check rules FILE...
       promrules test rules FILE...`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 3 || args[1] != "rules" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	p := parser.NewParser(parser.Options{})
	switch args[0] {
	case "check":
		return checkRules(p, args[2:], stdout, stderr)
	case "test":
		return testRules(p, args[2:], stdout, stderr)
	}
	fmt.Fprintln(stderr, usage)
	return 2
}

var discard = slog.New(slog.DiscardHandler)

// parseRuleFile parses and validates one rule file as Prometheus does when it
// loads it (unknown fields are errors).
func parseRuleFile(p parser.Parser, file string) (*rulefmt.RuleGroups, []error) {
	return rulefmt.ParseFile(file, false, model.UTF8Validation, p, discard)
}

// checkRules is `promtool check rules`: exit 1 if any file fails to parse or
// validate.
func checkRules(p parser.Parser, files []string, stdout, stderr io.Writer) int {
	failed := false
	for _, f := range files {
		fmt.Fprintf(stdout, "Checking %s\n", f)
		rgs, errs := parseRuleFile(p, f)
		if errs != nil {
			fmt.Fprintln(stderr, "  FAILED:")
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
			}
			failed = true
			continue
		}
		n := 0
		seen := map[string]int{}
		for _, g := range rgs.Groups {
			n += len(g.Rules)
			for _, r := range g.Rules {
				key := r.Alert + r.Record + "\x00" + r.Expr + "\x00" + fmt.Sprint(r.Labels)
				seen[key]++
			}
		}
		for k, c := range seen {
			if c > 1 {
				fmt.Fprintf(stderr, "  WARNING: %d duplicate rules: %s\n", c, strings.SplitN(k, "\x00", 2)[0])
			}
		}
		fmt.Fprintf(stdout, "  SUCCESS: %d rules found\n\n", n)
	}
	if failed {
		return 1
	}
	return 0
}

// The unit test file, as cmd/promtool/unittest.go declares it.
type unitTestFile struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval,omitempty"`
	GroupEvalOrder     []string       `yaml:"group_eval_order"`
	Tests              []testGroup    `yaml:"tests"`
	FuzzyCompare       bool           `yaml:"fuzzy_compare,omitempty"`
}

type testGroup struct {
	Interval        model.Duration   `yaml:"interval"`
	InputSeries     []series         `yaml:"input_series"`
	AlertRuleTests  []alertTestCase  `yaml:"alert_rule_test,omitempty"`
	PromqlExprTests []promqlTestCase `yaml:"promql_expr_test,omitempty"`
	ExternalLabels  labels.Labels    `yaml:"external_labels,omitempty"`
	ExternalURL     string           `yaml:"external_url,omitempty"`
	TestGroupName   string           `yaml:"name,omitempty"`
	StartTimestamp  startTimestamp   `yaml:"start_timestamp,omitempty"`
}

type series struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTestCase struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []expAlert     `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

type promqlTestCase struct {
	Expr       string         `yaml:"expr"`
	EvalTime   model.Duration `yaml:"eval_time"`
	ExpSamples []expSample    `yaml:"exp_samples"`
}

type expSample struct {
	Labels    string  `yaml:"labels"`
	Value     float64 `yaml:"value"`
	Histogram string  `yaml:"histogram"`
}

// startTimestamp is a test's start_timestamp: RFC 3339 or Unix seconds.
type startTimestamp struct{ time.Time }

func (t *startTimestamp) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		t.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("start_timestamp %q: want RFC 3339 or Unix seconds", s)
	}
	t.Time = v
	return nil
}

// testRules is `promtool test rules`: exit 1 if any test fails.
func testRules(p parser.Parser, files []string, stdout, stderr io.Writer) int {
	failed := false
	for _, f := range files {
		fmt.Fprintf(stdout, "Processing test file: %s\n", f)
		if errs := ruleUnitTest(p, f, stderr); errs != nil {
			fmt.Fprintln(stderr, "  FAILED:")
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
				fmt.Fprintln(stderr)
			}
			failed = true
		} else {
			fmt.Fprintln(stdout, "  SUCCESS")
		}
		fmt.Fprintln(stdout)
	}
	if failed {
		return 1
	}
	return 0
}

func ruleUnitTest(p parser.Parser, filename string, stderr io.Writer) []error {
	b, err := os.ReadFile(filename)
	if err != nil {
		return []error{err}
	}
	var utf unitTestFile
	if err := yaml.UnmarshalStrict(b, &utf); err != nil {
		return []error{err}
	}
	var ruleFiles []string
	for _, rf := range utf.RuleFiles {
		if rf != "" && !filepath.IsAbs(rf) {
			rf = filepath.Join(filepath.Dir(filename), rf)
		}
		m, err := filepath.Glob(rf)
		if err != nil {
			return []error{err}
		}
		if len(m) == 0 {
			fmt.Fprintln(stderr, "  WARNING: no file match pattern", rf)
		}
		ruleFiles = append(ruleFiles, m...)
	}
	if utf.EvaluationInterval == 0 {
		utf.EvaluationInterval = model.Duration(time.Minute)
	}
	order := map[string]int{}
	for i, gn := range utf.GroupEvalOrder {
		if _, ok := order[gn]; ok {
			return []error{fmt.Errorf("group name repeated in evaluation order: %s", gn)}
		}
		order[gn] = i
	}
	var errs []error
	for i, tg := range utf.Tests {
		name := tg.TestGroupName
		if name == "" {
			name = fmt.Sprintf("unnamed#%d", i)
		}
		if tg.Interval == 0 {
			tg.Interval = utf.EvaluationInterval
		}
		errs = append(errs, tg.test(p, name, time.Duration(utf.EvaluationInterval), order, utf.FuzzyCompare, ruleFiles)...)
	}
	return errs
}

// test runs one test group: load the series, evaluate every group from the
// start to the last eval_time each evaluation interval, and compare the firing
// alerts at each eval_time (with the evaluation at or just before it, as
// promtool does) and the promql_expr_test results.
func (tg *testGroup) test(p parser.Parser, name string, evalInterval time.Duration, order map[string]int, fuzzy bool, ruleFiles []string) []error {
	mint := time.Unix(0, 0).UTC()
	if !tg.StartTimestamp.IsZero() {
		mint = tg.StartTimestamp.Time
	}
	// A series given twice keeps its last values, as in promtool's loader.
	type loaded struct {
		lset    labels.Labels
		samples []sample
	}
	var inputs []string
	input := map[string]loaded{}
	for _, s := range tg.InputSeries {
		lset, vals, err := p.ParseSeriesDesc(s.Series + " " + s.Values)
		if err != nil {
			return []error{fmt.Errorf("input series %s %s: %w", s.Series, s.Values, err)}
		}
		l := loaded{lset: lset}
		for _, v := range vals {
			if v.Histogram != nil {
				return []error{fmt.Errorf("input series %s: native histograms are not supported by promrules (use promtool)", s.Series)}
			}
		}
		ts := mint
		for _, v := range vals {
			if !v.Omitted {
				l.samples = append(l.samples, sample{t: timestamp.FromTime(ts), f: v.Value, fh: v.Histogram})
			}
			ts = ts.Add(time.Duration(tg.Interval))
		}
		if _, ok := input[lset.String()]; !ok {
			inputs = append(inputs, lset.String())
		}
		input[lset.String()] = l
	}
	st := &store{}
	for _, k := range inputs {
		for _, smp := range input[k].samples {
			st.add(input[k].lset, smp)
		}
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:               10000,
		Timeout:                  100 * time.Second,
		NoStepSubqueryIntervalFn: func(int64) int64 { return evalInterval.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	})
	query := queryFunc(engine, st)

	groups, errs := loadGroups(p, ruleFiles, tg.ExternalLabels, tg.ExternalURL)
	if errs != nil {
		return errs
	}
	slices.SortStableFunc(groups, func(a, b *group) int { return cmp.Compare(order[a.name], order[b.name]) })

	alertTests := map[model.Duration][]alertTestCase{}
	for _, a := range tg.AlertRuleTests {
		if a.Alertname == "" {
			in := ""
			if tg.TestGroupName != "" {
				in = fmt.Sprintf(" (in TestGroup %s)", tg.TestGroupName)
			}
			return []error{fmt.Errorf("an item under alert_rule_test misses required attribute alertname at eval_time %v%s", a.EvalTime, in)}
		}
		alertTests[a.EvalTime] = append(alertTests[a.EvalTime], a)
	}
	evalTimes := slices.Sorted(func(yield func(model.Duration) bool) {
		for t := range alertTests {
			if !yield(t) {
				return
			}
		}
	})
	var maxd model.Duration
	for _, a := range tg.AlertRuleTests {
		maxd = max(maxd, a.EvalTime)
	}
	for _, e := range tg.PromqlExprTests {
		maxd = max(maxd, e.EvalTime)
	}
	maxt := mint.Add(time.Duration(maxd))
	testName := ""
	if tg.TestGroupName != "" {
		testName = fmt.Sprintf("    name: %s,\n", tg.TestGroupName)
	}

	ctx := context.Background()
	var out []error
	curr := 0
	for ts := mint; !ts.After(maxt); ts = ts.Add(evalInterval) {
		st.till = timestamp.FromTime(ts)
		var evalErrs []error
		for _, g := range groups {
			for _, e := range g.eval(ctx, ts, query, st) {
				evalErrs = append(evalErrs, fmt.Errorf("    rule: %s, time: %s, err: %w", e.rule, ts.Sub(time.Unix(0, 0).UTC()), e.err))
			}
		}
		if len(evalErrs) > 0 {
			return append(out, evalErrs...)
		}
		for curr < len(evalTimes) && ts.Sub(mint) <= time.Duration(evalTimes[curr]) &&
			time.Duration(evalTimes[curr]) < ts.Add(evalInterval).Sub(mint) {
			t := evalTimes[curr]
			for _, tc := range alertTests[t] {
				var got, exp []labelsAndAnnotations
				for _, g := range groups {
					for _, r := range g.rules {
						if r.alert == nil || r.name != tc.Alertname {
							continue
						}
						for _, a := range r.alert.active {
							if a.state == stateFiring {
								got = append(got, labelsAndAnnotations{a.labels, a.annotations})
							}
						}
					}
				}
				for _, a := range tc.ExpAlerts {
					l := map[string]string{}
					for k, v := range a.ExpLabels {
						l[k] = v
					}
					l[labels.AlertName] = tc.Alertname
					exp = append(exp, labelsAndAnnotations{labels.FromMap(l), labels.FromMap(a.ExpAnnotations)})
				}
				slices.SortFunc(got, compareLA)
				slices.SortFunc(exp, compareLA)
				if !slices.EqualFunc(exp, got, func(a, b labelsAndAnnotations) bool {
					return labels.Equal(a.labels, b.labels) && labels.Equal(a.annotations, b.annotations)
				}) {
					out = append(out, fmt.Errorf("%s    alertname: %s, time: %s, \n        exp:%v, \n        got:%v",
						testName, tc.Alertname, tc.EvalTime, indent(laString(exp), "            "), indent(laString(got), "            ")))
				}
			}
			curr++
		}
	}

Exprs:
	for _, tc := range tg.PromqlExprTests {
		got, err := query(ctx, tc.Expr, mint.Add(time.Duration(tc.EvalTime)))
		if err != nil {
			out = append(out, fmt.Errorf("    expr: %q, time: %s, err: %s", tc.Expr, tc.EvalTime, err))
			continue
		}
		var gotS, expS []parsedSample
		for _, s := range got {
			gotS = append(gotS, parsedSample{s.Metric, s.F, histExpr(s.H)})
		}
		for _, s := range tc.ExpSamples {
			lb, err := p.ParseMetric(s.Labels)
			var h *histogram.FloatHistogram
			if err == nil && s.Histogram != "" {
				_, vals, perr := p.ParseSeriesDesc("{} " + s.Histogram)
				switch {
				case perr != nil:
					err = perr
				case len(vals) != 1:
					err = fmt.Errorf("expected 1 value, got %d", len(vals))
				case vals[0].Histogram == nil:
					err = fmt.Errorf("expected histogram, got %v", vals[0])
				default:
					h = vals[0].Histogram
				}
			}
			if err != nil {
				out = append(out, fmt.Errorf("    expr: %q, time: %s, err: %w", tc.Expr, tc.EvalTime, fmt.Errorf("labels %q: %w", s.Labels, err)))
				continue Exprs
			}
			expS = append(expS, parsedSample{lb, s.Value, histExpr(h)})
		}
		byLabels := func(a, b parsedSample) int { return labels.Compare(a.labels, b.labels) }
		slices.SortFunc(expS, byLabels)
		slices.SortFunc(gotS, byLabels)
		if !slices.EqualFunc(expS, gotS, func(a, b parsedSample) bool {
			return labels.Equal(a.labels, b.labels) && a.histogram == b.histogram && floatEqual(a.value, b.value, fuzzy)
		}) {
			out = append(out, fmt.Errorf("    expr: %q, time: %s,\n        exp: %v\n        got: %v", tc.Expr, tc.EvalTime, samplesString(expS), samplesString(gotS)))
		}
	}
	return out
}

// floatEqual is promtool's comparison: exact (NaN never equals NaN, as with
// go-cmp), or off by one ulp with fuzzy_compare.
func floatEqual(x, y float64, fuzzy bool) bool {
	if x == y {
		return true
	}
	return fuzzy && (math.Nextafter(x, math.Inf(-1)) == y || math.Nextafter(x, math.Inf(1)) == y)
}

func histExpr(h *histogram.FloatHistogram) string {
	if h == nil {
		return ""
	}
	return h.TestExpression()
}

type labelsAndAnnotations struct{ labels, annotations labels.Labels }

func compareLA(a, b labelsAndAnnotations) int {
	if d := labels.Compare(a.labels, b.labels); d != 0 {
		return d
	}
	return labels.Compare(a.annotations, b.annotations)
}

func laString(la []labelsAndAnnotations) string {
	if len(la) == 0 {
		return "[]"
	}
	var s strings.Builder
	s.WriteString("[")
	for i, l := range la {
		if i > 0 {
			s.WriteString(",")
		}
		s.WriteString("\n" + strconv.Itoa(i) + ":" + indent("\nLabels:"+l.labels.String()+"\nAnnotations:"+l.annotations.String(), "  "))
	}
	s.WriteString("\n]")
	return s.String()
}

type parsedSample struct {
	labels    labels.Labels
	value     float64
	histogram string
}

func samplesString(ss []parsedSample) string {
	if len(ss) == 0 {
		return "nil"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		if s.histogram != "" {
			parts[i] = s.labels.String() + " " + s.histogram
		} else {
			parts[i] = s.labels.String() + " " + strconv.FormatFloat(s.value, 'E', -1, 64)
		}
	}
	return strings.Join(parts, ", ")
}

func indent(lines, prefix string) string {
	return strings.ReplaceAll(lines, "\n", "\n"+prefix)
}

// queryFunc is rules.EngineQueryFunc: an instant query whose scalar result
// becomes a one-sample vector.
func queryFunc(engine *promql.Engine, st *store) template.QueryFunc {
	return func(ctx context.Context, qs string, t time.Time) (promql.Vector, error) {
		q, err := engine.NewInstantQuery(ctx, st, nil, qs, t)
		if err != nil {
			return nil, err
		}
		defer q.Close()
		res := q.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		switch v := res.Value.(type) {
		case promql.Vector:
			return v, nil
		case promql.Scalar:
			return promql.Vector{promql.Sample{T: v.T, F: v.V, Metric: labels.Labels{}}}, nil
		default:
			return nil, errors.New("rule result is not a vector or scalar")
		}
	}
}

var staleNaN = math.Float64frombits(value.StaleNaN)

// ruleErr is a rule's evaluation error.
type ruleErr struct {
	rule string
	err  error
}
