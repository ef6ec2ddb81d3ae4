package boltstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many writes share one transaction, so one commit's
// fsync and its callers' wait stay bounded in a storm.
const maxGroup = 1000

// groupCommit merges concurrent writes into shared transactions without
// waiting for company: one committer takes every write queued and runs them
// in one transaction, taking in the writes that arrive while it runs them,
// and commits once no write is waiting; the writes that arrive during the
// commit queue for the next. A lone write is committed as soon as the
// committer sees it (bbolt's Batch instead holds every write for
// MaxBatchDelay, even with nobody else writing); under load a commit carries
// everything that arrived during the previous one's fsync and its own work.
type groupCommit struct {
	db *bolt.DB
	// hold is how long deferrable writes wait, when no other write is
	// queued, for one to share their commit (0: not at all), and only while
	// prompt writes are arriving: within holdAfter of the last one.
	hold       time.Duration
	lastPrompt time.Time // when the last prompt write was queued (under mu)

	mu      sync.Mutex
	queue   []groupCall
	wake    chan struct{} // capacity 1: the committer has work
	done    chan struct{} // closed by stop
	stopped chan struct{} // closed when the committer has returned
}

type groupCall struct {
	fn  func(*bolt.Tx) error
	err chan error // capacity 1
	// deferrable writes may wait up to hold for company (see Options.DeferUpdates).
	deferrable bool
	queued     time.Time
}

// errSolo tells a caller whose function failed inside a shared transaction to
// run it again alone: its error may have come from its neighbours' writes,
// and only its own transaction says which error is its own.
var errSolo = errors.New("boltstore: run the write alone")

func newGroupCommit(db *bolt.DB, hold time.Duration) *groupCommit {
	g := &groupCommit{db: db, hold: hold, wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go g.run()
	return g
}

// do runs fn in a shared durable transaction and returns once it committed
// (nil) or failed (fn's own error, or the commit's). A deferrable fn may wait
// up to the group's hold for another write to share its commit.
func (g *groupCommit) do(fn func(*bolt.Tx) error, deferrable bool) error {
	c := groupCall{fn: fn, err: make(chan error, 1), deferrable: deferrable && g.hold > 0}
	if g.hold > 0 {
		c.queued = time.Now()
	}
	g.mu.Lock()
	if g.hold > 0 && !c.deferrable {
		g.lastPrompt = c.queued
	}
	select {
	case <-g.done:
		g.mu.Unlock()
		return bolt.ErrDatabaseNotOpen
	default:
	}
	g.queue = append(g.queue, c)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	err := <-c.err
	if err == errSolo {
		err = g.db.Update(func(tx *bolt.Tx) error { return safely(fn, tx) })
	}
	return err
}

// stop ends the committer; writes still queued fail.
func (g *groupCommit) stop() {
	g.mu.Lock()
	select {
	case <-g.done:
	default:
		close(g.done)
	}
	g.mu.Unlock()
	<-g.stopped
}

func (g *groupCommit) run() {
	defer close(g.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-g.done:
			g.failQueued()
			return
		case <-g.wake:
		case <-timer.C:
		}
		for {
			g.mu.Lock()
			if wait := g.holding(); wait > 0 {
				g.mu.Unlock()
				timer.Reset(wait) // until then, a new write wakes the committer
				break
			}
			calls := g.takeLocked(maxGroup)
			g.mu.Unlock()
			if len(calls) == 0 {
				break
			}
			g.commit(calls)
		}
	}
}

// holdAfter is how recent the last prompt write must be for deferrable ones
// to wait for company: a burst of webhooks is under way. Otherwise nothing
// is likely to come, and a loop of updates (held pages retried one after
// another) must not pay the wait each time.
const holdAfter = 100 * time.Millisecond

// holding reports how much longer the queue waits for company: only
// deferrable writes are queued, a prompt write came lately, and the oldest
// has waited less than hold. Called with g.mu held.
func (g *groupCommit) holding() time.Duration {
	if len(g.queue) == 0 || g.lastPrompt.IsZero() || g.queue[0].queued.Sub(g.lastPrompt) > holdAfter {
		return 0
	}
	for _, c := range g.queue {
		if !c.deferrable {
			return 0
		}
	}
	return g.hold - time.Since(g.queue[0].queued)
}

// failQueued fails the writes still queued when the committer stops.
func (g *groupCommit) failQueued() {
	g.mu.Lock()
	rest := g.queue
	g.queue = nil
	g.mu.Unlock()
	for _, c := range rest {
		c.err <- bolt.ErrDatabaseNotOpen
	}
}

// commit runs calls in one transaction. A call that fails is taken out and
// told to run alone; the rest run again without it.
func (g *groupCommit) commit(calls []groupCall) {
	for len(calls) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i := 0; ; i++ {
				if i == len(calls) && !g.late(&calls) {
					return nil
				}
				if err := safely(calls[i].fn, tx); err != nil {
					failed = i
					return err
				}
			}
		})
		if failed >= 0 {
			calls[failed].err <- errSolo
			calls = append(calls[:failed], calls[failed+1:]...)
			continue
		}
		for _, c := range calls {
			c.err <- err
		}
		return
	}
}

// safely runs fn, turning a panic into an error for its caller instead of
// killing the committer that serves every writer.
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in a store write: %v", p)
		}
	}()
	return fn(tx)
}

// late moves the writes queued since the transaction began into it, up to
// maxGroup in all, and reports whether there were any.
func (g *groupCommit) late(calls *[]groupCall) bool {
	g.mu.Lock()
	more := g.takeLocked(maxGroup - len(*calls))
	g.mu.Unlock()
	*calls = append(*calls, more...)
	return len(more) > 0
}

// takeLocked takes up to limit writes off the front of the queue (g.mu held).
func (g *groupCommit) takeLocked(limit int) []groupCall {
	n := max(min(len(g.queue), limit), 0)
	calls := g.queue[:n:n]
	g.queue = g.queue[n:]
	if len(g.queue) == 0 {
		g.queue = nil // let the old backing array go
	}
	return calls
}
