package matrix

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// canaryResult is what one Canary call returned.
type canaryResult struct {
	confirmed bool
	reason    string
	err       error
}

// fakeDeadline replaces n.deadline: the canary's deadline passes only when
// fire is called, and the durations asked for are recorded.
type fakeDeadline struct {
	mu    sync.Mutex
	asked []time.Duration
	ch    chan time.Time
	once  sync.Once
}

func installDeadline(n *Notifier) *fakeDeadline {
	d := &fakeDeadline{ch: make(chan time.Time)}
	n.deadline = func(w time.Duration) <-chan time.Time {
		d.mu.Lock()
		d.asked = append(d.asked, w)
		d.mu.Unlock()
		return d.ch
	}
	return d
}

func (d *fakeDeadline) fire() { d.once.Do(func() { close(d.ch) }) }

func (d *fakeDeadline) durations() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Duration(nil), d.asked...)
}

// canaryNotice waits for the canary's m.notice to reach the fake homeserver.
func canaryNotice(t *testing.T, f *fakeHS) sent {
	t.Helper()
	var got sent
	waitFor(t, "the canary notice", func() bool {
		for _, s := range f.sentEvents() {
			if str(s.Content, "msgtype") == "m.notice" {
				got = s
				return true
			}
		}
		return false
	})
	return got
}

// The Matrix canary posts an m.notice that notifies nobody and is confirmed
// only when the bot's /sync returns that very event in the canary room; a
// homeserver that accepts the send and never relays it (the notice never
// comes back) makes it unconfirmed at the deadline, with the reason in
// words.
func TestMatrixCanary(t *testing.T) {
	const canaryRoom = "!canary:example.org"
	cases := []struct {
		name       string
		mod        func(*Config)
		aliases    map[string]string
		room       string // where the notice must go
		swallowed  bool
		wantWithin time.Duration
		wantReason string
	}{
		{name: "confirmed in the alert room", room: testRoom, wantWithin: DefaultConfirmWithin,
			mod: func(c *Config) { c.Reporter = &reports{} }, wantReason: "canary seen back in " + testRoom},
		{name: "confirmed in a canary room of its own, by alias", room: canaryRoom, wantWithin: 45 * time.Second,
			aliases: map[string]string{"#canary:example.org": canaryRoom},
			mod: func(c *Config) {
				c.Reporter = &reports{}
				c.CanaryRoom = "#canary:example.org"
				c.ConfirmWithin = 45 * time.Second
			},
			wantReason: "canary seen back in " + canaryRoom},
		{name: "confirmed with page confirmation off", room: testRoom, wantWithin: DefaultConfirmWithin,
			mod: func(c *Config) { c.ConfirmWithin = -1 }, wantReason: "canary seen back"},
		{name: "swallowed", room: testRoom, swallowed: true, wantWithin: DefaultConfirmWithin,
			mod:        func(c *Config) { c.Reporter = &reports{} },
			wantReason: "canary posted to " + testRoom + " but not seen back within 30s: the homeserver may not be delivering"},
		{name: "swallowed in a canary room of its own", room: canaryRoom, swallowed: true, wantWithin: DefaultConfirmWithin,
			mod:        func(c *Config) { c.Reporter = &reports{}; c.CanaryRoom = canaryRoom },
			wantReason: "canary posted to " + canaryRoom + " but not seen back within 30s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHS(t)
			f.joined = append(f.joined, canaryRoom)
			for k, v := range tc.aliases {
				f.aliases[k] = v
			}
			n, _, _, _ := newTestNotifier(t, f, tc.mod)
			dl := installDeadline(n)
			startRun(t, n)
			res := make(chan canaryResult, 1)
			go func() {
				ok, reason, err := n.Canary(context.Background())
				res <- canaryResult{ok, reason, err}
			}()
			notice := canaryNotice(t, f)
			if notice.Room != tc.room || !strings.HasPrefix(str(notice.Content, "body"), "Klaxon canary ") ||
				len(str(notice.Content, "body")) < len("Klaxon canary ")+16 || !strings.HasPrefix(notice.Txn, "klx-canary-") {
				t.Fatalf("canary notice %+v", notice)
			}
			if m, ok := notice.Content["m.mentions"].(map[string]any); !ok || len(m) != 0 {
				t.Fatalf("the canary mentions someone: %v", notice.Content["m.mentions"])
			}
			// Another event of the bot's, and the notice's id in another
			// room, are not the canary coming back.
			other := testRoom
			if tc.room == testRoom {
				other = canaryRoom
			}
			f.queueSync(syncBody("s1", map[string][]map[string]any{
				tc.room: {ev("$unrelated", "m.room.message", testBot, fixedNow, map[string]any{"msgtype": "m.notice", "body": "Klaxon canary 00"})},
				other:   {ev(notice.EventID, "m.room.message", testBot, fixedNow, map[string]any{"msgtype": "m.notice", "body": str(notice.Content, "body")})},
			}))
			waitFor(t, "the first sync handled", func() bool { return len(f.syncSince()) >= 2 })
			select {
			case r := <-res:
				t.Fatalf("canary judged before its notice came back or the deadline passed: %+v", r)
			default:
			}
			if tc.swallowed {
				dl.fire()
			} else {
				f.queueSync(syncBody("s2", map[string][]map[string]any{
					tc.room: {ev(notice.EventID, "m.room.message", testBot, fixedNow, map[string]any{"msgtype": "m.notice", "body": str(notice.Content, "body")})},
				}))
			}
			var r canaryResult
			select {
			case r = <-res:
			case <-time.After(10 * time.Second):
				t.Fatal("the canary never returned")
			}
			if r.err != nil || r.confirmed == tc.swallowed || !strings.Contains(r.reason, tc.wantReason) {
				t.Fatalf("Canary = %v, %q, %v; want confirmed %v with %q", r.confirmed, r.reason, r.err, !tc.swallowed, tc.wantReason)
			}
			if got := dl.durations(); len(got) != 1 || got[0] != tc.wantWithin {
				t.Fatalf("deadline %v, want %v", got, tc.wantWithin)
			}
			n.conf.mu.Lock()
			left := len(n.conf.waiting)
			n.conf.mu.Unlock()
			if left != 0 {
				t.Fatalf("%d entries left waiting after the canary", left)
			}
			if rep, ok := n.cfg.Reporter.(*reports); ok && len(rep.list()) != 0 {
				t.Fatalf("a canary reported a page delivered: %+v", rep.list())
			}
		})
	}
}

