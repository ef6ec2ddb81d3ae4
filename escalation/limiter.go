package escalation

import (
	"fmt"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// limiter enforces per-person rate limits of a channel (phone calls, texts)
// across incidents. Pages over the limit are held back and folded into the
// person's next page ("3 incidents need you: 41, 42, 43"), never dropped.
type limiter struct {
	limit func(ch notifiers.Channel) (int, time.Duration)

	mu     sync.Mutex
	sent   map[limitKey][]time.Time
	folded map[limitKey][]PageRecord
	into   map[string]string // held-back page id → the page it was folded into
}

type limitKey struct {
	person string
	ch     notifiers.Channel
}

func newLimiter(limit func(notifiers.Channel) (int, time.Duration)) *limiter {
	return &limiter{limit: limit, sent: map[limitKey][]time.Time{}, folded: map[limitKey][]PageRecord{}, into: map[string]string{}}
}

// take counts a page against its limit; over the limit it returns how long
// until the window has room.
func (l *limiter) take(p PageRecord, now time.Time) (time.Duration, bool) {
	count, per := l.limit(p.Channel)
	if count <= 0 || per <= 0 || p.Recipient.PersonID == "" {
		return 0, false
	}
	k := limitKey{p.Recipient.PersonID, p.Channel}
	l.mu.Lock()
	defer l.mu.Unlock()
	times := l.sent[k]
	cut := 0
	for cut < len(times) && !times[cut].After(now.Add(-per)) {
		cut++
	}
	times = times[cut:]
	if len(times) >= count {
		l.sent[k] = times
		return times[0].Add(per).Sub(now), true
	}
	l.sent[k] = append(times, now)
	return 0, false
}

// fold remembers a held-back page so the person's next page mentions it.
func (l *limiter) fold(p PageRecord) {
	k := limitKey{p.Recipient.PersonID, p.Channel}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.folded[k] {
		if q.ID == p.ID {
			return
		}
	}
	l.folded[k] = append(l.folded[k], p)
}

// drainFolded returns the incident numbers held back for p's person and
// channel (other than p's own) and forgets them.
func (l *limiter) drainFolded(p PageRecord) []string {
	k := limitKey{p.Recipient.PersonID, p.Channel}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	seen := map[uint64]bool{p.Incident: true}
	for _, q := range l.folded[k] {
		if q.ID != p.ID {
			l.into[q.ID] = p.ID
		}
		if !seen[q.Incident] {
			seen[q.Incident] = true
			out = append(out, fmt.Sprint(q.Incident))
		}
	}
	delete(l.folded, k)
	return out
}

// foldedInto reports the page a held-back page was folded into, and forgets it.
func (l *limiter) foldedInto(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	into, ok := l.into[id]
	delete(l.into, id)
	return into, ok
}

// untake gives back the slot take counted for p (its send failed).
func (l *limiter) untake(p PageRecord) {
	k := limitKey{p.Recipient.PersonID, p.Channel}
	l.mu.Lock()
	defer l.mu.Unlock()
	if times := l.sent[k]; len(times) > 0 {
		l.sent[k] = times[:len(times)-1]
	}
}
