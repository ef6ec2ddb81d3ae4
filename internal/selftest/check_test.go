package selftest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

type verdict struct {
	s        notifiers.Status
	reason   string
	willFail bool
}

var (
	vUp       = verdict{notifiers.Up, "token valid", false}
	vDown     = verdict{notifiers.Down, "account expired (402)", false}
	vDegraded = verdict{notifiers.Degraded, "balance $3.20 below $5.00", true}
	vSlow     = verdict{notifiers.Degraded, "API slow", false}
)

func TestChannelVerdicts(t *testing.T) {
	tests := []struct {
		name       string
		failures   int // FailuresToDown (0: default 2)
		rounds     []verdict
		wantOps    []string
		wantStatus notifiers.Status
		wantTitle  []string // substrings of the first call's title
	}{
		{name: "one blip does not alarm", rounds: []verdict{vDown, vUp}, wantStatus: notifiers.Up},
		{name: "blips apart do not add up", rounds: []verdict{vDown, vUp, vDown, vUp}, wantStatus: notifiers.Up},
		{name: "two failures in a row raise once", rounds: []verdict{vDown, vDown, vDown, vDown},
			wantOps: []string{"raise channel:pagerduty"}, wantStatus: notifiers.Down,
			wantTitle: []string{"PagerDuty down since Mon 2 Mar 03:10 UTC", "account expired (402)", "pages skip PagerDuty"}},
		{name: "recovery clears with a notice", rounds: []verdict{vDown, vDown, vUp},
			wantOps: []string{"raise channel:pagerduty", "clear channel:pagerduty"}, wantStatus: notifiers.Up},
		{name: "failures to down 1", failures: 1, rounds: []verdict{vDown},
			wantOps: []string{"raise channel:pagerduty"}, wantStatus: notifiers.Down},
		{name: "failures to down 3 needs three", failures: 3, rounds: []verdict{vDown, vDown, vUp, vDown, vDown},
			wantStatus: notifiers.Up},
		{name: "degraded that will fail alarms at once", rounds: []verdict{vDegraded},
			wantOps: []string{"raise channel:pagerduty"}, wantStatus: notifiers.Degraded,
			wantTitle: []string{"will stop working", "balance $3.20 below $5.00"}},
		{name: "degraded that will not fail is quiet", rounds: []verdict{vSlow, vSlow}, wantStatus: notifiers.Degraded},
		{name: "will-fail then down raises again", rounds: []verdict{vDegraded, vDown, vDown},
			wantOps: []string{"raise channel:pagerduty", "raise channel:pagerduty"}, wantStatus: notifiers.Down},
		{name: "will-fail resolved clears", rounds: []verdict{vDegraded, vUp},
			wantOps: []string{"raise channel:pagerduty", "clear channel:pagerduty"}, wantStatus: notifiers.Up},
		{name: "down then merely slow clears", rounds: []verdict{vDown, vDown, vSlow},
			wantOps: []string{"raise channel:pagerduty", "clear channel:pagerduty"}, wantStatus: notifiers.Degraded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pd := tester(notifiers.Up, "")
			r := newRig(t, testers(notifiers.PagerDuty, pd), func(c *Config) { c.FailuresToDown = tt.failures })
			for _, v := range tt.rounds {
				pd.set(v.s, v.reason, v.willFail)
				r.m.CheckNow(context.Background())
				r.clock.Advance(5 * time.Minute)
			}
			eqOps(t, r.alarms, tt.wantOps...)
			if got := r.status(t, notifiers.PagerDuty).Status; got != tt.wantStatus {
				t.Errorf("status = %s, want %s", got, tt.wantStatus)
			}
			if calls := r.alarms.Calls(); len(calls) > 0 {
				if calls[0].Policy != "selftest" || calls[0].Labels["channel"] != "pagerduty" {
					t.Errorf("raise policy %q labels %v", calls[0].Policy, calls[0].Labels)
				}
				mustContain(t, "title", calls[0].Title, tt.wantTitle...)
			}
			if pd.Calls() != len(tt.rounds) {
				t.Errorf("self-test called %d times, want %d", pd.Calls(), len(tt.rounds))
			}
		})
	}
}

