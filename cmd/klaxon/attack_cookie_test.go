package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/klaxon-oncall/klaxon/internal/web"
)

// TestSessionCookieHostPrefix: with an https public URL the session cookie
// is __Host-: Secure, Path=/, no Domain, so a sibling subdomain cannot set
// or shadow it.
func TestSessionCookieHostPrefix(t *testing.T) {
	for _, tc := range []struct {
		public, name string
		secure       bool
	}{
		{"https://klaxon.example.org", "__Host-" + web.SessionCookie, true},
		{"http://klaxon.example.org", web.SessionCookie, false},
	} {
		t.Run(tc.public, func(t *testing.T) {
			data := t.TempDir()
			alice := aliceTokenBeforeStart(t, data)
			k := startKlaxon(t, data, nil, map[string]string{"KLAXON_PUBLIC_URL": tc.public})
			resp, _ := do(t, formPost(t, k.base+"/signin", url.Values{"token": {alice}}))
			var got *http.Cookie
			for _, c := range resp.Cookies() {
				if strings.Contains(c.Name, web.SessionCookie) {
					got = c
				}
			}
			if got == nil || got.Name != tc.name || got.Secure != tc.secure || got.Path != "/" || got.Domain != "" || !got.HttpOnly {
				t.Fatalf("session cookie %+v, want %s secure=%v", got, tc.name, tc.secure)
			}
			// The cookie opens pages under its own name only.
			r := newReq(t, "GET", k.base+"/", nil)
			r.AddCookie(&http.Cookie{Name: tc.name, Value: got.Value})
			if resp, _ := do(t, r); resp.StatusCode != 200 {
				t.Fatalf("the session cookie opens nothing: %d", resp.StatusCode)
			}
			if tc.secure {
				r := newReq(t, "GET", k.base+"/", nil)
				r.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: got.Value})
				if resp, _ := do(t, r); resp.StatusCode != 303 {
					t.Fatalf("the unprefixed name still works over https: %d", resp.StatusCode)
				}
			}
		})
	}
}
