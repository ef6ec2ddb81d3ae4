package pagerduty

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// judgeUntil advances the fake clock step by step, making a confirmation
// pass at each, until a report for page id arrives or limit passes. It
// returns the report and how long after start it came.
func (e *env) judgeUntil(t *testing.T, id string, step, limit time.Duration) (notifiers.Report, time.Duration, bool) {
	t.Helper()
	start := e.now.Now()
	for e.now.Now().Sub(start) <= limit {
		e.n.CheckDeliveries(context.Background())
		for _, r := range e.reporter.All() {
			if r.PageID == id {
				return r, e.now.Now().Sub(start), true
			}
		}
		e.now.Advance(step)
	}
	return notifiers.Report{}, 0, false
}

func TestConfirmWithinDefaultsAndOff(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   time.Duration
	}{
		{"default", nil, DefaultConfirmWithin},
		{"configured", func(c *Config) { c.ConfirmWithin = 45 * time.Second }, 45 * time.Second},
		{"off", func(c *Config) { c.ConfirmWithin = -1 }, 0},
		{"no API token: nothing to read incidents with", func(c *Config) { c.APIToken = "" }, 0},
		{"no reporter: nobody to tell", func(c *Config) { c.Reporter = nil }, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mutate)
			if got := e.n.ConfirmWithin(); got != tc.want {
				t.Fatalf("ConfirmWithin = %v, want %v", got, tc.want)
			}
			if _, err := e.n.Notify(context.Background(), page(42)); err != nil {
				t.Fatal(err)
			}
			if wait := e.n.Pending(); (wait == 1) != (tc.want > 0) {
				t.Fatalf("%d pages wait for confirmation", wait)
			}
		})
	}
}

func TestConfirmHealthyServiceIsDelivered(t *testing.T) {
	e := newEnv(t, nil)
	p := page(42)
	if _, err := e.n.Notify(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	e.n.CheckDeliveries(context.Background()) // not due yet: PagerDuty creates incidents asynchronously
	for _, c := range e.fake.RESTCalls() {
		if strings.HasPrefix(c.Path, "/incidents") {
			t.Fatalf("%s before the first check was due", c.Path)
		}
	}
	r, after, ok := e.judgeUntil(t, p.ID, time.Second, DefaultConfirmWithin)
	if !ok {
		t.Fatal("no report within the deadline")
	}
	if r.Status != notifiers.Delivered || r.Incident != 42 || r.Channel != notifiers.PagerDuty {
		t.Fatalf("report %+v, want delivered for incident 42", r)
	}
	if !strings.Contains(r.Detail, "notified Alice Example (email)") {
		t.Errorf("detail %q does not say who was notified and how", r.Detail)
	}
	if after > 5*time.Second {
		t.Errorf("confirmed after %v; the notification was logged at once", after)
	}
	if e.n.Pending() != 0 {
		t.Error("a confirmed page is still waiting")
	}
	e.now.Advance(DefaultConfirmWithin)
	e.n.CheckDeliveries(context.Background())
	if n := len(e.reporter.All()); n != 1 {
		t.Fatalf("%d reports, want exactly the one confirmation", n)
	}
}

func TestConfirmWaitsForALateNotification(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetNotifyDelay(70 * time.Second)
	p := page(42)
	if _, err := e.n.Notify(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	r, after, ok := e.judgeUntil(t, p.ID, time.Second, DefaultConfirmWithin)
	if !ok || r.Status != notifiers.Delivered {
		t.Fatalf("report %+v (%v), want delivered", r, ok)
	}
	if after < 70*time.Second || after > 70*time.Second+confirmMaxBackoff {
		t.Errorf("confirmed %v after the trigger; the notification came at 70s and checks back off to at most %v", after, confirmMaxBackoff)
	}
	// Backoff: far fewer looks than seconds waited.
	if calls := len(e.fake.RESTCalls()); calls > 20 {
		t.Errorf("%d REST calls for one page over 70s: checks do not back off", calls)
	}
}

func TestConfirmNobodyNotifiedIsUnconfirmedWithinTheDeadline(t *testing.T) {
	cases := []struct {
		name  string
		setup func(e *env)
		want  []string
	}{
		{"escalation policy with nobody on call", func(e *env) {
			e.fake.SetOnCall(fakepd.DefaultServiceID)
		}, []string{"assigned it to nobody", "nobody on call"}},
		{"user without contact methods", func(e *env) {
			e.fake.AddUser(fakepd.User{ID: "PUSR009", Name: "Bob Nophone", Email: "bob@example.org", NoContactMethods: true})
			e.fake.SetOnCall(fakepd.DefaultServiceID, "PUSR009")
		}, []string{"assigned it to Bob Nophone", "notified nobody", "no contact methods"}},
		{"event dropped without an incident", func(e *env) {
			e.fake.SetServiceDisabled(fakepd.DefaultServiceID, true) // not yet seen by a self-test
		}, []string{"no incident appeared", "dropped"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.ConfirmWithin = 90 * time.Second })
			tc.setup(e)
			p := page(42)
			if _, err := e.n.Notify(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			r, after, ok := e.judgeUntil(t, p.ID, time.Second, 3*time.Minute)
			if !ok {
				t.Fatal("no report at all")
			}
			if r.Status != notifiers.Unconfirmed {
				t.Fatalf("report %+v, want unconfirmed", r)
			}
			if after < 90*time.Second || after > 91*time.Second {
				t.Errorf("unconfirmed %v after the trigger, want at its 90s deadline", after)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Detail, w) {
					t.Errorf("detail %q lacks %q", r.Detail, w)
				}
			}
			assertNoSecrets(t, "detail", r.Detail, e.fake.RoutingKey(), e.fake.APIToken())
			if e.n.Pending() != 0 {
				t.Error("an unconfirmed page is still checked")
			}
		})
	}
}

