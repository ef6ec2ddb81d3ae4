package main

import (
	"net/http"
	"net/url"
	"testing"
)

// TestAttackOriginNull: a sandboxed frame or a data: page of another site
// posts with "Origin: null"; that is not the same origin.
func TestAttackOriginNull(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	id := k.webhook(t, "g1", "")
	session := signIn(t, k.base, alice)
	csrf := formCSRF(t, cookieReq(newReq(t, "GET", k.base+"/", nil), session))
	r := cookieReq(formPost(t, k.base+"/incidents/"+id+"/ack", url.Values{"csrf": {csrf}}), session)
	r.Header.Set("Origin", "null")
	if resp, _ := do(t, r); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("Origin: null: %d, want 403", resp.StatusCode)
	}
	signin := formPost(t, k.base+"/signin", url.Values{"token": {alice}})
	signin.Header.Set("Origin", "null")
	if resp, _ := do(t, signin); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in with Origin: null: %d, want 403", resp.StatusCode)
	}
	if st := k.incidentState(t, id); st != "open" {
		t.Fatalf("a null-origin form acted: %s", st)
	}
}
