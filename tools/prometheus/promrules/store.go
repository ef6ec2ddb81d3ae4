package main

import (
	"context"
	"slices"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// store is an in-memory storage.Queryable for one test group: the input
// series and what the rules write back. Like promtool's lazy loader it shows
// only samples up to till, the evaluation time.
type store struct {
	series map[string]*memSeries
	till   int64
}

type memSeries struct {
	lset    labels.Labels
	samples []chunks.Sample
}

// add appends a sample. Like the TSDB it drops a sample that is not newer than
// the series' last one (Prometheus logs those and goes on).
func (s *store) add(lset labels.Labels, smp sample) {
	if s.series == nil {
		s.series = map[string]*memSeries{}
	}
	k := lset.String()
	ms, ok := s.series[k]
	if !ok {
		ms = &memSeries{lset: lset}
		s.series[k] = ms
	}
	if n := len(ms.samples); n > 0 && ms.samples[n-1].T() >= smp.t {
		return
	}
	ms.samples = append(ms.samples, smp)
}

// Querier implements storage.Queryable.
func (s *store) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{s: s, mint: mint, maxt: maxt}, nil
}

type querier struct {
	s          *store
	mint, maxt int64
}

func (q *querier) matching(ms []*labels.Matcher) []*memSeries {
	var out []*memSeries
	for _, m := range q.s.series {
		ok := true
		for _, matcher := range ms {
			if !matcher.Matches(m.lset.Get(matcher.Name)) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *memSeries) int { return labels.Compare(a.lset, b.lset) })
	return out
}

func (q *querier) Select(_ context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	maxt = min(maxt, q.s.till)
	var set []storage.Series
	for _, m := range q.matching(ms) {
		var in []chunks.Sample
		for _, smp := range m.samples {
			if smp.T() >= mint && smp.T() <= maxt {
				in = append(in, smp)
			}
		}
		if len(in) > 0 {
			set = append(set, storage.NewListSeries(m.lset, in))
		}
	}
	return &seriesSet{series: set, i: -1}
}

func (q *querier) LabelValues(_ context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var vals []string
	for _, m := range q.matching(ms) {
		if v := m.lset.Get(name); v != "" {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	return slices.Compact(vals), nil, nil
}

func (q *querier) LabelNames(_ context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var names []string
	for _, m := range q.matching(ms) {
		m.lset.Range(func(l labels.Label) { names = append(names, l.Name) })
	}
	slices.Sort(names)
	return slices.Compact(names), nil, nil
}

func (q *querier) Close() error { return nil }

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// sample is a float or float-histogram sample (chunks.Sample).
type sample struct {
	t  int64
	f  float64
	fh *histogram.FloatHistogram
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return nil }
func (s sample) FH() *histogram.FloatHistogram { return s.fh }
func (s sample) Type() chunkenc.ValueType {
	if s.fh != nil {
		return chunkenc.ValFloatHistogram
	}
	return chunkenc.ValFloat
}
func (s sample) Copy() chunks.Sample {
	c := s
	if s.fh != nil {
		c.fh = s.fh.Copy()
	}
	return c
}
