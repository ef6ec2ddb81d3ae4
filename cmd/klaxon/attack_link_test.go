package main

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/web"
)

// TestAttackLinkUnack: a signed link, as posted in PagerDuty where every
// PagerDuty user reads it, must not withdraw an acknowledgement (which
// restarts paging from step 1): links do only what their page shows.
func TestAttackLinkUnack(t *testing.T) {
	k := startKlaxon(t, "", nil, map[string]string{"KLAXON_PUBLIC_URL": "http://klaxon.example.org"})
	id := k.webhook(t, "g1", "")
	key, err := web.LoadKey(k.data)
	if err != nil {
		t.Fatal(err)
	}
	link := web.NewSigner(key).LinkToken(id+"-1", "alice", time.Now().Add(time.Hour))
	csrf := formCSRF(t, newReq(t, "GET", k.base+"/l/"+link, nil))
	if resp, _ := do(t, formPost(t, k.base+"/l/"+link, url.Values{"csrf": {csrf}, "action": {"ack"}})); resp.StatusCode != 303 {
		t.Fatalf("ack through the link: %d", resp.StatusCode)
	}
	if st := k.incidentState(t, id); st != "acknowledged" {
		t.Fatalf("after ack: %s", st)
	}
	for _, action := range []string{"unack", "unacknowledge", "reopen", ""} {
		resp, _ := do(t, formPost(t, k.base+"/l/"+link, url.Values{"csrf": {csrf}, "action": {action}}))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("action %q through a link: %d, want 400", action, resp.StatusCode)
		}
	}
	if st := k.incidentState(t, id); st != "acknowledged" {
		t.Fatalf("a link withdrew the acknowledgement: %s", st)
	}
}
