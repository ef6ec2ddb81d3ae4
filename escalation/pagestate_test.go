package escalation

import "testing"

var allStatuses = []PageStatus{PagePending, PageTempFail, PageDeferred, PageCanceled, PageFolded, PageSent, PageUnconfirmed, PageNoAnswer, PageDeliv, PagePermFail}

var allPageEvents = []PageEvent{EvSendOK, EvSendTemp, EvSendPerm, EvGiveUp, EvDelivered, EvNoAnswer, EvProviderFailed, EvCancel, EvHold, EvFold, EvUnconfirmed}

// TestTransitionNeverMovesBackwards checks every (state, event) pair.
func TestTransitionNeverMovesBackwards(t *testing.T) {
	for _, s := range allStatuses {
		for _, ev := range allPageEvents {
			got := transition(s, ev)
			if pageRank(got) < pageRank(s) {
				t.Errorf("transition(%s, %s) = %s: moves backwards", s, ev, got)
			}
		}
	}
}

func TestTransitionTable(t *testing.T) {
	for _, tc := range []struct {
		from PageStatus
		ev   PageEvent
		want PageStatus
	}{
		{PagePending, EvSendOK, PageSent},
		{PagePending, EvSendTemp, PageTempFail},
		{PagePending, EvSendPerm, PagePermFail},
		{PagePending, EvCancel, PageCanceled},
		{PagePending, EvHold, PageDeferred},
		{PageDeferred, EvFold, PageFolded},
		{PageDeferred, EvSendOK, PageSent},
		{PageDeferred, EvCancel, PageCanceled},
		{PageTempFail, EvSendOK, PageSent},
		{PageTempFail, EvGiveUp, PagePermFail},
		// A status callback that beat the send result is not overwritten.
		{PageDeliv, EvSendOK, PageDeliv},
		{PageNoAnswer, EvSendOK, PageNoAnswer},
		{PagePending, EvDelivered, PageDeliv},
		{PageSent, EvDelivered, PageDeliv},
		{PageSent, EvNoAnswer, PageNoAnswer},
		{PageNoAnswer, EvDelivered, PageDeliv},
		{PageDeliv, EvNoAnswer, PageDeliv},
		{PageSent, EvProviderFailed, PagePermFail},
		{PageDeliv, EvProviderFailed, PageDeliv},
		// Done pages are not canceled, held or folded.
		{PageSent, EvCancel, PageSent},
		{PageSent, EvHold, PageSent},
		{PagePermFail, EvSendOK, PagePermFail},
		{PagePermFail, EvCancel, PagePermFail},
		// A send that completes after its page was canceled is recorded as sent.
		{PageCanceled, EvSendOK, PageSent},
		{PageCanceled, EvSendTemp, PageCanceled},
		{PageCanceled, EvDelivered, PageCanceled},
		{PageFolded, EvCancel, PageFolded},
		{PageFolded, EvSendTemp, PageFolded},
		// Confirmation: sent → delivered (confirmed) or sent → unconfirmed;
		// an unconfirmed page may still be confirmed late or fail, and
		// nothing known better becomes unconfirmed.
		{PageSent, EvUnconfirmed, PageUnconfirmed},
		{PagePending, EvUnconfirmed, PageUnconfirmed},
		{PageUnconfirmed, EvDelivered, PageDeliv},
		{PageUnconfirmed, EvProviderFailed, PagePermFail},
		{PageUnconfirmed, EvNoAnswer, PageNoAnswer},
		{PageUnconfirmed, EvSendOK, PageUnconfirmed},
		{PageUnconfirmed, EvCancel, PageUnconfirmed},
		{PageDeliv, EvUnconfirmed, PageDeliv},
		{PageNoAnswer, EvUnconfirmed, PageNoAnswer},
		{PagePermFail, EvUnconfirmed, PagePermFail},
		{PageCanceled, EvUnconfirmed, PageCanceled},
		{PageFolded, EvUnconfirmed, PageFolded},
	} {
		if got := transition(tc.from, tc.ev); got != tc.want {
			t.Errorf("transition(%s, %s) = %s, want %s", tc.from, tc.ev, got, tc.want)
		}
	}
}

// TestPageStatusSets checks the two sets every path uses: done (nothing more
// to send; the rest is owed to the person) and sent (the provider accepted
// it, so its channel is told how the incident ends).
func TestPageStatusSets(t *testing.T) {
	for _, tc := range []struct {
		s          PageStatus
		done, sent bool
	}{
		{PagePending, false, false},
		{PageTempFail, false, false},
		{PageDeferred, false, false},
		{PageCanceled, true, false},
		{PageFolded, true, false},
		{PageSent, true, true},
		{PageNoAnswer, true, true},
		{PageDeliv, true, true},
		{PageUnconfirmed, true, true},
		{PagePermFail, true, false},
	} {
		if tc.s.Done() != tc.done || tc.s.Sent() != tc.sent {
			t.Errorf("%s: done %v sent %v, want %v %v", tc.s, tc.s.Done(), tc.s.Sent(), tc.done, tc.sent)
		}
		if owed := pageRank(tc.s) == 0; owed == tc.done {
			t.Errorf("%s: rank %d, but done is %v", tc.s, pageRank(tc.s), tc.done)
		}
	}
	if len(allStatuses) != 10 {
		t.Errorf("%d page states, the table has 10", len(allStatuses))
	}
}
