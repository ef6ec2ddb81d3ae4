package matrix

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// DefaultConfirmWithin is how long a page posted to Matrix may take to come
// back through /sync before it counts as not delivered.
const DefaultConfirmWithin = 30 * time.Second

// maxEchoes bounds the own events remembered as seen before their send
// returned (an echo can beat the send's answer).
const maxEchoes = 4096

// confirmer tracks pages posted and waiting to be seen back in a /sync:
// the bot's own, or the observer's when one is configured (only that proves
// the homeserver relays to other clients).
type confirmer struct {
	mu sync.Mutex
	// waiting maps an event id posted for a page to the page, until the
	// event comes back or its deadline passes (then the engine has marked
	// the page unconfirmed): at most the pages of one deadline.
	waiting map[id.EventID]waitingPage
	// echoed holds own events a sync returned that were not (yet) waited
	// for, so an echo that beats the send's answer still counts.
	echoed map[id.EventID]time.Time
	// lastSync is when a /sync (the one that confirms) last answered.
	lastSync time.Time
	lastErr  string
	// reported is when a stalled sync was last reported.
	reported time.Time
	// pruned is when the maps were last pruned: at most once per
	// pruneEvery, so a storm of pages costs no walk of them per page.
	pruned time.Time
	// canaries counts canaries in flight: while one is, own events seen
	// are remembered as echoes even with page confirmation off.
	canaries int
}

// pruneEvery bounds how often the waiting pages are walked for expiry.
const pruneEvery = time.Second

type waitingPage struct {
	page     string
	incident uint64
	since    time.Time
	// canary, for a canary's notice instead of a page, is closed when the
	// notice is seen (see Canary); no report goes to the engine then.
	canary chan struct{}
	// room is where the event must be seen ("" when unknown).
	room id.RoomID
}

// ConfirmWithin implements notifiers.Confirmer: a page is confirmed (a
// Delivered report) when its event comes back through /sync within this
// time, or counts as not delivered. 0 when no Reporter takes confirmations.
func (n *Notifier) ConfirmWithin() time.Duration {
	if n.cfg.Reporter == nil || n.cfg.ConfirmWithin < 0 {
		return 0
	}
	if n.cfg.ConfirmWithin == 0 {
		return DefaultConfirmWithin
	}
	return n.cfg.ConfirmWithin
}

// expect waits for event ev, posted for page p, to come back.
func (n *Notifier) expect(ev id.EventID, p notifiers.Page) {
	if n.ConfirmWithin() == 0 || p.Kind != notifiers.KindPage {
		return
	}
	now, room := n.now(), n.confirmRoom()
	c := &n.conf
	c.mu.Lock()
	c.pruneLocked(now, n.ConfirmWithin())
	_, seen := c.echoed[ev]
	if seen {
		delete(c.echoed, ev)
	} else {
		c.waiting[ev] = waitingPage{page: p.ID, incident: p.Incident, since: now, room: room}
	}
	c.mu.Unlock()
	if seen {
		// The page is being recorded as sent right now: report outside
		// this send, so the engine's record of it is not waited on.
		go n.confirm(context.Background(), waitingPage{page: p.ID, incident: p.Incident, since: now})
	}
}

// pruneLocked drops what is older than a deadline: the engine has already
// counted those pages unconfirmed.
func (c *confirmer) pruneLocked(now time.Time, within time.Duration) {
	if now.Sub(c.pruned) < pruneEvery && len(c.echoed) <= maxEchoes {
		return
	}
	c.pruned = now
	for ev, w := range c.waiting {
		if now.Sub(w.since) > within {
			delete(c.waiting, ev)
		}
	}
	over := len(c.echoed) > maxEchoes // then keep half: one walk per maxEchoes/2 echoes
	for ev, at := range c.echoed {
		if now.Sub(at) > within || (over && len(c.echoed) > maxEchoes/2) {
			delete(c.echoed, ev)
		}
	}
}

