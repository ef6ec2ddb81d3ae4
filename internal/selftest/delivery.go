package selftest

import (
	"fmt"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// UnconfirmedToDegraded is how many unconfirmed pages (or canaries, or
// stalled syncs) in a row make a channel degraded: one may be a slow
// homeserver or carrier, two in a row is a channel that accepts pages but
// does not deliver them.
const UnconfirmedToDegraded = 2

// notDelivering is the reason a degraded channel's record and alarm give.
const notDelivering = "accepts pages but does not deliver them"

// Delivery learns whether a page (or a canary) a channel accepted was shown
// to arrive (confirmed), or not, with the reason in words. A stalled or
// failing sync is reported the same way, once per confirmation deadline it
// lasts. UnconfirmedToDegraded of them in a row make the channel degraded,
// "accepts pages but does not deliver them": an alarm goes out through the
// channels that still work, and it clears by itself at the next confirmed
// page or canary. Health stays advice: a channel degraded this way still
// pages (the engine moves on from its pages at their deadline).
func (m *Monitor) Delivery(ch notifiers.Channel, confirmed bool, reason string) {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	r, ok := m.channels[ch]
	if !ok || !m.configured(ch) {
		m.mu.Unlock()
		return
	}
	was := r.NotDelivering != ""
	reason = oneLine(reason)
	if confirmed {
		r.Unconfirmed, r.LastUnconfirmed = 0, ""
		r.LastDelivered = now
		if was {
			m.log.Info("channel delivers again: a page was confirmed", "channel", ch, "was", r.NotDelivering)
		}
		r.NotDelivering, r.NotDeliveringSince = "", time.Time{}
	} else {
		r.Unconfirmed++
		r.LastUnconfirmed = reason
		if r.Unconfirmed >= UnconfirmedToDegraded {
			if !was {
				r.NotDeliveringSince = now
				m.log.Error("channel degraded: it "+notDelivering, "channel", ch, "unconfirmed_in_a_row", r.Unconfirmed, "reason", reason)
			}
			r.NotDelivering = reason
		} else {
			m.log.Warn("a page was not confirmed; not degraded yet", "channel", ch, "unconfirmed_in_a_row", r.Unconfirmed,
				"degraded_after", UnconfirmedToDegraded, "reason", reason)
		}
	}
	changed := was != (r.NotDelivering != "")
	// A confirmation like the one before changes only the last delivery:
	// that stays in memory and is saved by the minute loop, not synced per
	// page in a storm.
	durable := changed || !confirmed
	if !durable {
		m.dirty = true
	}
	m.mu.Unlock()
	if durable {
		kick(m.kickAlarms)
	}
}

// view is the record as the API, `klaxon status` and the metrics show it: a
// channel that does not deliver is degraded, whatever its self-test says
// (its account checks pass, as they did on the night that began Klaxon).
func (r channelRecord) view() (notifiers.Status, string) {
	if r.NotDelivering != "" && r.Status != notifiers.Down {
		return notifiers.Degraded, fmt.Sprintf("%s (%d unconfirmed in a row, latest: %s)", notDelivering, r.Unconfirmed, r.NotDelivering)
	}
	return r.Status, r.Reason
}

func notDeliveringTitle(ch notifiers.Channel, r channelRecord, loc *time.Location) string {
	last := "never"
	if !r.LastDelivered.IsZero() {
		last = clock(r.LastDelivered, loc)
	}
	return fmt.Sprintf("%s %s since %s: %s (last proven delivery: %s) — pages on it move on at their confirmation deadline; check the provider",
		channelName(ch), notDelivering, clock(r.NotDeliveringSince, loc), r.NotDelivering, last)
}
