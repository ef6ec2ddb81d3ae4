package selftest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func alert(status string, labels ...string) escalation.Alert {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return escalation.Alert{Fingerprint: fmt.Sprint(labels), Status: status, Labels: l,
		Annotations: map[string]string{"summary": l["alertname"]}}
}

func TestIntercept(t *testing.T) {
	watchdog := alert("firing", "alertname", "Watchdog", "severity", "none")
	disk := alert("firing", "alertname", "DiskFull", "severity", "critical", "team", "db")
	disk2 := alert("firing", "alertname", "DiskFull", "severity", "warning", "team", "db")
	gone := alert("resolved", "alertname", "DiskFull", "severity", "critical", "team", "db")
	tests := []struct {
		name       string
		n          escalation.Notification
		matcher    []string
		wantRemain bool
		wantAlerts int
		wantStatus string
		wantCommon map[string]string
		wantSeen   bool
	}{
		{name: "only the Watchdog", n: escalation.Notification{GroupKey: "g", Status: "firing", Alerts: []escalation.Alert{watchdog}},
			wantSeen: true},
		{name: "no Watchdog passes unchanged", n: escalation.Notification{GroupKey: "g", Status: "firing",
			CommonLabels: map[string]string{"x": "y"}, Alerts: []escalation.Alert{disk}},
			wantRemain: true, wantAlerts: 1, wantStatus: "firing", wantCommon: map[string]string{"x": "y"}},
		{name: "mixed group: Watchdog stripped, common labels recomputed", n: escalation.Notification{GroupKey: "g", Status: "firing",
			CommonLabels: map[string]string{}, Alerts: []escalation.Alert{watchdog, disk, disk2}},
			wantRemain: true, wantAlerts: 2, wantStatus: "firing",
			wantCommon: map[string]string{"alertname": "DiskFull", "team": "db"}, wantSeen: true},
		{name: "rest resolved", n: escalation.Notification{GroupKey: "g", Status: "firing", Alerts: []escalation.Alert{watchdog, gone}},
			wantRemain: true, wantAlerts: 1, wantStatus: "resolved",
			wantCommon: map[string]string{"alertname": "DiskFull", "severity": "critical", "team": "db"}, wantSeen: true},
		{name: "resolved Watchdog does not reset", n: escalation.Notification{GroupKey: "g", Status: "resolved",
			Alerts: []escalation.Alert{alert("resolved", "alertname", "Watchdog")}}},
		{name: "custom matcher", matcher: []string{`alertname="DeadMansSwitch"`, `severity=~"none|info"`},
			n: escalation.Notification{GroupKey: "g", Status: "firing", Alerts: []escalation.Alert{
				alert("firing", "alertname", "DeadMansSwitch", "severity", "none"), watchdog}},
			wantRemain: true, wantAlerts: 1, wantStatus: "firing",
			wantCommon: map[string]string{"alertname": "Watchdog", "severity": "none"}, wantSeen: true},
		{name: "custom matcher all must match", matcher: []string{`alertname="DeadMansSwitch"`, `severity="none"`},
			n: escalation.Notification{GroupKey: "g", Status: "firing", Alerts: []escalation.Alert{
				alert("firing", "alertname", "DeadMansSwitch", "severity", "page")}},
			wantRemain: true, wantAlerts: 1, wantStatus: "firing"},
		{name: "empty notification", n: escalation.Notification{GroupKey: "g", Status: "firing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil, func(c *Config) {
				if tt.matcher != nil {
					m, err := WatchdogMatcher(tt.matcher...)
					if err != nil {
						t.Fatal(err)
					}
					c.WatchdogMatcher = m
				}
			})
			r.clock.Advance(time.Minute)
			out, remain, err := r.m.Intercept(context.Background(), tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if remain != tt.wantRemain || len(out.Alerts) != tt.wantAlerts {
				t.Fatalf("remain %v with %d alerts, want %v with %d", remain, len(out.Alerts), tt.wantRemain, tt.wantAlerts)
			}
			if remain {
				if out.Status != tt.wantStatus || out.GroupKey != "g" {
					t.Errorf("status %q groupKey %q", out.Status, out.GroupKey)
				}
				if tt.wantCommon != nil && fmt.Sprint(out.CommonLabels) != fmt.Sprint(tt.wantCommon) {
					t.Errorf("common labels %v, want %v", out.CommonLabels, tt.wantCommon)
				}
			}
			var rec watchdogRecord
			if s := r.store.get(keyWatchdog); s != "" {
				if err := json.Unmarshal([]byte(s), &rec); err != nil {
					t.Fatal(err)
				}
			}
			if seen := rec.LastSeen.Equal(t0.Add(time.Minute)); seen != tt.wantSeen {
				t.Errorf("persisted last seen %s, want reset %v", rec.LastSeen, tt.wantSeen)
			}
			if got := r.m.Watchdog().LastSeen.Equal(t0.Add(time.Minute)); got != tt.wantSeen {
				t.Errorf("in-memory last seen %s", r.m.Watchdog().LastSeen)
			}
		})
	}
}

func TestInterceptStoreFailure(t *testing.T) {
	r := newRig(t, nil, nil)
	r.store.setFailPut(true)
	n := escalation.Notification{GroupKey: "g", Status: "firing", Alerts: []escalation.Alert{alert("firing", "alertname", "Watchdog")}}
	if _, _, err := r.m.Intercept(context.Background(), n); err == nil {
		t.Fatal("Intercept succeeded though the deadline could not be saved")
	}
	if !r.m.Watchdog().LastSeen.IsZero() {
		t.Error("deadline reset in memory though not on disk")
	}
}

