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

// DefaultRepageEvery re-pages an exhausted incident at this interval when its
// policy does not say.
const DefaultRepageEvery = 15 * time.Minute

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
	// RecheckEvery is how soon an incident nobody can be paged for is planned
	// again (default 1m).
	RecheckEvery time.Duration
}

func (s *Situation) recheck() time.Duration {
	if s.RecheckEvery > 0 {
		return s.RecheckEvery
	}
	return time.Minute
}

func (s *Situation) repageEvery() time.Duration {
	if s.Policy != nil && s.Policy.RepageEvery > 0 {
		return s.Policy.RepageEvery
	}
	return DefaultRepageEvery
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
		ch.Note(now, EvRepaged, "still firing %s after the acknowledgement by %s: paging again from the first step", s.ackTimeout(), inc.AckedBy)
		inc.move(incReopen, now, "", "")
	}
	if s.Policy == nil || len(s.Policy.Steps) == 0 {
		wait(inc, s, &ch, "no escalation policy applies to it")
		return ch
	}
	pol := s.Policy
	if e.Policy != pol.ID {
		ch.Note(now, EvPolicy, "policy %q", pol.ID)
		e.Policy = pol.ID
		e.Step = min(e.Step, len(pol.Steps)-1)
	}
	advance := false
	switch {
	case !e.Started:
		e.Started, e.Round, e.Step = true, 0, 0
	case e.Exhausted:
		if now.Before(e.NextAt) {
			return ch
		}
		cancelStale(pages, &ch)
		repage(inc, pol, s, &ch)
		return ch
	case e.Waiting:
		if now.Before(e.NextAt) {
			return ch
		}
		e.Round, e.Step = 0, 0 // nobody could be paged: try the policy afresh
	case !now.Before(e.NextAt):
		advance = true
		ch.Note(now, EvEscalated, "no acknowledgement for step %d: escalating", e.Step+1)
	case stepFailed(pages, e.Generation):
		advance = true
		if stepUnconfirmed(pages, e.Generation) {
			ch.Note(now, EvEscalated, "no page of step %d was delivered (failed, or not confirmed in time): escalating at once", e.Step+1)
		} else {
			ch.Note(now, EvEscalated, "every page of step %d failed: escalating at once", e.Step+1)
		}
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
			inc.move(incStep, now, "", "")
			e.Step++
			if e.Step >= len(pol.Steps) {
				e.Step = 0
				e.Round++
				if e.Round > pol.Repeat {
					break
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
			if e.Waiting {
				e.Waiting = false
				ch.Note(now, EvNote, "paging again: a channel can reach someone now")
			}
			return ch
		}
	}
	if !Attempted(pages, e.Since) {
		// Nothing was ever really attempted: exhausting now would make the
		// incident silent. Wait, and try the policy again.
		e.Step, e.Round = 0, 0
		wait(inc, s, &ch, "no configured channel reaches anyone its policy names")
		return ch
	}
	exhaust(inc, pol, s, &ch)
	return ch
}

// Attempted reports whether a channel was really asked to send any page of
// the escalation that began in generation since (whatever the result).
func Attempted(pages []PageRecord, since uint64) bool {
	for _, p := range pages {
		if p.Kind == notifiers.KindPage && p.Attempts > 0 && p.Generation >= since {
			return true
		}
	}
	return false
}

// wait marks an incident nobody can be paged for: it is planned again every
// RecheckEvery, and at once when a channel comes up or the rota reloads.
func wait(inc *Incident, s Situation, ch *Change, why string) {
	e := &inc.Escalation
	if !e.Waiting {
		ch.Note(s.Now, EvNote, "nobody can be paged: %s; waiting, and paging as soon as a channel or the rota allows", why)
	}
	e.Waiting = true
	e.NextAt = s.Now.Add(s.recheck())
}

// stepFailed reports whether the current step paged someone and every one of
// its pages failed for good or went unconfirmed (nothing pending, sent or
// delivered): no page of it can still reach anyone, so its wait is not worth
// waiting out (I6: an unconfirmed page never holds a step longer than its
// confirmation deadline).
func stepFailed(pages []PageRecord, gen uint64) bool {
	found := false
	for _, p := range pages {
		if p.Kind != notifiers.KindPage || p.Generation != gen {
			continue
		}
		found = true
		if p.Status != PagePermFail && p.Status != PageUnconfirmed {
			return false
		}
	}
	return found
}

// stepUnconfirmed reports whether a page of step generation gen went unconfirmed.
func stepUnconfirmed(pages []PageRecord, gen uint64) bool {
	for _, p := range pages {
		if p.Kind == notifiers.KindPage && p.Generation == gen && p.Status == PageUnconfirmed {
			return true
		}
	}
	return false
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
	cancelPages(stale, "step passed", ch)
}

// exhaust pages the fallback list on every channel they have and marks the
// incident exhausted: it stays open, and is paged again every RepageEvery
// until someone answers.
func exhaust(inc *Incident, pol *Policy, s Situation, ch *Change) {
	e := &inc.Escalation
	inc.move(incStep, s.Now, "", "")
	if !e.Fallback && len(pol.Fallback) > 0 {
		e.Fallback = true
		st := Step{Targets: pol.Fallback, Channels: notifiers.Channels}
		n := planStep(inc, st, s, ch)
		ch.Note(s.Now, EvStep, "policy used up: paging the fallback list (%d page(s))", n)
	}
	e.Exhausted = true
	e.NextAt = s.Now.Add(s.repageEvery())
	ch.Note(s.Now, EvExhausted, "escalation exhausted without an acknowledgement: incident stays open and is paged again every %s", s.repageEvery())
}

