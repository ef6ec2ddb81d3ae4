// Package boltstore implements escalation.Store on go.etcd.io/bbolt, Klaxon's
// embedded default: one file, klaxon.db, in the data directory. Every write
// is a bbolt transaction committed (and fsynced) before the call returns;
// concurrent writes share one through bbolt's own Batch (group commit).
//
// A data directory left by Klaxon up to c735968, with its write-ahead log
// klaxon.wal, opens too: see legacy.go.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/internal/index"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

var (
	bIncidents = []byte("incidents") // be64(id) → Incident JSON
	bOpen      = []byte("open")      // be64(id) → be64(nextAt unix ns) state: the schedule of unresolved incidents
	bPending   = []byte("pending")   // be64(id) be32(seq) → be64(nextTry) deferred channel 0 person: unfinished pages
	bGroups    = []byte("groups")    // groupKey → Group JSON
	bTimeline  = []byte("timeline")  // be64(id) be32(seq) → Event JSON
	bPages     = []byte("pages")     // be64(id) be32(seq) → PageRecord JSON
	bState     = []byte("state")     // namespace bucket → key → value (channels' own state)
	bStateTime = []byte("stateTime") // bucket 0 key → be64(written unix ns): what retention prunes by
	bMeta      = []byte("meta")
)

// syncFreelist is whether commits write bbolt's list of free pages. They do
// not (etcd's bbolt does not either): bbolt writes the whole list, every id
// of every free page, with every commit, so once retention has pruned a
// storm's 100,000 incidents each commit wrote about 290 KB more. Only
// Close's last commit writes it. After a crash, Open rebuilds it by walking
// every page of the file (about 0.25 s more with 100,000 open incidents).
// A file written either way opens either way.
const syncFreelist = false

// DefaultBatchDelay is Options.BatchDelay's default: how long bbolt's Batch
// waits for more writes to share a commit. A write with no other in flight
// does not wait (see batch); one that arrives while another commits does,
// and about one commit's time (two fsyncs here) lets the writes of a burst
// share one commit instead of queueing behind the lock in batches of one or
// two, each paying its own fsyncs.
const DefaultBatchDelay = 5 * time.Millisecond

// FileName is the database's file name inside the data directory.
const FileName = "klaxon.db"

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("database is locked by another process (is another klaxon serve running on this data directory?)")

// Options tunes Open.
type Options struct {
	// LockTimeout bounds the wait for the file lock (default 1s).
	LockTimeout time.Duration
	// NoSync skips fsync: only for tests and benchmarks that say so.
	NoSync bool
	// ReadOnly opens the file for reading only (for CLI inspection of a stopped server).
	ReadOnly bool
	// BatchDelay is bbolt's MaxBatchDelay (default DefaultBatchDelay).
	BatchDelay time.Duration
	// OnCommit, if set, observes every write's duration, from its call to
	// its durable commit (the wait for a shared commit included).
	OnCommit func(time.Duration)
	// OnCommitResult, if set, learns whether each write transaction reached
	// the disk (nil) or could not be committed (disk full, read-only file):
	// the store's own writes are its writability check.
	OnCommitResult func(error)
}

// Store is an escalation.Store on a bbolt file.
type Store struct {
	db       *bolt.DB
	readOnly bool
	onCommit func(time.Duration)
	onResult func(error)

	inflight atomic.Int64 // writes between their call and their commit

	mu        sync.Mutex
	commitErr error // the last write's commit failure, nil once one succeeds
}

var _ escalation.Store = (*Store)(nil)

