package boltstore

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many writes share one transaction, so one commit's
// fsync and its callers' wait stay bounded in a storm.
const maxGroup = 1000

// DefaultCheckpointEvery is Options.CheckpointEvery's default. A checkpoint
// writes the pages every batch since the last one dirtied, each once, and
// holds the writer meanwhile: with 64 senders one every 50 ms took about
// 7 ms and put the 99th percentile over 25 ms; every 20 ms wrote more pages
// per alert. Every 30 ms one took 5.5 ms at the median.
const DefaultCheckpointEvery = 30 * time.Millisecond

// checkpointBytes is how much the log may hold before a checkpoint, whatever
// the time: a restart after a crash replays at most about this much.
const checkpointBytes = 4 << 20

// groupCommit merges concurrent writes into shared batches without waiting
// for company: one writer takes every write queued and runs them in its
// transaction, taking in the writes that arrive while it runs them, and
// makes the batch durable once no write is waiting; the writes that arrive
// meanwhile queue for the next. A lone write is durable as soon as the
// writer has seen it (bbolt's Batch instead holds every write for
// MaxBatchDelay, even with nobody else writing); under load a batch carries
// everything that arrived during the previous one's fsync and its own work.
//
// The writer's transaction stays open across batches: a batch is durable
// once its changes are in the write-ahead log, and every
// Options.CheckpointEvery (or when a read needs it, see settle) the
// transaction commits to klaxon.db.
type groupCommit struct {
	db  *bolt.DB
	log *wal
	// hold is how long deferrable writes wait, when no other write is
	// queued, for one to share their batch (0: not at all), and only while
	// prompt writes are arriving: within holdAfter of the last one.
	hold       time.Duration
	lastPrompt time.Time // when the last prompt write was queued (under mu)
	// checkpointed, if set, learns each checkpoint's outcome.
	checkpointed func(error)
	every        time.Duration // Options.CheckpointEvery

	mu      sync.Mutex
	queue   []groupCall
	wake    chan struct{} // capacity 1: the writer has work
	done    chan struct{} // closed by stop
	stopped chan struct{} // closed when the writer has returned
	final   func(*bolt.Tx) error
	crashed bool // stop as a crash would: no last checkpoint (tests)
	// commitTx commits a checkpoint's transaction: tx.Commit; tests make it fail.
	commitTx func(*bolt.Tx) error
	stopErr  error // the last checkpoint's

	// The writer's own:
	tx       *bolt.Tx  // open, holding gen; nil until the next write needs it
	gen      [][]byte  // the log's records since the last checkpoint
	genBytes int       // their size
	since    time.Time // when gen's first record was written
	limit    int       // genBytes that call for a checkpoint
	recCap   int       // the capacity a batch's record starts with

	acked   atomic.Uint64 // batches whose changes are in the log
	settled atomic.Uint64 // acked as of the last checkpoint
}

type groupCall struct {
	fn  func(*wtx) error // nil for a settle
	err chan error       // capacity 1
	// deferrable writes may wait up to hold for company (see Options.DeferUpdates).
	deferrable bool
	// settle asks for a checkpoint (see groupCommit.settle).
	settle bool
	read   bool // fn only reads (see groupCommit.read)
	queued time.Time
}