// repage pages an exhausted incident again: the fallback list on every
// channel they have or, without one, the policy's last step.
func repage(inc *Incident, pol *Policy, s Situation, ch *Change) {
	e := &inc.Escalation
	inc.move(incStep, s.Now, "", "")
	e.Repages++
	st := pol.Steps[len(pol.Steps)-1]
	who := "the last step"
	if len(pol.Fallback) > 0 {
		st, who = Step{Targets: pol.Fallback, Channels: notifiers.Channels}, "the fallback list"
	}
	n := planStep(inc, st, s, ch)
	if n == 0 && len(pol.Fallback) > 0 {
		// Nobody on the fallback list can be reached: the last step then.
		st, who = pol.Steps[len(pol.Steps)-1], "the last step"
		n = planStep(inc, st, s, ch)
	}
	e.NextAt = s.Now.Add(s.repageEvery())
	ch.Note(s.Now, EvRepaged, "still unanswered after the policy was used up: paging %s again (%d page(s), time %d); next in %s", who, n, e.Repages, s.repageEvery())
}

// planStep adds the pages of one step to ch and returns how many it added.
func planStep(inc *Incident, st Step, s Situation, ch *Change) int {
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
	var up, down []notifiers.Channel
	for _, c := range st.Channels {
		switch h := s.health(c); {
		case !h.Configured:
			ch.Events = append(ch.Events, Event{At: s.Now, Kind: EvSkipped, Channel: string(c), Text: fmt.Sprintf("skipped: %s is not configured", c)})
		case h.Down:
			down = append(down, c)
		default:
			up = append(up, c)
		}
	}
	n := planOn(inc, up, people, st, s, ch)
	// Health is advice: a channel whose self-test says down is skipped only
	// while the step still pages someone on another channel. Its verdict may
	// be stale, and a failed attempt costs nothing.
	for _, c := range down {
		h := s.health(c)
		reason := ""
		if h.Reason != "" {
			reason = " (" + h.Reason + ")"
		}
		if n > 0 {
			ch.Events = append(ch.Events, Event{At: s.Now, Kind: EvSkipped, Channel: string(c),
				Text: fmt.Sprintf("skipped: %s down since %s%s", c, h.Since.Format("15:04"), reason)})
			continue
		}
		ch.Events = append(ch.Events, Event{At: s.Now, Kind: EvNote, Channel: string(c),
			Text: fmt.Sprintf("%s is down since %s%s, but nothing else of this step can page: paging on it anyway", c, h.Since.Format("15:04"), reason)})
	}
	if n == 0 {
		n = planOn(inc, down, people, st, s, ch)
	}
	return n
}

// planOn adds a page for each person on each channel they have a contact for.
func planOn(inc *Incident, chans []notifiers.Channel, people []notifiers.Recipient, st Step, s Situation, ch *Change) int {
	e := &inc.Escalation
	n := 0
	for _, c := range chans {
		for _, r := range people {
			if missing := r.MissingContact(c); missing != "" {
				ch.Events = append(ch.Events, Event{At: s.Now, Kind: EvSkipped, Channel: string(c), Actor: r.PersonID,
					Text: fmt.Sprintf("skipped: %s has no %s for %s", r.DisplayName(), missing, c)})
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

// name is how the timeline names person r (see notifiers.Recipient.DisplayName).
func describeTarget(t Target) string {
	switch {
	case t.Person != "":
		return "person " + t.Person
	case t.Everyone:
		return "every member of rotation " + t.Rotation
	}
	return "rotation " + t.Rotation
}

// cancelPages marks every unfinished page canceled, with reason.
func cancelPages(pages []PageRecord, reason string, ch *Change) {
	for _, p := range pages {
		if next := transition(p.Status, EvCancel); next != p.Status {
			p.Status = next
			p.LastError = reason
			p.NextTry = time.Time{}
			ch.Pages = append(ch.Pages, p)
		}
	}
}

// tell adds an update of kind k (acknowledged, resolved, ...) for every
// channel that already paged someone about the incident, so PagerDuty stops
// paging and the Matrix thread shows it. Phone calls are not placed to say so.
func tell(inc *Incident, pages []PageRecord, k notifiers.Kind, text string, now time.Time, ch *Change) {
	tellVia(inc, pages, k, text, "", now, ch)
}

// tellVia is tell for an answer that came through channel via, which the
// updates name so that channel can skip confirming twice.
func tellVia(inc *Incident, pages []PageRecord, k notifiers.Kind, text string, via notifiers.Channel, now time.Time, ch *Change) {
	type dest struct {
		c   notifiers.Channel
		key string
	}
	done := map[dest]bool{}
	for _, p := range pages {
		if p.Kind != notifiers.KindPage || p.Channel == notifiers.Phone || !p.Status.Sent() {
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
	tell(inc, pages, notifiers.KindNotice, text, now, &n)
	n.Pages = slices.DeleteFunc(n.Pages, func(p PageRecord) bool { return p.Channel != notifiers.Matrix })
	ch.Pages = append(ch.Pages, n.Pages...)
	if len(n.Pages) > 0 {
		ch.Note(now, EvNote, "announced %d new alert(s) in chat without paging again", len(lines))
	}
}