// Open opens (creating if needed) dir/klaxon.db.
func Open(dir string, o Options) (*Store, error) {
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.BatchDelay <= 0 {
		o.BatchDelay = DefaultBatchDelay
	}
	if !o.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating data directory: %w", err)
		}
	}
	path := filepath.Join(dir, FileName)
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.LockTimeout, NoSync: o.NoSync, ReadOnly: o.ReadOnly,
		FreelistType: bolt.FreelistMapType, NoFreelistSync: !syncFreelist})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("opening %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.MaxBatchDelay = o.BatchDelay
	s := &Store{db: db, readOnly: o.ReadOnly, onCommit: o.OnCommit, onResult: o.OnCommitResult}
	walPath := filepath.Join(dir, legacyWALName)
	if o.ReadOnly {
		if err := checkNoPendingWAL(db, walPath); err != nil {
			db.Close()
			return nil, err
		}
		return s, nil
	}
	replayed := false
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bIncidents, bOpen, bPending, bGroups, bTimeline, bPages, bState, bStateTime, bMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		var err error
		if replayed, err = upgradeLegacy(tx, walPath); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put([]byte("schema"), []byte("1"))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising %s: %w", path, err)
	}
	if replayed {
		// Every record of the log is in klaxon.db now: the log goes.
		if err := removeLegacyWAL(walPath, o.NoSync); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes the database file. Its last commit writes bbolt's list of
// free pages, so that the next Open reads it instead of walking the file
// (after a crash it walks: see syncFreelist).
func (s *Store) Close() error {
	if !s.readOnly {
		// Best effort: if it fails, the next Open walks the file.
		_ = s.db.Update(func(tx *bolt.Tx) error {
			s.db.NoFreelistSync = false // under the write lock, which every commit holds
			return tx.Bucket(bMeta).Put([]byte("schema"), []byte("1"))
		})
	}
	return s.db.Close()
}

// DB exposes the bbolt handle (for tests and tooling).
func (s *Store) DB() *bolt.DB { return s.db }

// Durable reports whether the store waits for the disk (fsync) before it
// acknowledges a write: false only when opened with Options.NoSync.
func (s *Store) Durable() bool { return !s.db.NoSync && !s.db.NoGrowSync }

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// batch runs fn in a write transaction and reports its duration and
// outcome. A write with no other in flight commits at once (db.Update); one
// that arrives while others are in flight shares a commit with them through
// bbolt's Batch, so fn may run more than once and must be free of outside
// effects.
func (s *Store) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		s.committed(bolt.ErrTxNotWritable) // a read-only store cannot take writes
		return bolt.ErrTxNotWritable
	}
	start := time.Now()
	var fnErr error
	run := func(tx *bolt.Tx) error {
		fnErr = fn(tx)
		return fnErr
	}
	var err error
	if s.inflight.Add(1) == 1 {
		err = s.db.Update(run)
	} else {
		err = s.db.Batch(run)
	}
	s.inflight.Add(-1)
	switch {
	case err == nil:
		if s.onCommit != nil {
			s.onCommit(time.Since(start))
		}
		s.committed(nil)
	case fnErr == nil || !errors.Is(err, fnErr):
		// fn agreed to commit: the disk refused.
		s.committed(err)
	}
	return err
}

// committed records the outcome of a write that wanted to commit.
func (s *Store) committed(err error) {
	s.mu.Lock()
	s.commitErr = err
	s.mu.Unlock()
	if s.onResult != nil {
		s.onResult(err)
	}
}

