package main

import (
	"testing"
)

// TestAttackTrustedHeaderTwice: behind a proxy that appends the sign-in
// header rather than replacing it, a client sends its own first; a request
// carrying the header twice signs nobody in.
func TestAttackTrustedHeaderTwice(t *testing.T) {
	k := startKlaxon(t, "", []string{"--web-auth-header", "X-Forwarded-Email", "--web-auth-proxy", "127.0.0.1,::1"}, nil)
	one := newReq(t, "GET", k.base+"/", nil)
	one.Header.Set("X-Forwarded-Email", "alice@example.org")
	if resp, _ := do(t, one); resp.StatusCode != 200 {
		t.Fatalf("one trusted header: %d, want 200", resp.StatusCode)
	}
	for _, vals := range [][]string{{"alice@example.org", "eve@example.org"}, {"eve@example.org", "eve@example.org"}, {"alice@example.org, eve@example.org"}} {
		r := newReq(t, "GET", k.base+"/", nil)
		for _, v := range vals {
			r.Header.Add("X-Forwarded-Email", v)
		}
		if resp, _ := do(t, r); resp.StatusCode != 303 {
			t.Errorf("header %q: %d, want 303 to sign-in", vals, resp.StatusCode)
		}
	}
}
