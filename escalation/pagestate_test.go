package escalation

import "testing"

var allStatuses = []PageStatus{PagePending, PageTempFail, PageDeferred, PageCanceled, PageFolded, PageSent, PageUnconfirmed, PageNoAnswer, PageDeliv, PagePermFail}

var allPageEvents = []PageEvent{EvSendOK, EvSendTemp, EvSendPerm, EvGiveUp, EvDelivered, EvNoAnswer, EvProviderFailed, EvCancel, EvHold, EvFold, EvUnconfirmed}

// TestTransitionNeverMovesBackwards checks every (state, event) pair.
func TestTransitionNeverMovesBackwards(t *testing.T) {
	for _, s := range allStatuses {
		for _, ev := range allPageEvents {
			got := Transition(s, ev)
			if pageRank(got) < pageRank(s) {
				t.Errorf("Transition(%s, %s) = %s: moves backwards", s, ev, got)
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
		if got := Transition(tc.from, tc.ev); got != tc.want {
			t.Errorf("Transition(%s, %s) = %s, want %s", tc.from, tc.ev, got, tc.want)
		}
	}
}

// TestUnconfirmedIsDoneAndWasSent: an unconfirmed page is not sent again,
// and the channel that has it is told when the incident ends.
func TestUnconfirmedIsDoneAndWasSent(t *testing.T) {
	if !PageUnconfirmed.Done() || !wasSent(PageUnconfirmed) || pageRank(PageUnconfirmed) == 0 {
		t.Fatal("unconfirmed must be done, sent, and not owed")
	}
}
