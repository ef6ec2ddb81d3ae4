package escalation

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// DefaultAckTimeout re-pages an acknowledged incident still firing after it.
const DefaultAckTimeout = 4 * time.Hour

// Situation is everything a decision depends on. Decisions are pure: the same
// situation always yields the same change, which is what lets the store retry
// them and the tests table them.
type Situation struct {
	Policy *Policy
	Rota   Rota
	// Health reports channel health; channels it reports unconfigured or down
	// are skipped with a timeline note.
	Health HealthFunc
	Now    time.Time
}

func (s *Situation) health(ch notifiers.Channel) ChannelHealth {
	if s.Health == nil {
		return ChannelHealth{Configured: true}
	}
	return s.Health(ch)
}

func (s *Situation) ackTimeout() time.Duration {
	if s.Policy != nil && s.Policy.AckTimeout > 0 {
		return s.Policy.AckTimeout
	}
	return DefaultAckTimeout
}

// Decide moves an incident's escalation forward as of s.Now: it starts the
// policy, moves to the next step when the current one's wait is over or every
// page of it failed for good, repeats, pages the fallback, and re-pages an
// acknowledgement that timed out. It mutates inc and returns what to record.
func Decide(inc *Incident, pages []PageRecord, s Situation) Change {
	var ch Change
	e := &inc.Escalation
	now := s.Now
	switch inc.State {
	case Resolved:
		e.NextAt = time.Time{}
		return ch
	case Acknowledged:
		deadline := inc.AckedAt.Add(s.ackTimeout())
		if now.Before(deadline) {
			e.NextAt = deadline
			return ch
		}
		if inc.Firing() == 0 {
			e.NextAt = time.Time{}
			return ch
		}
		inc.State = Open
		ch.Note(now, EvRepaged, "still firing %s after the acknowledgement by %s: paging again from the first step", s.ackTimeout(), inc.AckedBy)
		inc.AckedAt, inc.AckedBy, inc.AckedVia = time.Time{}, "", ""
		*e = Escalation{Policy: e.Policy, Generation: e.Generation + 1}
	}
	if s.Policy == nil || len(s.Policy.Steps) == 0 {
		if !e.Exhausted {
			ch.Note(now, EvExhausted, "no escalation policy applies: nobody can be paged")
			e.Exhausted = true
		}
		e.NextAt = time.Time{}
		return ch
	}
	pol := s.Policy
	if e.Policy != pol.ID {
		ch.Note(now, EvPolicy, "policy %q", pol.ID)
		e.Policy = pol.ID
	}
	advance := false
	switch {
	case !e.Started:
		e.Started, e.Round, e.Step = true, 0, 0
	case e.Exhausted:
		e.NextAt = time.Time{}
		return ch
	case !now.Before(e.NextAt):
		advance = true
		ch.Note(now, EvEscalated, "no acknowledgement for step %d: escalating", e.Step+1)
	case stepFailed(pages, e.Generation):
		advance = true
		ch.Note(now, EvEscalated, "every page of step %d failed: escalating at once", e.Step+1)
	default:
		return ch // nothing due yet
	}
	// Plan steps until one pages somebody or the policy runs out. Each pass
	// moves forward, so the loop ends within (repeat+1)·steps passes.
	if advance {
		cancelStale(pages, &ch)
	}
	for range (pol.Repeat+1)*len(pol.Steps) + 1 {
		if advance {
			e.Generation++
			e.Step++
			if e.Step >= len(pol.Steps) {
				e.Step = 0
				e.Round++
				if e.Round > pol.Repeat {
					exhaust(inc, pol, s, &ch)
					return ch
				}
				ch.Note(now, EvStep, "repeating the policy (round %d of %d)", e.Round+1, pol.Repeat+1)
			}
		}
		advance = true
		st := pol.Steps[e.Step]
		e.StepAt = now
		e.NextAt = now.Add(st.Wait)
		n := planStep(inc, st, s, &ch)
		ch.Note(now, EvStep, "step %d of %d: %d page(s), waiting %s", e.Step+1, len(pol.Steps), n, st.Wait)
		if n > 0 {
			return ch
		}
	}
	exhaust(inc, pol, s, &ch)
	return ch
}

// stepFailed reports whether the current step paged someone and every one of
// its pages failed for good (nothing pending, sent or delivered).
func stepFailed(pages []PageRecord, gen uint64) bool {
	found := false
	for _, p := range pages {
		if p.Kind != notifiers.KindPage || p.Generation != gen {
			continue
		}
		found = true
		if p.Status != PagePermFail {
			return false
		}
	}
	return found
}

// cancelStale cancels the unfinished pages of steps already passed: their
// wait is over, the escalation has moved on.
func cancelStale(pages []PageRecord, ch *Change) {
	var stale []PageRecord
	for _, p := range pages {
		if p.Kind == notifiers.KindPage {
			stale = append(stale, p)
		}
	}
	Cancel(stale, "step passed", ch)
}

// exhaust pages the fallback list on every channel they have and marks the
// incident exhausted: it stays open, waiting for a person.
func exhaust(inc *Incident, pol *Policy, s Situation, ch *Change) {
	e := &inc.Escalation
	e.Generation++
	e.NextAt = time.Time{}
	if !e.Fallback && len(pol.Fallback) > 0 {
		e.Fallback = true
		st := Step{Targets: pol.Fallback, Channels: notifiers.Channels}
		n := planStep(inc, st, s, ch)
		ch.Note(s.Now, EvStep, "policy used up: paging the fallback list (%d page(s))", n)
	}
	e.Exhausted = true
	ch.Note(s.Now, EvExhausted, "escalation exhausted without an acknowledgement: incident stays open")
}