func getJSON(b *bolt.Bucket, k []byte, v any) (bool, error) {
	data := b.Get(k)
	if data == nil {
		return false, nil
	}
	return true, json.Unmarshal(data, v)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

func loadIncident(tx *bolt.Tx, id uint64) (*escalation.Incident, error) {
	var inc escalation.Incident
	ok, err := getJSON(tx.Bucket(bIncidents), be64(id), &inc)
	if err != nil {
		return nil, fmt.Errorf("incident %d: %w", id, err)
	}
	if !ok {
		return nil, escalation.ErrNotFound
	}
	return &inc, nil
}

// openState reads an entry of the schedule index.
func openState(v []byte) (escalation.State, time.Time) {
	if len(v) < 8 {
		return escalation.State(v), time.Time{}
	}
	return escalation.State(v[8:]), index.FromUnixNano(binary.BigEndian.Uint64(v))
}

// lastSeq finds the highest sequence under id's prefix in bucket b.
func lastSeq(b *bolt.Bucket, id uint64) int {
	c := b.Cursor()
	k, _ := c.Seek(index.SubKey(id+1, 0))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if len(k) != 12 || binary.BigEndian.Uint64(k) != id {
		return 0
	}
	return int(binary.BigEndian.Uint32(k[8:]))
}

// loadPages reads incident id's pages.
func loadPages(tx *bolt.Tx, id uint64) ([]escalation.PageRecord, error) {
	var out []escalation.PageRecord
	c := tx.Bucket(bPages).Cursor()
	for k, v := c.Seek(be64(id)); k != nil && len(k) == 12 && binary.BigEndian.Uint64(k) == id; k, v = c.Next() {
		var p escalation.PageRecord
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, fmt.Errorf("page %x: %w", k, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// fillPercent packs pages of buckets whose keys only grow (incident ids,
// sequence numbers) instead of bbolt's half-full default splits: with 100,000
// open incidents the file, and the memory map the engine touches, is smaller.
const fillPercent = 0.9

// Write implements escalation.Store on bbolt's Batch. A function that fails
// before it writes anything (an unknown incident, a decision against the
// write) is answered without failing the batch it shares: bbolt would run
// the batch again without it, and then it alone.
func (s *Store) Write(ctx context.Context, fn func(escalation.Tx) error) error {
	var early error
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bIncidents, bOpen, bPending, bTimeline, bPages} {
			tx.Bucket(name).FillPercent = fillPercent
		}
		t := &boltTx{tx: tx}
		early = fn(t)
		if early != nil && !t.wrote {
			return nil
		}
		return early
	})
	if err == nil {
		return early
	}
	return err
}

// boltTx is escalation.Tx on a bbolt write transaction.
type boltTx struct {
	tx    *bolt.Tx
	wrote bool
}

func (t *boltTx) Group(key string) (escalation.Group, error) {
	var g escalation.Group
	if _, err := getJSON(t.tx.Bucket(bGroups), []byte(key), &g); err != nil {
		return g, fmt.Errorf("group %q: %w", key, err)
	}
	return g, nil
}

func (t *boltTx) PutGroup(key string, g *escalation.Group) error {
	t.wrote = true
	return putJSON(t.tx.Bucket(bGroups), []byte(key), g)
}

func (t *boltTx) NextID() (uint64, error) {
	t.wrote = true
	return t.tx.Bucket(bIncidents).NextSequence()
}

func (t *boltTx) Incident(id uint64) (*escalation.Incident, error) { return loadIncident(t.tx, id) }

func (t *boltTx) PutIncident(inc *escalation.Incident) error {
	t.wrote = true
	if err := putJSON(t.tx.Bucket(bIncidents), be64(inc.ID), inc); err != nil {
		return err
	}
	if inc.State == escalation.Resolved {
		return t.tx.Bucket(bOpen).Delete(be64(inc.ID))
	}
	return t.tx.Bucket(bOpen).Put(be64(inc.ID), append(be64(index.UnixNano(inc.Escalation.WakeAt())), inc.State...))
}

func (t *boltTx) Pages(id uint64) ([]escalation.PageRecord, error) { return loadPages(t.tx, id) }

func (t *boltTx) PutPage(p *escalation.PageRecord) error {
	t.wrote = true
	k := index.SubKey(p.Incident, p.Seq)
	if err := putJSON(t.tx.Bucket(bPages), k, p); err != nil {
		return err
	}
	if p.Status.Done() {
		return t.tx.Bucket(bPending).Delete(k)
	}
	return t.tx.Bucket(bPending).Put(k, index.Pending(p))
}

func (t *boltTx) AppendEvents(id uint64, evs []escalation.Event) error {
	t.wrote = true
	tl := t.tx.Bucket(bTimeline)
	seq := lastSeq(tl, id)
	for i := range evs {
		seq++
		if err := putJSON(tl, index.SubKey(id, seq), &evs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (t *boltTx) PutState(w notifiers.StateWrite) error {
	t.wrote = true
	return putState(t.tx, w)
}

// Incident implements escalation.Store.
func (s *Store) Incident(ctx context.Context, id uint64) (escalation.Incident, error) {
	var out escalation.Incident
	err := s.db.View(func(tx *bolt.Tx) error {
		inc, err := loadIncident(tx, id)
		if err == nil {
			out = *inc
		}
		return err
	})
	return out, err
}

// Timeline implements escalation.Store.
func (s *Store) Timeline(ctx context.Context, id uint64) ([]escalation.Event, error) {
	var out []escalation.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bIncidents).Get(be64(id)) == nil {
			return escalation.ErrNotFound
		}
		c := tx.Bucket(bTimeline).Cursor()
		for k, v := c.Seek(be64(id)); k != nil && binary.BigEndian.Uint64(k) == id; k, v = c.Next() {
			var e escalation.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Pages implements escalation.Store.
func (s *Store) Pages(ctx context.Context, id uint64) ([]escalation.PageRecord, error) {
	var out []escalation.PageRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = loadPages(tx, id)
		return err
	})
	return out, err
}

// Incidents implements escalation.Store.
func (s *Store) Incidents(ctx context.Context, f escalation.Filter) ([]escalation.Incident, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var out []escalation.Incident
	err := s.db.View(func(tx *bolt.Tx) error {
		ib := tx.Bucket(bIncidents)
		if f.State == escalation.Open || f.State == escalation.Acknowledged {
			// Walk the small index of unresolved incidents.
			c := tx.Bucket(bOpen).Cursor()
			k, v := seekBefore(c, f.Before)
			for ; k != nil && len(out) < f.Limit; k, v = c.Prev() {
				if st, _ := openState(v); st != f.State {
					continue
				}
				var inc escalation.Incident
				if _, err := getJSON(ib, k, &inc); err != nil {
					return err
				}
				out = append(out, inc)
			}
			return nil
		}
		c := ib.Cursor()
		k, v := seekBefore(c, f.Before)
		for ; k != nil && len(out) < f.Limit; k, v = c.Prev() {
			var inc escalation.Incident
			if err := json.Unmarshal(v, &inc); err != nil {
				return err
			}
			if f.State == "" || inc.State == f.State {
				out = append(out, inc)
			}
		}
		return nil
	})
	return out, err
}

// seekBefore positions c on the last key below id (the last key when id is 0).
func seekBefore(c *bolt.Cursor, id uint64) ([]byte, []byte) {
	if id == 0 {
		return c.Last()
	}
	if k, _ := c.Seek(be64(id)); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// Schedule implements escalation.Store from the two small indexes only, so a
// restart reads a few bytes per incident instead of every incident.
func (s *Store) Schedule(ctx context.Context, fn func(escalation.Due) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return schedule(ctx, tx.Bucket(bOpen).Cursor(), tx.Bucket(bPending).Cursor(), fn)
	})
}

// ScheduleSnapshot is the schedule as it stood when SnapshotSchedule was
// called, read later: a server takes it before it accepts webhooks and
// recovers from it while new ones arrive, so recovery sees exactly what was
// there before (what arrives later is escalated as it arrives, never twice).
type ScheduleSnapshot struct {
	mu            sync.Mutex
	open, pending *flatKV
}

// SnapshotSchedule copies the two schedule indexes (a few dozen bytes per
// unresolved incident and unfinished page) out of one read transaction, so
// no transaction stays open while the snapshot is read: a long one would
// make every write that grows the file wait for it.
func (s *Store) SnapshotSchedule() (*ScheduleSnapshot, error) {
	ss := &ScheduleSnapshot{open: &flatKV{}, pending: &flatKV{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, c := range []struct {
			b   []byte
			out *flatKV
		}{{bOpen, ss.open}, {bPending, ss.pending}} {
			if err := tx.Bucket(c.b).ForEach(func(k, v []byte) error { c.out.add(k, v); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ss, nil
}

// Schedule reads the snapshot like Store.Schedule, then drops it: it can be
// read once.
func (ss *ScheduleSnapshot) Schedule(ctx context.Context, fn func(escalation.Due) error) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.open == nil {
		return errors.New("boltstore: schedule snapshot already read")
	}
	defer func() { ss.open, ss.pending = nil, nil }()
	return schedule(ctx, &flatCursor{kv: ss.open}, &flatCursor{kv: ss.pending}, fn)
}

// flatKV is a copied bucket: every key and value in one buffer.
type flatKV struct {
	buf  []byte
	ends []int // per entry: end of key, end of value
}

func (f *flatKV) add(k, v []byte) {
	f.buf = append(f.buf, k...)
	f.ends = append(f.ends, len(f.buf))
	f.buf = append(f.buf, v...)
	f.ends = append(f.ends, len(f.buf))
}

// flatCursor walks a flatKV like a bolt.Cursor walks its bucket.
type flatCursor struct {
	kv *flatKV
	i  int // next entry
}

func (c *flatCursor) First() ([]byte, []byte) { c.i = 0; return c.Next() }

func (c *flatCursor) Next() ([]byte, []byte) {
	if 2*c.i >= len(c.kv.ends) {
		return nil, nil
	}
	start := 0
	if c.i > 0 {
		start = c.kv.ends[2*c.i-1]
	}
	kEnd, vEnd := c.kv.ends[2*c.i], c.kv.ends[2*c.i+1]
	c.i++
	return c.kv.buf[start:kEnd:kEnd], c.kv.buf[kEnd:vEnd:vEnd]
}

// cursor is what schedule needs of a bolt.Cursor.
type cursor interface {
	First() ([]byte, []byte)
	Next() ([]byte, []byte)
}

func schedule(ctx context.Context, c, pc cursor, fn func(escalation.Due) error) error {
	pk, pv := pc.First()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		id := binary.BigEndian.Uint64(k)
		d := escalation.Due{Incident: id}
		d.State, d.NextAt = openState(v)
		// Both indexes are ordered by incident id: walk them together.
		for ; pk != nil && binary.BigEndian.Uint64(pk) < id; pk, pv = pc.Next() {
		}
		for ; pk != nil && binary.BigEndian.Uint64(pk) == id; pk, pv = pc.Next() {
			if len(pv) < 10 {
				return fmt.Errorf("pending page %x: short index entry", pk)
			}
			p, _, _, err := index.ParsePending(pk, pv)
			if err != nil {
				return err
			}
			d.Pages = append(d.Pages, p)
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

// Held implements escalation.Store. It walks the index of unfinished pages
// (held pages are a few per open incident at most), newest first; it is
// called once per carrier page, which a rate limit makes rare.
func (s *Store) Held(ctx context.Context, person string, ch notifiers.Channel, newest int) (escalation.Held, error) {
	var h escalation.Held
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bPending).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if !index.HeldFor(v, person, ch) {
				continue
			}
			h.Count++
			if id := binary.BigEndian.Uint64(k); len(h.Newest) < newest && (len(h.Newest) == 0 || h.Newest[len(h.Newest)-1] != id) {
				h.Newest = append(h.Newest, id)
			}
		}
		return ctx.Err()
	})
	return h, err
}

// HeldPages implements escalation.Store from the unfinished-page index.
func (s *Store) HeldPages(ctx context.Context, person string, ch notifiers.Channel, after string, limit int) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bPending).Cursor()
		k, v := c.First()
		if after != "" {
			id, seq, ok := escalation.ParsePageID(after)
			if !ok {
				return fmt.Errorf("held pages after %q: not a page id", after)
			}
			start := index.SubKey(id, seq)
			if k, v = c.Seek(start); k != nil && bytes.Equal(k, start) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			if len(k) != 12 || !index.HeldFor(v, person, ch) {
				continue
			}
			id, seq, _ := index.ParseSubKey(k)
			out = append(out, escalation.PageID(id, seq))
		}
		return ctx.Err()
	})
	return out, err
}

