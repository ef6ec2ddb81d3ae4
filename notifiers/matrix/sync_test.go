package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

const (
	alice   = "@alice:example.org"
	mallory = "@mallory:example.org"
)

// ev builds a timeline event.
func ev(id, typ, sender string, ts time.Time, content map[string]any) map[string]any {
	return map[string]any{"event_id": id, "type": typ, "sender": sender,
		"origin_server_ts": ts.UnixMilli(), "content": content}
}

func reply(id, sender, target, body string, ts time.Time) map[string]any {
	return ev(id, "m.room.message", sender, ts, map[string]any{
		"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": target}},
	})
}

func threadMsg(id, sender, root, fallback, body string, ts time.Time) map[string]any {
	return ev(id, "m.room.message", sender, ts, map[string]any{
		"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root, "is_falling_back": true,
			"m.in_reply_to": map[string]any{"event_id": fallback}},
	})
}

func reaction(id, sender, target, key string, ts time.Time) map[string]any {
	return ev(id, "m.reaction", sender, ts, map[string]any{
		"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": target, "key": key},
	})
}

// syncBody renders a /sync response with timelines per room.
func syncBody(next string, rooms map[string][]map[string]any, extra ...func(map[string]any)) string {
	join := map[string]any{}
	for room, evs := range rooms {
		join[room] = map[string]any{"timeline": map[string]any{"events": evs}}
	}
	b := map[string]any{"next_batch": next, "rooms": map[string]any{"join": join}}
	for _, e := range extra {
		e(b)
	}
	out, _ := json.Marshal(b)
	return string(out)
}

// runner runs n.Run in the background with instant backoff waits.
type runner struct {
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	waits  []time.Duration
}

func startRun(t *testing.T, n *Notifier) *runner {
	t.Helper()
	r := &runner{done: make(chan error, 1)}
	n.after = func(d time.Duration) <-chan time.Time {
		r.mu.Lock()
		r.waits = append(r.waits, d)
		r.mu.Unlock()
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- n.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // let a second stop return
}

func (r *runner) backoffs() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, 10*time.Second, what, cond)
}

// waitForWithin polls cond until it holds or d passes.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// botReplies returns the bodies of the bot's thread replies to events.
func botReplies(f *fakeHS) map[string]string {
	out := map[string]string{}
	for _, e := range f.sentEvents() {
		rel := relatesTo(e.Content)
		if rel == nil || rel["rel_type"] != "m.thread" {
			continue
		}
		irt, _ := rel["m.in_reply_to"].(map[string]any)
		out[str(irt, "event_id")] = str(e.Content, "body")
	}
	return out
}

