package escalation_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// The model-based fault test drives the real Engine over each real store
// (bbolt, and etcd on a one-member cluster) on a fake clock through random sequences of events — alerts firing
// and resolving, answers, channel health flapping, provider faults, failing
// store writes and reads, restarts, rota reloads and early provider callbacks —
// and checks the rules that keep a page alive, I1–I6, after every event
// (docs/dev/architecture.md, "Rules that keep a page alive"; as users see
// them: docs/escalation.md). A failure names the seed and the event trace.
//
// CI runs a fixed set of seeds: 300 without the race detector (.ci/run runs
// this test once more without -race), 40 under it, and a tenth of that on etcd; KLAXON_MODEL_SEEDS=N (or -model.seeds) runs
// more, KLAXON_MODEL_EVENTS=N makes each sequence longer (default 50), and
// KLAXON_MODEL_SEED=S replays one.

var modelSeeds = flag.Int("model.seeds", 0, "seeds for the model-based fault test (default 300, 40 under -race, or $KLAXON_MODEL_SEEDS)")

var modelEvents = envInt("KLAXON_MODEL_EVENTS", 50)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

const (
	modelWaitStep = 5 * time.Minute
	// maxBackoff is the engine's longest own backoff between attempts.
	maxBackoff = time.Minute
	// modelSlack covers a store write that failed and is retried, and the
	// granularity of the model's clock steps being checked between events.
	modelSlack = 2 * time.Minute
	// modelI6Every is how often, in model time, advance checks I6 on its way.
	modelI6Every = 30 * time.Second
)

