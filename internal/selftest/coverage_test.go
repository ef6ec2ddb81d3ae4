package selftest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// testRota: alice has Matrix and a phone, bob a phone only, carol Matrix only
// (and is on call only after an override next week), dave is on no rotation.
const testRota = `
timezone: UTC
people:
  alice: {name: Alice, phone: "+15555550101", matrix: "@alice:example.org"}
  bob: {name: Bob, phone: "+15555550102"}
  carol: {name: Carol, matrix: "@carol:example.org"}
  dave: {name: Dave}
rotations:
  primary:
    members: [alice, bob]
    shift: 1d
    handoff: "09:00"
    start: 2026-03-01
    overrides:
      - who: carol
        instead_of: alice
        from: 2026-03-11 09:00
        to: 2026-03-12 09:00
policies:
  default:
    steps:
      - notify: primary
        via: [matrix, phone]
        wait: 5m
routes:
  - policy: default
owners: [alice]
`

func parseRota(t *testing.T) *rota.Rota {
	t.Helper()
	r, _, err := rota.Parse("rota.yaml", []byte(testRota))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRotaCoverage(t *testing.T) {
	r := parseRota(t)
	all := func(notifiers.Channel) bool { return true }
	downs := func(down ...notifiers.Channel) func(notifiers.Channel) bool {
		return func(ch notifiers.Channel) bool {
			for _, d := range down {
				if d == ch {
					return false
				}
			}
			return true
		}
	}
	mx, ph := notifiers.Matrix, notifiers.Phone
	tests := []struct {
		name       string
		from       time.Time
		horizon    time.Duration
		configured []notifiers.Channel
		up         func(notifiers.Channel) bool
		want       []string // one substring per problem, in order
	}{
		{"everyone reachable", t0, 7 * 24 * time.Hour, []notifiers.Channel{mx, ph}, all, nil},
		{"matrix only: bob has no Matrix id", t0, 7 * 24 * time.Hour, []notifiers.Channel{mx}, all,
			[]string{"Bob (on call for primary from Mon 2 Mar 09:00 UTC) cannot be paged: no Matrix id for matrix"}},
		{"phone down: bob cannot be paged", t0, 7 * 24 * time.Hour, []notifiers.Channel{mx, ph}, downs(ph),
			[]string{"Bob (on call for primary from Mon 2 Mar 09:00 UTC) cannot be paged: no Matrix id for matrix, phone is down"}},
		{"current shift says now", t0.Add(7 * time.Hour), 24 * time.Hour, []notifiers.Channel{mx}, all,
			[]string{"Bob (on call for primary now, until Tue 3 Mar 09:00 UTC)"}},
		{"override brings carol in, phone only", time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC), 7 * 24 * time.Hour, []notifiers.Channel{ph}, all,
			[]string{"Carol (on call for primary from Wed 11 Mar 09:00 UTC) cannot be paged: no phone number for phone"}},
		{"both channels down", t0, 2 * 24 * time.Hour, []notifiers.Channel{mx, ph}, downs(mx, ph),
			[]string{"Alice (on call for primary now", "Bob ("}},
		{"no channel configured", t0, 24 * time.Hour, nil, all, []string{"no channel is configured", "no channel is configured"}},
		{"beyond the horizon is not checked", t0.Add(-24 * time.Hour), time.Hour, []notifiers.Channel{mx}, all, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RotaCoverage(r, tt.from, tt.horizon, tt.configured, tt.up)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d like %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				mustContain(t, "problem", got[i], tt.want[i])
			}
		})
	}
	if got := RotaCoverage(nil, t0, time.Hour, nil, all); len(got) != 1 {
		t.Errorf("nil rota: %q", got)
	}
}

func TestCoverageAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := parseRota(t)
		mx, ph := tester(notifiers.Up, ""), tester(notifiers.Up, "")
		var runs int
		r := newRig(t, testers(notifiers.Matrix, mx, notifiers.Phone, ph), func(c *Config) {
			c.WatchdogTimeout = -1
			c.OwnersPolicy = "owners"
			c.Owners = func() []string { return rt.Owners }
			c.Coverage = func(now time.Time, up func(notifiers.Channel) bool) []string {
				runs++
				return RotaCoverage(rt, now, DefaultCoverageHorizon, []notifiers.Channel{notifiers.Matrix, notifiers.Phone}, up)
			}
		})
		stop := start(t, r.m)
		synctest.Wait()
		if runs != 1 {
			t.Fatalf("coverage ran %d times at start, want 1", runs)
		}
		eqOps(t, r.alarms)

		// Phone goes down: Bob (phone only) cannot be paged before his shift.
		ph.set(notifiers.Down, "account suspended (20005)", false)
		for range 2 {
			r.clock.Advance(5*time.Minute + 30*time.Second)
			synctest.Wait()
		}
		eqOps(t, r.alarms, "raise channel:phone", "raise coverage")
		c := r.alarms.Calls()[1]
		mustContain(t, "coverage title", c.Title, "Coverage gap: 1 person on call soon cannot be paged", "Bob", "phone is down", "klaxon rota check --channels")
		if c.Policy != "owners" || c.Labels["owners"] != "alice" {
			t.Errorf("coverage alarm policy %q labels %v", c.Policy, c.Labels)
		}
		// Daily re-check with the same problem: no second alarm.
		before := runs
		r.clock.Advance(24 * time.Hour)
		synctest.Wait()
		if runs <= before {
			t.Error("coverage not re-checked daily")
		}
		eqOps(t, r.alarms, "raise channel:phone", "raise coverage")

		ph.set(notifiers.Up, "", false)
		r.clock.Advance(5*time.Minute + 30*time.Second)
		synctest.Wait()
		eqOps(t, r.alarms, "raise channel:phone", "raise coverage", "clear channel:phone", "clear coverage")
		mustContain(t, "clear text", r.alarms.Calls()[3].Title, "Coverage restored")
		stop()
	})
}

func TestRotaAlarm(t *testing.T) {
	t.Run("explicit", func(t *testing.T) {
		r := newRig(t, nil, func(c *Config) { c.Owners = func() []string { return []string{"alice", "dave"} } })
		ctx := context.Background()
		errs := []string{`rota.yaml:42:9: policies.default.steps[1].notify: unknown rotation "primry"`, "rota.yaml:50:1: second", "third", "fourth"}
		r.m.RotaInvalid(ctx, errs)
		r.m.RotaInvalid(ctx, errs) // still invalid: no second alarm
		eqOps(t, r.alarms, "raise rota")
		c := r.alarms.Calls()[0]
		mustContain(t, "title", c.Title, "Rota reload failed", `unknown rotation "primry"`, "and 1 more", "last valid rota")
		if c.Policy != "selftest" || c.Labels["owners"] != "alice,dave" {
			t.Errorf("policy %q labels %v", c.Policy, c.Labels)
		}
		r.m.RotaValid(ctx)
		r.m.RotaValid(ctx)
		eqOps(t, r.alarms, "raise rota", "clear rota")
		r.m.RotaInvalid(ctx, nil) // empty means valid
		eqOps(t, r.alarms, "raise rota", "clear rota")
		if !strings.Contains(r.store.get(keyAlarms), "{}") && r.store.get(keyAlarms) != "{}" {
			t.Errorf("alarm state after clear: %s", r.store.get(keyAlarms))
		}
	})
	t.Run("polled and restart", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var errs []string
			var mu = make(chan struct{}, 1)
			mu <- struct{}{}
			get := func() []string { <-mu; defer func() { mu <- struct{}{} }(); return errs }
			set := func(e []string) { <-mu; errs = e; mu <- struct{}{} }
			r := newRig(t, nil, func(c *Config) { c.RotaErrors = get; c.WatchdogTimeout = -1 })
			stop := start(t, r.m)
			synctest.Wait()
			set([]string{"rota.yaml:3:1: bad"})
			r.clock.Advance(time.Minute)
			synctest.Wait()
			eqOps(t, r.alarms, "raise rota")
			stop()

			// After a restart the open alarm is remembered: not raised again, cleared once valid.
			m2, err := New(Config{State: r.store, Alarms: r.alarms, Clock: r.clock, RotaErrors: get, WatchdogTimeout: -1})
			if err != nil {
				t.Fatal(err)
			}
			stop = start(t, m2)
			synctest.Wait()
			eqOps(t, r.alarms, "raise rota")
			set(nil)
			r.clock.Advance(time.Minute)
			synctest.Wait()
			eqOps(t, r.alarms, "raise rota", "clear rota")
			stop()
		})
	})
}

func TestSummarize(t *testing.T) {
	for n, want := range map[int]string{0: "", 1: "p0", 3: "p0; p1; p2", 5: "p0; p1; p2; and 2 more"} {
		var ps []string
		for i := range n {
			ps = append(ps, fmt.Sprintf("p%d", i))
		}
		if got := summarize(ps); got != want {
			t.Errorf("summarize(%d) = %q, want %q", n, got, want)
		}
	}
}