// seen handles an event of the bot's that came back through a /sync of the
// confirming account (in the room evt.RoomID names, if it names one).
func (n *Notifier) seen(ctx context.Context, evt *event.Event) {
	if evt == nil || evt.Sender != n.user || evt.ID == "" {
		return
	}
	c := &n.conf
	c.mu.Lock()
	w, ok := c.waiting[evt.ID]
	if ok && w.room != "" && evt.RoomID != "" && evt.RoomID != w.room {
		c.mu.Unlock()
		return // the id in another room is not the event coming back
	}
	if ok {
		delete(c.waiting, evt.ID)
	} else if n.ConfirmWithin() != 0 || c.canaries > 0 {
		now := n.now()
		c.echoed[evt.ID] = now
		c.pruneLocked(now, n.waitWithin())
	}
	c.mu.Unlock()
	switch {
	case ok && w.canary != nil:
		close(w.canary)
	case ok:
		n.confirm(ctx, w)
	}
}

// waitWithin is how long anything waits to be seen back: pages for
// ConfirmWithin, canaries for the configured deadline even when pages are
// not confirmed (never shorter than ConfirmWithin).
func (n *Notifier) waitWithin() time.Duration {
	if n.cfg.ConfirmWithin > 0 {
		return n.cfg.ConfirmWithin
	}
	return DefaultConfirmWithin
}

// confirm reports page w delivered. A report the engine cannot take is
// logged: the page then counts as unconfirmed at its deadline, which errs
// on the side of paging the next step.
func (n *Notifier) confirm(ctx context.Context, w waitingPage) {
	err := n.cfg.Reporter.Report(ctx, notifiers.Report{PageID: w.page, Incident: w.incident, Channel: notifiers.Matrix,
		Status: notifiers.Delivered, Detail: n.seenBy(), At: n.now()})
	if err != nil && !errors.Is(err, notifiers.ErrUnknownIncident) {
		n.log.Warn("could not record a page as seen back", "page", w.page, "err", err)
	}
}

func (n *Notifier) seenBy() string {
	if n.observer != nil {
		return "seen in the alert room by the observer account"
	}
	return "seen back in the alert room's timeline"
}

// synced notes a /sync of the confirming account that answered (err nil)
// or failed.
func (n *Notifier) synced(err error) {
	c := &n.conf
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		err = scrub(scrub(err, n.cfg.AccessToken), n.cfg.ObserverAccessToken)
		c.lastErr = oneLine(err.Error(), 200)
		return
	}
	c.lastSync, c.lastErr, c.reported = n.now(), "", time.Time{}
}

// watchSync reports a /sync that failed or stalled past the confirmation
// deadline (beyond its own long-poll time) to SyncStalled, once per
// deadline while it lasts: pages cannot be confirmed, and replies and
// reactions cannot come back.
func (n *Notifier) watchSync(ctx context.Context) {
	within := n.ConfirmWithin()
	if within == 0 || n.cfg.SyncStalled == nil {
		return
	}
	n.synced(nil) // the clock starts now
	limit := n.syncTimeout() + within
	tick := max(within/2, 10*time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.tick(tick):
		}
		now := n.now()
		c := &n.conf
		c.mu.Lock()
		quiet := now.Sub(c.lastSync)
		due := quiet > limit && (c.reported.IsZero() || now.Sub(c.reported) >= within)
		last := c.lastErr
		if due {
			c.reported = now
		}
		c.mu.Unlock()
		if !due {
			continue
		}
		who := "the bot's"
		if n.observer != nil {
			who = "the observer's"
		}
		reason := fmt.Sprintf("sync stalled: %s /sync has not answered for %s; pages cannot be seen back, and replies and reactions cannot come back",
			who, quiet.Round(time.Second))
		if last != "" {
			reason += " (last error: " + last + ")"
		}
		n.log.Error("matrix sync stalled", "for", quiet.Round(time.Second), "last_error", last)
		n.cfg.SyncStalled(scrub(errors.New(reason), n.cfg.AccessToken).Error())
	}
}