func TestModelNeverQuiet(t *testing.T) {
	n := 300
	if raceEnabled {
		n = 40
	}
	if *modelSeeds > 0 {
		n = *modelSeeds
	} else if s := os.Getenv("KLAXON_MODEL_SEEDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	first := uint64(1)
	if s := os.Getenv("KLAXON_MODEL_SEED"); s != "" {
		v, _ := strconv.ParseUint(s, 10, 64)
		first, n = v, 1
	}
	seeds := func(t *testing.T, n int, open openStore) {
		for seed := first; seed < first+uint64(n); seed++ {
			if !runModel(t, seed, open) && os.Getenv("KLAXON_MODEL_KEEP_GOING") == "" {
				return // one failing seed is enough to read
			}
		}
	}
	t.Run("bolt", func(t *testing.T) {
		seeds(t, n, func(t *testing.T, dir string) escalation.Store {
			s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("etcd", func(t *testing.T) {
		// A quorum commit per write: a tenth of the seeds (each under its
		// own prefix of one single-member cluster) keeps the run short.
		c := harness.StartEtcd(t, harness.EtcdConfig{Members: 1})
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		var prefix atomic.Int64
		seeds(t, max(n/10, 1), func(t *testing.T, _ string) escalation.Store {
			return etcdstore.New(cli, etcdstore.Options{Prefix: fmt.Sprintf("/model/%d/", prefix.Add(1)), Writer: "model"})
		})
	})
}

// modelChannel is a provider with switchable faults. It counts accepted
// sends per page id (I5) and remembers every attempt per incident (I1, I2).
type modelChannel struct {
	ch notifiers.Channel
	m  *model

	mu sync.Mutex
	// mode: "ok", "temp", "account" (permanent, account-wide), "hang".
	mode string
	// badPeople fail permanently as recipients (invalid number, STOP).
	badPeople map[string]bool
	// early makes the provider report delivery before Notify returns (a
	// status callback racing the send result).
	early bool
	// confirm is the channel's confirmation deadline (0: it confirms
	// nothing). In mode "ok" it confirms each page after a random delay
	// (sometimes past the deadline); in mode "swallow" it accepts pages
	// and never confirms them (the homeserver that relays nothing); in
	// mode "nobody" it accepts them and reports that nobody was notified.
	confirm time.Duration
}

func (c *modelChannel) Channel() notifiers.Channel { return c.ch }

// ConfirmWithin implements notifiers.Confirmer.
func (c *modelChannel) ConfirmWithin() time.Duration { return c.confirm }

// modelConfirm is a confirmation the provider will send at a time.
type modelConfirm struct {
	at     time.Time
	report notifiers.Report
}

// modelDeadlines are the model's channels' confirmation deadlines.
var modelDeadlines = map[notifiers.Channel]time.Duration{notifiers.Matrix: 30 * time.Second, notifiers.PagerDuty: 2 * time.Minute, notifiers.SMS: 2 * time.Minute}

func (c *modelChannel) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	c.mu.Lock()
	mode, bad, early := c.mode, c.badPeople[p.Recipient.PersonID], c.early
	c.mu.Unlock()
	if p.Kind == notifiers.KindPage {
		c.m.attempt(p, c.ch)
	}
	if p.Kind == notifiers.KindPage && p.Text != "" {
		// A carrier page tells the person of every page held back for them.
		c.m.attemptHeld(p.Recipient.PersonID, c.ch)
	}
	switch {
	case mode == "hang":
		<-ctx.Done()
		return notifiers.Receipt{}, ctx.Err()
	case mode == "temp":
		return notifiers.Receipt{}, notifiers.Temporary("503", 0, errors.New("provider unavailable"))
	case mode == "account":
		return notifiers.Receipt{}, notifiers.Permanent("20005", errors.New("account suspended"))
	case bad && p.Kind == notifiers.KindPage:
		return notifiers.Receipt{}, recipientError("21211", errors.New("invalid To number"))
	}
	c.m.accepted(p)
	if p.Kind == notifiers.KindPage && c.confirm > 0 {
		switch mode {
		case "ok":
			// Mostly within the deadline, one in five after it.
			delay := time.Duration(c.m.faultRand.Int64N(int64(c.confirm * 5 / 4)))
			c.m.later(delay, notifiers.Report{PageID: p.ID, Incident: p.Incident, Channel: c.ch, Status: notifiers.Delivered})
		case "nobody":
			c.m.later(time.Second, notifiers.Report{PageID: p.ID, Incident: p.Incident, Channel: c.ch, Status: notifiers.Unconfirmed, Detail: "nobody was notified"})
		}
	}
	if early && p.Kind == notifiers.KindPage {
		// The provider's status callback arrives before Notify returns.
		_ = c.m.eng.Report(context.WithoutCancel(ctx), notifiers.Report{PageID: p.ID, Incident: p.Incident, Channel: c.ch, Status: notifiers.Delivered, At: c.m.clock.Now()})
	}
	return notifiers.Receipt{ProviderID: "prov-" + p.ID}, nil
}

// recipientError is a permanent failure that concerns one recipient only.
func recipientError(code string, err error) error { return notifiers.PermanentRecipient(code, err) }

// flakyStore fails a share of writes, and a share of reads, while failing
// is on: etcd reads fail too (a lost leader, a timeout), and every path
// that reads before it sends must survive that without dropping a page.
type flakyStore struct {
	escalation.Store
	m *model
}

var errInjected = errors.New("injected store failure")

func (s *flakyStore) fail() bool { return s.m.fault(s.m.failWrites) }

func (s *flakyStore) failRead() bool { return s.m.fault(s.m.failReads) }

// fault draws from the seed's fault stream: true with probability p.
func (m *model) fault(p float64) bool {
	if p == 0 {
		return false
	}
	return m.faultRand.Float64() < p
}

func (s *flakyStore) Write(ctx context.Context, fn func(escalation.Tx) error) error {
	if s.fail() {
		return errInjected
	}
	return s.Store.Write(ctx, fn)
}

func (s *flakyStore) PutState(ctx context.Context, bucket, key string, v []byte) error {
	if s.fail() {
		return errInjected
	}
	return s.Store.PutState(ctx, bucket, key, v)
}

func (s *flakyStore) Incident(ctx context.Context, id uint64) (escalation.Incident, error) {
	if s.failRead() {
		return escalation.Incident{}, errInjected
	}
	return s.Store.Incident(ctx, id)
}

func (s *flakyStore) Pages(ctx context.Context, id uint64) ([]escalation.PageRecord, error) {
	if s.failRead() {
		return nil, errInjected
	}
	return s.Store.Pages(ctx, id)
}

func (s *flakyStore) Schedule(ctx context.Context, fn func(escalation.Due) error) error {
	if s.failRead() {
		return errInjected
	}
	return s.Store.Schedule(ctx, fn)
}

func (s *flakyStore) Held(ctx context.Context, person string, ch notifiers.Channel, newest int) (escalation.Held, error) {
	if s.failRead() {
		return escalation.Held{}, errInjected
	}
	return s.Store.Held(ctx, person, ch, newest)
}

func (s *flakyStore) HeldPages(ctx context.Context, person string, ch notifiers.Channel, after string, limit int) ([]string, error) {
	if s.failRead() {
		return nil, errInjected
	}
	return s.Store.HeldPages(ctx, person, ch, after, limit)
}

func (s *flakyStore) GetState(ctx context.Context, bucket, key string) ([]byte, error) {
	if s.failRead() {
		return nil, errInjected
	}
	return s.Store.GetState(ctx, bucket, key)
}

type model struct {
	t         *testing.T
	seed      uint64
	r         *rand.Rand
	faultRand *rand.Rand
	ctx       context.Context
	clock     *escalation.FakeClock
	dir       string
	base      escalation.Store // the real store under the flaky one
	store     *flakyStore
	eng       *escalation.Engine
	rota      *staticRota
	chans     map[notifiers.Channel]*modelChannel
	conf      map[notifiers.Channel]bool // configured in the running engine
	down      map[notifiers.Channel]bool
	trace     []string
	restarts  int

	failWrites float64
	failReads  float64

	mu        sync.Mutex
	sends     map[string]int       // page id → accepted sends
	lastTry   map[uint64]time.Time // incident → last page attempt on a configured channel
	tried     map[uint64]int       // incident → page attempts
	seen      map[string]escalation.PageStatus
	since     map[uint64]time.Time // incident → when it became open, unacknowledged and firing
	firing    map[int]time.Time    // group → startsAt of its firing alert, per the model of Alertmanager
	undeliver []escalation.Notification
	// confirms are the providers' confirmations still to come, in no order.
	confirms []modelConfirm
	// lastI6 is when advance last checked I6 on its way.
	lastI6 time.Time
	// touched are resolved incidents whose pages an event may have changed
	// (late provider callbacks): check reads their pages once more.
	touched map[uint64]bool
	// checkedResolved are resolved incidents whose pages check has read.
	checkedResolved map[uint64]bool
}

func (m *model) attempt(p notifiers.Page, ch notifiers.Channel) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := p.Incident
	m.lastTry[id] = m.clock.Now()
	m.tried[id]++
}

// attemptHeld counts a carrier page as an attempt for every incident with a
// page held back for person on ch.
func (m *model) attemptHeld(person string, ch notifiers.Channel) {
	var ids []uint64
	_ = m.base.Schedule(m.ctx, func(d escalation.Due) error {
		for _, p := range d.Pages {
			if p.Deferred && p.Person == person && p.Channel == ch {
				ids = append(ids, d.Incident)
			}
		}
		return nil
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		m.lastTry[id] = m.clock.Now()
		m.tried[id]++
	}
}

// later has the provider send report after d.
func (m *model) later(d time.Duration, r notifiers.Report) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.confirms = append(m.confirms, modelConfirm{at: m.clock.Now().Add(d), report: r})
}

// nextConfirm is when the next provider confirmation is due.
func (m *model) nextConfirm() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	for _, c := range m.confirms {
		if next.IsZero() || c.at.Before(next) {
			next = c.at
		}
	}
	return next, !next.IsZero()
}

// confirmDue sends the providers' confirmations due by now. A report the
// store refused is sent again later, as a provider retries a callback.
func (m *model) confirmDue() {
	now := m.clock.Now()
	m.mu.Lock()
	var due []modelConfirm
	keep := m.confirms[:0]
	for _, c := range m.confirms {
		if c.at.After(now) {
			keep = append(keep, c)
		} else {
			due = append(due, c)
		}
	}
	m.confirms = keep
	m.mu.Unlock()
	for _, c := range due {
		c.report.At = now
		if err := m.eng.Report(m.ctx, c.report); err != nil && errors.Is(err, errInjected) {
			m.later(time.Second, c.report)
		}
	}
}

func (m *model) accepted(p notifiers.Page) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sends[p.ID]++
}

func (m *model) logf(format string, args ...any) {
	m.trace = append(m.trace, fmt.Sprintf("%s ", m.clock.Now().Sub(t0).Round(time.Second))+fmt.Sprintf(format, args...))
}

func (m *model) fatalf(format string, args ...any) {
	m.t.Helper()
	tail := m.trace
	if len(tail) > 60 {
		tail = tail[len(tail)-60:]
	}
	m.t.Fatalf("seed %d (replay: KLAXON_MODEL_SEED=%d go test -run TestModelNeverQuiet ./escalation/): %s\nlast events:\n  %s",
		m.seed, m.seed, fmt.Sprintf(format, args...), strings.Join(tail, "\n  "))
}

// modelPolicy pages the primary on matrix, then on the phone, then the
// secondary on both, then falls back to carol; its waits are modelWaitStep.
func modelPolicy() *escalation.Policy {
	primary := []escalation.Target{{Rotation: "primary"}}
	return &escalation.Policy{
		ID: "default",
		Steps: []escalation.Step{
			{Targets: primary, Channels: []notifiers.Channel{notifiers.Matrix}, Wait: modelWaitStep},
			{Targets: primary, Channels: []notifiers.Channel{notifiers.Phone, notifiers.SMS}, Wait: modelWaitStep},
			{Targets: []escalation.Target{{Rotation: "secondary"}}, Channels: []notifiers.Channel{notifiers.Matrix, notifiers.PagerDuty, notifiers.Phone}, Wait: modelWaitStep},
		},
		Fallback:    []escalation.Target{{Person: "carol"}},
		AckTimeout:  time.Hour,
		RepageEvery: modelWaitStep,
	}
}

func modelRota(variant int) *staticRota {
	r := newRota(modelPolicy())
	// Everyone has every contact detail, so a configured channel always has
	// somebody to page.
	r.people["carol"] = notifiers.Recipient{PersonID: "carol", Name: "Carol", Phone: "+15555550103", MatrixID: "@carol:test", PagerDutyUser: "PCAROL"}
	for id, p := range r.people {
		p.PagerDutyUser = "P" + strings.ToUpper(id)
		r.people[id] = p
	}
	r.limits = map[notifiers.Channel][2]int64{notifiers.Phone: {2, int64(15 * time.Minute)}, notifiers.SMS: {3, int64(15 * time.Minute)}}
	switch variant {
	case 1: // bob takes over the primary rotation
		r.oncall = map[string]string{"primary": "bob", "secondary": "alice"}
	case 2: // the policy was renamed: open incidents must find the new one
		p := modelPolicy()
		p.ID = "renamed"
		r.policies = map[string]*escalation.Policy{"renamed": p}
	case 3: // a broken edit dropped every policy: nothing can be planned until the next reload
		r.policies = map[string]*escalation.Policy{}
	}
	return r
}

// openStore opens the store one seed runs on, empty, in dir if it keeps files.
type openStore func(t *testing.T, dir string) escalation.Store

func runModel(t *testing.T, seed uint64, open openStore) bool {
	m := &model{t: t, seed: seed, r: rand.New(rand.NewPCG(seed, 1)), faultRand: rand.New(rand.NewPCG(seed, 2)),
		ctx: context.Background(), clock: escalation.NewFakeClock(t0), dir: t.TempDir(), rota: modelRota(0),
		chans: map[notifiers.Channel]*modelChannel{}, down: map[notifiers.Channel]bool{},
		sends: map[string]int{}, lastTry: map[uint64]time.Time{}, tried: map[uint64]int{},
		seen: map[string]escalation.PageStatus{}, since: map[uint64]time.Time{}, firing: map[int]time.Time{},
		touched: map[uint64]bool{}, checkedResolved: map[uint64]bool{}}
	for _, c := range notifiers.Channels {
		m.chans[c] = &modelChannel{ch: c, m: m, mode: "ok", badPeople: map[string]bool{}, confirm: modelDeadlines[c]}
	}
	m.base = open(t, m.dir)
	defer func() { m.base.Close() }()
	m.start(m.randomConfigured())
	ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
		m.t = t
		for range modelEvents {
			m.step()
			m.check()
		}
		// Let everything settle: no faults, then a day of time.
		m.failWrites, m.failReads = 0, 0
		for _, c := range m.chans {
			c.mode = "ok"
		}
		m.logf("faults cleared")
		for range 4 {
			m.advance(15 * time.Minute)
			m.check()
		}
	})
	return ok
}

