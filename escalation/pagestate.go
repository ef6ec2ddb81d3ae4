package escalation

// PageEvent is something that happens to an outbox entry. Every path that
// changes a page's status — a send's result, a provider's later report, a
// cancellation, a rate-limit hold, a fold into another page, a retry after a
// restart — goes through transition, so no path can move a page backwards.
type PageEvent string

// Page events.
const (
	// EvSendOK: the provider accepted the page.
	EvSendOK PageEvent = "send-ok"
	// EvSendTemp: the send failed and may be retried.
	EvSendTemp PageEvent = "send-temporary"
	// EvSendPerm: the send failed for good (the account, or this recipient).
	EvSendPerm PageEvent = "send-permanent"
	// EvGiveUp: a page retried too often is abandoned.
	EvGiveUp PageEvent = "give-up"
	// EvDelivered: the provider reports it reached the person's device.
	EvDelivered PageEvent = "delivered"
	// EvNoAnswer: the provider reports a call rang out, was busy or hit voicemail.
	EvNoAnswer PageEvent = "no-answer"
	// EvProviderFailed: the provider reports it could not deliver.
	EvProviderFailed PageEvent = "provider-failed"
	// EvCancel: the page is no longer needed (acknowledged, resolved, step passed).
	EvCancel PageEvent = "cancel"
	// EvHold: a rate limit holds the page back.
	EvHold PageEvent = "hold"
	// EvFold: the held page was carried by another page to the same person
	// that the provider accepted.
	EvFold PageEvent = "fold"
	// EvUnconfirmed: the channel's own evidence that a page it accepted did
	// not (or cannot be shown to) reach anyone: its confirmation deadline
	// passed without a delivery, or the channel said so (PagerDuty: nobody
	// was notified).
	EvUnconfirmed PageEvent = "unconfirmed"
)

// PageUnconfirmed is the state of a page its channel accepted but did not
// show to have arrived within its confirmation deadline (see
// notifiers.Confirmer), or reported as not delivered to anyone. For the
// step it counts as a permanent failure: the step moves on at once when no
// other page of it still may reach someone. A confirmation that comes late
// still moves it on to delivered.
const PageUnconfirmed PageStatus = "unconfirmed"

// PageFolded is the state of a held page whose news reached the person in
// another page (the carrier, named by FoldedInto) that the provider accepted.
const PageFolded PageStatus = "folded"

// pageRank orders page states by how much is known: a page never moves to a
// lower rank. Confirmed is delivered: a channel's confirmation (Matrix: the
// event came back through /sync; SMS: a delivered receipt; a call: answered)
// is the provider's word that the page reached the person, which is what
// delivered always meant, so one state holds both. Rank 0 holds the states
// of a page still owed to its person (not Done), which may move among each
// other.
func pageRank(s PageStatus) int {
	if !s.Done() {
		return 0
	}
	switch s {
	case PageCanceled:
		return 1
	case PageFolded:
		return 2
	case PageSent:
		return 3
	case PageUnconfirmed:
		return 4
	case PageNoAnswer:
		return 5
	case PageDeliv:
		return 6
	case PagePermFail:
		return 7
	}
	return 0
}

// transition is the page state machine: the state a page in state s moves
// to on event ev. A weaker or later event never overwrites a stronger one: a
// "sent" that arrives after the provider already reported delivery leaves the
// page delivered; a late send result of a canceled page records that it was
// sent (the provider has it, and must be told when the incident ends).
func transition(s PageStatus, ev PageEvent) PageStatus {
	owed := !s.Done()
	switch ev {
	case EvSendOK:
		if owed || s == PageCanceled || s == PageFolded {
			return PageSent
		}
	case EvSendTemp:
		if owed {
			return PageTempFail
		}
	case EvSendPerm, EvGiveUp:
		if owed {
			return PagePermFail
		}
	case EvDelivered:
		if pageRank(s) < pageRank(PageDeliv) && s != PageCanceled {
			return PageDeliv
		}
	case EvNoAnswer:
		if pageRank(s) < pageRank(PageNoAnswer) && s != PageCanceled {
			return PageNoAnswer
		}
	case EvProviderFailed:
		// After delivery a failure report is stale news; before it, the
		// provider could not deliver what it had accepted.
		if s == PageSent || s == PageUnconfirmed || s == PageNoAnswer || owed {
			return PagePermFail
		}
	case EvUnconfirmed:
		// Only a page the provider has (or may have, for a report that beat
		// the send result) can be unconfirmed; any later news outranks it.
		if s == PageSent || owed {
			return PageUnconfirmed
		}
	case EvCancel:
		if owed {
			return PageCanceled
		}
	case EvHold:
		if owed {
			return PageDeferred
		}
	case EvFold:
		if owed {
			return PageFolded
		}
	}
	return s
}
