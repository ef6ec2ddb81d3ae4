package pagerduty

import (
	"container/list"
	"sync"
	"time"
)

// tracked is what the notifier remembers about an incident it paged for:
// the routing key it used (acknowledge and resolve must reach the same
// integration), the Klaxon incident and page, and the PagerDuty status last
// seen by polling.
type tracked struct {
	routingKey string
	incident   uint64
	pageID     string
	since      time.Time
	lastStatus string
	// confirmBy is the delivery confirmation deadline of pageID while it
	// waits for PagerDuty's evidence (zero: none waits).
	confirmBy time.Time
}

// tracker is a bounded map of incident key → tracked, oldest evicted first.
// It lives in memory: after a restart, pages resent by the engine track their
// incidents again.
type tracker struct {
	mu    sync.Mutex
	max   int
	m     map[string]*list.Element
	order *list.List // of *trackEntry, oldest first
}

type trackEntry struct {
	key string
	t   tracked
}

func newTracker(maxEntries int) *tracker {
	return &tracker{max: maxEntries, m: map[string]*list.Element{}, order: list.New()}
}

// track records or refreshes key, keeping the last polled status.
func (tr *tracker) track(key string, t tracked) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if e, ok := tr.m[key]; ok {
		old := e.Value.(*trackEntry)
		t.lastStatus = old.t.lastStatus
		if t.confirmBy.IsZero() && t.pageID == old.t.pageID {
			t.confirmBy = old.t.confirmBy
		}
		old.t = t
		tr.order.MoveToBack(e)
		return
	}
	tr.m[key] = tr.order.PushBack(&trackEntry{key: key, t: t})
	for tr.order.Len() > tr.max {
		oldest := tr.order.Front()
		tr.order.Remove(oldest)
		delete(tr.m, oldest.Value.(*trackEntry).key)
	}
}

func (tr *tracker) get(key string) (tracked, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if e, ok := tr.m[key]; ok {
		return e.Value.(*trackEntry).t, true
	}
	return tracked{}, false
}

func (tr *tracker) setStatus(key, status string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if e, ok := tr.m[key]; ok {
		e.Value.(*trackEntry).t.lastStatus = status
	}
}

// setConfirmBy records (or, with a zero at, clears) the confirmation
// deadline of key's page pageID; a later page of key is left alone.
func (tr *tracker) setConfirmBy(key, pageID string, at time.Time) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if e, ok := tr.m[key]; ok && e.Value.(*trackEntry).t.pageID == pageID {
		e.Value.(*trackEntry).t.confirmBy = at
		return true
	}
	return false
}

func (tr *tracker) forget(key string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if e, ok := tr.m[key]; ok {
		tr.order.Remove(e)
		delete(tr.m, key)
	}
}

// reset forgets every tracked incident.
func (tr *tracker) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.m = map[string]*list.Element{}
	tr.order.Init()
}

// keys returns the tracked incident keys, oldest first.
func (tr *tracker) keys() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]string, 0, tr.order.Len())
	for e := tr.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*trackEntry).key)
	}
	return out
}

// replayCache remembers webhook event ids recently handled, so a redelivered
// or replayed webhook is applied once. Entries expire after ttl; at most max
// are kept (oldest dropped first).
type replayCache struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	m     map[string]*list.Element
	order *list.List // of *replayEntry, by time of last change
}

type replayEntry struct {
	id       string
	inFlight bool
	at       time.Time
}

// replayState is what begin found.
type replayState int

const (
	replayNew replayState = iota
	replayDone
	replayInFlight
)

func newReplayCache(maxEntries int, ttl time.Duration) *replayCache {
	return &replayCache{max: maxEntries, ttl: ttl, m: map[string]*list.Element{}, order: list.New()}
}

// begin claims id for processing unless it was handled or is being handled.
func (rc *replayCache) begin(id string, now time.Time) replayState {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for e := rc.order.Front(); e != nil; {
		next := e.Next()
		if r := e.Value.(*replayEntry); !r.inFlight && now.Sub(r.at) > rc.ttl {
			rc.order.Remove(e)
			delete(rc.m, r.id)
		} else if !r.inFlight {
			break
		}
		e = next
	}
	if e, ok := rc.m[id]; ok {
		if e.Value.(*replayEntry).inFlight {
			return replayInFlight
		}
		return replayDone
	}
	rc.m[id] = rc.order.PushBack(&replayEntry{id: id, inFlight: true, at: now})
	for rc.order.Len() > rc.max {
		oldest := rc.order.Front()
		rc.order.Remove(oldest)
		delete(rc.m, oldest.Value.(*replayEntry).id)
	}
	return replayNew
}

// finish ends processing of id: handled (remembered) or not (forgotten, so a
// redelivery is processed again).
func (rc *replayCache) finish(id string, handled bool, now time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e, ok := rc.m[id]
	if !ok {
		return
	}
	if !handled {
		rc.order.Remove(e)
		delete(rc.m, id)
		return
	}
	r := e.Value.(*replayEntry)
	r.inFlight, r.at = false, now
	rc.order.MoveToBack(e)
}
