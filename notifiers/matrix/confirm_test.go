package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// reports records Delivered reports.
type reports struct {
	mu  sync.Mutex
	got []notifiers.Report
}

func (r *reports) Report(_ context.Context, rep notifiers.Report) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rep)
	return nil
}

func (r *reports) list() []notifiers.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notifiers.Report(nil), r.got...)
}

// A page is confirmed when the bot's own /sync returns its event in the
// alert room, whether the echo comes after the send's answer or before it.
func TestPageConfirmedWhenSeenBackInSync(t *testing.T) {
	for _, echoFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "echo after send", true: "echo before send returns"}[echoFirst], func(t *testing.T) {
			f := newFakeHS(t)
			rep := &reports{}
			n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.Reporter = rep })
			if got := n.ConfirmWithin(); got != DefaultConfirmWithin {
				t.Fatalf("ConfirmWithin = %s, want %s", got, DefaultConfirmWithin)
			}
			p := testPage()
			if echoFirst {
				// The sync already returned event $ev1 (the fake's first id).
				n.seen(context.Background(), mustEvent(t, ev("$ev1", "m.room.message", testBot, fixedNow, map[string]any{"msgtype": "m.text", "body": "x"})))
			}
			rc, err := n.Notify(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if !echoFirst {
				if got := rep.list(); len(got) != 0 {
					t.Fatalf("confirmed %+v before the event came back", got)
				}
				startRun(t, n)
				// Another account's message and an event of another room do not confirm.
				f.queueSync(syncBody("s1", map[string][]map[string]any{
					testRoom:                 {ev("$other", "m.room.message", "@alice:example.org", fixedNow, map[string]any{"msgtype": "m.text", "body": "hi"})},
					"!elsewhere:example.org": {ev(rc.ProviderID, "m.room.message", testBot, fixedNow, map[string]any{"msgtype": "m.text", "body": "x"})},
				}))
				waitFor(t, "the first sync", func() bool { return len(f.syncSince()) >= 2 })
				if got := rep.list(); len(got) != 0 {
					t.Fatalf("confirmed %+v by an event that is not the page in the alert room", got)
				}
				f.queueSync(syncBody("s2", map[string][]map[string]any{
					testRoom: {ev(rc.ProviderID, "m.room.message", testBot, fixedNow, map[string]any{"msgtype": "m.text", "body": "x"})},
				}))
			}
			waitFor(t, "a Delivered report", func() bool { return len(rep.list()) == 1 })
			got := rep.list()[0]
			if got.PageID != p.ID || got.Status != notifiers.Delivered || got.Channel != notifiers.Matrix {
				t.Fatalf("report %+v", got)
			}
		})
	}
}

// Without a Reporter the channel promises no confirmation, and 0 turns it off.
func TestConfirmWithinOff(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, nil)
	if got := n.ConfirmWithin(); got != 0 {
		t.Fatalf("ConfirmWithin without a Reporter = %s", got)
	}
	n2, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.Reporter = &reports{}; c.ConfirmWithin = -1 })
	if got := n2.ConfirmWithin(); got != 0 {
		t.Fatalf("ConfirmWithin turned off = %s", got)
	}
}

// A /sync that hangs past the deadline is evidence against the channel,
// reported once per deadline while it lasts, with the token kept out.
func TestStalledSyncIsReported(t *testing.T) {
	f := newFakeHS(t) // no sync body queued: every /sync hangs
	var mu sync.Mutex
	var stalls []string
	n, _, _, _ := newTestNotifier(t, f, func(c *Config) {
		c.Reporter = &reports{}
		c.ConfirmWithin = 40 * time.Millisecond
		c.SyncTimeout = 10 * time.Millisecond
		c.Now = time.Now
		c.SyncStalled = func(reason string) { mu.Lock(); stalls = append(stalls, reason); mu.Unlock() }
	})
	startRun(t, n)
	waitFor(t, "two stall reports", func() bool { mu.Lock(); defer mu.Unlock(); return len(stalls) >= 2 })
	mu.Lock()
	defer mu.Unlock()
	for _, s := range stalls {
		if !strings.Contains(s, "sync stalled") || !strings.Contains(s, "replies and reactions cannot come back") || strings.Contains(s, testToken) {
			t.Fatalf("stall reason %q", s)
		}
	}
}

// mustEvent decodes a timeline event built by ev.
func mustEvent(t *testing.T, m map[string]any) *event.Event {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var e event.Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

// Waiting for confirmations costs memory for one deadline's pages only:
// entries older than the deadline are dropped (the engine has counted those
// pages unconfirmed), and echoes are capped.
func TestWaitingPagesAreBounded(t *testing.T) {
	f := newFakeHS(t)
	now := fixedNow
	n, _, _, _ := newTestNotifier(t, f, func(c *Config) {
		c.Reporter = &reports{}
		c.Now = func() time.Time { return now }
	})
	for i := range 10000 {
		n.expect(id.EventID(fmt.Sprintf("$e%d", i)), notifiers.Page{ID: fmt.Sprintf("1-%d", i), Kind: notifiers.KindPage, Incident: 1})
	}
	for i := range 2 * maxEchoes {
		n.seen(context.Background(), &event.Event{ID: id.EventID(fmt.Sprintf("$other%d", i)), Sender: id.UserID(testBot)})
	}
	n.conf.mu.Lock()
	waiting, echoed := len(n.conf.waiting), len(n.conf.echoed)
	n.conf.mu.Unlock()
	if waiting != 10000 || echoed > maxEchoes {
		t.Fatalf("waiting %d (want 10000 within the deadline), echoed %d (cap %d)", waiting, echoed, maxEchoes)
	}
	now = now.Add(DefaultConfirmWithin + 2*pruneEvery)
	n.expect("$late", notifiers.Page{ID: "2-1", Kind: notifiers.KindPage, Incident: 2})
	n.conf.mu.Lock()
	waiting, echoed = len(n.conf.waiting), len(n.conf.echoed)
	n.conf.mu.Unlock()
	if waiting != 1 || echoed != 0 {
		t.Fatalf("after the deadline: waiting %d, echoed %d; want only the new page", waiting, echoed)
	}
}
