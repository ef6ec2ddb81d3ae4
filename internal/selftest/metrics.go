package selftest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

var (
	descChannelUp = prometheus.NewDesc("klaxon_channel_up",
		"1 if the channel can page (up or degraded), 0 if it is down and pages skip it.", []string{"channel"}, nil)
	descChannelDegraded = prometheus.NewDesc("klaxon_channel_degraded",
		"1 if the channel's self-test reports it degraded.", []string{"channel"}, nil)
	descLastSuccess = prometheus.NewDesc("klaxon_channel_last_success_timestamp_seconds",
		"When the channel last passed a self-test or delivered a page (absent: never).", []string{"channel"}, nil)
	descNotDelivering = prometheus.NewDesc("klaxon_channel_not_delivering",
		"1 while the channel accepts pages but does not deliver them (unconfirmed pages, canaries or a stalled sync in a row).", []string{"channel"}, nil)
	descLastDelivery = prometheus.NewDesc("klaxon_channel_last_delivery_timestamp_seconds",
		"The channel's last proven delivery: a page or canary it confirmed arrived (0: none yet).", []string{"channel"}, nil)
	descFailures = prometheus.NewDesc("klaxon_channel_consecutive_failures",
		"Failed self-tests and permanent send failures in a row.", []string{"channel"}, nil)
	descChannelsUp = prometheus.NewDesc("klaxon_channels_up",
		"Configured channels that can page; 0 means Klaxon cannot page anyone.", nil, nil)
	descWatchdogSeen = prometheus.NewDesc("klaxon_watchdog_last_seen_timestamp_seconds",
		"When Alertmanager's Watchdog alert last arrived (absent: never).", nil, nil)
	descWatchdogSilent = prometheus.NewDesc("klaxon_watchdog_silent",
		"1 while the Watchdog alarm is open (Alertmanager silent past the deadline).", nil, nil)
)

// collector exports the Monitor's state at scrape time.
type collector struct{ m *Monitor }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descChannelUp, descChannelDegraded, descLastSuccess, descFailures,
		descNotDelivering, descLastDelivery, descChannelsUp, descWatchdogSeen, descWatchdogSilent} {
		ch <- d
	}
	c.m.heartbeats.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	up := 0
	for _, s := range c.m.Channels() {
		name := string(s.Channel)
		v := 0.0
		if s.Status != notifiers.Down {
			v = 1
			up++
		}
		ch <- prometheus.MustNewConstMetric(descChannelUp, prometheus.GaugeValue, v, name)
		d := 0.0
		if s.Status == notifiers.Degraded {
			d = 1
		}
		ch <- prometheus.MustNewConstMetric(descChannelDegraded, prometheus.GaugeValue, d, name)
		if !s.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(s.LastSuccess.UnixNano())/1e9, name)
		}
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.GaugeValue, float64(s.Failures), name)
		nd := 0.0
		if s.NotDelivering {
			nd = 1
		}
		ch <- prometheus.MustNewConstMetric(descNotDelivering, prometheus.GaugeValue, nd, name)
		last := 0.0 // none yet
		if !s.LastDelivered.IsZero() {
			last = float64(s.LastDelivered.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descLastDelivery, prometheus.GaugeValue, last, name)
	}
	ch <- prometheus.MustNewConstMetric(descChannelsUp, prometheus.GaugeValue, float64(up))
	w := c.m.Watchdog()
	if w.Enabled {
		if !w.LastSeen.IsZero() {
			ch <- prometheus.MustNewConstMetric(descWatchdogSeen, prometheus.GaugeValue, float64(w.LastSeen.UnixNano())/1e9)
		}
		s := 0.0
		if w.Silent {
			s = 1
		}
		ch <- prometheus.MustNewConstMetric(descWatchdogSilent, prometheus.GaugeValue, s)
	}
	c.m.heartbeats.Collect(ch)
}

func newHeartbeatCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "klaxon_heartbeats_total",
		Help: "Outbound heartbeats by result (ok, failed, withheld while no channel can page).",
	}, []string{"result"})
}