func TestWatchdogMatcherErrors(t *testing.T) {
	for _, specs := range [][]string{nil, {"alertname"}, {`alertname=~"("`}, {`1bad="x"`}, {strings.Repeat("a", 2000) + `="x"`}} {
		if _, err := WatchdogMatcher(specs...); err == nil {
			t.Errorf("WatchdogMatcher(%q) accepted", specs)
		}
	}
}

func watchdogNote() escalation.Notification {
	return escalation.Notification{GroupKey: "wd", Status: "firing", Alerts: []escalation.Alert{alert("firing", "alertname", "Watchdog")}}
}

func TestWatchdogDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testers(notifiers.Matrix, tester(notifiers.Up, "")), nil)
		stop := start(t, r.m)
		ctx := context.Background()
		synctest.Wait()
		// The Watchdog keeps arriving every 2 minutes: no alarm for an hour.
		for range 30 {
			r.clock.Advance(2 * time.Minute)
			if _, _, err := r.m.Intercept(ctx, watchdogNote()); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		eqOps(t, r.alarms)
		last := r.clock.Now()
		r.clock.Advance(9*time.Minute + 59*time.Second)
		synctest.Wait()
		eqOps(t, r.alarms)
		r.clock.Advance(time.Second)
		synctest.Wait()
		eqOps(t, r.alarms, "raise watchdog")
		c := r.alarms.Calls()[0]
		mustContain(t, "title", c.Title, "Alertmanager silent since "+clock(last, time.UTC), "no Watchdog alert for 10m0s")
		if c.Policy != "selftest" {
			t.Errorf("policy %q", c.Policy)
		}
		if !r.m.Watchdog().Silent {
			t.Error("Watchdog() not silent")
		}
		r.clock.Advance(time.Hour) // still silent: no second alarm
		synctest.Wait()
		eqOps(t, r.alarms, "raise watchdog")
		if _, _, err := r.m.Intercept(ctx, watchdogNote()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		eqOps(t, r.alarms, "raise watchdog", "clear watchdog")
		mustContain(t, "clear text", r.alarms.Calls()[1].Title, "Watchdog is back", "silent since "+clock(last, time.UTC))
		// And the switch is armed again.
		r.clock.Advance(10 * time.Minute)
		synctest.Wait()
		eqOps(t, r.alarms, "raise watchdog", "clear watchdog", "raise watchdog")
		stop()
	})
}

func TestWatchdogNeverArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, func(c *Config) { c.WatchdogTimeout = 15 * time.Minute })
		stop := start(t, r.m)
		synctest.Wait()
		r.clock.Advance(15 * time.Minute)
		synctest.Wait()
		eqOps(t, r.alarms, "raise watchdog")
		mustContain(t, "title", r.alarms.Calls()[0].Title, "no Watchdog alert since Klaxon began watching at Mon 2 Mar 03:10 UTC", "repeat_interval")
		stop()
	})
}

func TestWatchdogDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, func(c *Config) { c.WatchdogTimeout = -1 })
		stop := start(t, r.m)
		ctx := context.Background()
		synctest.Wait()
		r.clock.Advance(24 * time.Hour)
		synctest.Wait()
		for _, op := range r.alarms.ops() {
			if op == "raise watchdog" {
				t.Fatal("disabled Watchdog raised an alarm")
			}
		}
		_, remain, err := r.m.Intercept(ctx, watchdogNote())
		if err != nil || remain {
			t.Errorf("disabled: Watchdog still must not open an incident (remain %v, err %v)", remain, err)
		}
		if r.m.Watchdog().Enabled {
			t.Error("Watchdog() enabled")
		}
		stop()
	})
}

// A deadline that passed while Klaxon was down fires at start; a real bbolt
// store carries the state across the restart.
func TestWatchdogSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clk := escalation.NewFakeClock(t0)
	alarms := &fakeAlarmer{}
	open := func() (*boltstore.Store, *Monitor) {
		st, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(Config{State: st, Alarms: alarms, Clock: clk, Location: time.UTC})
		if err != nil {
			t.Fatal(err)
		}
		return st, m
	}
	st, m := open()
	if _, _, err := m.Intercept(context.Background(), watchdogNote()); err != nil {
		t.Fatal(err)
	}
	st.Close() // Klaxon stops right after the 2xx

	clk.Advance(3 * time.Hour)
	st, m = open()
	defer st.Close()
	if got := m.Watchdog().LastSeen; !got.Equal(t0) {
		t.Fatalf("last seen after restart %s, want %s", got, t0)
	}
	stop := start(t, m)
	waitFor(t, func() bool { return len(alarms.Calls()) > 0 })
	eqOps(t, alarms, "raise watchdog")
	mustContain(t, "title", alarms.Calls()[0].Title, "silent since Mon 2 Mar 03:10 UTC")
	waitFor(t, func() bool { return m.Watchdog().Silent })
	stop()

	// Restart again while alarmed: no second alarm; the returning Watchdog clears it.
	st.Close()
	st, m = open()
	defer st.Close()
	start(t, m)
	if _, _, err := m.Intercept(context.Background(), watchdogNote()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(alarms.Calls()) == 2 })
	eqOps(t, alarms, "raise watchdog", "clear watchdog")
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		<-tick.C
	}
}
