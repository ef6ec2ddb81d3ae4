package escalation

import (
	"fmt"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Act is an action a person takes on an incident, as Answer takes it.
type Act struct {
	Action notifiers.Action
	// By is who acted, as the timeline and the outcome name them.
	By string
	// Via is what the action came through: a channel's name, "api" or "web".
	Via string
	// PageID, if set, is the local id of the page answered: an escalation
	// then applies as of that page, so a late tap cannot escalate twice.
	PageID string
}

// Answer decides what act changes about incident inc as of s.Now: it
// acknowledges, withdraws an acknowledgement, escalates or resolves, and
// tells the channels already used. Like Decide it is pure: it mutates inc
// and returns what to record, with the outcome to tell the person. An act
// that changes nothing returns ErrNoChange, and the outcome says why.
func Answer(inc *Incident, pages []PageRecord, act Act, s Situation) (Change, notifiers.Outcome, error) {
	var ch Change
	now, actor, via := s.Now, act.By, act.Via
	out := notifiers.Outcome{Incident: inc.ID, By: actor}
	refuse := func(format string, args ...any) (Change, notifiers.Outcome, error) {
		out.Message = fmt.Sprintf(format, args...)
		return Change{}, out, ErrNoChange
	}
	viaCh := notifiers.Channel(via)
	if !viaCh.Valid() {
		viaCh = ""
	}
	ev := Event{At: now, Actor: actor, Channel: via, PageID: act.PageID}
	switch act.Action {
	case notifiers.Ack:
		if !inc.move(incAck, now, actor, via) {
			if inc.State == Acknowledged {
				return refuse("Incident %d was already acknowledged by %s.", inc.ID, inc.AckedBy)
			}
			return refuse("Incident %d is already resolved.", inc.ID)
		}
		inc.Escalation.NextAt = now.Add(s.ackTimeout())
		ev.Kind, ev.Text = EvAcknowledged, fmt.Sprintf("acknowledged by %s via %s", actor, via)
		ch.Events = append(ch.Events, ev)
		cancelPages(pages, "acknowledged", &ch)
		out.Message = fmt.Sprintf("Incident %d acknowledged by %s.", inc.ID, actor)
		tellVia(inc, pages, notifiers.KindAcknowledged, fmt.Sprintf("Incident %d acknowledged by %s (via %s).", inc.ID, actor, via), viaCh, now, &ch)
	case notifiers.Unack:
		if !inc.move(incUnack, now, "", "") {
			return refuse("Incident %d is not acknowledged.", inc.ID)
		}
		ev.Kind, ev.Text = EvUnack, fmt.Sprintf("acknowledgement withdrawn by %s via %s: paging again from the first step", actor, via)
		ch.Events = append(ch.Events, ev)
		tellVia(inc, pages, notifiers.KindUnacknowledged, fmt.Sprintf("Incident %d un-acknowledged by %s.", inc.ID, actor), viaCh, now, &ch)
		d := Decide(inc, pages, s)
		ch.Events, ch.Pages = append(ch.Events, d.Events...), append(ch.Pages, d.Pages...)
		out.Message = fmt.Sprintf("Incident %d un-acknowledged: paging again.", inc.ID)
	case notifiers.Escalate:
		if inc.State == Resolved {
			return refuse("Incident %d is already resolved.", inc.ID)
		}
		if act.PageID != "" {
			if p, ok := findPage(pages, act.PageID); ok && p.Generation != inc.Escalation.Generation {
				// The answer applies as of its page: the incident moved on since.
				return refuse("Incident %d has already moved on since that page.", inc.ID)
			}
		}
		inc.move(incEscalate, now, "", "")
		ev.Kind, ev.Text = EvEscalated, fmt.Sprintf("escalated by %s via %s", actor, via)
		ch.Events = append(ch.Events, ev)
		tellVia(inc, pages, notifiers.KindEscalated, fmt.Sprintf("Incident %d escalated by %s.", inc.ID, actor), viaCh, now, &ch)
		exhausted := inc.Escalation.Exhausted
		if inc.Escalation.Started {
			inc.Escalation.NextAt = now // the current step's wait (or the re-page interval) is over
		}
		d := Decide(inc, pages, s)
		ch.Events, ch.Pages = append(ch.Events, d.Events...), append(ch.Pages, d.Pages...)
		out.Message = fmt.Sprintf("Incident %d escalated to the next step.", inc.ID)
		if exhausted {
			out.Message = fmt.Sprintf("Incident %d has used up its policy: paging the fallback again now.", inc.ID)
		}
	case notifiers.Resolve:
		if !inc.move(incResolve, now, "", "") {
			return refuse("Incident %d is already resolved.", inc.ID)
		}
		ev.Kind, ev.Text = EvResolved, fmt.Sprintf("resolved by %s via %s", actor, via)
		ch.Events = append(ch.Events, ev)
		cancelPages(pages, "resolved", &ch)
		tellVia(inc, pages, notifiers.KindResolved, fmt.Sprintf("Incident %d resolved by %s.", inc.ID, actor), viaCh, now, &ch)
		out.Message = fmt.Sprintf("Incident %d resolved by %s.", inc.ID, actor)
	default:
		return Change{}, out, fmt.Errorf("unknown action %q", act.Action)
	}
	out.Applied = true
	return ch, out, nil
}
