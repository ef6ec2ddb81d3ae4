package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAttackSigninOpenRedirect: after sign-in the server redirects to
// ?next=; whatever the query holds, the target stays a path on this site.
func TestAttackSigninOpenRedirect(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	session := signIn(t, k.base, alice)
	for _, next := range []string{
		"/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/\x00/evil.example", "/\x7f/evil.example",
		"/\\evil.example", "/a\\..\\\\evil.example", "//evil.example", "///evil.example", "https://evil.example/",
		"/%2F/evil.example/..", "\\\\evil.example", "http:/evil.example", " /x",
	} {
		for _, how := range []string{"GET", "POST"} {
			var r *http.Request
			if how == "GET" {
				r = cookieReq(newReq(t, "GET", k.base+"/signin?next="+url.QueryEscape(next), nil), session)
			} else {
				r = formPost(t, k.base+"/signin", url.Values{"token": {alice}, "next": {next}})
			}
			resp, _ := do(t, r)
			loc := resp.Header.Get("Location")
			if resp.StatusCode != 303 {
				t.Fatalf("%s next=%q: %d", how, next, resp.StatusCode)
			}
			if loc != "/" && !safeLocation(loc) {
				t.Errorf("%s next=%q redirects to %q", how, next, loc)
			}
			if next != "/%2F/evil.example/.." && loc != "/" {
				t.Errorf("%s next=%q redirects to %q, want /", how, next, loc)
			}
		}
	}
	// A genuine path with a query survives.
	resp, _ := do(t, cookieReq(newReq(t, "GET", k.base+"/signin?next="+url.QueryEscape("/incidents/1?done=ack"), nil), session))
	if loc := resp.Header.Get("Location"); loc != "/incidents/1?done=ack" {
		t.Errorf("a same-site next was lost: %q", loc)
	}
}

// safeLocation: a redirect target a browser resolves to this origin.
func safeLocation(loc string) bool {
	u, err := url.Parse(loc)
	return err == nil && u.Scheme == "" && u.Host == "" && strings.HasPrefix(loc, "/") &&
		!strings.HasPrefix(loc, "//") && !strings.ContainsAny(loc, "\\\t\r\n\x00")
}