func TestRunHandlesAnswers(t *testing.T) {
	f := newFakeHS(t)
	n, st, resp, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID
	old := fixedNow.Add(-time.Hour)
	now := fixedNow.Add(time.Second)

	// First start ever: the initial sync's history is not replayed.
	f.queueSync(syncBody("b1", map[string][]map[string]any{testRoom: {reply("$old", alice, root, "ack", old)}}))
	f.queueSync(syncBody("b2", map[string][]map[string]any{testRoom: {
		reply("$a1", alice, root, "> <@klaxon:example.org> Incident #42\n\n ACK ", now),
		reply("$m1", mallory, root, "1", now),
		reaction("$r1", alice, root, "👍️", now),
		reply("$bot", testBot, root, "ack", now),                                                    // the bot's own
		reply("$x1", alice, "$unknown", "ack", now),                                                 // not a Klaxon message
		reply("$x2", alice, root, "ack, looking", now),                                              // conversation
		ev("$x3", "m.room.message", alice, now, map[string]any{"msgtype": "m.text", "body": "ack"}), // not a reply
		threadMsg("$t1", alice, root, "$somebodyelse", "2", now),
		ev("$bad", "m.room.message", alice, now, map[string]any{"body": 17}), // malformed
	}}))
	r := startRun(t, n)
	waitFor(t, "the answers", func() bool { return len(botReplies(f)) >= 4 })
	waitFor(t, "the position to be saved", func() bool {
		b, _ := st.GetState(context.Background(), stateBucket, keyNextBatch+testBot)
		return string(b) == "b2"
	})
	r.stop()

	got := resp.responses()
	want := []struct {
		action notifiers.Action
	}{{notifiers.Ack}, {notifiers.Ack}, {notifiers.Escalate}}
	if len(got) != len(want) {
		t.Fatalf("responses %+v, want %d", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Action != w.action || g.Incident != 42 || g.PageID != "out-42-1" || g.From != alice ||
			g.Channel != notifiers.Matrix || !g.At.Equal(fixedNow) {
			t.Errorf("response %d = %+v, want %s from alice for incident 42 page out-42-1", i, g, w.action)
		}
	}
	replies := botReplies(f)
	if !strings.Contains(replies["$a1"], "Incident #42 acked by Alice") {
		t.Errorf("confirmation to $a1 = %q", replies["$a1"])
	}
	if replies["$m1"] != "only people on the rota can acknowledge." {
		t.Errorf("answer to mallory = %q", replies["$m1"])
	}
	if !strings.Contains(replies["$t1"], "by Alice") {
		t.Errorf("confirmation to $t1 = %q", replies["$t1"])
	}
	if since := f.syncSince(); len(since) < 2 || since[0] != "" || since[1] != "b1" {
		t.Errorf("sync positions %v, want \"\", b1, ...", since)
	}
}

func TestRunResumesAfterRestartExactlyOnce(t *testing.T) {
	f := newFakeHS(t)
	n, st, resp, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID
	now := fixedNow.Add(time.Second)
	f.queueSync(syncBody("b1", nil))
	f.queueSync(syncBody("b2", map[string][]map[string]any{testRoom: {reply("$a1", alice, root, "ack", now)}}))
	r := startRun(t, n)
	waitFor(t, "the first ack", func() bool { return len(resp.responses()) == 1 })
	waitFor(t, "position b2", func() bool {
		b, _ := st.GetState(context.Background(), stateBucket, keyNextBatch+testBot)
		return string(b) == "b2"
	})
	// Stop only once the next long-poll reached the server: a request still on
	// its way when the run stops could otherwise arrive after the body below is
	// queued, and take it.
	waitFor(t, "the long-poll after b2", func() bool { return slices.Equal(f.syncSince(), []string{"", "b1", "b2"}) })
	r.stop()

	// Klaxon is down; alice answers again and the server re-sends an event
	// Klaxon already handled (as after a crash before the position was saved).
	n2, err := New(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stopped run's long-poll to end", f.syncIdle)
	f.queueSync(syncBody("b3", map[string][]map[string]any{testRoom: {
		reply("$a1", alice, root, "ack", now),
		reply("$a2", alice, root, "escalate", now.Add(time.Minute)),
	}}))
	r2 := startRun(t, n2)
	waitFor(t, "the ack sent while down", func() bool { return len(resp.responses()) == 2 })
	waitFor(t, "position b3", func() bool {
		b, _ := st.GetState(context.Background(), stateBucket, keyNextBatch+testBot)
		return string(b) == "b3"
	})
	waitFor(t, "the long-poll after b3", func() bool { s := f.syncSince(); return len(s) > 0 && s[len(s)-1] == "b3" })
	r2.stop()
	got := resp.responses()
	if len(got) != 2 || got[1].Action != notifiers.Escalate {
		t.Fatalf("responses %+v, want ack then escalate, each once", got)
	}
	since := f.syncSince()
	if since[len(since)-2] != "b2" {
		t.Errorf("restart synced from %q, want b2 (all: %v)", since[len(since)-2], since)
	}
	if f.filters != 1 {
		t.Errorf("created %d filters, want the stored one reused", f.filters)
	}
}

func TestRunRetriesWhenResponderFails(t *testing.T) {
	f := newFakeHS(t)
	n, st, resp, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID
	now := fixedNow.Add(time.Second)
	resp.mu.Lock()
	resp.err = errors.New("engine store unavailable")
	resp.mu.Unlock()
	batch := syncBody("b2", map[string][]map[string]any{testRoom: {reply("$a1", alice, root, "ack", now)}})
	f.queueSync(syncBody("b1", nil))
	f.queueSync(batch)
	r := startRun(t, n)
	select { // the failed attempt
	case <-resp.calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the Responder was never called")
	}
	resp.mu.Lock()
	resp.err = nil
	resp.mu.Unlock()
	f.queueSync(batch) // the server answers the same position with the same events
	waitFor(t, "the retried ack", func() bool { return len(resp.responses()) == 1 })
	waitFor(t, "position b2", func() bool {
		b, _ := st.GetState(context.Background(), stateBucket, keyNextBatch+testBot)
		return string(b) == "b2"
	})
	r.stop()
	since := f.syncSince()
	if len(since) < 3 || since[1] != "b1" || since[2] != "b1" {
		t.Errorf("sync positions %v: the failed batch was not retried from b1", since)
	}
	if b := r.backoffs(); len(b) == 0 || b[0] != minBackoff {
		t.Errorf("backoffs %v, want a first wait of %v", b, minBackoff)
	}
}

func TestRunGivesUpOnPoisonAnswer(t *testing.T) {
	f := newFakeHS(t)
	n, st, resp, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID
	resp.mu.Lock()
	resp.err = errors.New("cannot apply")
	resp.mu.Unlock()
	batch := syncBody("b2", map[string][]map[string]any{testRoom: {reply("$a1", alice, root, "ack", fixedNow)}})
	f.queueSync(syncBody("b1", nil))
	for i := 0; i < maxResponseFailures; i++ {
		f.queueSync(batch)
	}
	r := startRun(t, n)
	waitFor(t, "position b2", func() bool {
		b, _ := st.GetState(context.Background(), stateBucket, keyNextBatch+testBot)
		return string(b) == "b2"
	})
	r.stop()
	if got := botReplies(f)["$a1"]; !strings.Contains(got, "could not record") {
		t.Errorf("reply to the poison answer = %q", got)
	}
	b := r.backoffs()
	for i := 1; i < len(b); i++ {
		if b[i] != 2*b[i-1] && b[i] != maxBackoff {
			t.Errorf("backoffs %v do not double", b)
		}
	}
}

func TestRunIgnoresForgedCrossRoomAnswers(t *testing.T) {
	f := newFakeHS(t)
	n, _, resp, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID
	f.queueSync(syncBody("b1", nil))
	f.queueSync(syncBody("b2", map[string][]map[string]any{"!elsewhere:example.org": {reply("$f1", alice, root, "ack", fixedNow)}}))
	f.queueSync(syncBody("b3", map[string][]map[string]any{testRoom: {reply("$a1", alice, root, "escalate", fixedNow)}}))
	r := startRun(t, n)
	waitFor(t, "the real answer", func() bool { return len(resp.responses()) == 1 })
	r.stop()
	if got := resp.responses(); got[0].Action != notifiers.Escalate {
		t.Errorf("responses %+v: the forged cross-room ack was taken", got)
	}
}

func TestRunBackfillsLimitedTimeline(t *testing.T) {
	f := newFakeHS(t)
	n, st, resp, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID
	if err := st.PutState(context.Background(), stateBucket, keyLastTS+testBot, []byte(fmt.Sprint(fixedNow.UnixMilli()))); err != nil {
		t.Fatal(err)
	}
	if err := st.PutState(context.Background(), stateBucket, keyNextBatch+testBot, []byte("b1")); err != nil {
		t.Fatal(err)
	}
	older, _ := json.Marshal(map[string]any{"start": "p1", "end": "p2", "chunk": []any{
		reply("$a1", alice, root, "ack", fixedNow.Add(time.Minute)),
		reply("$ancient", alice, root, "escalate", fixedNow.Add(-time.Hour)),
	}})
	f.mu.Lock()
	f.messages["p1"] = string(older)
	f.mu.Unlock()
	f.queueSync(syncBody("b2", map[string][]map[string]any{testRoom: {reply("$a2", alice, root, "resolve", fixedNow.Add(2*time.Minute))}},
		func(b map[string]any) {
			tl := b["rooms"].(map[string]any)["join"].(map[string]any)[testRoom].(map[string]any)["timeline"].(map[string]any)
			tl["limited"], tl["prev_batch"] = true, "p1"
		}))
	r := startRun(t, n)
	waitFor(t, "both answers", func() bool { return len(resp.responses()) == 2 })
	waitFor(t, "position b2", func() bool {
		b, _ := st.GetState(context.Background(), stateBucket, keyNextBatch+testBot)
		return string(b) == "b2"
	})
	r.stop()
	got := resp.responses()
	if got[0].Action != notifiers.Ack || got[1].Action != notifiers.Resolve {
		t.Errorf("responses %+v, want the backfilled ack first, then resolve; nothing older than the last position", got)
	}
}

func TestRunAcceptsInviteToAlertRoom(t *testing.T) {
	f := newFakeHS(t)
	f.joined = nil
	n, _, _, _ := newTestNotifier(t, f, nil)
	f.queueSync(syncBody("b1", nil, func(b map[string]any) {
		b["rooms"].(map[string]any)["invite"] = map[string]any{testRoom: map[string]any{}, "!spam:example.org": map[string]any{}}
	}))
	r := startRun(t, n)
	waitFor(t, "the join", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.joined) > 0
	})
	r.stop()
	if len(f.joined) != 1 || f.joined[0] != testRoom {
		t.Errorf("joined %v, want only the alert room", f.joined)
	}
}

