package selftest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// replicas is a leader and a follower Monitor on one state store and clock.
func replicas(t *testing.T, phone *fakeTester) (leader, follower *rig) {
	t.Helper()
	leader = newRig(t, testers(notifiers.Phone, phone), func(c *Config) {
		c.Follower, c.Replica = func() bool { return false }, "r0"
	})
	follower = newRig(t, testers(notifiers.Phone, phone), func(c *Config) {
		c.Follower, c.Replica, c.State, c.Clock = func() bool { return true }, "r1", leader.store, leader.clock
	})
	follower.store, follower.clock = leader.store, leader.clock
	return leader, follower
}

func phoneOf(t *testing.T, r Report) ChannelStatus {
	t.Helper()
	for _, c := range r.Channels {
		if c.Channel == notifiers.Phone {
			return c
		}
	}
	t.Fatalf("no phone in %+v", r)
	return ChannelStatus{}
}

// TestFollowerShowsTheLeadersVerdicts: a follower answers with the view the
// leader recorded, naming it and the view's age; "not checked yet" only
// while no leader has recorded one; a newer view shows after FollowerCache.
func TestFollowerShowsTheLeadersVerdicts(t *testing.T) {
	ctx := context.Background()
	phone := tester(notifiers.Up, "account active")
	leader, follower := replicas(t, phone)
	rep, err := follower.m.StatusContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := phoneOf(t, rep); p.Reason != "not checked yet" || rep.RecordedBy != "" {
		t.Fatalf("before any leader checked: %+v by %q", p, rep.RecordedBy)
	}
	phone.set(notifiers.Down, "Twilio account suspended", false)
	leader.m.CheckNow(ctx)
	leader.m.CheckNow(ctx) // FailuresToDown
	leader.m.recordView(ctx)
	follower.clock.Advance(FollowerCache) // the "not checked yet" answer was cached
	for _, tc := range []struct {
		name    string
		advance time.Duration
		status  notifiers.Status
		age     float64
	}{
		{"recorded", 0, notifiers.Down, 1},
		{"later, same view", 4 * time.Second, notifiers.Down, 5},
	} {
		follower.clock.Advance(tc.advance)
		rep, err := follower.m.StatusContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := phoneOf(t, rep)
		if p.Status != tc.status || !strings.Contains(p.Reason, "suspended") || rep.RecordedBy != "r0" ||
			!rep.RecordedAt.Equal(t0) || rep.Age == nil || *rep.Age != tc.age || rep.Usable != 0 {
			t.Fatalf("%s: follower shows %+v, by %q at %s, age %v, usable %d", tc.name, p, rep.RecordedBy, rep.RecordedAt, rep.Age, rep.Usable)
		}
	}
	// The leader sees the account back; the follower shows it once its copy is older than FollowerCache.
	phone.set(notifiers.Up, "account active", false)
	leader.m.CheckNow(ctx)
	leader.m.recordView(ctx)
	if rep, _ := follower.m.StatusContext(ctx); phoneOf(t, rep).Status != notifiers.Down {
		t.Fatal("the follower read the store again within FollowerCache")
	}
	follower.clock.Advance(FollowerCache)
	if rep, _ := follower.m.StatusContext(ctx); phoneOf(t, rep).Status != notifiers.Up {
		t.Fatalf("after FollowerCache the follower still shows %+v", phoneOf(t, rep))
	}
	// The leader says who it is, as of now.
	if rep, _ := leader.m.StatusContext(ctx); rep.RecordedBy != "r0" || rep.Age == nil || *rep.Age != 0 {
		t.Fatalf("the leader's own answer: by %q, age %v", rep.RecordedBy, rep.Age)
	}
}

