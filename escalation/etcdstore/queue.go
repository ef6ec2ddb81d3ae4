package etcdstore

import "sync"

// queued is a call waiting in a callQueue.
type queued[K comparable] interface {
	// key is what a batch holds at most one call of: a later call with the
	// same key must see the earlier one's result.
	key() K
	// abandoned answers the call with its context's error if its caller has
	// gone, and reports whether it did.
	abandoned() bool
}

// callQueue holds the calls waiting for a shared transaction (webhooks for
// ingest, updates). One runner goroutine at a time drains it, batch after
// batch, and ends when it is empty.
type callQueue[C queued[K], K comparable] struct {
	most   func() int          // the most calls one batch takes
	commit func(batch []C) []C // handles a batch; returns the calls it could not take

	mu      sync.Mutex
	pending []C
	running bool
}

func newCallQueue[C queued[K], K comparable](most func() int, commit func([]C) []C) *callQueue[C, K] {
	return &callQueue[C, K]{most: most, commit: commit}
}

// push queues c and starts a runner unless one is at work.
func (q *callQueue[C, K]) push(c C) {
	q.mu.Lock()
	q.pending = append(q.pending, c)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.drain()
	}
}

// drain is the runner. Each batch takes, in order, up to most() calls with
// distinct keys, dropping abandoned ones; the calls commit could not take
// go back to the front of the queue.
func (q *callQueue[C, K]) drain() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		n := q.most()
		var batch, rest []C
		seen := map[K]bool{}
		for _, c := range q.pending {
			if c.abandoned() {
				continue
			}
			if k := c.key(); len(batch) < n && !seen[k] {
				seen[k] = true
				batch = append(batch, c)
			} else {
				rest = append(rest, c)
			}
		}
		q.pending = rest
		q.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if back := q.commit(batch); len(back) > 0 {
			q.mu.Lock()
			q.pending = append(back, q.pending...)
			q.mu.Unlock()
		}
	}
}