func TestRecoveryNotice(t *testing.T) {
	pd := tester(notifiers.Down, "token revoked (401)")
	r := newRig(t, testers(notifiers.PagerDuty, pd), nil)
	r.m.CheckNow(context.Background())
	r.clock.Advance(5 * time.Minute)
	r.m.CheckNow(context.Background())
	r.clock.Advance(25 * time.Minute)
	pd.set(notifiers.Up, "token valid", false)
	r.m.CheckNow(context.Background())
	c := r.alarms.Calls()
	if len(c) != 2 {
		t.Fatalf("calls %v", c)
	}
	mustContain(t, "clear text", c[1].Title, "PagerDuty recovered at Mon 2 Mar 03:40 UTC", "down since Mon 2 Mar 03:10 UTC", "token valid")
	s := r.status(t, notifiers.PagerDuty)
	if s.Failures != 0 || !s.Since.Equal(t0.Add(30*time.Minute)) || !s.LastSuccess.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("status after recovery %+v", s)
	}
}

func TestHealthReportsDownWithSince(t *testing.T) {
	pd, mx := tester(notifiers.Down, "account expired (402)"), tester(notifiers.Up, "")
	r := newRig(t, testers(notifiers.PagerDuty, pd, notifiers.Matrix, mx), func(c *Config) {
		c.Configured = []notifiers.Channel{notifiers.Phone} // no tester: treated up
	})
	r.m.CheckNow(context.Background())
	if h := r.m.Health(notifiers.PagerDuty); h.Down {
		t.Fatalf("down after one failure: %+v", h)
	}
	r.clock.Advance(5 * time.Minute)
	r.m.CheckNow(context.Background())
	h := r.m.Health(notifiers.PagerDuty)
	if !h.Down || !h.Since.Equal(t0) || h.Reason != "account expired (402)" || !h.Configured {
		t.Errorf("Health(pagerduty) = %+v, want down since %s", h, t0)
	}
	for _, ch := range []notifiers.Channel{notifiers.Matrix, notifiers.Phone} {
		if h := r.m.Health(ch); h.Down || !h.Configured {
			t.Errorf("Health(%s) = %+v, want up", ch, h)
		}
	}
	if h := r.m.Health(notifiers.SMS); h.Configured || h.Down {
		t.Errorf("Health(sms), not configured, = %+v", h)
	}
	if s := r.status(t, notifiers.Phone); s.HasSelfTest || s.Status != notifiers.Up {
		t.Errorf("phone status %+v", s)
	}
}

func TestEvidence(t *testing.T) {
	perm := notifiers.Permanent("20005", errors.New("account not active"))
	temp := notifiers.Temporary("503", 0, errors.New("service unavailable"))
	tests := []struct {
		name     string
		evidence []error
		want     notifiers.Status
		failures int
	}{
		{"permanent failures count", []error{perm, perm}, notifiers.Down, 2},
		{"one permanent failure is a blip", []error{perm}, notifiers.Up, 1},
		{"temporary failures do not count", []error{temp, temp, temp}, notifiers.Up, 0},
		{"unclassified errors do not count", []error{errors.New("eof"), errors.New("eof")}, notifiers.Up, 0},
		{"a success resets the count", []error{perm, nil, perm}, notifiers.Up, 1},
		{"a success brings a down channel back", []error{perm, perm, nil}, notifiers.Up, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil, func(c *Config) { c.Configured = []notifiers.Channel{notifiers.Phone} })
			for _, err := range tt.evidence {
				r.m.Evidence(notifiers.Phone, err)
				r.clock.Advance(time.Minute)
			}
			s := r.status(t, notifiers.Phone)
			if s.Status != tt.want || s.Failures != tt.failures {
				t.Errorf("status %s failures %d, want %s %d (%+v)", s.Status, s.Failures, tt.want, tt.failures, s)
			}
			if tt.want == notifiers.Down {
				mustContain(t, "reason", s.Reason, "a page failed", "20005")
				if !r.m.Health(notifiers.Phone).Since.Equal(t0) {
					t.Errorf("down since %s, want the first failure %s", r.m.Health(notifiers.Phone).Since, t0)
				}
			}
		})
	}
	t.Run("unconfigured channel is ignored", func(t *testing.T) {
		r := newRig(t, nil, func(c *Config) { c.Configured = []notifiers.Channel{notifiers.Phone} })
		r.m.Evidence(notifiers.SMS, perm)
		r.m.Evidence(notifiers.SMS, perm)
		if h := r.m.Health(notifiers.SMS); h.Down {
			t.Errorf("unconfigured channel went down: %+v", h)
		}
	})
}