// randomConfigured picks the channels the next engine is configured with;
// one run in ten has none at all.
func (m *model) randomConfigured() map[notifiers.Channel]bool {
	conf := map[notifiers.Channel]bool{}
	if m.r.IntN(10) == 0 {
		return conf
	}
	for _, c := range notifiers.Channels {
		if m.r.IntN(3) > 0 {
			conf[c] = true
		}
	}
	return conf
}

func (m *model) start(conf map[notifiers.Channel]bool) {
	m.conf = conf
	m.store = &flakyStore{Store: m.base, m: m}
	var ns []notifiers.Notifier
	for _, c := range notifiers.Channels {
		if conf[c] {
			ns = append(ns, m.chans[c])
		}
	}
	m.eng = escalation.New(escalation.Config{
		Store: m.store, Rota: func() escalation.Rota { return m.rota }, Notifiers: ns, Clock: m.clock, Inline: true,
		SendTimeout: 2 * time.Millisecond,
		Health: func(c notifiers.Channel) escalation.ChannelHealth {
			if m.down[c] {
				return escalation.ChannelHealth{Configured: true, Down: true, Since: t0, Reason: "self-test failed"}
			}
			return escalation.ChannelHealth{Configured: true}
		},
	})
}

func (m *model) restart() {
	m.restarts++
	conf := m.randomConfigured()
	var names []string
	for c := range conf {
		names = append(names, string(c))
	}
	slices.Sort(names)
	m.logf("restart with channels %v", names)
	m.start(conf)
	for {
		_, _, err := m.eng.Recover(m.ctx)
		if err == nil {
			break
		}
	}
	m.eng.RunDue(m.ctx)
}

