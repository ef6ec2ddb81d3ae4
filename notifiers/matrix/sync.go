package matrix

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Sync tuning.
const (
	defaultSyncTimeout = 30 * time.Second
	timelineLimit      = 100
	backfillPages      = 20
	// backfillSlack reaches a little before the last handled event when a
	// limited timeline is backfilled, for events with skewed timestamps.
	backfillSlack = 5 * time.Minute
	// firstStartSlack: on the very first start only events this close to
	// the start are handled, not the room's history.
	firstStartSlack = time.Minute
	minBackoff      = time.Second
	maxBackoff      = 5 * time.Minute
	// maxResponseFailures bounds how often one answer is retried when the
	// Responder fails, so a poison event cannot stall every later answer.
	maxResponseFailures = 5
)

// syncFilter asks only for what Run reads: messages and reactions.
func syncFilter() *mautrix.Filter {
	none := &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}}
	return &mautrix.Filter{
		EventFormat: mautrix.EventFormatClient,
		AccountData: none,
		Presence:    none,
		Room: &mautrix.RoomFilter{
			AccountData: none,
			Ephemeral:   none,
			State:       &mautrix.FilterPart{LazyLoadMembers: true, Types: []event.Type{event.StateMember}},
			Timeline: &mautrix.FilterPart{
				Limit: timelineLimit,
				Types: []event.Type{event.EventMessage, event.EventReaction},
			},
		},
	}
}

// errFilterLost makes Run prepare again, creating a new filter.
var errFilterLost = errors.New("matrix: the homeserver rejected the sync filter")

// syncRun is the state of one Run.
type syncRun struct {
	since     string
	filterID  string
	first     bool
	startedAt time.Time
	failures  map[id.EventID]int
}