// Counts implements escalation.Store.
func (s *Store) Counts(ctx context.Context) (map[escalation.State]int, error) {
	out := map[escalation.State]int{escalation.Open: 0, escalation.Acknowledged: 0, escalation.Resolved: 0}
	err := s.db.View(func(tx *bolt.Tx) error {
		unresolved := 0
		err := tx.Bucket(bOpen).ForEach(func(k, v []byte) error {
			st, _ := openState(v)
			out[st]++
			unresolved++
			return nil
		})
		out[escalation.Resolved] = int(tx.Bucket(bIncidents).Sequence()) - unresolved
		return err
	})
	return out, err
}

// Ping implements escalation.Store. It only reads (a read transaction, so a
// closed file shows), and reports the last write's commit failure if the most
// recent write could not commit: writability is judged by the store's own
// commits, never by writing on behalf of a health check.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bMeta) == nil {
			return errors.New("not initialised")
		}
		return nil
	}); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commitErr != nil {
		return fmt.Errorf("last write could not commit: %w", s.commitErr)
	}
	return nil
}

// GetState implements notifiers.StateStore.
func (s *Store) GetState(ctx context.Context, bucket, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bState).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// PutState implements notifiers.StateStore.
func (s *Store) PutState(ctx context.Context, bucket, key string, value []byte) error {
	v := append([]byte(nil), value...) // nil for nil or empty: a delete
	return s.batch(ctx, func(tx *bolt.Tx) error {
		return putState(tx, notifiers.StateWrite{Bucket: bucket, Key: key, Value: v})
	})
}