func TestConfirmEscalationToANotifiedUserConfirms(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.AddUser(fakepd.User{ID: "PUSR009", Name: "Bob Nophone", NoContactMethods: true})
	e.fake.AddUser(fakepd.User{ID: "PUSR010", Name: "Carol Second", Email: "carol@example.org"})
	e.fake.SetOnCall(fakepd.DefaultServiceID, "PUSR009")
	p := page(42)
	if _, err := e.n.Notify(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := e.judgeUntil(t, p.ID, time.Second, 30*time.Second); ok {
		t.Fatal("judged before anybody was notified and before the deadline")
	}
	if !e.fake.Escalate(p.IncidentKey, "PUSR010") {
		t.Fatal("escalate")
	}
	r, _, ok := e.judgeUntil(t, p.ID, time.Second, DefaultConfirmWithin)
	if !ok || r.Status != notifiers.Delivered || !strings.Contains(r.Detail, "Carol Second") {
		t.Fatalf("report %+v, want delivered to Carol", r)
	}
}

func TestConfirmRespectsRetryAfter(t *testing.T) {
	e := newEnv(t, nil)
	p := page(42)
	if _, err := e.n.Notify(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	e.fake.FailNextRetryAfter(1, 429, 20*time.Second)
	e.now.Advance(confirmFirstCheck)
	next := e.n.CheckDeliveries(context.Background())
	if want := e.now.Now().Add(20 * time.Second); next.Before(want) {
		t.Fatalf("next check at %v, before PagerDuty's Retry-After (%v)", next, want)
	}
	calls := len(e.fake.RESTCalls())
	for range 19 {
		e.now.Advance(time.Second)
		e.n.CheckDeliveries(context.Background())
		if err := e.n.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(e.fake.RESTCalls()); got != calls {
		t.Fatalf("%d REST calls while rate limited", got-calls)
	}
	r, _, ok := e.judgeUntil(t, p.ID, time.Second, time.Minute)
	if !ok || r.Status != notifiers.Delivered {
		t.Fatalf("report %+v, want delivered once the rate limit passed", r)
	}
}

func TestConfirmManyOpenPagesStayBounded(t *testing.T) {
	e := newEnv(t, nil)
	const pages = 300
	for i := range pages {
		p := page(uint64(1000 + i))
		p.ID = fmt.Sprintf("out-%d", i)
		if _, err := e.n.Notify(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	// Two more pages of one incident share its look-up.
	for i := range 2 {
		p := page(1000)
		p.ID = fmt.Sprintf("again-%d", i)
		if _, err := e.n.Notify(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	e.now.Advance(confirmFirstCheck)
	before := len(e.fake.RESTCalls())
	e.n.CheckDeliveries(context.Background())
	if got := len(e.fake.RESTCalls()) - before; got > confirmCallsPerPass+logEntryPages {
		t.Fatalf("one pass made %d REST calls, budget %d", got, confirmCallsPerPass)
	}
	passes := 0
	for e.n.Pending() > 0 && passes < 1000 {
		e.now.Advance(confirmPassGap)
		e.n.CheckDeliveries(context.Background())
		passes++
	}
	got := e.reporter.All()
	if len(got) != pages+2 {
		t.Fatalf("%d reports, want %d", len(got), pages+2)
	}
	for _, r := range got {
		if r.Status != notifiers.Delivered {
			t.Fatalf("report %+v, want delivered", r)
		}
	}
	lookups := 0
	for _, c := range e.fake.RESTCalls() {
		if c.Path == "/incidents" {
			lookups++
		}
	}
	if lookups != pages {
		t.Errorf("%d incident look-ups for %d incidents: pages of one incident do not share them", lookups, pages)
	}
}

func TestConfirmReadsPagedLogEntries(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetNotifyDelay(10 * time.Second)
	p := page(42)
	if _, err := e.n.Notify(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// 150 re-acknowledgements and unacknowledgements before the
	// notification push it onto the log's second page.
	for range 75 {
		if _, err := e.fake.Acknowledge(p.IncidentKey, fakepd.DefaultServiceID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.fake.Unacknowledge(p.IncidentKey); err != nil {
			t.Fatal(err)
		}
	}
	e.now.Advance(10 * time.Second)
	r, _, ok := e.judgeUntil(t, p.ID, time.Second, time.Minute)
	if !ok || r.Status != notifiers.Delivered {
		t.Fatalf("report %+v, want delivered from the log's second page", r)
	}
	sawOffset := false
	for _, c := range e.fake.RESTCalls() {
		if strings.HasSuffix(c.Path, "/log_entries") && strings.Contains(c.Query, "offset=100") {
			sawOffset = true
		}
	}
	if !sawOffset {
		t.Error("the log's second page was never asked for")
	}
}

func TestConfirmRunDeliversWithTheRealClock(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Now = time.Now; c.ConfirmWithin = 10 * time.Second })
	e.fake.SetClock(time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.n.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	p := page(42)
	if _, err := e.n.Notify(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	got, err := e.reporter.WaitFor(wctx, func(rs []notifiers.Report) bool { return len(rs) > 0 })
	if err != nil {
		t.Fatalf("no report from Run: %v", err)
	}
	if got[0].Status != notifiers.Delivered {
		t.Fatalf("report %+v, want delivered", got[0])
	}
}

// BenchmarkConfirmPassWithManyWaiting is the cost of one confirmation pass
// when confirmMaxPending pages wait and none is due (the common case
// between looks): the scan for due pages and the next wake-up.
func BenchmarkConfirmPassWithManyWaiting(b *testing.B) {
	e := newEnv(b, nil)
	now := e.now.Now()
	for i := range confirmMaxPending {
		id := fmt.Sprintf("out-%d", i)
		e.n.confirms.add(&pendingConfirm{pageID: id, key: "k" + id, sent: now, deadline: now.Add(time.Hour), next: now.Add(time.Minute)})
	}
	b.ReportAllocs()
	for b.Loop() {
		e.n.CheckDeliveries(context.Background())
	}
}
