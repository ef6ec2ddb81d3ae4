package main

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestAttackEventStreamsPerSession: one session opening stream after
// stream gets four; the fifth is answered 429 and a closed one frees its place.
func TestAttackEventStreamsPerSession(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	session := signIn(t, k.base, alice)
	open := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		r := cookieReq(newReq(t, "GET", k.base+"/events", nil).WithContext(ctx), session)
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return resp, func() { cancel(); resp.Body.Close() }
	}
	var closers []context.CancelFunc
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for i := range 4 {
		resp, done := open()
		closers = append(closers, done)
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i+1, resp.StatusCode)
		}
	}
	resp, done := open()
	done()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fifth stream: %d, want 429 with Retry-After", resp.StatusCode)
	}
	closers[0]()
	closers = closers[1:]
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, done := open()
		closers = append(closers, done)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream's place was not freed: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}
