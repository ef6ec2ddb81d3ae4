package notices

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// memState is a notifiers.StateStore in memory.
type memState struct {
	mu   sync.Mutex
	m    map[string][]byte
	fail error
}

func (s *memState) GetState(_ context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[bucket+"/"+key], nil
}

func (s *memState) PutState(_ context.Context, bucket, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[bucket+"/"+key] = append([]byte(nil), v...)
	return nil
}

// sent is one message a fake channel took.
type sent struct {
	ID, Person, Text string
	Channel          notifiers.Channel
}

// fakeChannel records messages; errs, if set, answers each send in turn.
type fakeChannel struct {
	ch   notifiers.Channel
	mu   sync.Mutex
	got  []sent
	errs []error
}

func (f *fakeChannel) Channel() notifiers.Channel { return f.ch }

func (f *fakeChannel) Notify(_ context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.Kind != notifiers.KindMessage || p.Incident != 0 {
		return notifiers.Receipt{}, fmt.Errorf("not a message: %+v", p)
	}
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		if err != nil {
			return notifiers.Receipt{}, err
		}
	}
	f.got = append(f.got, sent{ID: p.ID, Person: p.Recipient.PersonID, Text: p.Text, Channel: f.ch})
	return notifiers.Receipt{Detail: "ok"}, nil
}

func (f *fakeChannel) sent() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func example(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "rota.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parse(t *testing.T, src string) *rota.Rota {
	t.Helper()
	r, _, err := rota.Parse("rota.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// swap is the weekly edit of docs/rota.md: Bob and Carol swap their weeks of
// 23 February and 2 March.
const swap = `    overrides:
      - who: carol
        instead_of: bob
        from: 2026-02-23 09:00
        to: 2026-03-02 09:00
        reason: swap with Bob
      - who: bob
        instead_of: carol
        from: 2026-03-02 09:00
        to: 2026-03-09 09:00
        reason: swap with Carol
      - who: dave
        instead_of: carol`

func swapped(t *testing.T) string {
	t.Helper()
	src := strings.Replace(example(t), "    overrides:\n      - who: dave\n        instead_of: carol", swap, 1)
	if src == example(t) {
		t.Fatal("the example rota changed: the swap edit does not apply")
	}
	return src
}

func london(t *testing.T, s string) time.Time {
	t.Helper()
	loc, _ := time.LoadLocation("Europe/London")
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var swapNotices = map[string]string{
	"carol": "Rota change: From Mon 23 Feb 09:00 to Mon 2 Mar 09:00 you are on call for primary, instead of Bob Baker (swap with Bob); " +
		"From Mon 2 Mar 09:00 to Mon 9 Mar 09:00 you are no longer on call for primary: Bob Baker is (swap with Carol).",
	// Bob reads times in his own zone (New York moves its clocks on 8 March).
	"bob": "Rota change: From Mon 23 Feb 04:00 EST to Mon 2 Mar 04:00 EST you are no longer on call for primary: Carol Chen is (swap with Bob); " +
		"From Mon 2 Mar 04:00 EST to Mon 9 Mar 05:00 EDT you are on call for primary, instead of Carol Chen (swap with Carol).",
}

func TestChangeNoticesInEachPersonsWords(t *testing.T) {
	old, new := parse(t, example(t)), parse(t, swapped(t))
	from := london(t, "2026-02-20 12:00")
	got := ChangeNotices(old, new, from, from.AddDate(0, 0, 28))
	if len(got) != len(swapNotices) {
		t.Fatalf("%d notices, want %d: %+v", len(got), len(swapNotices), got)
	}
	for _, m := range got {
		if want := swapNotices[m.Recipient.PersonID]; m.Text != want {
			t.Errorf("to %s:\n got %q\nwant %q", m.Recipient.PersonID, m.Text, want)
		}
	}
	// Outside the window nothing is announced; an unchanged rota announces nothing.
	if n := ChangeNotices(old, new, london(t, "2026-03-10 00:00"), london(t, "2026-04-10 00:00")); len(n) != 0 {
		t.Errorf("changes after the window announced: %+v", n)
	}
	if n := ChangeNotices(old, old, from, from.AddDate(0, 0, 28)); len(n) != 0 {
		t.Errorf("an unchanged rota announced %+v", n)
	}
}

type rig struct {
	t      *testing.T
	state  *memState
	clock  *escalation.FakeClock
	matrix *fakeChannel
	sms    *fakeChannel
	open   atomic.Int64
	kicked chan struct{}
}

func newRig(t *testing.T, at time.Time) *rig {
	g := &rig{t: t, state: &memState{}, clock: escalation.NewFakeClock(at),
		matrix: &fakeChannel{ch: notifiers.Matrix}, sms: &fakeChannel{ch: notifiers.SMS}, kicked: make(chan struct{}, 16)}
	g.open.Store(2)
	return g
}

// service builds a Service on the rig's store, as a (re)started Klaxon would.
func (g *rig) service(usable func(notifiers.Channel) bool) *Service {
	s, err := New(Config{State: g.state, Clock: g.clock, Usable: usable,
		Notifiers:       []notifiers.Notifier{g.matrix, g.sms, &fakeChannel{ch: notifiers.Phone}},
		OpenIncidents:   func(context.Context) (int, error) { return int(g.open.Load()), nil },
		OnUndeliverable: func(context.Context) { g.kicked <- struct{}{} }})
	if err != nil {
		g.t.Fatal(err)
	}
	return s
}

// run runs s until the test ends.
func (g *rig) run(s *Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	g.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			g.t.Error(err)
		}
	})
}

