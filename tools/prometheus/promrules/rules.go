package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/template"
)

// resolvedRetention is how long Prometheus keeps a resolved alert
// (rules/alerting.go).
const resolvedRetention = 15 * time.Minute

type group struct {
	name        string
	queryOffset time.Duration
	limit       int
	rules       []*rule
}

// rule is an alerting rule (alert != nil) or a recording rule.
type rule struct {
	name   string
	expr   parser.Expr
	labels labels.Labels // group labels overridden by the rule's
	alert  *alerting
	// previous holds the series this rule wrote at its last evaluation, to
	// mark those it no longer writes stale (rules/group.go).
	previous map[string]labels.Labels
}

type alerting struct {
	holdDuration   time.Duration
	keepFiringFor  time.Duration
	annotations    labels.Labels
	externalLabels map[string]string
	externalURL    string
	active         map[uint64]*alert
}

type alertState int

const (
	stateInactive alertState = iota
	statePending
	stateFiring
)

func (s alertState) String() string {
	return [...]string{"inactive", "pending", "firing"}[s]
}

type alert struct {
	state                                       alertState
	labels, annotations                         labels.Labels
	value                                       float64
	activeAt, firedAt, resolvedAt, keepFiringAt time.Time
}

// loadGroups is rules.Manager.LoadGroups for a unit test: every group of every
// file, validated by rulefmt.
func loadGroups(p parser.Parser, files []string, externalLabels labels.Labels, externalURL string) ([]*group, []error) {
	var groups []*group
	for _, f := range files {
		rgs, errs := parseRuleFile(p, f)
		if errs != nil {
			return nil, errs
		}
		for _, rg := range rgs.Groups {
			g := &group{name: rg.Name, limit: rg.Limit}
			if rg.QueryOffset != nil {
				g.queryOffset = time.Duration(*rg.QueryOffset)
			}
			for _, r := range rg.Rules {
				expr, err := p.ParseExpr(r.Expr)
				if err != nil {
					return nil, []error{fmt.Errorf("%s: %w", f, err)}
				}
				merged := maps.Clone(rg.Labels)
				if merged == nil {
					merged = map[string]string{}
				}
				maps.Copy(merged, r.Labels)
				nr := &rule{name: r.Record, expr: expr, labels: labels.FromMap(merged)}
				if r.Alert != "" {
					nr.name = r.Alert
					nr.alert = &alerting{
						holdDuration:   time.Duration(r.For),
						keepFiringFor:  time.Duration(r.KeepFiringFor),
						annotations:    labels.FromMap(r.Annotations),
						externalLabels: externalLabels.Map(),
						externalURL:    externalURL,
						active:         map[uint64]*alert{},
					}
				}
				g.rules = append(g.rules, nr)
			}
			groups = append(groups, g)
		}
	}
	return groups, nil
}

// eval is rules.Group.Eval: evaluate each rule in order, write what it
// returns (recording rules' series; ALERTS and ALERTS_FOR_STATE) to the store
// so later rules see it, and mark the series a rule stopped returning stale.
func (g *group) eval(ctx context.Context, ts time.Time, query template.QueryFunc, st *store) []ruleErr {
	var errs []ruleErr
	for _, r := range g.rules {
		var vec promql.Vector
		var err error
		if r.alert != nil {
			vec, err = r.evalAlert(ctx, g.queryOffset, ts, query, g.limit)
		} else {
			vec, err = r.evalRecording(ctx, g.queryOffset, ts, query, g.limit)
		}
		if err != nil {
			errs = append(errs, ruleErr{r.name, err})
			continue
		}
		returned := make(map[string]labels.Labels, len(vec))
		for _, s := range vec {
			st.add(s.Metric, sample{t: s.T, f: s.F, fh: s.H})
			returned[s.Metric.String()] = s.Metric
		}
		for k, lset := range r.previous {
			if _, ok := returned[k]; !ok {
				st.add(lset, sample{t: timestamp.FromTime(ts.Add(-g.queryOffset)), f: staleNaN})
			}
		}
		r.previous = returned
	}
	return errs
}

// evalRecording is rules.RecordingRule.Eval.
func (r *rule) evalRecording(ctx context.Context, offset time.Duration, ts time.Time, query template.QueryFunc, limit int) (promql.Vector, error) {
	vec, err := query(ctx, r.expr.String(), ts.Add(-offset))
	if err != nil {
		return nil, err
	}
	lb := labels.NewBuilder(labels.EmptyLabels())
	for i := range vec {
		lb.Reset(vec[i].Metric)
		lb.Set(labels.MetricName, r.name)
		r.labels.Range(func(l labels.Label) { lb.Set(l.Name, l.Value) })
		vec[i].Metric = lb.Labels()
	}
	if vec.ContainsSameLabelset() {
		return nil, errors.New("vector contains metrics with the same labelset after applying rule labels")
	}
	if limit > 0 && len(vec) > limit {
		return nil, fmt.Errorf("exceeded limit of %d with %d series", limit, len(vec))
	}
	return vec, nil
}