// Evidence raises and clears alarms through the running Monitor.
func TestEvidenceRaisesThroughRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, func(c *Config) {
			c.Configured = []notifiers.Channel{notifiers.Phone, notifiers.Matrix}
			c.WatchdogTimeout = -1
		})
		stop := start(t, r.m)
		synctest.Wait()
		perm := notifiers.Permanent("20005", errors.New("account not active"))
		r.m.Evidence(notifiers.Phone, perm)
		synctest.Wait()
		eqOps(t, r.alarms)
		r.m.Evidence(notifiers.Phone, perm)
		synctest.Wait()
		eqOps(t, r.alarms, "raise channel:phone")
		if !strings.Contains(r.store.get(keyChannels), `"alarm":"down"`) {
			t.Errorf("alarm not persisted: %s", r.store.get(keyChannels))
		}
		r.m.Evidence(notifiers.Phone, nil)
		synctest.Wait()
		eqOps(t, r.alarms, "raise channel:phone", "clear channel:phone")
		stop()
	})
}

// A storm of pages that go through does not cost a synced write each: the
// channel's last success is kept in memory and saved by the minute loop; a
// change of verdict (a failure, a recovery) is saved at once.
func TestSuccessfulPagesDoNotWriteEach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil, func(c *Config) {
			c.Configured = []notifiers.Channel{notifiers.SMS}
			c.WatchdogTimeout = -1
		})
		stop := start(t, r.m)
		synctest.Wait()
		base := r.store.putCount(keyChannels)
		for range 100 {
			r.m.Evidence(notifiers.SMS, nil)
			synctest.Wait()
		}
		if n := r.store.putCount(keyChannels) - base; n != 0 {
			t.Fatalf("100 successful pages wrote the channel state %d times, want 0", n)
		}
		if s := r.status(t, notifiers.SMS); !s.LastSuccess.Equal(r.clock.Now()) {
			t.Fatalf("last success %s, want %s (kept in memory)", s.LastSuccess, r.clock.Now())
		}
		r.clock.Advance(time.Minute)
		synctest.Wait()
		if n := r.store.putCount(keyChannels) - base; n != 1 {
			t.Fatalf("the minute loop wrote %d times, want 1", n)
		}
		if !strings.Contains(r.store.get(keyChannels), t0.Format(time.RFC3339)) {
			t.Errorf("saved state lacks the last success %s: %s", t0, r.store.get(keyChannels))
		}
		perm := notifiers.Permanent("21608", errors.New("unverified number"))
		r.m.Evidence(notifiers.SMS, perm)
		synctest.Wait()
		if n := r.store.putCount(keyChannels) - base; n != 2 {
			t.Fatalf("a failed page was saved %d times, want once", n-1)
		}
		r.m.Evidence(notifiers.SMS, nil) // resets the failure count: saved
		synctest.Wait()
		if n := r.store.putCount(keyChannels) - base; n != 3 {
			t.Fatalf("the success after a failure was not saved at once (%d writes)", n)
		}
		stop()
	})
}

func TestUntestedChannelGetsAnotherChance(t *testing.T) {
	r := newRig(t, nil, func(c *Config) { c.Configured = []notifiers.Channel{notifiers.SMS} })
	perm := notifiers.Permanent("21608", errors.New("unverified number"))
	r.m.Evidence(notifiers.SMS, perm)
	r.m.Evidence(notifiers.SMS, perm)
	r.m.CheckNow(context.Background())
	if !r.m.Health(notifiers.SMS).Down {
		t.Fatal("sms should be down")
	}
	r.clock.Advance(5 * time.Minute)
	r.m.CheckNow(context.Background())
	if h := r.m.Health(notifiers.SMS); h.Down {
		t.Fatalf("sms still down after an interval: %+v", h)
	}
	mustContain(t, "reason", r.status(t, notifiers.SMS).Reason, "trying again")
	eqOps(t, r.alarms, "raise channel:sms", "clear channel:sms")
}

