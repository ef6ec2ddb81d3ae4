package selftest

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestDelivery(t *testing.T) {
	type ev struct {
		confirmed bool
		reason    string
	}
	miss := ev{false, "posted to Matrix but not seen back within 30 s"}
	stall := ev{false, "sync stalled for 30 s"}
	ok := ev{true, ""}
	tests := []struct {
		name   string
		events []ev
		want   notifiers.Status
		n      int
	}{
		{"one unconfirmed page is a blip", []ev{miss}, notifiers.Up, 1},
		{"two in a row degrade", []ev{miss, miss}, notifiers.Degraded, 2},
		{"a stalled sync counts like an unconfirmed page", []ev{miss, stall}, notifiers.Degraded, 2},
		{"a confirmation in between resets the count", []ev{miss, ok, miss}, notifiers.Up, 1},
		{"a confirmation clears a degraded channel", []ev{miss, miss, miss, ok}, notifiers.Up, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, testers(notifiers.Matrix, tester(notifiers.Up, "token ok")), func(c *Config) {
				c.Configured = []notifiers.Channel{notifiers.Matrix}
			})
			for _, e := range tt.events {
				r.m.Delivery(notifiers.Matrix, e.confirmed, e.reason)
				r.clock.Advance(time.Minute)
			}
			s := r.status(t, notifiers.Matrix)
			if s.Status != tt.want || s.Unconfirmed != tt.n || s.NotDelivering != (tt.want == notifiers.Degraded) {
				t.Fatalf("status %+v, want %s with %d unconfirmed in a row", s, tt.want, tt.n)
			}
			if tt.want == notifiers.Degraded {
				mustContain(t, "reason", s.Reason, "accepts pages but does not deliver them")
			}
			// Health stays advice: a channel that does not deliver is still paged.
			if h := r.m.Health(notifiers.Matrix); h.Down {
				t.Fatalf("health %+v: a degraded channel must not be skipped", h)
			}
		})
	}
}

// A self-test that passes (the token works, as it did on that night) does
// not clear a channel that does not deliver; only a confirmation does.
func TestDeliveryOutlivesPassingSelfTests(t *testing.T) {
	r := newRig(t, testers(notifiers.Matrix, tester(notifiers.Up, "token ok")), func(c *Config) {
		c.Configured = []notifiers.Channel{notifiers.Matrix}
	})
	r.m.Delivery(notifiers.Matrix, false, "not seen back")
	r.m.Delivery(notifiers.Matrix, false, "not seen back")
	r.m.CheckNow(t.Context())
	if s := r.status(t, notifiers.Matrix); s.Status != notifiers.Degraded {
		t.Fatalf("after a passing self-test: %+v, want still degraded", s)
	}
	eqOps(t, r.alarms, "raise channel:matrix")
	if c := r.alarms.Calls()[0]; !strings.Contains(c.Title, "Matrix accepts pages but does not deliver them") {
		t.Fatalf("alarm title %q", c.Title)
	}
	r.m.Delivery(notifiers.Matrix, true, "")
	r.m.CheckNow(t.Context())
	eqOps(t, r.alarms, "raise channel:matrix", "clear channel:matrix")
	if c := r.alarms.Calls()[1]; !strings.Contains(c.Title, "Matrix delivers again") {
		t.Fatalf("clear text %q", c.Title)
	}
	if s := r.status(t, notifiers.Matrix); s.Status != notifiers.Up || !s.LastDelivered.Equal(t0) {
		t.Fatalf("after a confirmation: %+v", s)
	}
}

// Delivery raises the alarm through the running Monitor, keeps it across a
// restart, and clears it at the next confirmation.
func TestDeliveryAlarmThroughRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, func(c *Config) {
			c.Configured = []notifiers.Channel{notifiers.Matrix, notifiers.Phone}
			c.WatchdogTimeout = -1
		})
		stop := start(t, r.m)
		synctest.Wait()
		r.m.Delivery(notifiers.Matrix, false, "not seen back within 30 s")
		synctest.Wait()
		eqOps(t, r.alarms)
		r.m.Delivery(notifiers.Matrix, false, "sync stalled")
		synctest.Wait()
		eqOps(t, r.alarms, "raise channel:matrix")
		if !strings.Contains(r.store.get(keyChannels), `"not_delivering":"sync stalled"`) {
			t.Fatalf("verdict not persisted: %s", r.store.get(keyChannels))
		}
		stop()
		// A restart keeps the verdict and the open alarm (no second raise).
		r2 := newRig(t, nil, func(c *Config) {
			c.Configured = []notifiers.Channel{notifiers.Matrix, notifiers.Phone}
			c.WatchdogTimeout = -1
			c.State = r.store
			c.Alarms = r.alarms
		})
		if s := r2.status(t, notifiers.Matrix); s.Status != notifiers.Degraded {
			t.Fatalf("after a restart: %+v", s)
		}
		stop = start(t, r2.m)
		synctest.Wait()
		r2.m.Delivery(notifiers.Matrix, true, "")
		synctest.Wait()
		eqOps(t, r.alarms, "raise channel:matrix", "clear channel:matrix")
		stop()
	})
}
