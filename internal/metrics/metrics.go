// Package metrics defines Klaxon's Prometheus metrics in one place, so the
// server, the store and the engine record into the same registry.
package metrics

import (
	"context"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds Klaxon's collectors.
type Metrics struct {
	Registry *prometheus.Registry
	// Webhooks counts Alertmanager webhooks by outcome (ok, duplicate, bad_request,
	// unauthorized, too_large, store_error, method_not_allowed).
	Webhooks *prometheus.CounterVec
	// CommitSeconds observes store write transactions (fsync or quorum commit
	// included) by backend: bolt or etcd.
	CommitSeconds *prometheus.HistogramVec
	// Leader is 1 while this replica leads (always 1 with the bolt store).
	Leader prometheus.Gauge
	// LeaderChanges counts this replica gaining or losing leadership.
	LeaderChanges prometheus.Counter
	// Pages counts pages by channel and result.
	Pages *prometheus.CounterVec
	// PageSeconds observes how long a provider took to take a page.
	PageSeconds *prometheus.HistogramVec
	// DeliverySeconds observes, per channel, the time from a provider
	// accepting a page to the channel confirming it arrived.
	DeliverySeconds *prometheus.HistogramVec
	// Unconfirmed counts pages a channel accepted but did not confirm, by
	// channel and reason: "deadline" (not confirmed in time) or "reported"
	// (the channel said nobody was reached).
	Unconfirmed *prometheus.CounterVec
	// Exhausted counts incidents whose policy ran out.
	Exhausted prometheus.Counter
	// StoreWritable is 1 while the store's last write committed, 0 after one
	// could not (disk full, read-only file).
	StoreWritable prometheus.Gauge
	// CommitFailures counts store writes that could not commit.
	CommitFailures prometheus.Counter
}

// New registers Klaxon's metrics, the Go and process collectors and build info
// on a fresh registry. incidents, if not nil, is called at scrape time for the
// number of incidents in each state.
func New(incidents func(ctx context.Context) (map[string]int, error)) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klaxon_webhooks_total", Help: "Alertmanager webhooks received, by outcome.",
		}, []string{"outcome"}),
		CommitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "klaxon_store_commit_seconds",
			Help:    "Duration of store write transactions including fsync (bolt) or quorum commit (etcd), by backend.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"backend"}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "klaxon_leader", Help: "1 while this replica is the leader that runs escalations and sends pages.",
		}),
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "klaxon_leader_changes_total", Help: "Times this replica gained or lost leadership.",
		}),
		Pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klaxon_pages_total", Help: "Pages handed to channels, by channel and result.",
		}, []string{"channel", "result"}),
		PageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "klaxon_page_seconds", Help: "Time a channel's provider took to take a page.",
			Buckets: prometheus.DefBuckets,
		}, []string{"channel"}),
		DeliverySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "klaxon_delivery_seconds", Help: "Time from a provider accepting a page to its channel confirming it arrived (Matrix: seen back in /sync; SMS: delivered receipt; PagerDuty: a person notified; phone: answered).",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300},
		}, []string{"channel"}),
		Unconfirmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "klaxon_pages_unconfirmed_total", Help: "Pages a channel accepted but did not confirm, by channel and reason (deadline: not confirmed in time; reported: the channel said nobody was reached).",
		}, []string{"channel", "reason"}),
		Exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "klaxon_incidents_exhausted_total", Help: "Incidents whose escalation policy and fallback ran out without an acknowledgement.",
		}),
		StoreWritable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "klaxon_store_writable", Help: "1 while the store's last write committed to disk, 0 after one could not.",
		}),
		CommitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "klaxon_store_commit_failures_total", Help: "Store writes that could not be committed to disk.",
		}),
	}
	m.StoreWritable.Set(1)
	r.MustRegister(m.Webhooks, m.CommitSeconds, m.Leader, m.LeaderChanges, m.Pages, m.PageSeconds, m.DeliverySeconds, m.Unconfirmed, m.Exhausted, m.StoreWritable, m.CommitFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
	if incidents != nil {
		r.MustRegister(&incidentCollector{count: incidents})
	}
	return m
}

// ObserveCommit records one store commit's duration on backend (bolt, etcd).
func (m *Metrics) ObserveCommit(backend string, d time.Duration) {
	m.CommitSeconds.WithLabelValues(backend).Observe(d.Seconds())
}

// ObserveCommitResult records whether a store write reached the disk.
func (m *Metrics) ObserveCommitResult(err error) {
	if err != nil {
		m.StoreWritable.Set(0)
		m.CommitFailures.Inc()
		return
	}
	m.StoreWritable.Set(1)
}

var incidentsDesc = prometheus.NewDesc("klaxon_incidents", "Incidents by state.", []string{"state"}, nil)

type incidentCollector struct {
	count func(ctx context.Context) (map[string]int, error)
}

func (c *incidentCollector) Describe(ch chan<- *prometheus.Desc) { ch <- incidentsDesc }

func (c *incidentCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(incidentsDesc, err)
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(incidentsDesc, prometheus.GaugeValue, float64(n), state)
	}
}

// NewBuildInfo returns the klaxon_build_info gauge (always 1) labelled with the
// version stamped at build time (-ldflags "-X main.version=..."), as `klaxon
// --version` prints it, and the Go version. go_build_info carries the module
// version Go records from version control instead.
func NewBuildInfo(version string) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "klaxon_build_info", Help: "Klaxon's version as stamped at build time; always 1.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, runtime.Version()).Set(1)
	return g
}