func TestMisbehavingTesters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hung := tester(notifiers.Up, "")
		hung.block = make(chan struct{})
		boom := tester(notifiers.Up, "")
		boom.panic = true
		weird := &fakeTester{h: notifiers.Health{Status: "fine", Reason: "line one\nline two"}}
		silent := &fakeTester{h: notifiers.Health{Status: notifiers.Down}}
		huge := tester(notifiers.Down, strings.Repeat("é", 1000))
		ok := tester(notifiers.Up, "fine")
		r := newRig(t, testers(notifiers.Phone, hung, notifiers.Matrix, boom, notifiers.SMS, weird,
			notifiers.PagerDuty, ok), func(c *Config) { c.TestTimeout = 30 * time.Second; c.FailuresToDown = 1 })
		start := time.Now()
		r.m.CheckNow(context.Background())
		if took := time.Since(start); took != 30*time.Second {
			t.Errorf("round took %s (fake time), want the 30s timeout", took)
		}
		want := map[notifiers.Channel][]string{
			notifiers.Phone:     {"no answer within 30s"},
			notifiers.Matrix:    {"panicked", "boom"},
			notifiers.SMS:       {`unknown status "fine"`, "line one line two"},
			notifiers.PagerDuty: nil,
		}
		for ch, subs := range want {
			s := r.status(t, ch)
			if subs == nil {
				if s.Status != notifiers.Up {
					t.Errorf("%s = %+v", ch, s)
				}
				continue
			}
			if s.Status != notifiers.Down {
				t.Errorf("%s = %s, want down", ch, s.Status)
			}
			mustContain(t, string(ch)+" reason", s.Reason, subs...)
		}
		// The hung test is still running: the next round does not pile up another.
		r.m.CheckNow(context.Background())
		if hung.Calls() != 1 {
			t.Errorf("hung tester called %d times", hung.Calls())
		}
		mustContain(t, "hung reason", r.status(t, notifiers.Phone).Reason, "previous self-test has hung")
		close(hung.block)
		synctest.Wait()
		hung.set(notifiers.Up, "back", false)
		r.m.CheckNow(context.Background())
		if s := r.status(t, notifiers.Phone); s.Status != notifiers.Up || hung.Calls() != 2 {
			t.Errorf("after unblocking: %+v, calls %d", s, hung.Calls())
		}

		r2 := newRig(t, testers(notifiers.Matrix, silent, notifiers.Phone, huge), func(c *Config) { c.FailuresToDown = 1 })
		r2.m.CheckNow(context.Background())
		mustContain(t, "no reason", r2.status(t, notifiers.Matrix).Reason, "without saying why")
		if s := r2.status(t, notifiers.Phone).Reason; len(s) > 310 || !strings.HasSuffix(s, "…") {
			t.Errorf("huge reason not cut: %d bytes", len(s))
		}
	})
}

func TestCheckNowCanceledRecordsNothing(t *testing.T) {
	pd := tester(notifiers.Down, "x")
	r := newRig(t, testers(notifiers.PagerDuty, pd), func(c *Config) { c.FailuresToDown = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.m.CheckNow(ctx)
	if s := r.status(t, notifiers.PagerDuty); s.Failures != 0 || s.Status != notifiers.Up {
		t.Errorf("a canceled round was recorded: %+v", s)
	}
	eqOps(t, r.alarms)
}

func TestJitter(t *testing.T) {
	r := newRig(t, nil, func(c *Config) { c.Interval = 5 * time.Minute })
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := r.m.jittered()
		if d < 270*time.Second || d > 330*time.Second {
			t.Fatalf("jittered interval %s outside 5m ±10%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct intervals: not jittered", len(seen))
	}
}
