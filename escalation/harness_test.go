package escalation_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
)

// staticRota is a fixed rota for engine tests: rotation "primary" has alice
// on call, "secondary" has bob; carol is a person; mallory is nobody.
type staticRota struct {
	policies map[string]*escalation.Policy
	people   map[string]notifiers.Recipient
	oncall   map[string]string
	limits   map[notifiers.Channel][2]int64
}

func newRota(p *escalation.Policy) *staticRota {
	return &staticRota{
		policies: map[string]*escalation.Policy{p.ID: p},
		people: map[string]notifiers.Recipient{
			"alice": {PersonID: "alice", Name: "Alice", Phone: "+15555550101", MatrixID: "@alice:test", PagerDutyUser: "alice@test.example"},
			"bob":   {PersonID: "bob", Name: "Bob", Phone: "+15555550102", MatrixID: "@bob:test"},
			"carol": {PersonID: "carol", Name: "Carol", MatrixID: "@carol:test"},
		},
		oncall: map[string]string{"primary": "alice", "secondary": "bob"},
	}
}

func (r *staticRota) PolicyFor(map[string]string) (*escalation.Policy, error) {
	for _, p := range r.policies {
		if p.ID != "selftest" {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no policy")
}
func (r *staticRota) PolicyNamed(id string) (*escalation.Policy, bool) {
	p, ok := r.policies[id]
	return p, ok
}
func (r *staticRota) Who(t escalation.Target, _ time.Time) []notifiers.Recipient {
	switch {
	case t.Person != "":
		if p, ok := r.people[t.Person]; ok {
			return []notifiers.Recipient{p}
		}
	case t.Everyone:
		return []notifiers.Recipient{r.people["alice"], r.people["bob"]}
	default:
		if id, ok := r.oncall[t.Rotation]; ok {
			return []notifiers.Recipient{r.people[id]}
		}
	}
	return nil
}
func (r *staticRota) PersonByContact(ch notifiers.Channel, addr string) (notifiers.Recipient, bool) {
	for _, p := range r.people {
		if addr == p.Phone || addr == p.MatrixID || (ch == notifiers.PagerDuty && addr == p.PagerDutyUser && addr != "") {
			return p, true
		}
	}
	return notifiers.Recipient{}, false
}
func (r *staticRota) Limit(ch notifiers.Channel) (int, time.Duration) {
	l := r.limits[ch]
	return int(l[0]), time.Duration(l[1])
}

// defaultPolicy pages the primary by matrix, then pagerduty, then phone, then
// the secondary by matrix and phone.
func defaultPolicy() *escalation.Policy {
	primary := []escalation.Target{{Rotation: "primary"}}
	return &escalation.Policy{
		ID: "default",
		Steps: []escalation.Step{
			{Targets: primary, Channels: []notifiers.Channel{notifiers.Matrix}, Wait: 5 * time.Minute},
			{Targets: primary, Channels: []notifiers.Channel{notifiers.PagerDuty}, Wait: 5 * time.Minute},
			{Targets: primary, Channels: []notifiers.Channel{notifiers.Phone}, Wait: 5 * time.Minute},
			{Targets: []escalation.Target{{Rotation: "secondary"}}, Channels: []notifiers.Channel{notifiers.Matrix, notifiers.Phone}, Wait: 10 * time.Minute},
		},
		Fallback:   []escalation.Target{{Person: "carol"}},
		AckTimeout: 4 * time.Hour,
	}
}

var t0 = time.Date(2026, 12, 26, 3, 0, 0, 0, time.UTC)

// world is an engine on a fake clock with recording channels, run inline.
type world struct {
	t     testing.TB
	ctx   context.Context
	clock *escalation.FakeClock
	store *boltstore.Store
	rota  *staticRota
	rec   map[notifiers.Channel]*recorder.Recorder
	eng   *escalation.Engine
	dir   string
	// tweak, if set, adjusts the engine's Config before each open.
	tweak func(*escalation.Config)
}

func newWorld(t testing.TB, p *escalation.Policy) *world {
	t.Helper()
	return newWorldWith(t, p, nil)
}

// newWorldWith is newWorld with tweak adjusting the engine's Config.
func newWorldWith(t testing.TB, p *escalation.Policy, tweak func(*escalation.Config)) *world {
	t.Helper()
	w := &world{t: t, ctx: context.Background(), clock: escalation.NewFakeClock(t0), rota: newRota(p), dir: t.TempDir(),
		rec: map[notifiers.Channel]*recorder.Recorder{}, tweak: tweak}
	for _, c := range notifiers.Channels {
		w.rec[c] = recorder.New(c)
	}
	w.open()
	return w
}

func (w *world) open() {
	w.t.Helper()
	s, err := boltstore.Open(w.dir, boltstore.Options{NoSync: true})
	if err != nil {
		w.t.Fatal(err)
	}
	w.store = s
	var chans []notifiers.Notifier
	for _, c := range notifiers.Channels {
		chans = append(chans, w.rec[c])
	}
	cfg := escalation.Config{Store: s, Rota: func() escalation.Rota { return w.rota }, Notifiers: chans, Clock: w.clock, Inline: true}
	if w.tweak != nil {
		w.tweak(&cfg)
	}
	w.eng = escalation.New(cfg)
	w.t.Cleanup(func() { s.Close() })
}

// restart closes the store and builds a fresh engine on the same file.
func (w *world) restart() {
	w.t.Helper()
	w.store.Close()
	w.open()
	if _, _, err := w.eng.Recover(w.ctx); err != nil {
		w.t.Fatal(err)
	}
	w.eng.RunDue(w.ctx)
}

func firing(group string, fps ...string) escalation.Notification {
	n := escalation.Notification{GroupKey: group, Status: "firing", CommonLabels: map[string]string{"alertname": "DiskFull", "severity": "critical"}}
	for _, fp := range fps {
		n.Alerts = append(n.Alerts, escalation.Alert{Fingerprint: fp, Status: "firing", StartsAt: t0.Add(-time.Minute),
			Labels: map[string]string{"alertname": "DiskFull", "instance": fp}, Annotations: map[string]string{"summary": "disk full on " + fp}})
	}
	return n
}

func resolved(group string, fps ...string) escalation.Notification {
	n := firing(group, fps...)
	n.Status = "resolved"
	for i := range n.Alerts {
		n.Alerts[i].Status = "resolved"
		n.Alerts[i].EndsAt = t0.Add(time.Hour)
	}
	return n
}

func (w *world) ingest(n escalation.Notification) escalation.IngestResult {
	w.t.Helper()
	res, err := w.eng.Ingest(w.ctx, n)
	if err != nil {
		w.t.Fatal(err)
	}
	return res
}

// advance moves the clock forward by d, doing all work due on the way.
func (w *world) advance(d time.Duration) {
	end := w.clock.Now().Add(d)
	for {
		next, ok := w.eng.NextDeadline()
		if !ok || next.After(end) {
			break
		}
		w.clock.Set(next)
		w.eng.RunDue(w.ctx)
	}
	w.clock.Set(end)
	w.eng.RunDue(w.ctx)
}

// paged lists "channel:person" for each page of kind page, in order.
func (w *world) paged() []string {
	var out []string
	for _, c := range notifiers.Channels {
		for _, p := range w.rec[c].Pages() {
			if p.Kind == notifiers.KindPage {
				out = append(out, string(c)+":"+p.Recipient.PersonID)
			}
		}
	}
	return out
}

func (w *world) count(c notifiers.Channel, k notifiers.Kind) int { return w.rec[c].Count(k) }

func (w *world) incident(id uint64) escalation.Incident {
	w.t.Helper()
	inc, err := w.store.Incident(w.ctx, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return inc
}

func (w *world) timeline(id uint64) string {
	tl, err := w.store.Timeline(w.ctx, id)
	if err != nil {
		w.t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range tl {
		fmt.Fprintf(&b, "%s %s %s\n", e.At.Sub(t0), e.Kind, e.Text)
	}
	return b.String()
}