func newGroupCommit(db *bolt.DB, log *wal, hold, every time.Duration, checkpointed func(error)) *groupCommit {
	g := &groupCommit{db: db, log: log, hold: hold, every: every, checkpointed: checkpointed, limit: checkpointBytes,
		wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	go g.run()
	return g
}

// do runs fn in the writer's transaction and returns once its changes are
// durable (nil) or it failed (fn's own error, or the log's). A deferrable
// fn may wait up to the group's hold for another write to share its batch.
// fn runs once, after the writes queued before it; if it fails, whatever it
// changed is undone and the writes after it run as if it never had.
func (g *groupCommit) do(fn func(*wtx) error, deferrable bool) error {
	return g.enqueue(groupCall{fn: fn, deferrable: deferrable && g.hold > 0})
}

// settle returns once every write acknowledged before it was called is
// committed to klaxon.db, where bbolt's read transactions see it.
func (g *groupCommit) settle() error {
	if !g.unsettled() {
		return nil
	}
	return g.enqueue(groupCall{settle: true})
}

// unsettled reports whether a write acknowledged so far is not yet
// committed to klaxon.db.
func (g *groupCommit) unsettled() bool { return g.acked.Load() != g.settled.Load() }

// read runs fn in the writer's transaction, after the writes queued before
// it, and returns once every write fn could see is durable.
func (g *groupCommit) read(fn func(*bolt.Tx) error) error {
	return g.enqueue(groupCall{fn: func(w *wtx) error { return fn(w.Tx) }, read: true})
}

func (g *groupCommit) enqueue(c groupCall) error {
	c.err = make(chan error, 1)
	if g.hold > 0 {
		c.queued = time.Now()
	}
	g.mu.Lock()
	if g.hold > 0 && !c.deferrable && !c.settle && !c.read { // a read is no sign of a burst
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
	return <-c.err
}

// stop ends the writer: writes still queued fail, and a last checkpoint
// runs final in its transaction and commits (unless crash: then the
// transaction is dropped, as a crash drops it). It returns that
// checkpoint's error.
func (g *groupCommit) stop(final func(*bolt.Tx) error, crash bool) error {
	g.mu.Lock()
	select {
	case <-g.done:
		g.mu.Unlock()
		return nil
	default:
		g.final, g.crashed = final, crash
		close(g.done)
	}
	g.mu.Unlock()
	<-g.stopped
	return g.stopErr
}

func (g *groupCommit) run() {
	defer close(g.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-g.done:
			g.failQueued()
			if g.crashed {
				g.abort()
				return
			}
			g.stopErr = g.checkpoint(g.final)
			g.abort()
			return
		case <-g.wake:
		case <-timer.C:
		}
		var wait time.Duration
		for {
			g.mu.Lock()
			if wait = g.holding(); wait > 0 {
				g.mu.Unlock()
				break // until then, a new write wakes the writer
			}
			calls := g.takeLocked(maxGroup)
			g.mu.Unlock()
			if len(calls) == 0 {
				break
			}
			g.commit(calls)
		}
		if len(g.gen) > 0 {
			left := g.every - time.Since(g.since)
			if left <= 0 {
				_ = g.checkpoint(nil)
			} else if wait <= 0 || left < wait {
				wait = left
			}
		}
		if wait > 0 {
			timer.Reset(wait)
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

// commit runs calls (and those arriving meanwhile, up to maxGroup) in the
// writer's transaction, appends their changes to the log as one record, and
// answers them. A call that fails gets its error, and the transaction is
// rebuilt without its changes if it made any. Settle calls are answered
// after a checkpoint.
func (g *groupCommit) commit(calls []groupCall) {
	if err := g.begin(); err != nil {
		for _, c := range calls {
			c.err <- err
		}
		return
	}
	// The records stay in gen, so each batch needs its own; sized like the
	// last, it seldom grows by copying.
	w := &wtx{Tx: g.tx, rec: make([]byte, 0, g.recCap)}
	var ok, settles []groupCall
	for i := 0; ; i++ {
		if i == len(calls) && !g.late(&calls) {
			break
		}
		c := calls[i]
		if c.settle {
			settles = append(settles, c)
			continue
		}
		mark := len(w.rec)
		err := safely(c.fn, w)
		if err == nil {
			ok = append(ok, c)
			continue
		}
		if len(w.rec) > mark {
			// It changed the transaction before failing: start again from
			// the log and the batch's changes before it.
			w.rec = w.rec[:mark]
			if rerr := g.rebuild(w.rec); rerr != nil {
				// Not even the log's records apply: fail the whole batch.
				for _, o := range slices.Concat(ok, settles, calls[i:]) {
					o.err <- rerr
				}
				return
			}
			w.Tx = g.tx
		}
		c.err <- err
	}
	g.recCap = min(len(w.rec)+len(w.rec)/4, 1<<20)
	var err error
	if len(w.rec) > 0 {
		if err = g.log.append(w.rec); err != nil {
			g.abort() // not durable: undo it (the next batch replays the log)
		} else {
			if len(g.gen) == 0 {
				g.since = time.Now()
			}
			g.gen = append(g.gen, w.rec)
			g.genBytes += len(w.rec)
			g.acked.Add(1)
		}
	}
	for _, c := range ok {
		c.err <- err
	}
	if len(settles) > 0 || g.genBytes >= g.limit || (len(g.gen) > 0 && time.Since(g.since) >= g.every) {
		err := g.checkpoint(nil)
		for _, c := range settles {
			c.err <- err
		}
	}
}

// begin opens the writer's transaction if it is not open, with the log's
// records since the last checkpoint replayed into it.
func (g *groupCommit) begin() error {
	if g.tx != nil {
		return nil
	}
	tx, err := g.db.Begin(true)
	if err != nil {
		return err
	}
	for _, rec := range g.gen {
		if err := replay(tx, rec); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("replaying the write-ahead log: %w", err)
		}
	}
	g.tx = tx
	return nil
}

// rebuild replaces the writer's transaction with one holding only the
// log's records and then rec.
func (g *groupCommit) rebuild(rec []byte) error {
	g.abort()
	if err := g.begin(); err != nil {
		return err
	}
	if err := replay(g.tx, rec); err != nil {
		g.abort()
		return fmt.Errorf("replaying a batch: %w", err)
	}
	return nil
}

// abort rolls the writer's transaction back, if one is open.
func (g *groupCommit) abort() {
	if g.tx != nil {
		_ = g.tx.Rollback()
		g.tx = nil
	}
}

// checkpoint commits the writer's transaction to klaxon.db, with final run
// in it first if not nil, and starts the log's next generation. A failed
// checkpoint keeps the log's records: the next batch replays them into a
// new transaction, and the next checkpoint tries again g.every later.
func (g *groupCommit) checkpoint(final func(*bolt.Tx) error) error {
	if len(g.gen) == 0 && final == nil {
		g.abort() // nothing in it
		return nil
	}
	err := g.begin()
	if err == nil && final != nil {
		err = final(g.tx)
	}
	next := g.log.epoch + 1
	if err == nil {
		err = setEpoch(g.tx, next)
	}
	if err == nil {
		if g.commitTx != nil {
			err = g.commitTx(g.tx)
		} else {
			err = g.tx.Commit()
		}
		if err == nil {
			g.tx = nil
		}
	}
	g.abort()
	if err == nil {
		g.log.restart(next)
		g.gen, g.genBytes, g.since, g.limit = nil, 0, time.Time{}, checkpointBytes
		g.settled.Store(g.acked.Load())
	} else {
		g.since, g.limit = time.Now(), g.genBytes+checkpointBytes
		err = fmt.Errorf("committing the write-ahead log to the database: %w", err)
	}
	if g.checkpointed != nil {
		g.checkpointed(err)
	}
	return err
}

// safely runs fn, turning a panic into an error for its caller instead of
// killing the committer that serves every writer.
func safely(fn func(*wtx) error, tx *wtx) (err error) {
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