// evalAlert is rules.AlertingRule.Eval: the pending → firing → inactive state
// machine with `for` and `keep_firing_for`, labels and annotations expanded
// by Prometheus's template package.
func (r *rule) evalAlert(ctx context.Context, offset time.Duration, ts time.Time, query template.QueryFunc, limit int) (promql.Vector, error) {
	a := r.alert
	res, err := query(ctx, r.expr.String(), ts.Add(-offset))
	if err != nil {
		return nil, err
	}
	resultFPs := map[uint64]struct{}{}
	lb := labels.NewBuilder(labels.EmptyLabels())
	sb := labels.NewScratchBuilder(0)
	alerts := make(map[uint64]*alert, len(res))
	for _, smpl := range res {
		data := template.AlertTemplateData(smpl.Metric.Map(), a.externalLabels, a.externalURL, smpl)
		defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
		expand := func(text string) string {
			tmpl := template.NewTemplateExpander(ctx, defs+text, "__alert_"+r.name, data,
				model.Time(timestamp.FromTime(ts)), query, (*url.URL)(nil), nil)
			out, err := tmpl.Expand()
			if err != nil {
				out = fmt.Sprintf("<error expanding template: %s>", err)
			}
			return out
		}
		lb.Reset(smpl.Metric)
		lb.Del(labels.MetricName)
		r.labels.Range(func(l labels.Label) { lb.Set(l.Name, expand(l.Value)) })
		lb.Set(labels.AlertName, r.name)
		sb.Reset()
		a.annotations.Range(func(l labels.Label) { sb.Add(l.Name, expand(l.Value)) })
		lbs := lb.Labels()
		h := lbs.Hash()
		resultFPs[h] = struct{}{}
		if _, ok := alerts[h]; ok {
			return nil, errors.New("vector contains metrics with the same labelset after applying alert labels")
		}
		alerts[h] = &alert{labels: lbs, annotations: sb.Labels(), activeAt: ts, state: statePending, value: smpl.F}
	}
	for h, n := range alerts {
		if old, ok := a.active[h]; ok && old.state != stateInactive {
			old.value = n.value
			old.annotations = n.annotations
			continue
		}
		a.active[h] = n
	}
	var vec promql.Vector
	numActive := 0
	for fp, al := range a.active {
		if _, ok := resultFPs[fp]; !ok {
			keepFiring := false
			if al.state == stateFiring && a.keepFiringFor > 0 {
				if al.keepFiringAt.IsZero() {
					al.keepFiringAt = ts
				}
				keepFiring = ts.Sub(al.keepFiringAt) < a.keepFiringFor
			}
			if al.state == statePending || (!al.resolvedAt.IsZero() && ts.Sub(al.resolvedAt) > resolvedRetention) {
				delete(a.active, fp)
			}
			if al.state != stateInactive && !keepFiring {
				al.state = stateInactive
				al.resolvedAt = ts
			}
			if !keepFiring {
				continue
			}
		} else {
			al.keepFiringAt = time.Time{}
		}
		numActive++
		if al.state == statePending && ts.Sub(al.activeAt) >= a.holdDuration {
			al.state = stateFiring
			al.firedAt = ts
		}
		if al.state == stateFiring && ts.Sub(al.activeAt) < a.holdDuration {
			al.state = statePending
			al.firedAt = time.Time{}
			al.keepFiringAt = time.Time{}
		}
		vec = append(vec, r.alertSample(al, "ALERTS", ts.Add(-offset), 1, true))
		vec = append(vec, r.alertSample(al, "ALERTS_FOR_STATE", ts.Add(-offset), float64(al.activeAt.Unix()), false))
	}
	if limit > 0 && numActive > limit {
		a.active = map[uint64]*alert{}
		return nil, fmt.Errorf("exceeded limit of %d with %d alerts", limit, numActive)
	}
	return vec, nil
}

// alertSample is the ALERTS (with alertstate) or ALERTS_FOR_STATE sample of an
// active alert.
func (r *rule) alertSample(al *alert, name string, ts time.Time, v float64, withState bool) promql.Sample {
	lb := labels.NewBuilder(r.labels)
	al.labels.Range(func(l labels.Label) { lb.Set(l.Name, l.Value) })
	lb.Set(labels.MetricName, name)
	lb.Set(labels.AlertName, r.name)
	if withState {
		lb.Set("alertstate", strings.ToLower(al.state.String()))
	}
	return promql.Sample{Metric: lb.Labels(), T: timestamp.FromTime(ts), F: v}
}