// Run syncs with the homeserver until ctx ends, handing answers to Klaxon's
// messages to the Responder. The position is saved after each batch is
// handled, so nothing is lost across a restart and, with the remembered
// event ids, nothing is handled twice. On the very first start the room's
// history is skipped. Errors are logged and retried with exponential backoff
// (1s to 5m, or the server's rate-limit hint). Run returns nil when ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	if n.cfg.Responder == nil {
		return errors.New("matrix: Run needs a Responder")
	}
	r := &syncRun{startedAt: n.now(), failures: map[id.EventID]int{}}
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { n.watchSync(ctx) })
	if n.observer != nil {
		wg.Go(func() { n.observe(ctx) })
	}
	backoff := minBackoff
	ready := false
	for {
		var err error
		if !ready {
			err = n.prepare(ctx, r)
			ready = err == nil
		}
		if err == nil {
			err = n.syncOnce(ctx, r)
		}
		if ctx.Err() != nil {
			return nil
		}
		if n.observer == nil {
			n.synced(err)
		}
		if err == nil {
			backoff = minBackoff
			continue
		}
		if errors.Is(err, errFilterLost) {
			ready = false
		}
		wait := backoff
		if ra := notifiers.RetryAfter(err); ra > wait {
			wait = ra
		}
		n.log.Error("matrix sync failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-n.after(wait):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// prepare loads the sync position and makes sure a filter exists.
func (n *Notifier) prepare(ctx context.Context, r *syncRun) error {
	st := syncStore{n.cfg.State}
	var err error
	if r.since, err = st.LoadNextBatch(ctx, n.user); err != nil {
		return fmt.Errorf("matrix: loading sync position: %w", err)
	}
	r.first = r.since == ""
	if r.filterID, err = st.LoadFilterID(ctx, n.user); err != nil {
		return fmt.Errorf("matrix: loading sync filter: %w", err)
	}
	if r.filterID == "" {
		res, err := n.cli.CreateFilter(ctx, syncFilter())
		if err != nil {
			return n.fail("create sync filter", err)
		}
		if err := st.SaveFilterID(ctx, n.user, res.FilterID); err != nil {
			return fmt.Errorf("matrix: saving sync filter: %w", err)
		}
		r.filterID = res.FilterID
	}
	// Resolve the alias now so an invite to the alert room can be accepted.
	if _, err = n.alertRoom(ctx); err != nil {
		return err
	}
	// And the canary room's, so its notices are seen back; a canary room
	// that cannot be resolved must not stop answers from being read (the
	// canary then reports the error itself).
	if _, err := n.canaryRoom(ctx); err != nil {
		n.log.Warn("resolving the canary room failed", "room", n.cfg.CanaryRoom, "err", err)
	}
	return nil
}

// syncOnce runs one /sync and handles its events.
func (n *Notifier) syncOnce(ctx context.Context, r *syncRun) error {
	timeout := n.syncTimeout()
	if r.first {
		timeout = 0
	}
	sctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	resp, err := n.cli.FullSyncRequest(sctx, mautrix.ReqSync{
		Timeout:  int(timeout / time.Millisecond),
		Since:    r.since,
		FilterID: r.filterID,
	})
	if err != nil {
		var he mautrix.HTTPError
		if errors.As(err, &he) && he.RespError != nil && he.RespError.ErrCode == "M_INVALID_PARAM" && r.filterID != "" {
			// The server forgot our filter (a reset homeserver): make a new one.
			if serr := (syncStore{n.cfg.State}).SaveFilterID(ctx, n.user, ""); serr != nil {
				return fmt.Errorf("matrix: clearing the sync filter: %w", serr)
			}
			return fmt.Errorf("%w: %w", errFilterLost, n.fail("sync", err))
		}
		return n.fail("sync", err)
	}
	if resp.NextBatch == "" {
		return notifiers.Temporary("", 0, errors.New("matrix: sync returned no next_batch"))
	}
	n.acceptInvite(ctx, resp)
	lastTS, err := n.lastTS(ctx)
	if err != nil {
		return err
	}
	newest := lastTS
	for room, jr := range resp.Rooms.Join {
		if jr == nil {
			continue
		}
		events := jr.Timeline.Events
		if jr.Timeline.Limited && !r.first && lastTS > 0 && jr.Timeline.PrevBatch != "" {
			older, err := n.backfill(ctx, room, jr.Timeline.PrevBatch, lastTS)
			if err != nil {
				return err
			}
			events = append(older, events...)
		}
		for _, evt := range events {
			if evt == nil {
				continue
			}
			if r.first && time.UnixMilli(evt.Timestamp).Before(r.startedAt.Add(-firstStartSlack)) {
				continue
			}
			if n.observer == nil && (room == n.confirmRoom() || room == n.canaryRoomID()) {
				evt.RoomID = room
				n.seen(ctx, evt)
			}
			if err := n.handleEvent(ctx, r, room, evt); err != nil {
				return err
			}
			newest = max(newest, evt.Timestamp)
		}
	}
	if newest > lastTS {
		if err := n.state.putJSON(ctx, keyLastTS+string(n.user), newest); err != nil {
			return err
		}
	}
	if err := (syncStore{n.cfg.State}).SaveNextBatch(ctx, n.user, resp.NextBatch); err != nil {
		return fmt.Errorf("matrix: saving sync position: %w", err)
	}
	r.since, r.first = resp.NextBatch, false
	return nil
}

// lastTS returns the timestamp (ms) of the newest event handled so far.
func (n *Notifier) lastTS(ctx context.Context) (int64, error) {
	var ts int64
	_, err := n.state.getJSON(ctx, keyLastTS+string(n.user), &ts)
	return ts, err
}

// backfill fetches the events a limited sync timeline left out, back to a
// little before lastTS, oldest first.
func (n *Notifier) backfill(ctx context.Context, room id.RoomID, from string, lastTS int64) ([]*event.Event, error) {
	cutoff := lastTS - backfillSlack.Milliseconds()
	part := &mautrix.FilterPart{Types: []event.Type{event.EventMessage, event.EventReaction}}
	var got []*event.Event
	for page := 0; page < backfillPages && from != ""; page++ {
		res, err := n.cli.Messages(ctx, room, from, "", mautrix.DirectionBackward, part, timelineLimit)
		if err != nil {
			return nil, n.fail("backfill", err)
		}
		done := len(res.Chunk) == 0 || res.End == "" || res.End == from
		for _, e := range res.Chunk { // newest first
			if e == nil {
				continue
			}
			if e.Timestamp < cutoff {
				done = true
				break
			}
			got = append(got, e)
		}
		if done {
			break
		}
		from = res.End
	}
	for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
		got[i], got[j] = got[j], got[i]
	}
	return got, nil
}

// acceptInvite joins the alert room (and the canary room) when the bot is
// invited to it.
func (n *Notifier) acceptInvite(ctx context.Context, resp *mautrix.RespSync) {
	n.roomMu.Lock()
	rooms := map[id.RoomID]string{n.canary: "canary room"}
	rooms[n.room] = "alert room"
	n.roomMu.Unlock()
	for room, what := range rooms {
		if _, ok := resp.Rooms.Invite[room]; !ok || room == "" {
			continue
		}
		if _, err := n.cli.JoinRoomByID(ctx, room); err != nil {
			n.log.Warn("joining the "+what+" failed", "room", room, "err", n.fail("join", err))
			continue
		}
		n.log.Info("joined the "+what+" on invitation", "room", room)
	}
}