func TestRunBacksOffOnSyncErrors(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, logs := newTestNotifier(t, f, nil)
	for i := 0; i < 12; i++ {
		f.failNext("/sync", 401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`)
	}
	f.failNext("/sync", 429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":600000}`)
	f.queueSync(syncBody("b1", nil))
	r := startRun(t, n)
	waitFor(t, "recovery", func() bool { return len(f.syncSince()) >= 1 })
	r.stop()
	b := r.backoffs()
	if len(b) != 13 {
		t.Fatalf("waited %d times, want 13: %v", len(b), b)
	}
	if b[0] != time.Second || b[8] != 256*time.Second || b[9] != maxBackoff || b[11] != maxBackoff || b[12] != 10*time.Minute {
		t.Errorf("backoffs %v: want 1s doubling to %v, and the server's 10m hint honoured", b, maxBackoff)
	}
	if !strings.Contains(logs.String(), "M_UNKNOWN_TOKEN") {
		t.Errorf("sync failures not logged:\n%s", logs.String())
	}
}

func TestRunNeedsResponder(t *testing.T) {
	f := newFakeHS(t)
	n, _, _, _ := newTestNotifier(t, f, func(c *Config) { c.Responder = nil })
	if err := n.Run(context.Background()); err == nil {
		t.Error("Run without a Responder succeeded")
	}
}

func TestRunRecreatesLostFilter(t *testing.T) {
	f := newFakeHS(t)
	n, st, _, _ := newTestNotifier(t, f, nil)
	f.failNext("/sync", 400, `{"errcode":"M_INVALID_PARAM","error":"unknown filter"}`)
	f.queueSync(syncBody("b1", nil))
	r := startRun(t, n)
	waitFor(t, "position b1", func() bool {
		b, _ := st.GetState(context.Background(), stateBucket, keyNextBatch+testBot)
		return string(b) == "b1"
	})
	r.stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.filters != 2 {
		t.Errorf("created %d filters, want a new one after the server lost the first", f.filters)
	}
	if b, _ := st.GetState(context.Background(), stateBucket, keyFilter+testBot); string(b) != "filter2" {
		t.Errorf("stored filter %q, want filter2", b)
	}
}

func TestRunTakesAnswersInDirectRoom(t *testing.T) {
	f := newFakeHS(t)
	n, _, resp, _ := newTestNotifier(t, f, func(c *Config) { c.DirectMessages = true })
	mustNotify(t, n, testPage())
	var dmRoom, dmEvent string
	for _, e := range f.sentEvents() {
		if strings.HasPrefix(e.Room, "!dm") {
			dmRoom, dmEvent = e.Room, e.EventID
		}
	}
	if dmEvent == "" {
		t.Fatal("no direct message sent")
	}
	f.queueSync(syncBody("b1", nil))
	f.queueSync(syncBody("b2", map[string][]map[string]any{dmRoom: {reply("$d1", alice, dmEvent, "1", fixedNow)}}))
	r := startRun(t, n)
	waitFor(t, "the answer in the direct room", func() bool { return len(resp.responses()) == 1 })
	waitFor(t, "the confirmation", func() bool { return botReplies(f)["$d1"] != "" })
	r.stop()
	for _, e := range f.sentEvents() {
		if rel := relatesTo(e.Content); rel != nil && str(rel, "event_id") == dmEvent && e.Room != dmRoom {
			t.Errorf("confirmation posted in %s, want the direct room %s", e.Room, dmRoom)
		}
	}
	if got := resp.responses()[0]; got.Incident != 42 || got.PageID != "out-42-1" || got.Action != notifiers.Ack {
		t.Errorf("response %+v", got)
	}
}

func TestRunRetriesWhenStateFails(t *testing.T) {
	f := newFakeHS(t)
	n, st, resp, _ := newTestNotifier(t, f, nil)
	root := mustNotify(t, n, testPage()).ProviderID
	f.queueSync(syncBody("b1", nil))
	r := startRun(t, n)
	waitFor(t, "position b1", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return string(st.m[stateBucket+"\x00"+keyNextBatch+testBot]) == "b1"
	})
	st.mu.Lock()
	st.fail = errors.New("disk on fire")
	st.mu.Unlock()
	batch := syncBody("b2", map[string][]map[string]any{testRoom: {reply("$a1", alice, root, "ack", fixedNow)}})
	f.queueSync(batch)
	waitFor(t, "a backoff", func() bool { return len(r.backoffs()) > 0 })
	st.mu.Lock()
	st.fail = nil
	st.mu.Unlock()
	f.queueSync(batch)
	waitFor(t, "the ack", func() bool { return len(resp.responses()) == 1 })
	r.stop()
}