// waitSent polls until the channels together took n messages.
func (g *rig) waitSent(n int) []sent {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := append(g.matrix.sent(), g.sms.sent()...)
		if len(all) >= n {
			return all
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%d messages sent, want %d: %+v", len(all), n, all)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
}

// settle waits until s has nothing due and returns what was sent.
func (g *rig) settle(s *Service) []sent {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		due := false
		for _, m := range s.Pending() {
			due = due || (!m.NotBefore.After(g.clock.Now()) && !m.NextTry.After(g.clock.Now()))
		}
		if !due {
			return append(g.matrix.sent(), g.sms.sent()...)
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("messages still due: %+v", s.Pending())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRotaEditSendsEachPersonOneMessage(t *testing.T) {
	g := newRig(t, london(t, "2026-02-20 12:00"))
	old, new := example(t), swapped(t)
	s := g.service(nil)
	if err := s.Start(context.Background(), parse(t, old), []byte(old)); err != nil {
		t.Fatal(err)
	}
	if len(s.Pending()) != 0 {
		t.Fatalf("the first rota announced %+v", s.Pending())
	}
	g.run(s)
	if err := s.RotaChanged(context.Background(), parse(t, new), []byte(new)); err != nil {
		t.Fatal(err)
	}
	got := g.waitSent(2)
	// The same rota again (a reload of an unchanged file, a SIGHUP) sends nothing more.
	if err := s.RotaChanged(context.Background(), parse(t, new), []byte(new)); err != nil {
		t.Fatal(err)
	}
	got = g.settle(s)
	if len(got) != 2 {
		t.Fatalf("sent %+v", got)
	}
	for _, m := range got {
		if m.Channel != notifiers.Matrix || m.Text != swapNotices[m.Person] {
			t.Errorf("sent %+v", m)
		}
	}
}

// TestRestartBetweenReloadAndSend: the notices are written with the reload;
// a Klaxon that stops before sending them sends them after its restart,
// exactly once, and a rota edited while Klaxon was down is announced at start.
func TestRestartBetweenReloadAndSend(t *testing.T) {
	old, new := example(t), swapped(t)
	t.Run("reload then restart", func(t *testing.T) {
		g := newRig(t, london(t, "2026-02-20 12:00"))
		s := g.service(nil)
		if err := s.Start(context.Background(), parse(t, old), []byte(old)); err != nil {
			t.Fatal(err)
		}
		if err := s.RotaChanged(context.Background(), parse(t, new), []byte(new)); err != nil {
			t.Fatal(err)
		}
		// Klaxon stops here, before Run sent anything; it restarts with the new rota.
		s2 := g.service(nil)
		if err := s2.Start(context.Background(), parse(t, new), []byte(new)); err != nil {
			t.Fatal(err)
		}
		g.run(s2)
		g.waitSent(2)
		if got := g.settle(s2); len(got) != 2 {
			t.Fatalf("sent %+v", got)
		}
		// And a second restart sends nothing again.
		s3 := g.service(nil)
		if err := s3.Start(context.Background(), parse(t, new), []byte(new)); err != nil {
			t.Fatal(err)
		}
		if p := s3.Pending(); len(p) != 0 {
			t.Fatalf("pending after everything was sent: %+v", p)
		}
	})
	t.Run("edit while down", func(t *testing.T) {
		g := newRig(t, london(t, "2026-02-20 12:00"))
		if err := g.service(nil).Start(context.Background(), parse(t, old), []byte(old)); err != nil {
			t.Fatal(err)
		}
		s := g.service(nil)
		if err := s.Start(context.Background(), parse(t, new), []byte(new)); err != nil {
			t.Fatal(err)
		}
		g.run(s)
		if got := g.waitSent(2); len(got) != 2 {
			t.Fatalf("sent %+v", got)
		}
	})
	t.Run("a failed write keeps the old baseline", func(t *testing.T) {
		g := newRig(t, london(t, "2026-02-20 12:00"))
		s := g.service(nil)
		if err := s.Start(context.Background(), parse(t, old), []byte(old)); err != nil {
			t.Fatal(err)
		}
		g.state.fail = errors.New("disk full")
		if err := s.RotaChanged(context.Background(), parse(t, new), []byte(new)); err == nil {
			t.Fatal("a failed write was not reported")
		}
		g.state.fail = nil
		s2 := g.service(nil) // restarted: the edit is announced from the stored baseline
		if err := s2.Start(context.Background(), parse(t, new), []byte(new)); err != nil {
			t.Fatal(err)
		}
		if p := s2.Pending(); len(p) != 2 {
			t.Fatalf("pending %+v", p)
		}
	})
}

// weekly is a rota with one rotation handed over on Mondays at 09:00 and a
// reminder 1h before; carol has no Matrix id.
const weekly = `timezone: Europe/London
people:
  alice: {name: Alice Archer, phone: "+15555550101", matrix: "@alice:example.org"}
  bob: {name: Bob Baker, phone: "+15555550102", matrix: "@bob:example.org"}
  carol: {name: Carol Chen, phone: "+15555550103"}
  zed: {name: Zed}
rotations:
  primary:
    members: [alice, bob, carol, zed]
    handoff: monday 09:00
    start: 2026-01-05
policies:
  default:
    steps:
      - {notify: primary, via: matrix, wait: 5m}
routes:
  - policy: default
`

// TestReminderArrivesAtItsTime drives the reminders on a fake clock: Bob's
// shift starts Mon 12 Jan 09:00, so at 08:00 he is reminded, and at 09:00
// Alice gets her one-line summary.
func TestReminderArrivesAtItsTime(t *testing.T) {
	g := newRig(t, london(t, "2026-01-12 07:00"))
	s := g.service(nil)
	if err := s.Start(context.Background(), parse(t, weekly), []byte(weekly)); err != nil {
		t.Fatal(err)
	}
	g.run(s)
	g.clock.Set(london(t, "2026-01-12 07:59"))
	if got := g.settle(s); len(got) != 0 {
		t.Fatalf("sent before the reminder's time: %+v", got)
	}
	g.clock.Set(london(t, "2026-01-12 08:00"))
	got := g.waitSent(1)
	want := sent{ID: "klaxon-reminder-primary-1768208400-bob", Person: "bob", Channel: notifiers.Matrix,
		Text: "You are on call for primary from 09:00 until Mon 19 Jan 09:00; open incidents: 2."}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("sent %+v\nwant %+v", got, want)
	}
	g.open.Store(0)
	g.clock.Set(london(t, "2026-01-12 09:00"))
	got = g.waitSent(2)
	if want := "Your primary shift ended at Mon 12 Jan 09:00; Bob Baker is on call now; open incidents: 0."; got[1].Person != "alice" || got[1].Text != want {
		t.Fatalf("handoff summary %+v, want %q", got[1], want)
	}
	// A restart later that hour repeats neither.
	s2 := g.service(nil)
	if err := s2.Start(context.Background(), parse(t, weekly), []byte(weekly)); err != nil {
		t.Fatal(err)
	}
	g.run(s2)
	g.clock.Set(london(t, "2026-01-12 09:30"))
	if got := g.settle(s2); len(got) != 2 {
		t.Fatalf("after a restart: %+v", got)
	}
	// Carol (no Matrix id) is reminded by SMS a week later.
	g.clock.Set(london(t, "2026-01-19 08:00"))
	got = g.waitSent(3)
	if got[2].Person != "carol" || got[2].Channel != notifiers.SMS {
		t.Fatalf("carol's reminder %+v", got[2])
	}
}

// TestUndeliverableReminderFeedsCoverage: Zed can be reached on no channel;
// his reminder becomes a coverage problem until his shift ends, and the
// coverage check is kicked.
func TestUndeliverableReminderFeedsCoverage(t *testing.T) {
	g := newRig(t, london(t, "2026-01-26 07:30"))
	s := g.service(nil)
	if err := s.Start(context.Background(), parse(t, weekly), []byte(weekly)); err != nil {
		t.Fatal(err)
	}
	g.run(s)
	g.clock.Set(london(t, "2026-01-26 08:00"))
	select {
	case <-g.kicked:
	case <-time.After(10 * time.Second):
		t.Fatal("the coverage check was not kicked")
	}
	p := s.Problems(g.clock.Now())
	if len(p) != 1 || !strings.Contains(p[0], "Zed could not be reminded of their primary shift") || !strings.Contains(p[0], "no Matrix id, no phone number") {
		t.Fatalf("problems %q", p)
	}
	if p := s.Problems(london(t, "2026-02-02 09:00")); len(p) != 0 {
		t.Fatalf("problems after the shift ended: %q", p)
	}
}

func TestChannelChoiceAndRetries(t *testing.T) {
	old, new := example(t), swapped(t)
	tests := []struct {
		name      string
		usable    func(notifiers.Channel) bool
		matrixErr []error
		smsErr    []error
		want      notifiers.Channel
		retried   bool
	}{
		{"matrix first", nil, nil, nil, notifiers.Matrix, false},
		{"matrix down: sms", func(c notifiers.Channel) bool { return c != notifiers.Matrix }, nil, nil, notifiers.SMS, false},
		{"matrix fails for good: sms", nil, []error{notifiers.Permanent("M_FORBIDDEN", errors.New("no")), notifiers.Permanent("M_FORBIDDEN", errors.New("no"))}, nil, notifiers.SMS, false},
		{"a temporary failure is retried on the same channel", nil, []error{notifiers.Temporary("", 0, errors.New("blip")), notifiers.Temporary("", 0, errors.New("blip"))}, nil, notifiers.Matrix, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newRig(t, london(t, "2026-02-20 12:00"))
			g.matrix.errs, g.sms.errs = tt.matrixErr, tt.smsErr
			s := g.service(tt.usable)
			if err := s.Start(context.Background(), parse(t, old), []byte(old)); err != nil {
				t.Fatal(err)
			}
			g.run(s)
			if err := s.RotaChanged(context.Background(), parse(t, new), []byte(new)); err != nil {
				t.Fatal(err)
			}
			if tt.retried {
				// Backoff runs on the fake clock.
				deadline := time.Now().Add(10 * time.Second)
				for len(g.matrix.sent()) < 2 && time.Now().Before(deadline) {
					g.clock.Advance(time.Second)
					time.Sleep(time.Millisecond)
				}
			}
			got := g.waitSent(2)
			for _, m := range got {
				if m.Channel != tt.want {
					t.Errorf("sent on %s, want %s", m.Channel, tt.want)
				}
			}
			if got := g.settle(s); len(got) != 2 {
				t.Errorf("sent %+v", got)
			}
		})
	}
}

func TestNewAndStartRejectBadInput(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a store succeeded")
	}
	// A corrupt outbox is kept aside and Klaxon starts afresh: paging must
	// not wait for notices.
	g := newRig(t, time.Now())
	g.state.m = map[string][]byte{Bucket + "/" + stateKey: []byte("{not json")}
	s := g.service(nil)
	w := example(t)
	if err := s.Start(context.Background(), parse(t, w), []byte(w)); err != nil {
		t.Fatalf("a corrupt outbox stopped the start: %v", err)
	}
	if got := string(g.state.m[Bucket+"/"+corruptKey]); got != "{not json" {
		t.Errorf("the unreadable record was not kept aside: %q", got)
	}
	// When it cannot even be kept aside, Start says so.
	g.state.m[Bucket+"/"+stateKey] = []byte("{not json")
	g.state.fail = errors.New("disk full")
	if err := g.service(nil).Start(context.Background(), parse(t, w), []byte(w)); err == nil || !strings.Contains(err.Error(), "could not be kept aside") {
		t.Errorf("err %v", err)
	}
}
