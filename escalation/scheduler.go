package escalation

import (
	"container/heap"
	"context"
	"errors"
	"slices"
	"time"
)

// wakeItem is a scheduled look at an incident (page == "" and hold nil), a
// page retry, or a look at the pages held for a person on a channel.
type wakeItem struct {
	at   time.Time
	inc  uint64
	page string
	hold *limitKey
}

type wakeQueue []wakeItem

func (q wakeQueue) Len() int           { return len(q) }
func (q wakeQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q wakeQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *wakeQueue) Push(x any)        { *q = append(*q, x.(wakeItem)) }
func (q *wakeQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// schedule makes the engine look at incident id at t (zero: never).
func (e *Engine) schedule(id uint64, at time.Time) {
	e.mu.Lock()
	if at.IsZero() {
		delete(e.wakes, id)
		e.mu.Unlock()
		return
	}
	if cur, ok := e.wakes[id]; ok && cur.Equal(at) {
		e.mu.Unlock()
		return
	}
	e.wakes[id] = at
	first := e.pushLocked(wakeItem{at: at, inc: id})
	e.mu.Unlock()
	if first {
		e.poke()
	}
}

// pushLocked queues it and reports whether it is now the earliest item, the
// only case in which Run must wake to set its timer again: Run sleeps until
// the earliest item at most, so a later one changes nothing for it until
// then. (Under a storm every webhook schedules a wake minutes away, and
// waking Run for each cost a goroutine switch per webhook.)
func (e *Engine) pushLocked(it wakeItem) (first bool) {
	first = e.queue.Len() == 0 || it.at.Before(e.queue[0].at)
	heap.Push(&e.queue, it)
	return first
}

// scheduleRetry makes the engine try page id again at t.
func (e *Engine) scheduleRetry(id string, at time.Time) {
	inc, _, _ := ParsePageID(id)
	e.mu.Lock()
	e.retries[id] = at
	first := e.pushLocked(wakeItem{at: at, inc: inc, page: id})
	e.mu.Unlock()
	if first {
		e.poke()
	}
}

// scheduleHold makes the engine look at the pages held for k at t, unless
// it already looks earlier (that look reads every page held for k).
func (e *Engine) scheduleHold(k limitKey, at time.Time) {
	e.mu.Lock()
	first := false
	e.holdLocked(k, at, func(it wakeItem) { first = e.pushLocked(it) })
	e.mu.Unlock()
	if first {
		e.poke()
	}
}

// holdLocked is scheduleHold with e.mu held, queueing through push.
func (e *Engine) holdLocked(k limitKey, at time.Time, push func(wakeItem)) {
	if cur, ok := e.holds[k]; ok && !at.Before(cur) {
		return
	}
	e.holds[k] = at
	push(wakeItem{at: at, hold: &k})
}

func (e *Engine) poke() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// NextDeadline is the earliest scheduled work, if any.
func (e *Engine) NextDeadline() (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.queue.Len() > 0 {
		it := e.queue[0]
		if e.live(it) {
			return it.at, true
		}
		heap.Pop(&e.queue)
	}
	return time.Time{}, false
}

// live reports whether a queue item is still the current schedule for its key.
func (e *Engine) live(it wakeItem) bool {
	if it.hold != nil {
		at, ok := e.holds[*it.hold]
		return ok && at.Equal(it.at)
	}
	if it.page != "" {
		at, ok := e.retries[it.page]
		return ok && at.Equal(it.at)
	}
	at, ok := e.wakes[it.inc]
	return ok && at.Equal(it.at)
}

// due pops every live item due at now.
func (e *Engine) due(now time.Time) []wakeItem {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []wakeItem
	for e.queue.Len() > 0 && !e.queue[0].at.After(now) {
		it := heap.Pop(&e.queue).(wakeItem)
		if !e.live(it) {
			continue
		}
		if it.hold != nil {
			delete(e.holds, *it.hold)
		} else if it.page != "" {
			delete(e.retries, it.page)
		} else {
			delete(e.wakes, it.inc)
		}
		out = append(out, it)
	}
	return out
}

// RunDue does all work due at the clock's now, in the calling goroutine when
// the engine is inline. It returns how many items it handled.
func (e *Engine) RunDue(ctx context.Context) int {
	items := e.due(e.cfg.Clock.Now())
	for _, it := range items {
		if e.cfg.Inline {
			e.handle(ctx, it)
			continue
		}
		// Bounded: after a long outage every incident may be due at once,
		// and a goroutine each would cost more memory than the incidents.
		e.workers <- struct{}{}
		e.wg.Add(1)
		go func() {
			defer func() { <-e.workers; e.wg.Done() }()
			e.handle(ctx, it)
		}()
	}
	return len(items)
}

func (e *Engine) handle(ctx context.Context, it wakeItem) {
	if it.hold != nil {
		e.releaseHeld(ctx, *it.hold)
		return
	}
	if it.page != "" {
		e.retry(ctx, it.page)
		return
	}
	e.wake(ctx, it.inc)
}

// wake lets Decide move incident id forward, once the pages whose
// confirmation deadline passed are marked unconfirmed (so a step whose last
// hope that was moves on at once).
func (e *Engine) wake(ctx context.Context, id uint64) {
	now := e.cfg.Clock.Now()
	var expired []PageRecord
	inc, ch, err := Update(ctx, e.cfg.Store, id, func(inc *Incident, pages []PageRecord) (Change, error) {
		var ch Change
		expired = nil
		if !inc.Escalation.ConfirmBy.IsZero() {
			pages = slices.Clone(pages)
			expired = expireConfirmations(inc, pages, now, &ch)
		}
		d := Decide(inc, pages, e.situation(inc, now))
		ch.Events, ch.Pages = append(ch.Events, d.Events...), append(ch.Pages, d.Pages...)
		return ch, nil
	})
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			e.log.Error("escalation step failed; retrying", "incident", id, "in", storeRetry, "error", err)
			e.schedule(id, now.Add(storeRetry))
		}
		return
	}
	for _, p := range expired {
		e.unconfirmed(p, CauseDeadline, p.LastError, false)
	}
	e.after(ctx, inc, ch)
}