// stateBucket returns the channels' state namespace ns, creating it if need be.
func stateBucket(tx *bolt.Tx, ns []byte) (*bolt.Bucket, error) {
	return tx.Bucket(bState).CreateBucketIfNotExists(ns)
}

// stateIfAny returns the channels' state namespace ns if it exists.
func stateIfAny(tx *bolt.Tx, ns []byte) (*bolt.Bucket, bool) {
	b := tx.Bucket(bState).Bucket(ns)
	return b, b != nil
}

// putState writes (nil Value: deletes) one state key and when it was
// written, unless w.Replaces turns the write down.
func putState(tx *bolt.Tx, w notifiers.StateWrite) error {
	b, err := stateBucket(tx, []byte(w.Bucket))
	if err != nil {
		return err
	}
	if w.Replaces != nil && !w.Replaces(b.Get([]byte(w.Key))) {
		return nil
	}
	tk := append(append([]byte(w.Bucket), 0), w.Key...)
	if w.Value == nil {
		if err := tx.Bucket(bStateTime).Delete(tk); err != nil {
			return err
		}
		return b.Delete([]byte(w.Key))
	}
	if err := tx.Bucket(bStateTime).Put(tk, be64(uint64(time.Now().UnixNano()))); err != nil {
		return err
	}
	return b.Put([]byte(w.Key), w.Value)
}

