package matrix

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// TestE2EDendrite runs the notifier against a real Matrix homeserver
// (Dendrite on 127.0.0.1) with a bot, the on-call alice and a stranger,
// mallory. The steps share one server and build on each other.
func TestE2EDendrite(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts a real Dendrite homeserver")
	}
	d := harness.StartDendrite(t)
	bot := d.CreateUser(t, "klaxon")
	al := d.CreateUser(t, "alice")
	mal := d.CreateUser(t, "mallory")
	room := bot.CreateRoom(t, "alerts", al.UserID, mal.UserID)
	al.Join(t, room)
	mal.Join(t, room)

	state := newMapState()
	resp := newResponder(map[string]string{string(al.UserID): "Alice"})
	logs := &logBuffer{}
	cfg := Config{
		Homeserver:  d.URL(),
		UserID:      string(bot.UserID),
		AccessToken: bot.AccessToken,
		Room:        string(room),
		Responder:   resp,
		State:       state,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SyncTimeout: 5 * time.Second,
	}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), bot.AccessToken) {
			t.Error("the bot's access token appears in the logs")
		}
		if t.Failed() {
			t.Logf("notifier log:\n%s", logs.String())
		}
	})
	ctx := context.Background()
	const within = 30 * time.Second

	n := newE2ENotifier(t, cfg)
	if h := n.SelfTest(ctx); h.Status != notifiers.Up {
		t.Fatalf("SelfTest = %+v, want up", h)
	}
	run := startE2ERun(t, n)

	// An incident pages into the room, mentioning alice.
	page := testPage()
	page.Recipient.MatrixID = string(al.UserID)
	rec, err := n.Notify(ctx, page)
	if err != nil {
		t.Fatalf("Notify: %v", err)
	}
	root := id.EventID(rec.ProviderID)
	var seen *event.Event
	waitForWithin(t, within, "alice to see the page", func() bool {
		seen = findEvent(t, al, room, func(e *event.Event) bool { return e.ID == root })
		return seen != nil
	})
	msg := seen.Content.AsMessage()
	if seen.Sender != bot.UserID || !strings.Contains(msg.Body, "Incident #42") ||
		!strings.Contains(msg.FormattedBody, "https://matrix.to/#/"+string(al.UserID)) ||
		msg.Mentions == nil || len(msg.Mentions.UserIDs) != 1 || msg.Mentions.UserIDs[0] != al.UserID {
		t.Errorf("the page as alice sees it: sender %s mentions %+v body:\n%s", seen.Sender, msg.Mentions, msg.Body)
	}
	// A retry of the same outbox entry does not post again.
	rec2, err := n.Notify(ctx, page)
	if err != nil || rec2.ProviderID != rec.ProviderID {
		t.Errorf("retried Notify = %+v, %v; want the same event %s", rec2, err, root)
	}

	// The on-call's reply acknowledges.
	a1 := al.Send(t, room, replyTo(root, "ack"))
	waitForWithin(t, within, "alice's ack", func() bool { return len(resp.responses()) == 1 })
	if r := resp.responses()[0]; r.Action != notifiers.Ack || r.From != string(al.UserID) || r.Incident != 42 || r.PageID != page.ID {
		t.Errorf("response = %+v", r)
	}
	waitForWithin(t, within, "the confirmation in the thread", func() bool {
		return botReplyTo(t, al, room, bot.UserID, root, a1, "acked by Alice")
	})

	// A stranger's reply is refused, in the thread.
	m1 := mal.Send(t, room, replyTo(root, "1"))
	waitForWithin(t, within, "the refusal", func() bool {
		return botReplyTo(t, mal, room, bot.UserID, root, m1, "only people on the rota can acknowledge")
	})
	if n := len(resp.responses()); n != 1 {
		t.Errorf("%d responses taken after mallory's reply, want 1", n)
	}

	// A reaction acknowledges.
	al.React(t, room, root, "✅")
	waitForWithin(t, within, "alice's reaction", func() bool { return len(resp.responses()) == 2 })

	// Klaxon stops; alice answers; Klaxon restarts with the same state and
	// takes the answer exactly once.
	run.stop()
	al.Send(t, room, replyTo(root, "escalate"))
	n2 := newE2ENotifier(t, cfg)
	run2 := startE2ERun(t, n2)
	waitForWithin(t, within, "the answer sent while Klaxon was down", func() bool { return len(resp.responses()) == 3 })
	// A marker answer proves the loop has moved past the restart's batch.
	al.Send(t, room, replyTo(root, "resolve"))
	waitForWithin(t, within, "the marker", func() bool { return len(resp.responses()) == 4 })
	run2.stop()
	got := resp.responses()
	if got[2].Action != notifiers.Escalate || got[3].Action != notifiers.Resolve {
		t.Errorf("responses after restart %+v, want escalate once then resolve", got[2:])
	}

	// Updates go to the thread and edit the alert message.
	ack := page
	ack.ID, ack.Kind, ack.Text = "out-42-ack", notifiers.KindAcknowledged, "Acknowledged by Alice (via Matrix)"
	if _, err := n2.Notify(ctx, ack); err != nil {
		t.Fatalf("Notify(acknowledged): %v", err)
	}
	waitForWithin(t, within, "the edit", func() bool {
		return findEvent(t, al, room, func(e *event.Event) bool {
			m := e.Content.AsMessage()
			return e.Sender == bot.UserID && m.RelatesTo.GetReplaceID() == root &&
				m.NewContent != nil && strings.HasPrefix(m.NewContent.Body, "✅ ACKNOWLEDGED")
		}) != nil
	})

	// A revoked token makes the page fail permanently, and the self-test
	// says why.
	bot.Logout(t)
	next := testPage()
	next.ID, next.Incident = "out-43-1", 43
	_, err = n2.Notify(ctx, next)
	var ne *notifiers.Error
	if !notifiers.IsPermanent(err) || !errors.As(err, &ne) || ne.Code != "M_UNKNOWN_TOKEN" {
		t.Errorf("Notify with a revoked token = %v, want permanent M_UNKNOWN_TOKEN", err)
	}
	if err != nil && strings.Contains(err.Error(), bot.AccessToken) {
		t.Error("the error leaks the token")
	}
	if h := n2.SelfTest(ctx); h.Status != notifiers.Down || !strings.Contains(h.Reason, "M_UNKNOWN_TOKEN") {
		t.Errorf("SelfTest after logout = %+v", h)
	}
}

func newE2ENotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startE2ERun runs n.Run with real backoff timers.
func startE2ERun(t *testing.T, n *Notifier) *runner {
	r := &runner{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- n.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func replyTo(target id.EventID, body string) *event.MessageEventContent {
	return &event.MessageEventContent{
		MsgType:   event.MsgText,
		Body:      body,
		RelatesTo: (&event.RelatesTo{}).SetReplyTo(target),
	}
}

func findEvent(t *testing.T, u *harness.DendriteUser, room id.RoomID, match func(*event.Event) bool) *event.Event {
	for _, e := range u.Messages(t, room, 50) {
		if match(e) {
			return e
		}
	}
	return nil
}

// botReplyTo reports whether the bot answered answer in root's thread with
// text containing want.
func botReplyTo(t *testing.T, u *harness.DendriteUser, room id.RoomID, botID id.UserID, root, answer id.EventID, want string) bool {
	return findEvent(t, u, room, func(e *event.Event) bool {
		m := e.Content.AsMessage()
		return e.Sender == botID && m.RelatesTo.GetThreadParent() == root &&
			m.RelatesTo.GetReplyTo() == answer && strings.Contains(m.Body, want)
	}) != nil
}