// planStep adds the pages of one step to ch and returns how many it added.
func planStep(inc *Incident, st Step, s Situation, ch *Change) int {
	e := &inc.Escalation
	var people []notifiers.Recipient
	seen := map[string]bool{}
	for _, t := range st.Targets {
		who := s.Rota.Who(t, s.Now)
		if len(who) == 0 {
			ch.Note(s.Now, EvSkipped, "skipped: %s has nobody on call", describeTarget(t))
		}
		for _, r := range who {
			if !seen[r.PersonID] {
				seen[r.PersonID] = true
				people = append(people, r)
			}
		}
	}
	n := 0
	for _, c := range st.Channels {
		h := s.health(c)
		switch {
		case !h.Configured:
			ch.Events = append(ch.Events, Event{At: s.Now, Kind: EvSkipped, Channel: string(c), Text: fmt.Sprintf("skipped: %s is not configured", c)})
			continue
		case h.Down:
			text := fmt.Sprintf("skipped: %s down since %s", c, h.Since.Format("15:04"))
			if h.Reason != "" {
				text += " (" + h.Reason + ")"
			}
			ch.Events = append(ch.Events, Event{At: s.Now, Kind: EvSkipped, Channel: string(c), Text: text})
			continue
		}
		for _, r := range people {
			if missing := missingContact(c, r); missing != "" {
				ch.Events = append(ch.Events, Event{At: s.Now, Kind: EvSkipped, Channel: string(c), Actor: r.PersonID,
					Text: fmt.Sprintf("skipped: %s has no %s for %s", name(r), missing, c)})
				continue
			}
			ch.Pages = append(ch.Pages, PageRecord{
				Kind: notifiers.KindPage, Channel: c, Recipient: r, Generation: e.Generation,
				Step: e.Step, Round: e.Round, RoutingKey: st.RoutingKey, Status: PagePending, CreatedAt: s.Now,
			})
			n++
		}
	}
	return n
}

// missingContact names the contact detail person r lacks for channel c, or "".
func missingContact(c notifiers.Channel, r notifiers.Recipient) string {
	switch c {
	case notifiers.Phone, notifiers.SMS:
		if r.Phone == "" {
			return "phone number"
		}
	case notifiers.Matrix:
		if r.MatrixID == "" {
			return "Matrix id"
		}
	}
	return ""
}

func name(r notifiers.Recipient) string {
	if r.Name != "" {
		return r.Name
	}
	return r.PersonID
}

func describeTarget(t Target) string {
	switch {
	case t.Person != "":
		return "person " + t.Person
	case t.Everyone:
		return "every member of rotation " + t.Rotation
	}
	return "rotation " + t.Rotation
}

// Cancel marks every unfinished page canceled, with reason.
func Cancel(pages []PageRecord, reason string, ch *Change) {
	for _, p := range pages {
		if !p.Status.Done() {
			p.Status = PageCanceled
			p.LastError = reason
			ch.Pages = append(ch.Pages, p)
		}
	}
}

// Tell adds an update of kind k (acknowledged, resolved, ...) for every
// channel that already paged someone about the incident, so PagerDuty stops
// paging and the Matrix thread shows it. Phone calls are not placed to say so.
func Tell(inc *Incident, pages []PageRecord, k notifiers.Kind, text string, now time.Time, ch *Change) {
	TellVia(inc, pages, k, text, "", now, ch)
}

// TellVia is Tell for an answer that came through channel via, which the
// updates name so that channel can skip confirming twice.
func TellVia(inc *Incident, pages []PageRecord, k notifiers.Kind, text string, via notifiers.Channel, now time.Time, ch *Change) {
	type dest struct {
		c   notifiers.Channel
		key string
	}
	done := map[dest]bool{}
	for _, p := range pages {
		if p.Kind != notifiers.KindPage || p.Channel == notifiers.Phone || !wasSent(p.Status) {
			continue
		}
		d := dest{p.Channel, p.RoutingKey}
		if p.Channel == notifiers.SMS {
			d.key = p.Recipient.Phone
		}
		if done[d] {
			continue
		}
		done[d] = true
		ch.Pages = append(ch.Pages, PageRecord{Kind: k, Channel: p.Channel, Recipient: p.Recipient,
			Generation: inc.Escalation.Generation, RoutingKey: p.RoutingKey, Text: text, Via: via, Status: PagePending, CreatedAt: now})
	}
}

func wasSent(s PageStatus) bool {
	return s == PageSent || s == PageDeliv || s == PageNoAnswer
}

// announceNewAlerts posts new alerts of an acknowledged incident on the chat
// channel without paging anyone again.
func announceNewAlerts(inc *Incident, pages []PageRecord, events []Event, now time.Time, ch *Change) {
	var lines []string
	for _, ev := range events {
		if ev.Kind == EvAlertFiring {
			lines = append(lines, ev.Text)
		}
	}
	if len(lines) == 0 {
		return
	}
	text := fmt.Sprintf("New alert(s) joined incident %d, acknowledged by %s: %s", inc.ID, inc.AckedBy, strings.Join(lines, "; "))
	var n Change
	Tell(inc, pages, notifiers.KindNotice, text, now, &n)
	n.Pages = slices.DeleteFunc(n.Pages, func(p PageRecord) bool { return p.Channel != notifiers.Matrix })
	ch.Pages = append(ch.Pages, n.Pages...)
	if len(n.Pages) > 0 {
		ch.Note(now, EvNote, "announced %d new alert(s) in chat without paging again", len(lines))
	}
}