// advance moves the clock, doing all work due on the way, and delivers what
// Alertmanager still owes (it retries 5xx).
func (m *model) advance(d time.Duration) {
	end := m.clock.Now().Add(d)
	for {
		next, ok := m.eng.NextDeadline()
		if c, cok := m.nextConfirm(); cok && (!ok || c.Before(next)) {
			next, ok = c, true
		}
		if !ok || next.After(end) {
			break
		}
		if next.After(m.clock.Now()) {
			m.clock.Set(next)
		}
		m.confirmDue()
		m.eng.RunDue(m.ctx)
		m.redeliver()
		m.checkI6()
	}
	m.clock.Set(end)
	m.confirmDue()
	m.eng.RunDue(m.ctx)
	m.redeliver()
}

func (m *model) redeliver() {
	owed := m.undeliver
	m.undeliver = nil
	for _, n := range owed {
		m.deliver(n)
	}
}

func (m *model) deliver(n escalation.Notification) {
	if _, err := m.eng.Ingest(m.ctx, n); err != nil {
		m.undeliver = append(m.undeliver, n)
	}
}

func (m *model) notification(g int, status string) escalation.Notification {
	fp := fmt.Sprintf("fp%d", g)
	starts := m.firing[g]
	a := escalation.Alert{Fingerprint: fp, Status: status, StartsAt: starts,
		Labels: map[string]string{"alertname": "DiskFull", "instance": fp}, Annotations: map[string]string{"summary": "disk full on " + fp}}
	if status == "resolved" {
		a.EndsAt = m.clock.Now()
	}
	return escalation.Notification{GroupKey: fmt.Sprintf("{}:{g=%d}", g), Status: status,
		CommonLabels: map[string]string{"alertname": "DiskFull", "severity": "critical"}, Alerts: []escalation.Alert{a}}
}

