package escalation

import "time"

// incidentEvent is something that happens to an incident as a whole: an
// answer, its acknowledgement running out, its alerts resolving, or its
// escalation moving on. Every change of an incident's state (after it
// opened), of its acknowledgement and of its generation goes through
// (*Incident).move, the incident state machine beside the page one (see
// transition).
type incidentEvent string

// Incident events.
const (
	// incAck: a person acknowledged. Open → acknowledged.
	incAck incidentEvent = "ack"
	// incUnack: the acknowledgement was withdrawn. Acknowledged → open,
	// escalating afresh from the first step.
	incUnack incidentEvent = "unack"
	// incReopen: the acknowledgement timed out while alerts still fire.
	// Acknowledged → open, escalating afresh from the first step.
	incReopen incidentEvent = "reopen"
	// incEscalate: a person asked for the next step. Acknowledged → open
	// where the escalation stood (Decide then moves it on); open stays open.
	incEscalate incidentEvent = "escalate"
	// incResolve: resolved by a person or in Alertmanager. Open or
	// acknowledged → resolved, with nothing left to schedule.
	incResolve incidentEvent = "resolve"
	// incStep: the escalation moved on (the next step, the policy used up,
	// a re-page). Open stays open, in a new generation.
	incStep incidentEvent = "step"
)

// move applies ev to the incident at now; by and via name who acknowledged
// and through what (incAck only). It reports whether ev applies in the
// incident's state; when it does not, the incident is left as it was.
//
// Every event that applies starts a new generation, except an escalation
// (its step move is an incStep of its own): a page remembers the generation
// it was sent in, so an answer to it applies as of that page.
func (inc *Incident) move(ev incidentEvent, now time.Time, by, via string) bool {
	e := &inc.Escalation
	switch ev {
	case incAck:
		if inc.State != Open {
			return false
		}
		inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = Acknowledged, now, by, via
		e.Generation++
	case incUnack, incReopen:
		if inc.State != Acknowledged {
			return false
		}
		inc.reopen()
		*e = Escalation{Policy: e.Policy, Generation: e.Generation + 1, Since: e.Generation + 1}
	case incEscalate:
		switch inc.State {
		case Resolved:
			return false
		case Acknowledged:
			inc.reopen() // where the escalation stood
		}
	case incResolve:
		if inc.State == Resolved {
			return false
		}
		inc.State, inc.ResolvedAt = Resolved, now
		e.NextAt = time.Time{}
		e.Generation++
	case incStep:
		if inc.State != Open {
			return false
		}
		e.Generation++
	default:
		return false
	}
	return true
}

// reopen makes an acknowledged incident open again, forgetting who acknowledged.
func (inc *Incident) reopen() {
	inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = Open, time.Time{}, "", ""
}