// TestLeaderRecordsItsViewOnChange: no write while nothing changes (a quiet
// leader writes nothing), one when something does.
func TestLeaderRecordsItsViewOnChange(t *testing.T) {
	ctx := context.Background()
	phone := tester(notifiers.Up, "account active")
	leader, _ := replicas(t, phone)
	leader.m.CheckNow(ctx)
	for range 3 {
		leader.m.recordView(ctx)
		leader.clock.Advance(time.Minute)
	}
	if n := leader.store.putCount(keyView); n != 1 {
		t.Fatalf("%d view writes for an unchanged view, want 1", n)
	}
	phone.set(notifiers.Degraded, "trial account", true)
	leader.m.CheckNow(ctx)
	leader.m.recordView(ctx)
	if n := leader.store.putCount(keyView); n != 2 {
		t.Fatalf("%d view writes after a change, want 2", n)
	}
	leader.clock.Advance(time.Minute)
	leader.m.CheckNow(ctx) // the same verdict, checked again: its last check moved
	leader.m.recordView(ctx)
	if n := leader.store.putCount(keyView); n != 3 {
		t.Fatalf("%d view writes after another self-test round, want 3", n)
	}
}

// TestFollowerCannotReadTheStore: the API answers 503 with why, rather than
// a follower's own stale "not checked yet".
func TestFollowerCannotReadTheStore(t *testing.T) {
	_, follower := replicas(t, tester(notifiers.Up, "ok"))
	follower.store.mu.Lock()
	follower.store.failGet = true
	follower.store.mu.Unlock()
	rec := httptest.NewRecorder()
	follower.m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/channels", nil))
	var body map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body["error"], "disk on fire") {
		t.Fatalf("GET /api/v1/channels with the store unreadable: %d %s", rec.Code, rec.Body)
	}
}

// TestNewLeaderStartsFromItsPredecessorsRecords: a replica that started
// before the leader found the phone down, and then becomes the leader,
// starts from that verdict and its open alarm (pages skip the phone; no
// second alarm), not from "not checked yet".
func TestNewLeaderStartsFromItsPredecessorsRecords(t *testing.T) {
	ctx := context.Background()
	phone := tester(notifiers.Down, "Twilio account suspended")
	old, next := replicas(t, phone)
	old.m.CheckNow(ctx)
	old.m.CheckNow(ctx)
	if h := old.m.Health(notifiers.Phone); !h.Down {
		t.Fatal("the old leader did not find the phone down")
	}
	eqOps(t, old.alarms, "raise channel:phone")
	if h := next.m.Health(notifiers.Phone); h.Down {
		t.Fatal("the test proves nothing: the next leader already knew")
	}
	next.m.reload(ctx)
	if h := next.m.Health(notifiers.Phone); !h.Down || !strings.Contains(h.Reason, "suspended") {
		t.Fatalf("after taking over: %+v, want the phone down as the old leader found it", h)
	}
	next.m.reconcileChannels(ctx)
	eqOps(t, next.alarms) // the alarm is open already
}

// TestLeaderTakesWatchdogArrivalsFromOtherReplicas: Alertmanager's Watchdog
// lands on a follower; the leader's dead man's switch runs from it and
// raises no alarm.
func TestLeaderTakesWatchdogArrivalsFromOtherReplicas(t *testing.T) {
	ctx := context.Background()
	leader, follower := replicas(t, tester(notifiers.Up, "ok"))
	leader.m.armWatchdog(ctx)
	leader.clock.Advance(9 * time.Minute)
	wd := escalation.Notification{Alerts: []escalation.Alert{{Status: "firing", Labels: map[string]string{"alertname": "Watchdog"}}}}
	if _, _, err := follower.m.Intercept(ctx, wd); err != nil {
		t.Fatal(err)
	}
	seen := leader.clock.Now()
	leader.clock.Advance(2 * time.Minute) // past the deadline counted from the arming
	leader.m.takeWatchdog(ctx)
	if got := leader.m.Watchdog().LastSeen; !got.Equal(seen) {
		t.Fatalf("the leader's Watchdog last seen %s, want %s (the follower's arrival)", got, seen)
	}
	leader.m.reconcileWatchdog(ctx)
	eqOps(t, leader.alarms)
}
