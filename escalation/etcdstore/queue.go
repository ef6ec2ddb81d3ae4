package etcdstore

import "sync"

// callQueue holds the calls waiting for a shared transaction (webhooks for
// the ingest batcher, updates for the update batcher). One runner goroutine
// at a time drains it, batch after batch, and ends when it is empty.
type callQueue[C any, K comparable] struct {
	mu      sync.Mutex
	pending []C
	running bool
}

// push queues c and starts drain in a goroutine unless a runner is at work.
func (q *callQueue[C, K]) push(c C, drain func()) {
	q.mu.Lock()
	q.pending = append(q.pending, c)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go drain()
	}
}

// drain is the runner. Each batch takes, in order, up to most() calls with
// distinct keys (a later call for the same key must see the earlier one's
// result); ended reports, and answers, calls whose caller has gone. commit
// handles a batch and returns the calls it could not take, which go back to
// the front of the queue.
func (q *callQueue[C, K]) drain(most func() int, key func(C) K, ended func(C) bool, commit func([]C) []C) {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		n := most()
		var batch, rest []C
		seen := map[K]bool{}
		for _, c := range q.pending {
			if ended(c) {
				continue
			}
			if k := key(c); len(batch) < n && !seen[k] {
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
		if back := commit(batch); len(back) > 0 {
			q.mu.Lock()
			q.pending = append(back, q.pending...)
			q.mu.Unlock()
		}
	}
}
