package selftest

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestNoChannelUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mx, pd := tester(notifiers.Up, ""), tester(notifiers.Up, "")
		reg := prometheus.NewPedanticRegistry()
		r := newRig(t, testers(notifiers.Matrix, mx, notifiers.PagerDuty, pd), func(c *Config) {
			c.Registerer = reg
			c.WatchdogTimeout = -1
		})
		stop := start(t, r.m)
		ctx := context.Background()
		synctest.Wait()
		if err := r.m.Ready(ctx); err != nil {
			t.Fatalf("Ready with channels up: %v", err)
		}
		gaugeIs(t, reg, "klaxon_channels_up", 2)

		mx.set(notifiers.Down, "M_UNKNOWN_TOKEN: token revoked", false)
		pd.set(notifiers.Down, "account expired (402)", false)
		for range 2 { // two rounds: down
			r.clock.Advance(5*time.Minute + 30*time.Second) // past any jitter
			synctest.Wait()
		}
		err := r.m.Ready(ctx)
		if err == nil {
			t.Fatal("Ready succeeded with every channel down")
		}
		mustContain(t, "Ready error", err.Error(), "no channel can page anyone", "matrix down since", "token revoked", "pagerduty down since")
		gaugeIs(t, reg, "klaxon_channels_up", 0)
		const line = "KLAXON CANNOT PAGE ANYONE"
		before := r.logs.count(line)
		if before == 0 {
			t.Fatal("no error logged when the last channel went down")
		}
		for i := 1; i <= 3; i++ {
			r.clock.Advance(time.Minute)
			synctest.Wait()
			if got := r.logs.count(line); got < before+i {
				t.Fatalf("after %d more minutes %d error logs, want at least %d", i, got, before+i)
			}
		}
		// Alarms about both channels were raised (the engine finds no channel to carry them).
		ops := strings.Join(r.alarms.ops(), ",")
		mustContain(t, "alarms", ops, "raise channel:matrix", "raise channel:pagerduty")

		mx.set(notifiers.Up, "", false)
		r.clock.Advance(5*time.Minute + 30*time.Second)
		synctest.Wait()
		if err := r.m.Ready(ctx); err != nil {
			t.Errorf("Ready after recovery: %v", err)
		}
		gaugeIs(t, reg, "klaxon_channels_up", 1)
		n := r.logs.count(line)
		r.clock.Advance(3 * time.Minute)
		synctest.Wait()
		if r.logs.count(line) != n {
			t.Error("still logging 'cannot page' after a channel recovered")
		}
		stop()
	})
}

func TestReadyWithoutChannels(t *testing.T) {
	r := newRig(t, nil, nil)
	err := r.m.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no channel is configured") {
		t.Errorf("Ready with no channels = %v", err)
	}
}

func gaugeIs(t *testing.T, g prometheus.Gatherer, name string, want float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if got := mf.GetMetric()[0].GetGauge().GetValue(); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
			return
		}
	}
	t.Errorf("%s not exported", name)
}