func (n *Notifier) syncTimeout() time.Duration {
	if n.cfg.SyncTimeout > 0 {
		return n.cfg.SyncTimeout
	}
	return defaultSyncTimeout
}

// newObserver builds the observer account's client, or nil without one.
func newObserver(cfg Config, base *mautrix.Client) (*mautrix.Client, error) {
	if cfg.ObserverAccessToken == "" {
		return nil, nil
	}
	cli, err := mautrix.NewClient(cfg.Homeserver, id.UserID(cfg.ObserverUserID), cfg.ObserverAccessToken)
	if err != nil {
		return nil, fmt.Errorf("matrix: observer: %w", err)
	}
	cli.Client = base.Client
	cli.DefaultHTTPRetries = 0
	cli.IgnoreRateLimit = true
	cli.Log = zerolog.Nop()
	cli.UserAgent = base.UserAgent
	cli.ResponseSizeLimit = base.ResponseSizeLimit
	return cli, nil
}

// observe syncs the observer account until ctx ends and confirms the pages
// it sees in the alert room. It keeps its position in memory only: after a
// restart, pages waiting then are past their deadline anyway.
func (n *Notifier) observe(ctx context.Context) {
	backoff := minBackoff
	since, filter := "", ""
	for ctx.Err() == nil {
		rooms, complete, err := n.confirmRooms(ctx)
		if err == nil && filter == "" {
			var res *mautrix.RespCreateFilter
			if res, err = n.observer.CreateFilter(ctx, observerFilter(rooms...)); err == nil {
				filter = res.FilterID
			} else {
				err = classify("observer filter", err)
			}
		}
		if err == nil {
			since, err = n.observeOnce(ctx, rooms, since, filter)
			if !complete {
				filter = "" // make a filter with the canary room once it resolves
			}
		}
		n.synced(err)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = minBackoff
			continue
		}
		n.log.Error("matrix observer sync failed; retrying", "err", scrub(err, n.cfg.ObserverAccessToken), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-n.after(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// observeOnce runs one /sync of the observer, filtered to the messages of
// the alert room (and the canary room), and returns the next position.
func (n *Notifier) observeOnce(ctx context.Context, rooms []id.RoomID, since, filter string) (string, error) {
	timeout := n.syncTimeout()
	if since == "" {
		timeout = 0
	}
	sctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	resp, err := n.observer.FullSyncRequest(sctx, mautrix.ReqSync{Timeout: int(timeout / time.Millisecond), Since: since, FilterID: filter})
	if err != nil {
		return since, classify("observer sync", err)
	}
	if resp.NextBatch == "" {
		return since, errors.New("observer sync returned no next_batch")
	}
	for _, room := range rooms {
		if jr := resp.Rooms.Join[room]; jr != nil {
			for _, evt := range jr.Timeline.Events {
				if evt != nil {
					evt.RoomID = room
				}
				n.seen(ctx, evt)
			}
		}
	}
	return resp.NextBatch, nil
}

// observerFilter asks the observer's /sync for the messages of rooms only
// (the alert room, and the canary room if it is another).
func observerFilter(rooms ...id.RoomID) *mautrix.Filter {
	none := &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}}
	return &mautrix.Filter{
		EventFormat: mautrix.EventFormatClient,
		AccountData: none,
		Presence:    none,
		Room: &mautrix.RoomFilter{
			Rooms:       rooms,
			AccountData: none,
			Ephemeral:   none,
			State:       none,
			Timeline:    &mautrix.FilterPart{Limit: timelineLimit, Types: []event.Type{event.EventMessage}},
		},
	}
}

// confirmRoom is the alert room, where pages are seen back ("" until resolved).
func (n *Notifier) confirmRoom() id.RoomID {
	n.roomMu.Lock()
	defer n.roomMu.Unlock()
	return n.room
}