// someIncident picks an incident the store knows, or 0.
func (m *model) someIncident() uint64 {
	incs, err := m.base.Incidents(m.ctx, escalation.Filter{Limit: 1000})
	if err != nil || len(incs) == 0 {
		return 0
	}
	return incs[m.r.IntN(len(incs))].ID
}

func (m *model) step() {
	r := m.r
	switch k := r.IntN(100); {
	case k < 14: // an alert fires, or Alertmanager repeats a firing one
		g := r.IntN(5)
		if _, ok := m.firing[g]; !ok {
			m.firing[g] = m.clock.Now().Add(-time.Duration(r.IntN(60)) * time.Second)
		}
		m.logf("fire group %d", g)
		m.deliver(m.notification(g, "firing"))
	case k < 20: // an alert resolves
		g := r.IntN(5)
		if _, ok := m.firing[g]; !ok {
			return
		}
		m.logf("resolve group %d in Alertmanager", g)
		m.deliver(m.notification(g, "resolved"))
		delete(m.firing, g)
	case k < 30: // a person answers
		id := m.someIncident()
		if id == 0 {
			return
		}
		act := []notifiers.Action{notifiers.Ack, notifiers.Ack, notifiers.Escalate, notifiers.Unack, notifiers.Resolve}[r.IntN(5)]
		who := []string{"@alice:test", "@bob:test", "+15555550103"}[r.IntN(3)]
		via := notifiers.Matrix
		if strings.HasPrefix(who, "+") {
			via = notifiers.SMS
		}
		out, err := m.eng.Respond(m.ctx, notifiers.Response{Action: act, Incident: id, Channel: via, From: who, At: m.clock.Now()})
		m.logf("%s %s incident %d via %s: applied=%v err=%v", who, act, id, via, out.Applied, err)
	case k < 40: // channel health flaps
		c := notifiers.Channels[r.IntN(len(notifiers.Channels))]
		m.down[c] = !m.down[c]
		m.logf("%s self-test verdict: down=%v", c, m.down[c])
	case k < 52: // provider faults change
		c := m.chans[notifiers.Channels[r.IntN(len(notifiers.Channels))]]
		c.mu.Lock()
		switch r.IntN(8) {
		case 0, 1:
			c.mode = "ok"
		case 6:
			c.mode = "swallow"
		case 7:
			c.mode = "nobody"
		case 2:
			c.mode = "temp"
		case 3:
			c.mode = "account"
		case 4:
			c.mode = "hang"
		case 5:
			p := []string{"alice", "bob", "carol"}[r.IntN(3)]
			c.badPeople[p] = !c.badPeople[p]
		}
		c.early = r.IntN(3) == 0
		m.logf("%s provider mode %s, bad recipients %v, early callbacks %v", c.ch, c.mode, c.badPeople, c.early)
		c.mu.Unlock()
	case k < 56: // store writes, reads, or both start or stop failing
		m.failWrites, m.failReads = 0, 0
		switch r.IntN(4) {
		case 1:
			m.failWrites = 0.3
		case 2:
			m.failReads = 0.3
		case 3:
			m.failWrites, m.failReads = 0.3, 0.3
		}
		m.logf("store write failures %.0f%%, read failures %.0f%%", m.failWrites*100, m.failReads*100)
	case k < 61:
		m.restart()
	case k < 65: // the rota is edited
		v := r.IntN(4)
		m.rota = modelRota(v)
		m.logf("rota reload, variant %d", v)
	case k < 70: // a late provider callback for a page already sent
		id := m.someIncident()
		if id == 0 {
			return
		}
		pages, err := m.base.Pages(m.ctx, id)
		if err != nil || len(pages) == 0 {
			return
		}
		p := pages[r.IntN(len(pages))]
		m.touched[id] = true
		st := []notifiers.DeliveryStatus{notifiers.Delivered, notifiers.NoAnswer, notifiers.Failed, notifiers.Unconfirmed}[r.IntN(4)]
		err = m.eng.Report(m.ctx, notifiers.Report{PageID: p.ID, Incident: id, Channel: p.Channel, Status: st, Detail: "callback", At: m.clock.Now()})
		m.logf("provider reports %s for page %s (was %s): %v", st, p.ID, p.Status, err)
	default:
		d := time.Duration(1+r.IntN(20*60)) * time.Second
		m.logf("advance %s", d)
		m.advance(d)
	}
}

