package web

import (
	"bufio"
	"net/http"
	"testing"
	"time"
)

// TestEventStreamIsFedByTheEngine: with the stream's own look at the store
// an hour away, a change the engine commits still reaches it at once.
func TestEventStreamIsFedByTheEngine(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.LiveInterval = time.Hour })
	f.fire("g1")
	alice := f.signIn(aliceToken)
	ver, err := f.web.version(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", f.srv.URL+"/events?since="+ver, nil)
	req.AddCookie(&http.Cookie{Name: f.web.CookieName(), Value: alice})
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() == "event: change" {
				close(got)
				return
			}
		}
	}()
	f.fire("g2")
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine's change did not reach the stream")
	}
}
