package escalation

import (
	"fmt"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Delivery is what a page's confirmation, or its absence, says about its
// channel: Config.OnDelivery gets one for every page a channel confirmed
// and every page it did not, so the self-tests can call a channel that
// accepts pages but does not deliver them degraded, and metrics can count.
type Delivery struct {
	Channel notifiers.Channel
	// Page is the local page id.
	Page string
	// Confirmed is set when the channel showed the page arrived.
	Confirmed bool
	// Took is the time from the provider accepting the page to its
	// confirmation (zero when unknown or unconfirmed).
	Took time.Duration
	// Cause classifies an unconfirmed page: CauseDeadline or CauseReported.
	Cause string
	// Reason says why in words, for an alarm.
	Reason string
}

// Causes of an unconfirmed page, as Delivery.Cause and the metrics name them.
const (
	// CauseDeadline: the confirmation deadline passed without a confirmation.
	CauseDeadline = "deadline"
	// CauseReported: the channel reported the page reached nobody.
	CauseReported = "reported"
)

// confirmWithin is how long channel ch promises to take to confirm a page
// it accepted, or 0 when it gives no confirmation.
func (e *Engine) confirmWithin(ch notifiers.Channel) time.Duration {
	if c, ok := e.channels[ch].(notifiers.Confirmer); ok {
		return max(c.ConfirmWithin(), 0)
	}
	return 0
}

// expectConfirmation gives page cur, just accepted by its provider at now,
// its confirmation deadline if its channel confirms, and makes the incident
// wake for it.
func (e *Engine) expectConfirmation(inc *Incident, cur *PageRecord, now time.Time) {
	cur.SentAt = now
	within := e.confirmWithin(cur.Channel)
	if within <= 0 || cur.Kind != notifiers.KindPage || cur.Status != PageSent {
		return
	}
	cur.ConfirmBy = now.Add(within)
	inc.Escalation.ConfirmBy = earliest(inc.Escalation.ConfirmBy, cur.ConfirmBy)
}

// expireConfirmations moves every page whose confirmation deadline passed
// by now without a confirmation to unconfirmed, through the page state
// machine, with a timeline entry saying what that means, and sets the
// incident's next confirmation deadline. It returns the pages it changed
// and updates pages in place, so a decision that follows sees them.
func expireConfirmations(inc *Incident, pages []PageRecord, now time.Time, ch *Change) (expired []PageRecord) {
	next := time.Time{}
	for i := range pages {
		p := &pages[i]
		if p.ConfirmBy.IsZero() || p.Status != PageSent {
			continue
		}
		if now.Before(p.ConfirmBy) {
			next = earliest(next, p.ConfirmBy)
			continue
		}
		p.Status = transition(p.Status, EvUnconfirmed)
		why := unconfirmedText(p.Channel, p.ConfirmBy.Sub(p.SentAt))
		p.LastError = why
		ch.Pages = append(ch.Pages, *p)
		ch.Events = append(ch.Events, Event{At: now, Kind: EvPageResult, Channel: string(p.Channel), Actor: p.Recipient.PersonID, PageID: p.ID,
			Text: fmt.Sprintf("%s %s via %s: unconfirmed: %s", verb(p.Kind), p.Recipient.DisplayName(), p.Channel, why)})
		expired = append(expired, *p)
	}
	inc.Escalation.ConfirmBy = next
	return expired
}

// unconfirmedText says in words what a page of channel c not confirmed
// within d means.
func unconfirmedText(c notifiers.Channel, d time.Duration) string {
	w := spoken(d)
	switch c {
	case notifiers.Matrix:
		return fmt.Sprintf("posted to Matrix but not seen back within %s: the homeserver may not be delivering", w)
	case notifiers.PagerDuty:
		return fmt.Sprintf("triggered in PagerDuty but no person was notified within %s: PagerDuty may not be paging anyone", w)
	case notifiers.SMS:
		return fmt.Sprintf("texted but no delivery receipt within %s: the carrier may not be delivering", w)
	case notifiers.Phone:
		return fmt.Sprintf("call placed but not answered within %s", w)
	}
	return fmt.Sprintf("sent via %s but not confirmed within %s", c, w)
}

// spoken formats a deadline the way a person says it: "30 s", "2 min",
// "1 min 30 s".
func spoken(d time.Duration) string {
	d = d.Round(time.Second)
	m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
	switch {
	case m == 0:
		return fmt.Sprintf("%d s", s)
	case s == 0:
		return fmt.Sprintf("%d min", m)
	}
	return fmt.Sprintf("%d min %d s", m, s)
}

// earliest is the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// delivered tells OnDelivery that the channel confirmed page p at now.
func (e *Engine) delivered(p PageRecord, now time.Time) {
	if e.cfg.OnDelivery == nil {
		return
	}
	d := Delivery{Channel: p.Channel, Page: p.ID, Confirmed: true}
	sent := p.SentAt
	if sent.IsZero() {
		// Confirmed before the send's result was recorded: the send began
		// after the page was planned.
		sent = p.CreatedAt
	}
	if now.After(sent) {
		d.Took = now.Sub(sent)
	}
	e.cfg.OnDelivery(d)
}

// unconfirmed tells OnDelivery (or, for a cause about the person alone,
// OnRecipient) that page p went unconfirmed.
func (e *Engine) unconfirmed(p PageRecord, cause, reason string, recipient bool) {
	if recipient {
		if e.cfg.OnRecipient != nil {
			e.cfg.OnRecipient(p.Recipient.PersonID, p.Channel, notifiers.PermanentRecipient("", fmt.Errorf("not delivered: %s", reason)))
		}
		return
	}
	if e.cfg.OnDelivery != nil {
		e.cfg.OnDelivery(Delivery{Channel: p.Channel, Page: p.ID, Cause: cause, Reason: reason})
	}
}
