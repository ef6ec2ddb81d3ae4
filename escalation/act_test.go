package escalation_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// TestWebLinkPageIDMapsBackThroughActAs checks the round trip the web's
// signed links make on an installation with its own id: Config.Link gets the
// local page record while the channel sees the external id, and the id the
// link carries is one ActAs accepts, applying an escalation as of that page
// (a second tap of the same link does not escalate twice).
func TestWebLinkPageIDMapsBackThroughActAs(t *testing.T) {
	var mu sync.Mutex
	var linked []string // page ids Config.Link was given
	w := newWorldWith(t, defaultPolicy(), func(c *escalation.Config) {
		c.Installation = "inst7"
		c.Link = func(inc escalation.Incident, p escalation.PageRecord) string {
			mu.Lock()
			defer mu.Unlock()
			linked = append(linked, p.ID)
			return "https://klaxon.example.org/l/" + p.ID
		}
	})
	w.ingest(firing("g", "a"))
	sent := w.rec[notifiers.Matrix].Pages()[0]
	mu.Lock()
	first := linked[0]
	mu.Unlock()
	if sent.ID != "inst7_"+first {
		t.Fatalf("channel saw page id %q, Link got %q: want the channel's to be the installation's external id of the link's", sent.ID, first)
	}
	if sent.Link != "https://klaxon.example.org/l/"+first {
		t.Fatalf("page link = %q, want the one Config.Link made", sent.Link)
	}

	out, err := w.eng.ActAs(w.ctx, 1, notifiers.Escalate, "Alice", string(notifiers.Web), first)
	if err != nil || !out.Applied {
		t.Fatalf("ActAs(escalate, link's page id) = %+v, %v", out, err)
	}
	if !slices.Contains(w.paged(), "pagerduty:alice") {
		t.Fatalf("escalate did not move to the next step: %v", w.paged())
	}
	// The same link tapped again does nothing: the page is of an old step.
	out, err = w.eng.ActAs(w.ctx, 1, notifiers.Escalate, "Alice", string(notifiers.Web), first)
	if err != nil || out.Applied {
		t.Fatalf("second tap = %+v, %v; want not applied", out, err)
	}
	// Nor does the external id of that page, as a channel reports it.
	out, err = w.eng.ActAs(w.ctx, 1, notifiers.Escalate, "Alice", string(notifiers.Web), sent.ID)
	if err != nil || out.Applied {
		t.Fatalf("tap with the external id = %+v, %v; want not applied", out, err)
	}
	if slices.Contains(w.paged(), "phone:alice") {
		t.Fatalf("a late tap escalated twice: %v", w.paged())
	}
	for _, bad := range []string{"other_" + first, "2-1", "junk"} {
		if _, err := w.eng.ActAs(w.ctx, 1, notifiers.Ack, "Alice", string(notifiers.Web), bad); !errors.Is(err, notifiers.ErrUnknownIncident) {
			t.Errorf("ActAs with page id %q: %v, want ErrUnknownIncident", bad, err)
		}
	}
	if inc := w.incident(1); inc.State != escalation.Open {
		t.Errorf("state = %s after refused acks, want open", inc.State)
	}
}
