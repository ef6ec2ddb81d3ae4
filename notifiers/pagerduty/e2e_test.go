package pagerduty

import (
	"context"
	"net/http"
	"sync"
	"testing"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// miniEngine stands in for the escalation engine (built elsewhere): a policy
// of steps, each a channel; a permanent failure moves on at once, a page
// accepted waits for the step's timer, an acknowledgement stops everything.
// It is the Responder the PagerDuty notifier reports to.
type miniEngine struct {
	mu      sync.Mutex
	acked   map[string]string // incident key → who
	steps   []notifiers.Notifier
	current int
	log     []string
}

func (m *miniEngine) Respond(_ context.Context, r notifiers.Response) (notifiers.Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.Action != notifiers.Ack {
		return notifiers.Outcome{}, nil
	}
	if _, done := m.acked[r.IncidentKey]; done {
		return notifiers.Outcome{Incident: 42}, nil
	}
	m.acked[r.IncidentKey] = r.From
	m.log = append(m.log, "acked by "+r.From+" via "+string(r.Channel))
	return notifiers.Outcome{Incident: 42, Applied: true, By: r.Name}, nil
}

// escalate runs steps from the current one until one is accepted; it
// returns without waiting (the step timer is the test's to fire).
func (m *miniEngine) escalate(t *testing.T, p notifiers.Page) {
	t.Helper()
	for {
		m.mu.Lock()
		if _, done := m.acked[p.IncidentKey]; done || m.current >= len(m.steps) {
			m.mu.Unlock()
			return
		}
		step := m.steps[m.current]
		m.mu.Unlock()
		_, err := step.Notify(context.Background(), p)
		m.mu.Lock()
		switch {
		case err == nil:
			m.log = append(m.log, "paged via "+string(step.Channel()))
			m.mu.Unlock()
			return
		case notifiers.IsPermanent(err):
			m.log = append(m.log, "failed permanently via "+string(step.Channel())+", moving on")
			m.current++
			m.mu.Unlock()
		default:
			m.log = append(m.log, "failed temporarily via "+string(step.Channel()))
			m.mu.Unlock()
			return
		}
	}
}

// stepTimerFired is the current step's timeout: move to the next step.
func (m *miniEngine) stepTimerFired(t *testing.T, p notifiers.Page) {
	m.mu.Lock()
	if _, done := m.acked[p.IncidentKey]; done {
		m.log = append(m.log, "timer: already acknowledged, not escalating")
		m.mu.Unlock()
		return
	}
	m.current++
	m.mu.Unlock()
	m.escalate(t, p)
}

func (m *miniEngine) history() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.log...)
}

// phoneStub is the next channel in the policy.
type phoneStub struct {
	mu    sync.Mutex
	calls int
}

func (p *phoneStub) Channel() notifiers.Channel { return notifiers.Phone }
func (p *phoneStub) Notify(context.Context, notifiers.Page) (notifiers.Receipt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return notifiers.Receipt{Detail: "call queued"}, nil
}
func (p *phoneStub) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

func newE2E(t *testing.T) (*env, *miniEngine, *phoneStub) {
	t.Helper()
	eng := &miniEngine{acked: map[string]string{}}
	e := newEnv(t, func(c *Config) { c.Responder = eng })
	phone := &phoneStub{}
	eng.steps = []notifiers.Notifier{e.n, phone}
	e.serveWebhooks(t)
	return e, eng, phone
}

func TestE2EAcknowledgedInPagerDutyStopsEscalation(t *testing.T) {
	e, eng, phone := newE2E(t)
	p := page(42)
	eng.escalate(t, p)
	if inc, ok := e.fake.Incident("klaxon-42"); !ok || inc.Status != fakepd.StatusTriggered {
		t.Fatalf("PagerDuty incident = %+v, %v", inc, ok)
	}
	// Alice acknowledges in the PagerDuty app; PagerDuty posts a signed webhook.
	d, err := e.fake.Acknowledge("klaxon-42", fakepd.DefaultUserID)
	if err != nil || d.Status != http.StatusAccepted || d.Signature == "" {
		t.Fatalf("webhook delivery = %+v, %v", d, err)
	}
	eng.stepTimerFired(t, p)
	if phone.count() != 0 {
		t.Fatalf("phone called after the acknowledgement; history %v", eng.history())
	}
	want := []string{"paged via pagerduty", "acked by " + fakepd.DefaultUserID + " via pagerduty", "timer: already acknowledged, not escalating"}
	if got := eng.history(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("history = %v, want %v", got, want)
	}
	// PagerDuty's redelivery of the same webhook changes nothing.
	if d2, err := e.fake.Redeliver(d.EventID); err != nil || d2.Status != http.StatusAccepted {
		t.Fatalf("redelivery = %+v, %v", d2, err)
	}
	if got := eng.history(); len(got) != 3 {
		t.Fatalf("replay changed the history: %v", got)
	}
}

func TestE2EForgedWebhookDoesNotStopEscalation(t *testing.T) {
	e, eng, phone := newE2E(t)
	p := page(42)
	eng.escalate(t, p)
	url := e.serveWebhooks(t)
	e.fake.SetWebhook(url, "attacker-guess-0000") // Klaxon's handler, signed with the wrong secret
	d, err := e.fake.Acknowledge("klaxon-42", fakepd.DefaultUserID)
	if err != nil || d.Status != http.StatusForbidden {
		t.Fatalf("forged delivery = %+v, %v; want 403", d, err)
	}
	eng.stepTimerFired(t, p)
	if phone.count() != 1 {
		t.Fatalf("phone calls = %d, want 1; history %v", phone.count(), eng.history())
	}
}

func TestE2ELapsedAccountMovesOnAtOnce(t *testing.T) {
	e, eng, phone := newE2E(t)
	e.fake.SetAccountExpired(true)
	eng.escalate(t, page(42)) // no step timer fires
	if phone.count() != 1 {
		t.Fatalf("phone calls = %d, want 1 at once; history %v", phone.count(), eng.history())
	}
	if got := eng.history(); len(got) != 2 || got[0] != "failed permanently via pagerduty, moving on" {
		t.Fatalf("history = %v", got)
	}
	if _, ok := e.fake.Incident("klaxon-42"); ok {
		t.Error("a lapsed account opened an incident")
	}
}
