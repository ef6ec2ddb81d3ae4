package escalation

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// ExpiringState lists the engine's state buckets whose keys retention may
// prune: rate-limit windows and carriers of people no longer paged.
var ExpiringState = []string{rateBucket, carrierBucket}

// State buckets the limiter keeps in the store.
const (
	// rateBucket holds each person's recent sends per channel: the rate
	// limit's window, so a restart does not reset it.
	rateBucket = "ratelimit"
	// carrierBucket holds, per person and channel, the last page the provider
	// accepted: pages held back before it are folded into it.
	carrierBucket = "carrier"
)

// limiter enforces per-person rate limits of a channel (phone calls, texts)
// across incidents. A page over the limit is held back (it stays in the
// outbox, status deferred) and the person's next page carries a summary of
// every page held for them; a held page is settled as folded into that
// carrier only once the provider accepted the carrier. Nothing about held
// pages lives in memory: the store answers how many there are.
type limiter struct {
	limit func(ch notifiers.Channel) (int, time.Duration)
	store notifiers.StateStore

	mu       sync.Mutex
	sent     map[limitKey][]slot
	carriers map[limitKey]carrier
}

type limitKey struct {
	person string
	ch     notifiers.Channel
}

func (k limitKey) String() string { return string(k.ch) + "\x00" + k.person }

// slot is one send counted against a limit.
type slot struct {
	At   time.Time `json:"at"`
	Page string    `json:"page"`
}

// carrier is the last page accepted for a person on a channel.
type carrier struct {
	Page string    `json:"page"`
	At   time.Time `json:"at"`
}

func newLimiter(limit func(notifiers.Channel) (int, time.Duration), store notifiers.StateStore) *limiter {
	return &limiter{limit: limit, store: store, sent: map[limitKey][]slot{}, carriers: map[limitKey]carrier{}}
}

func keyOf(p PageRecord) limitKey { return limitKey{p.Recipient.PersonID, p.Channel} }

// limited reports whether p's channel has a rate limit for its person.
func (l *limiter) limited(p PageRecord) bool {
	count, per := l.limit(p.Channel)
	return count > 0 && per > 0 && p.Recipient.PersonID != "" && p.Kind == notifiers.KindPage
}

// slots returns k's window, loading it from the store the first time. The
// caller holds l.mu.
func (l *limiter) slots(ctx context.Context, k limitKey) []slot {
	if s, ok := l.sent[k]; ok {
		return s
	}
	var s []slot
	if l.store != nil {
		if raw, err := l.store.GetState(ctx, rateBucket, k.String()); err == nil && raw != nil {
			_ = json.Unmarshal(raw, &s)
		}
	}
	l.sent[k] = s
	return s
}

// take counts a page against its limit; over the limit it returns how long
// until the window has room.
func (l *limiter) take(ctx context.Context, p PageRecord, now time.Time) (time.Duration, bool) {
	if !l.limited(p) {
		return 0, false
	}
	count, per := l.limit(p.Channel)
	k := keyOf(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.DeleteFunc(slices.Clone(l.slots(ctx, k)), func(x slot) bool { return !x.At.After(now.Add(-per)) })
	if len(s) >= count {
		l.sent[k] = s
		return s[0].At.Add(per).Sub(now), true
	}
	l.sent[k] = append(s, slot{At: now, Page: p.ID})
	return 0, false
}

// untake gives back the slot take counted for p (its send failed).
func (l *limiter) untake(p PageRecord) {
	if !l.limited(p) {
		return
	}
	k := keyOf(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[k] = slices.DeleteFunc(slices.Clone(l.sent[k]), func(x slot) bool { return x.Page == p.ID })
}

// sentOK records that the provider accepted p: its slot is written to the
// store, and p becomes the carrier of every page held before composed, when
// p's summary of held pages was counted (composed zero: it was not, and the
// carrier stays the one before).
func (l *limiter) sentOK(ctx context.Context, p PageRecord, composed time.Time) {
	if !l.limited(p) {
		return
	}
	k := keyOf(p)
	l.mu.Lock()
	window, _ := json.Marshal(l.sent[k])
	c := carrier{Page: p.ID, At: composed}
	if !composed.IsZero() {
		l.carriers[k] = c
	}
	l.mu.Unlock()
	if l.store == nil {
		return
	}
	// Best effort: a lost write costs at most one page over the limit after
	// a restart, or a held page sent on its own instead of folded.
	_ = l.store.PutState(ctx, rateBucket, k.String(), window)
	if !composed.IsZero() {
		cj, _ := json.Marshal(c)
		_ = l.store.PutState(ctx, carrierBucket, k.String(), cj)
	}
}

// carrierAfter returns the last accepted page for p's person and channel if
// its summary was composed after t (so it carried news of a page held at t).
// At the same instant the order is unknown: the page is not folded, and
// reaches the person itself or through a later page.
func (l *limiter) carrierAfter(ctx context.Context, p PageRecord, t time.Time) (carrier, bool) {
	k := keyOf(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.carriers[k]
	if !ok && l.store != nil {
		if raw, err := l.store.GetState(ctx, carrierBucket, k.String()); err == nil && raw != nil && json.Unmarshal(raw, &c) == nil {
			l.carriers[k] = c
			ok = true
		}
	}
	if !ok || c.Page == p.ID || !c.At.After(t) {
		return carrier{}, false
	}
	return c, true
}