// heldChunk is how many held page ids releaseHeld reads from the store at once.
const heldChunk = 256

// releaseHeld looks at every page held back for k, oldest first, one at a
// time: the first to find room in the limit is sent as the carrier with a
// summary of the rest, which then fold into it; pages that still find no
// room are held again (and schedule the next look). They are read from the
// store in chunks, so a storm's held pages cost no memory here.
func (e *Engine) releaseHeld(ctx context.Context, k limitKey) {
	after := ""
	for {
		ids, err := e.cfg.Store.HeldPages(ctx, k.person, k.ch, after, heldChunk)
		if err != nil {
			e.log.Error("reading held pages; trying again", "person", k.person, "channel", k.ch, "in", storeRetry, "error", err)
			e.scheduleHold(k, e.cfg.Clock.Now().Add(storeRetry))
			return
		}
		for _, id := range ids {
			e.retry(ctx, id)
		}
		if len(ids) < heldChunk {
			return
		}
		after = ids[len(ids)-1]
	}
}

// retry sends a page again after a temporary failure or a rate-limit hold.
func (e *Engine) retry(ctx context.Context, pageID string) {
	id, _, _ := ParsePageID(pageID)
	inc, err := e.cfg.Store.Incident(ctx, id)
	if err != nil {
		e.retryRead(pageID, err)
		return
	}
	pages, err := e.cfg.Store.Pages(ctx, id)
	if err != nil {
		e.retryRead(pageID, err)
		return
	}
	p, ok := findPage(pages, pageID)
	e.mu.Lock()
	r, unwritten := e.results[pageID]
	delete(e.results, pageID)
	e.mu.Unlock()
	if !ok {
		return
	}
	if unwritten {
		e.settle(ctx, p, r) // the store refused this result before: write it now
		return
	}
	if p.Status.Done() {
		return
	}
	e.send(ctx, &inc, p)
}

// retryRead asks for page id again after storeRetry when the store could not
// be read to retry it, as wake and releaseHeld do: a read error never drops
// a page. An incident gone from the store (pruned) owes nothing more.
func (e *Engine) retryRead(pageID string, err error) {
	if errors.Is(err, ErrNotFound) {
		e.log.Warn("retrying a page of an incident the store no longer has", "page", pageID)
		return
	}
	e.log.Error("reading a page to retry it; trying again", "page", pageID, "in", storeRetry, "error", err)
	e.scheduleRetry(pageID, e.cfg.Clock.Now().Add(storeRetry))
}

// Recover reloads every unfinished incident after a start: deadlines that
// passed while Klaxon was down fire at once; pages that were pending or in
// flight at a crash are sent again with the same idempotency key.
func (e *Engine) Recover(ctx context.Context) (incidents, pages int, err error) {
	now := e.cfg.Clock.Now()
	err = e.cfg.Store.Schedule(ctx, func(d Due) error {
		incidents++
		pages += len(d.Pages)
		e.mu.Lock()
		// Recovery may run while webhooks and answers arrive: what they
		// scheduled since is newer than the store's snapshot, so it stays.
		e.track(d, now, false, func(it wakeItem) { e.queue = append(e.queue, it) })
		e.mu.Unlock()
		return nil
	})
	e.mu.Lock()
	heap.Init(&e.queue)
	e.mu.Unlock()
	e.poke()
	return incidents, pages, err
}

// Track schedules work another replica recorded (a leader learns of it by
// watching the store): the incident's deadline and its new unfinished pages,
// as Recover does for everything after a start.
func (e *Engine) Track(d Due) {
	e.mu.Lock()
	e.track(d, e.cfg.Clock.Now(), true, func(it wakeItem) { heap.Push(&e.queue, it) })
	e.mu.Unlock()
	e.poke()
}

// track queues d's wake and pages through push; e.mu is held. With replace
// false a wake or retry already live in this engine is kept (it is newer than
// d); with replace true d is the newer news (another replica's write).
func (e *Engine) track(d Due, now time.Time, replace bool, push func(wakeItem)) {
	next := d.NextAt
	if next.IsZero() && d.State == Open {
		// Stored by a version that let exhausted or policy-less incidents
		// fall silent: look at it now.
		next = now
	}
	if _, live := e.wakes[d.Incident]; (replace || !live) && !next.IsZero() {
		e.wakes[d.Incident] = next
		push(wakeItem{at: next, inc: d.Incident})
	}
	for _, p := range d.Pages {
		at := p.NextTry
		if at.IsZero() || at.Before(now) {
			at = now
		}
		if p.Deferred {
			e.holdLocked(limitKey{p.Person, p.Channel}, at, push)
			continue
		}
		if _, live := e.retries[p.ID]; live && !replace {
			continue
		}
		e.retries[p.ID] = at
		push(wakeItem{at: at, inc: d.Incident, page: p.ID})
	}
}

// Run does scheduled work until ctx ends, then waits for sends in flight.
func (e *Engine) Run(ctx context.Context) error {
	timer := e.cfg.Clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e.RunDue(ctx)
		wait := time.Hour
		if at, ok := e.NextDeadline(); ok {
			wait = max(at.Sub(e.cfg.Clock.Now()), 0)
		}
		timer.Stop()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			e.wg.Wait()
			return nil
		case <-e.kick:
		case <-timer.C():
		}
	}
}