// CreateState implements escalation.StateCreator: it stores value under
// bucket/key unless the key exists, in one write transaction, and returns
// what the key holds afterwards.
func (s *Store) CreateState(ctx context.Context, bucket, key string, value []byte) ([]byte, error) {
	v := append([]byte(nil), value...)
	var out []byte
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		b, err := stateBucket(tx, []byte(bucket))
		if err != nil {
			return err
		}
		if old := b.Get([]byte(key)); old != nil {
			out = append([]byte(nil), old...)
			return nil
		}
		tk := append(append([]byte(bucket), 0), key...)
		if err := tx.Bucket(bStateTime).Put(tk, be64(uint64(time.Now().UnixNano()))); err != nil {
			return err
		}
		out = v
		return b.Put([]byte(key), v)
	})
	return out, err
}

// pruneBatch bounds the deletions of one write transaction, so pruning a
// large backlog never holds the write lock long.
const pruneBatch = 500

// Prune implements escalation.Store: it deletes incidents resolved before
// p.ResolvedBefore with their timelines and pages, groups with nothing open
// and nothing remembered since then, and the state keys p.State names that
// were last written before their cutoff.
func (s *Store) Prune(ctx context.Context, p escalation.Prune) (escalation.Pruned, error) {
	var out escalation.Pruned
	if !p.ResolvedBefore.IsZero() {
		// Incidents: ids grow with opening time, so the walk stops at the
		// first incident opened after the cutoff.
		var after uint64
		for {
			var n int
			done := false
			err := s.batch(ctx, func(tx *bolt.Tx) error {
				n, done = 0, false
				c := tx.Bucket(bIncidents).Cursor()
				var victims []uint64
				var last uint64
				for k, v := c.Seek(be64(after + 1)); k != nil; k, v = c.Next() {
					var inc struct {
						State      escalation.State `json:"state"`
						OpenedAt   time.Time        `json:"openedAt"`
						ResolvedAt time.Time        `json:"resolvedAt"`
					}
					if err := json.Unmarshal(v, &inc); err != nil {
						return fmt.Errorf("incident %x: %w", k, err)
					}
					last = binary.BigEndian.Uint64(k)
					if !inc.OpenedAt.Before(p.ResolvedBefore) {
						done = true
						break
					}
					if inc.State == escalation.Resolved && inc.ResolvedAt.Before(p.ResolvedBefore) {
						victims = append(victims, last)
						if len(victims) == pruneBatch {
							break
						}
					}
				}
				if len(victims) < pruneBatch {
					done = true
				}
				for _, id := range victims {
					if err := deleteIncident(tx, id); err != nil {
						return err
					}
				}
				n, after = len(victims), last
				return nil
			})
			if err != nil {
				return out, err
			}
			out.Incidents += n
			if done || ctx.Err() != nil {
				break
			}
		}
		err := s.batch(ctx, func(tx *bolt.Tx) error {
			gb := tx.Bucket(bGroups)
			var stale [][]byte
			err := gb.ForEach(func(k, v []byte) error {
				var g escalation.Group
				if err := json.Unmarshal(v, &g); err != nil {
					return nil // unreadable: leave it for a person to look at
				}
				if g.Open != 0 {
					return nil
				}
				for _, end := range g.LastEnd {
					if !end.Before(p.ResolvedBefore) {
						return nil
					}
				}
				stale = append(stale, append([]byte(nil), k...))
				return nil
			})
			for _, k := range stale {
				if err := gb.Delete(k); err != nil {
					return err
				}
			}
			out.Groups += len(stale)
			return err
		})
		if err != nil {
			return out, err
		}
	}
	for _, sp := range p.State {
		err := s.batch(ctx, func(tx *bolt.Tx) error {
			b, ok := stateIfAny(tx, []byte(sp.Bucket))
			if !ok {
				return nil
			}
			tb := tx.Bucket(bStateTime)
			prefix := append(append([]byte(sp.Bucket), 0), sp.Prefix...)
			var old [][]byte
			c := tb.Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				if len(v) == 8 && index.FromUnixNano(binary.BigEndian.Uint64(v)).Before(sp.Before) {
					old = append(old, append([]byte(nil), k...))
				}
			}
			for _, k := range old {
				if err := tb.Delete(k); err != nil {
					return err
				}
				if err := b.Delete(k[len(sp.Bucket)+1:]); err != nil {
					return err
				}
			}
			out.StateKeys += len(old)
			return nil
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// deleteIncident removes a resolved incident with its timeline and pages.
func deleteIncident(tx *bolt.Tx, id uint64) error {
	if err := tx.Bucket(bIncidents).Delete(be64(id)); err != nil {
		return err
	}
	for _, name := range [][]byte{bTimeline, bPages, bPending} {
		b := tx.Bucket(name)
		c := b.Cursor()
		for k, _ := c.Seek(be64(id)); k != nil && len(k) >= 8 && binary.BigEndian.Uint64(k) == id; k, _ = c.Seek(be64(id)) {
			if err := b.Delete(bytes.Clone(k)); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bOpen).Delete(be64(id))
}

// SweepState implements notifiers.StateSweeper in one write transaction
// (none when nothing is deleted).
func (s *Store) SweepState(ctx context.Context, bucket string, keep func(key string, value []byte) bool) error {
	var drop [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bState).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if !keep(string(k), append([]byte(nil), v...)) {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil || len(drop) == 0 {
		return err
	}
	return s.batch(ctx, func(tx *bolt.Tx) error {
		b, ok := stateIfAny(tx, []byte(bucket))
		if !ok {
			return nil
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
			if err := tx.Bucket(bStateTime).Delete(append(append([]byte(bucket), 0), k...)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Export walks everything the store holds, for `klaxon migrate`: the id
// counter, every incident with its timeline and outbox (oldest first), every
// Alertmanager group, and the channels' state.
func (s *Store) Export(ctx context.Context, x escalation.Exporter) error {
	return s.db.View(func(tx *bolt.Tx) error {
		if err := x.Sequence(tx.Bucket(bIncidents).Sequence()); err != nil {
			return err
		}
		err := tx.Bucket(bIncidents).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var inc escalation.Incident
			if err := json.Unmarshal(v, &inc); err != nil {
				return fmt.Errorf("incident %x: %w", k, err)
			}
			var tl []escalation.Event
			c := tx.Bucket(bTimeline).Cursor()
			for tk, tv := c.Seek(k); tk != nil && binary.BigEndian.Uint64(tk) == inc.ID; tk, tv = c.Next() {
				var e escalation.Event
				if err := json.Unmarshal(tv, &e); err != nil {
					return fmt.Errorf("timeline %x: %w", tk, err)
				}
				tl = append(tl, e)
			}
			pages, err := loadPages(tx, inc.ID)
			if err != nil {
				return err
			}
			return x.Incident(inc, tl, pages)
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bGroups).ForEach(func(k, v []byte) error {
			var g escalation.Group
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("group %q: %w", k, err)
			}
			return x.Group(string(k), g)
		})
		if err != nil {
			return err
		}
		if nb := tx.Bucket(bNewGroups); nb != nil { // a file left by c735968 (see legacy.go), read-only
			err = nb.ForEach(func(k, v []byte) error {
				return x.Group(string(v), escalation.Group{Open: binary.BigEndian.Uint64(k)})
			})
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bState).ForEachBucket(func(name []byte) error {
			return tx.Bucket(bState).Bucket(name).ForEach(func(k, v []byte) error {
				return x.State(string(name), string(k), append([]byte{}, v...))
			})
		})
	})
}