// timeline renders an incident's timeline for a failure message.
func (m *model) timeline(id uint64) string {
	tl, _ := m.base.Timeline(m.ctx, id)
	var b strings.Builder
	for _, e := range tl {
		fmt.Fprintf(&b, "    %s %s %s\n", e.At.Sub(t0).Round(time.Second), e.Kind, e.Text)
	}
	return b.String()
}

// statusRank orders page states: a page's state never moves to a lower rank
// (I4). States of rank 0 are all "still owed" and may move among each other.
func statusRank(s escalation.PageStatus) int {
	switch s {
	case escalation.PagePending, escalation.PageTempFail, escalation.PageDeferred:
		return 0
	case escalation.PageCanceled:
		return 1
	case escalation.PageFolded:
		return 2
	case escalation.PageSent:
		return 3
	case escalation.PageUnconfirmed:
		return 4
	case escalation.PageNoAnswer:
		return 5
	case escalation.PageDeliv:
		return 6
	case escalation.PagePermFail:
		return 7
	}
	return 0
}

// checkI6 checks I6 on every open incident: advance calls it at every
// deadline on its way, since a step held too long is moved on by its own
// timer later and would be missed by a check after the whole advance.
// It reads only incidents with a page attempt that are not resolved, by
// point reads (a listing would make the store checkpoint each time).
func (m *model) checkI6() {
	m.t.Helper()
	if now := m.clock.Now(); now.Sub(m.lastI6) < modelI6Every {
		return // a held step is held for minutes: a look every half minute sees it
	} else {
		m.lastI6 = now
	}
	m.mu.Lock()
	ids := make([]uint64, 0, len(m.tried))
	for id := range m.tried {
		if !m.checkedResolved[id] {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	for _, id := range ids {
		inc, err := m.base.Incident(m.ctx, id)
		if err != nil {
			m.fatalf("incident %d: %v", id, err)
		}
		if inc.State != escalation.Open {
			continue
		}
		pages, err := m.base.Pages(m.ctx, inc.ID)
		if err != nil {
			m.fatalf("pages of %d: %v", inc.ID, err)
		}
		m.checkStepNotHeld(inc, pages, m.clock.Now())
	}
}

// checkStepNotHeld is I6: an unconfirmed page never holds a step longer
// than its confirmation deadline: once every page of the current step is
// unconfirmed, failed for good, or sent and past its deadline, the step
// moves on (within the slack of refused store writes).
func (m *model) checkStepNotHeld(inc escalation.Incident, pages []escalation.PageRecord, now time.Time) {
	m.t.Helper()
	if inc.State != escalation.Open || !inc.Escalation.Started || inc.Escalation.Exhausted || inc.Escalation.Waiting {
		return
	}
	if deadline, held := unconfirmedHold(pages, inc.Escalation.Generation); held && now.Sub(deadline) > modelSlack {
		m.fatalf("I6: incident %d's step %d is held by pages unconfirmed since %s (%s ago); escalation %+v\n%s",
			inc.ID, inc.Escalation.Step+1, deadline.Sub(t0), now.Sub(deadline), inc.Escalation, m.timeline(inc.ID))
	}
}

// unconfirmedHold reports whether the pages of step generation gen can no
// longer reach anyone and at least one of them is unconfirmed (or sent and
// waiting for a confirmation), and the latest confirmation deadline among
// them: the step must have moved on by then.
func unconfirmedHold(pages []escalation.PageRecord, gen uint64) (deadline time.Time, held bool) {
	for _, p := range pages {
		if p.Kind != notifiers.KindPage || p.Generation != gen {
			continue
		}
		switch {
		case p.Status == escalation.PagePermFail:
		case p.Status == escalation.PageUnconfirmed && p.ConfirmBy.IsZero():
			// Reported unconfirmed before its send was recorded: the step
			// moves on at the report, as for a permanent failure.
			held = true
		case (p.Status == escalation.PageUnconfirmed || p.Status == escalation.PageSent) && !p.ConfirmBy.IsZero():
			held = true
			if p.ConfirmBy.After(deadline) {
				deadline = p.ConfirmBy
			}
		default:
			return time.Time{}, false // something of the step may still reach someone
		}
	}
	if held && deadline.IsZero() {
		deadline = t0 // no deadline of its own: it holds nothing at all
	}
	return deadline, held
}

func (m *model) anyConfigured() bool {
	for _, on := range m.conf {
		if on {
			return true
		}
	}
	return false
}

// check reads the store and checks the invariants.
func (m *model) check() {
	m.t.Helper()
	now := m.clock.Now()
	incs, err := m.base.Incidents(m.ctx, escalation.Filter{Limit: 100000})
	if err != nil {
		m.fatalf("listing incidents: %v", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, rateWindow := m.rota.Limit(notifiers.Phone)
	bound := modelWaitStep + maxBackoff + rateWindow + modelSlack
	for _, inc := range incs {
		if inc.State == escalation.Resolved {
			// A resolved incident's pages change only by late callbacks.
			if m.checkedResolved[inc.ID] && !m.touched[inc.ID] {
				continue
			}
			m.checkedResolved[inc.ID] = true
			delete(m.touched, inc.ID)
		}
		pages, err := m.base.Pages(m.ctx, inc.ID)
		if err != nil {
			m.fatalf("pages of %d: %v", inc.ID, err)
		}
		byID := map[string]escalation.PageRecord{}
		for _, p := range pages {
			byID[p.ID] = p
		}
		for _, p := range pages {
			// I3: a held page ends delivered, failed, or folded into a page
			// the provider accepted.
			if p.Status == escalation.PageFolded {
				fid, _, _ := escalation.ParsePageID(p.FoldedInto)
				carrier, ok := byID[p.FoldedInto]
				if fid != inc.ID {
					cp, err := m.base.Pages(m.ctx, fid)
					if err != nil {
						m.fatalf("pages of %d: %v", fid, err)
					}
					for _, c := range cp {
						if c.ID == p.FoldedInto {
							carrier, ok = c, true
						}
					}
				}
				if !ok || (!carrier.Status.Sent() && m.sends[carrier.ID] == 0) {
					m.fatalf("I3: page %s folded into %s, which was not sent (%+v)", p.ID, p.FoldedInto, carrier)
				}
			}
			if p.Status == escalation.PageDeferred && now.Sub(p.HeldAt) > rateWindow+modelWaitStep+modelSlack && inc.State == escalation.Open && m.anyConfigured() {
				m.fatalf("I3: page %s held since %s and still not settled", p.ID, p.HeldAt.Sub(t0))
			}
			// I4: no page state moves backwards.
			if old, ok := m.seen[p.ID]; ok && statusRank(p.Status) < statusRank(old) {
				m.fatalf("I4: page %s moved back from %s to %s", p.ID, old, p.Status)
			}
			m.seen[p.ID] = p.Status
			// I5: at most 1 + restarts provider sends per page id.
			if n := m.sends[p.ID]; n > 1+m.restarts {
				m.fatalf("I5: page %s accepted by the provider %d times with %d restarts", p.ID, n, m.restarts)
			}
		}
		m.checkStepNotHeld(inc, pages, now)
		// I2: no incident is exhausted without attempted pages.
		if inc.Escalation.Exhausted && m.tried[inc.ID] == 0 {
			m.fatalf("I2: incident %d exhausted without a single page attempt\n%s", inc.ID, m.timeline(inc.ID))
		}
		// I1: an open, unacknowledged, firing incident is attempted within
		// its step wait plus backoff (plus a rate-limit window), unless no
		// channel at all is configured.
		live := inc.State == escalation.Open && inc.Firing() > 0 && m.anyConfigured() && len(m.rota.policies) > 0
		if !live {
			delete(m.since, inc.ID)
			continue
		}
		since, ok := m.since[inc.ID]
		if !ok {
			since = now
			m.since[inc.ID] = now
		}
		last := m.lastTry[inc.ID]
		if last.Before(since) {
			last = since
		}
		if now.Sub(last) > bound {
			m.fatalf("I1: incident %d (open, firing, unacknowledged) has had no page attempt for %s (bound %s); escalation %+v",
				inc.ID, now.Sub(last), bound, inc.Escalation)
		}
	}
}