// A canary that cannot be sent, or whose wait is cut short, could not be
// judged: an error (classified as Notify classifies it, the token kept out),
// never an unconfirmed canary.
func TestMatrixCanaryNotJudged(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		body      string
		cancel    bool
		permanent bool
	}{
		{name: "homeserver error", status: 502, body: `{"errcode":"M_UNKNOWN","error":"bad gateway"}`},
		{name: "rate limited", status: 429, body: `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":2000}`},
		{name: "the bot may not post", status: 403, body: `{"errcode":"M_FORBIDDEN","error":"not allowed ` + testToken + `"}`, permanent: true},
		{name: "token revoked", status: 401, body: `{"errcode":"M_UNKNOWN_TOKEN","error":"Unrecognised access token"}`, permanent: true},
		{name: "context ends while waiting", cancel: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHS(t)
			n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.Reporter = &reports{} })
			installDeadline(n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if !tc.cancel {
				f.failNext("/rooms/", tc.status, tc.body)
			}
			res := make(chan canaryResult, 1)
			go func() {
				ok, reason, err := n.Canary(ctx)
				res <- canaryResult{ok, reason, err}
			}()
			if tc.cancel {
				waitFor(t, "the canary waiting", func() bool {
					n.conf.mu.Lock()
					defer n.conf.mu.Unlock()
					return len(n.conf.waiting) == 1
				})
				cancel()
			}
			r := <-res
			ok, reason, err := r.confirmed, r.reason, r.err
			if err == nil || ok || reason != "" {
				t.Fatalf("Canary = %v, %q, %v; want an error", ok, reason, err)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Fatalf("the error shows the token: %v", err)
			}
			if tc.cancel {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
				return
			}
			var ne *notifiers.Error
			if !errors.As(err, &ne) || ne.Permanent != tc.permanent {
				t.Fatalf("err = %#v, want a notifiers.Error with Permanent %v", err, tc.permanent)
			}
		})
	}
}

// The observer syncs the canary room too when it is another room than the
// alert room, and only the alert room when it is not.
func TestObserverSyncsTheCanaryRoom(t *testing.T) {
	cases := []struct {
		name, canary string
		want         []id.RoomID
	}{
		{"no canary room", "", []id.RoomID{testRoom}},
		{"the alert room", testRoom, []id.RoomID{testRoom}},
		{"a room of its own", "!canary:example.org", []id.RoomID{testRoom, "!canary:example.org"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHS(t)
			n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.CanaryRoom = tc.canary })
			rooms, complete, err := n.confirmRooms(context.Background())
			if err != nil || !complete {
				t.Fatal(err, complete)
			}
			got := observerFilter(rooms...).Room.Rooms
			if len(got) != len(tc.want) {
				t.Fatalf("observer filter rooms %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("observer filter rooms %v, want %v", got, tc.want)
				}
			}
		})
	}
}
