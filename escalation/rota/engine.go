package rota

import (
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// ForEngine adapts r to what the escalation engine asks of a rota. The
// policies are converted once; r must not change afterwards (it never does:
// a reload builds a new Rota).
func ForEngine(r *Rota) escalation.Rota {
	a := &engineRota{r: r, policies: make(map[string]*escalation.Policy, len(r.Policies))}
	for id, p := range r.Policies {
		ep := &escalation.Policy{ID: id, Repeat: p.Repeat, AckTimeout: p.AckTimeout, RepageEvery: p.RepageEvery, Fallback: targets(p.Fallback),
			PagerDutyAcksAnyone: p.PagerDutyAcksAnyone}
		for _, s := range p.Steps {
			ep.Steps = append(ep.Steps, escalation.Step{Targets: targets(s.Targets), Channels: s.Channels, Wait: s.Wait, RoutingKey: s.RoutingKey})
		}
		a.policies[id] = ep
	}
	return a
}

func targets(ts []Target) []escalation.Target {
	out := make([]escalation.Target, len(ts))
	for i, t := range ts {
		out[i] = escalation.Target{Rotation: t.Rotation, Person: t.Person, Everyone: t.Everyone}
	}
	return out
}

type engineRota struct {
	r        *Rota
	policies map[string]*escalation.Policy
}

func (a *engineRota) PolicyFor(labels map[string]string) (*escalation.Policy, error) {
	p, err := a.r.Route(labels)
	if err != nil {
		return nil, err
	}
	return a.policies[p.ID], nil
}

func (a *engineRota) PolicyNamed(id string) (*escalation.Policy, bool) {
	p, ok := a.policies[id]
	return p, ok
}

func (a *engineRota) Who(t escalation.Target, at time.Time) []notifiers.Recipient {
	var out []notifiers.Recipient
	for _, p := range a.r.Resolve(Target{Rotation: t.Rotation, Person: t.Person, Everyone: t.Everyone}, at) {
		out = append(out, p.Recipient())
	}
	return out
}

func (a *engineRota) PersonByContact(ch notifiers.Channel, address string) (notifiers.Recipient, bool) {
	p, ok := a.r.PersonByContact(ch, address)
	if !ok {
		return notifiers.Recipient{}, false
	}
	return p.Recipient(), true
}

func (a *engineRota) Limit(ch notifiers.Channel) (int, time.Duration) {
	l := a.r.Limits[ch]
	return l.Count, l.Per
}