func TestMetrics(t *testing.T) {
	mx, pd := tester(notifiers.Up, ""), tester(notifiers.Down, "account expired (402)")
	sms := tester(notifiers.Degraded, "balance low")
	reg := prometheus.NewPedanticRegistry()
	r := newRig(t, testers(notifiers.Matrix, mx, notifiers.PagerDuty, pd, notifiers.SMS, sms), func(c *Config) {
		c.Registerer = reg
		c.Configured = []notifiers.Channel{notifiers.Phone}
	})
	sms.set(notifiers.Degraded, "balance low", true)
	r.m.CheckNow(context.Background())
	r.clock.Advance(5 * time.Minute)
	r.m.CheckNow(context.Background())
	if _, _, err := r.m.Intercept(context.Background(), watchdogNote()); err != nil {
		t.Fatal(err)
	}
	ts := float64(t0.Add(5 * time.Minute).Unix())
	want := `
# HELP klaxon_channel_up 1 if the channel can page (up or degraded), 0 if it is down and pages skip it.
# TYPE klaxon_channel_up gauge
klaxon_channel_up{channel="matrix"} 1
klaxon_channel_up{channel="pagerduty"} 0
klaxon_channel_up{channel="phone"} 1
klaxon_channel_up{channel="sms"} 1
# HELP klaxon_channels_up Configured channels that can page; 0 means Klaxon cannot page anyone.
# TYPE klaxon_channels_up gauge
klaxon_channels_up 3
# HELP klaxon_channel_degraded 1 if the channel's self-test reports it degraded.
# TYPE klaxon_channel_degraded gauge
klaxon_channel_degraded{channel="matrix"} 0
klaxon_channel_degraded{channel="pagerduty"} 0
klaxon_channel_degraded{channel="phone"} 0
klaxon_channel_degraded{channel="sms"} 1
# HELP klaxon_channel_consecutive_failures Failed self-tests and permanent send failures in a row.
# TYPE klaxon_channel_consecutive_failures gauge
klaxon_channel_consecutive_failures{channel="matrix"} 0
klaxon_channel_consecutive_failures{channel="pagerduty"} 2
klaxon_channel_consecutive_failures{channel="phone"} 0
klaxon_channel_consecutive_failures{channel="sms"} 0
# HELP klaxon_watchdog_silent 1 while the Watchdog alarm is open (Alertmanager silent past the deadline).
# TYPE klaxon_watchdog_silent gauge
klaxon_watchdog_silent 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "klaxon_channel_up", "klaxon_channels_up",
		"klaxon_channel_degraded", "klaxon_channel_consecutive_failures", "klaxon_watchdog_silent"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	if got["klaxon_channel_last_success_timestamp_seconds/matrix"] != ts {
		t.Errorf("matrix last success %v, want %v", got["klaxon_channel_last_success_timestamp_seconds/matrix"], ts)
	}
	if _, ok := got["klaxon_channel_last_success_timestamp_seconds/pagerduty"]; ok {
		t.Error("pagerduty never succeeded but has a last-success timestamp")
	}
	if got["klaxon_watchdog_last_seen_timestamp_seconds"] != ts {
		t.Errorf("watchdog last seen %v, want %v", got["klaxon_watchdog_last_seen_timestamp_seconds"], ts)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}

func TestRaiseFailureIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pd := tester(notifiers.Down, "account expired (402)")
		r := newRig(t, testers(notifiers.PagerDuty, pd, notifiers.Matrix, tester(notifiers.Up, "")),
			func(c *Config) { c.FailuresToDown = 1; c.WatchdogTimeout = -1 })
		r.alarms.setFail(true)
		stop := start(t, r.m)
		synctest.Wait()
		eqOps(t, r.alarms)
		mustContain(t, "logs", r.logs.String(), "could not raise alarm; will retry")
		r.alarms.setFail(false)
		r.clock.Advance(time.Minute)
		synctest.Wait()
		eqOps(t, r.alarms, "raise channel:pagerduty")
		r.clock.Advance(time.Minute)
		synctest.Wait()
		eqOps(t, r.alarms, "raise channel:pagerduty")
		stop()
	})
}

func TestChannelStateSurvivesRestart(t *testing.T) {
	pd := tester(notifiers.Down, "account expired (402)")
	r := newRig(t, testers(notifiers.PagerDuty, pd), nil)
	r.m.CheckNow(context.Background())
	r.clock.Advance(5 * time.Minute)
	r.m.CheckNow(context.Background())
	eqOps(t, r.alarms, "raise channel:pagerduty")

	// Restart on the same store.
	m2, err := New(Config{Testers: testers(notifiers.PagerDuty, pd), State: r.store, Alarms: r.alarms, Clock: r.clock, Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if h := m2.Health(notifiers.PagerDuty); !h.Down || !h.Since.Equal(t0) {
		t.Fatalf("after restart Health = %+v, want down since %s", h, t0)
	}
	r.clock.Advance(5 * time.Minute)
	m2.CheckNow(context.Background())
	eqOps(t, r.alarms, "raise channel:pagerduty") // not raised twice
	pd.set(notifiers.Up, "", false)
	m2.CheckNow(context.Background())
	eqOps(t, r.alarms, "raise channel:pagerduty", "clear channel:pagerduty")

	// A channel removed from the configuration while alarmed gets its alarm closed.
	pd.set(notifiers.Down, "gone", false)
	m2.CheckNow(context.Background())
	m2.CheckNow(context.Background())
	m3, err := New(Config{Configured: []notifiers.Channel{notifiers.Matrix}, State: r.store, Alarms: r.alarms, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	m3.reconcileChannels(context.Background())
	eqOps(t, r.alarms, "raise channel:pagerduty", "clear channel:pagerduty", "raise channel:pagerduty", "clear channel:pagerduty")
	mustContain(t, "clear", r.alarms.Calls()[3].Title, "no longer configured")
	if len(m3.Channels()) != 1 {
		t.Errorf("channels %v", m3.Channels())
	}
}

func TestCorruptOrUnreadableState(t *testing.T) {
	st := newMapStore()
	for _, k := range []string{keyChannels, keyWatchdog, keyAlarms} {
		st.m[stateBucket+"/"+k] = []byte("{not json")
	}
	logs := &logBuf{}
	m, err := New(Config{Configured: []notifiers.Channel{notifiers.Matrix}, State: st, Alarms: &fakeAlarmer{},
		Logger: newTextLogger(logs)})
	if err != nil {
		t.Fatalf("corrupt state must not stop Klaxon: %v", err)
	}
	if m.Health(notifiers.Matrix).Down {
		t.Error("matrix down from corrupt state")
	}
	mustContain(t, "logs", logs.String(), "discarding corrupt channel state", "discarding corrupt Watchdog state")

	st.failGet = true
	if _, err := New(Config{State: st, Alarms: &fakeAlarmer{}}); err == nil {
		t.Error("New succeeded though the state could not be read")
	}
}

func TestConfigErrors(t *testing.T) {
	const secretURL = "https://hc-ping.com/5f1b-SECRET-UUID"
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no state", Config{Alarms: &fakeAlarmer{}}, "State is required"},
		{"no alarms", Config{State: newMapStore()}, "Alarms is required"},
		{"unknown configured channel", Config{State: newMapStore(), Alarms: &fakeAlarmer{}, Configured: []notifiers.Channel{"fax"}}, `unknown channel "fax"`},
		{"unknown tester channel", Config{State: newMapStore(), Alarms: &fakeAlarmer{}, Testers: testers(notifiers.Channel("pigeon"), tester(notifiers.Up, ""))}, `unknown channel "pigeon"`},
		{"heartbeat not http", Config{State: newMapStore(), Alarms: &fakeAlarmer{}, HeartbeatURL: "ftp://x/SECRET-UUID"}, "http or https"},
		{"heartbeat relative", Config{State: newMapStore(), Alarms: &fakeAlarmer{}, HeartbeatURL: "/ping/SECRET-UUID"}, "http or https"},
		{"heartbeat garbage", Config{State: newMapStore(), Alarms: &fakeAlarmer{}, HeartbeatURL: "http://[::1/SECRET-UUID"}, "http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error leaks the heartbeat URL: %v", err)
			}
		})
	}
	if _, err := New(Config{State: newMapStore(), Alarms: &fakeAlarmer{}, HeartbeatURL: secretURL}); err != nil {
		t.Errorf("valid heartbeat URL rejected: %v", err)
	}
}
