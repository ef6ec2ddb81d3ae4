// Package boltstore implements escalation.Store on go.etcd.io/bbolt, Klaxon's
// embedded default: klaxon.db, and its write-ahead log klaxon.wal (see
// wal.go). Writes go through a group commit: a write with no other in
// progress is made durable at once (one fdatasync of its log record), and
// writes arriving meanwhile share the next, so a quiet night pays one
// fdatasync per write and a storm far fewer than one each. The writer's
// bbolt transaction commits to klaxon.db every Options.CheckpointEvery.
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
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/internal/encode"
	"github.com/klaxon-oncall/klaxon/escalation/internal/index"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

var (
	bIncidents = []byte("incidents") // be64(id) → Incident JSON
	bOpen      = []byte("open")      // be64(id) → be64(nextAt unix ns) state: the schedule of unresolved incidents
	bPending   = []byte("pending")   // be64(id) be32(seq) → be64(nextTry) deferred channel 0 person: unfinished pages
	bGroups    = []byte("groups")    // groupKey → Group JSON
	bNewGroups = []byte("newGroups") // be64(incident id) → groupKey: a group that only opened that incident (see newgroups.go)
	bTimeline  = []byte("timeline")  // be64(id) be32(seq) → Event JSON
	bPages     = []byte("pages")     // be64(id) be32(seq) → PageRecord JSON
	bState     = []byte("state")     // namespace bucket → key → value (channels' own state)
	bStateTime = []byte("stateTime") // bucket 0 key → be64(written unix ns): what retention prunes by
	bMeta      = []byte("meta")
)

// DefaultDeferUpdates is klaxon serve's Options.DeferUpdates: longer than
// the few hundred microseconds between one page going out and the next
// webhook of a burst arriving, short against anything a person notices.
const DefaultDeferUpdates = 2 * time.Millisecond

// syncFreelist is whether commits write bbolt's list of free pages. They do
// not: bbolt writes the whole list, every id of every free page, with every
// commit, so once retention has pruned a storm's 100,000 incidents each
// commit wrote about 290 KB more and a lone one took two to three times as
// long, for as long as the freed pages stayed free. Only Close's last commit
// writes it. After a crash, Open rebuilds it by walking every page of the
// file (about 0.25 s more with 100,000 open incidents), as etcd does with
// its bbolt. A file written either way opens either way.
const syncFreelist = false

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
	// OnCommit, if set, observes every write's duration, from its call to
	// its durable commit (the wait for a shared commit included).
	OnCommit func(time.Duration)
	// OnCommitResult, if set, learns whether each write transaction reached
	// the disk (nil) or could not be committed (disk full, read-only file):
	// the store's own writes are its writability check.
	OnCommitResult func(error)
	// DeferUpdates is how long an Update (a page's result, an answer, a
	// step) waits, when no other write is queued, for one to share its
	// commit, 0 for not at all. A webhook arriving just after a page went
	// out then commits with the page's result instead of waiting behind its
	// fsyncs; the result is durable that much later, and nothing waits on
	// it but the engine. klaxon serve uses DefaultDeferUpdates.
	DeferUpdates time.Duration
	// CheckpointEvery is how long an acknowledged write may stay in the
	// write-ahead log only before it is committed to klaxon.db (default
	// DefaultCheckpointEvery). A scan (a list, counts, the schedule)
	// commits what is pending at once.
	CheckpointEvery time.Duration
	// ReleaseMapEvery is how often the store gives back the pages of its
	// memory map that reads have made resident (default 2s; negative
	// never). See ReleaseMap.
	ReleaseMapEvery time.Duration
}

// Store is an escalation.Store on a bbolt file.
type Store struct {
	db       *bolt.DB
	onCommit func(time.Duration)
	onResult func(error)
	group    *groupCommit // nil when read-only
	log      *wal         // nil when read-only

	mu        sync.Mutex
	commitErr error // the last write's commit failure, nil once one succeeds
	// the last checkpoint's failure (see wal.go), nil once one succeeds:
	// acknowledged writes are safe in the log, but klaxon.db cannot take them
	checkpointErr error

	// the incidents and pages the writer saved or read lately
	dec   decoded[uint64, *escalation.Incident]
	pages decoded[pageKey, escalation.PageRecord]

	newGroups *newGroupIndex // bNewGroups by group key

	stopRelease chan struct{} // closed by Close; nil when not releasing
	released    sync.WaitGroup
}

var _ escalation.Store = (*Store)(nil)

// Open opens (creating if needed) dir/klaxon.db.
func Open(dir string, o Options) (*Store, error) {
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
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
	s := &Store{db: db, onCommit: o.OnCommit, onResult: o.OnCommitResult, newGroups: newNewGroupIndex()}
	walPath := filepath.Join(dir, WALFileName)
	if o.ReadOnly {
		if err := checkNoPendingWAL(db, walPath); err != nil {
			db.Close()
			return nil, err
		}
	} else {
		var log *wal
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bIncidents, bOpen, bPending, bGroups, bNewGroups, bTimeline, bPages, bState, bStateTime, bMeta} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			// Apply what the log holds that klaxon.db does not (after a
			// crash), and start its next generation (see wal.go).
			salt, epoch, err := walMeta(tx)
			if err != nil {
				return err
			}
			l, recs, err := openWAL(walPath, salt, epoch, o.NoSync)
			if err != nil {
				return err
			}
			log = l
			for i, rec := range recs {
				if err := replay(tx, rec); err != nil {
					return fmt.Errorf("%s: record %d of %d: %w", walPath, i+1, len(recs), err)
				}
			}
			if err := setEpoch(tx, epoch+1); err != nil {
				return err
			}
			log.restart(epoch + 1)
			if err := s.newGroups.load(tx); err != nil {
				return err
			}
			return tx.Bucket(bMeta).Put([]byte("schema"), []byte("1"))
		})
		if err != nil {
			if log != nil {
				log.close()
			}
			db.Close()
			return nil, fmt.Errorf("initialising %s: %w", path, err)
		}
		s.log = log
		if o.CheckpointEvery <= 0 {
			o.CheckpointEvery = DefaultCheckpointEvery
		}
		s.group = newGroupCommit(db, log, o.DeferUpdates, o.CheckpointEvery, s.checkpointed)
	}
	if o.ReleaseMapEvery == 0 {
		o.ReleaseMapEvery = 2 * time.Second
	}
	if o.ReleaseMapEvery > 0 {
		// Opening for writing after a crash walked every page of the file
		// to find the free ones (see syncFreelist), which left the whole
		// file resident: give it back now rather than in ReleaseMapEvery.
		if !o.ReadOnly {
			_ = s.ReleaseMap()
		}
		s.stopRelease = make(chan struct{})
		s.released.Go(func() { s.releaseLoop(o.ReleaseMapEvery) })
	}
	return s, nil
}

// releaseLoop calls ReleaseMap every d until Close.
func (s *Store) releaseLoop(d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stopRelease:
			return
		case <-t.C:
			_ = s.ReleaseMap()
		}
	}
}

// ReleaseMap drops the resident pages of bbolt's read-only memory map of the
// file. They are the kernel's page cache: the data stays cached and a later
// read maps it again (a minor fault), but while mapped each counts in
// Klaxon's RSS, and copy-on-write commits scatter the pages reads touch
// across the whole file, so without this a store of 100,000 incidents keeps
// most of its 270 MiB file resident. It runs inside a read transaction,
// which holds off bbolt's remapping, so the range it names is the map.
func (s *Store) ReleaseMap() error {
	return s.db.View(func(tx *bolt.Tx) error {
		return releaseMapped(s.db.Info().Data, uintptr(tx.Size()))
	})
}

// Close closes the database file. Writes still queued fail with
// bolt.ErrDatabaseNotOpen. Its last commit (a checkpoint, see wal.go) writes
// bbolt's list of free pages, so that the next Open reads it instead of
// walking the file (after a crash it walks: see syncFreelist), and the
// records of the groups in bNewGroups under their keys (see newgroups.go).
func (s *Store) Close() error {
	s.stopReleasing()
	if s.group != nil {
		// Best effort: if it fails, the next Open replays the log, walks the
		// file and reads the groups from bNewGroups; nothing is lost.
		_ = s.group.stop(func(tx *bolt.Tx) error {
			s.db.NoFreelistSync = false // under the write lock, which every commit holds
			return writeNewGroups(tx)
		}, false)
		s.log.close()
	}
	return s.db.Close()
}

// stopReleasing ends releaseLoop, if it runs.
func (s *Store) stopReleasing() {
	if s.stopRelease != nil {
		close(s.stopRelease)
		s.released.Wait()
		s.stopRelease = nil
	}
}

// DB exposes the bbolt handle (for tests and tooling), with every write
// acknowledged so far committed to it.
func (s *Store) DB() *bolt.DB {
	if s.group != nil {
		_ = s.group.settle()
	}
	return s.db
}

// Durable reports whether the store waits for the disk (fdatasync) before
// it acknowledges a write and at every commit to klaxon.db: false only
// when opened with Options.NoSync.
func (s *Store) Durable() bool {
	return !s.db.NoSync && !s.db.NoGrowSync && (s.log == nil || !s.log.noSync)
}

// view runs fn in a read transaction that sees every write acknowledged
// before view was called: the writer commits its transaction first if one
// is only in the write-ahead log (see wal.go). For reads of a few keys,
// pointView is cheaper.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	if s.group != nil {
		if err := s.group.settle(); err != nil {
			return err
		}
	}
	return s.db.View(fn)
}

// pointView runs fn, a read of a few keys, where it sees every write
// acknowledged before pointView was called: in the writer's transaction,
// between two writes, if some are only in the write-ahead log (a webhook's
// provider receipts and replies read one key each, and a checkpoint for
// each would cost more than the writes), else in a read transaction. fn
// must not keep the transaction's bytes.
func (s *Store) pointView(fn func(*bolt.Tx) error) error {
	if s.group != nil && s.group.unsettled() {
		return s.group.read(fn)
	}
	return s.db.View(fn)
}

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// batch runs fn in the writer's transaction (see groupCommit) and reports
// its duration. fn's changes go through wtx (see wal.go); it must be free of
// outside effects, for if it fails they are undone. A deferrable write may
// wait Options.DeferUpdates for company; a prompt one is made durable as
// soon as the writer is free.
func (s *Store) batch(ctx context.Context, w writeKind, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.group == nil {
		s.committed(bolt.ErrTxNotWritable) // a read-only store cannot take writes
		return bolt.ErrTxNotWritable
	}
	start := time.Now()
	var fnErr error
	ran := false
	err := s.group.do(func(tx *wtx) error {
		ran, fnErr = true, fn(tx)
		return fnErr
	}, w == deferrable)
	switch {
	case err == nil:
		if s.onCommit != nil {
			s.onCommit(time.Since(start))
		}
		s.committed(nil)
	case !ran || fnErr == nil:
		// fn agreed to commit (or never got a transaction): the disk refused.
		s.committed(err)
	}
	return err
}

// writeKind says whether a write may wait for company (see Options.DeferUpdates).
type writeKind int

const (
	prompt writeKind = iota
	deferrable
)

// committed records the outcome of a write that wanted to commit.
func (s *Store) committed(err error) {
	s.mu.Lock()
	s.commitErr = err
	failing := s.failingLocked()
	s.mu.Unlock()
	if s.onResult != nil {
		s.onResult(failing)
	}
}

// checkpointed records a checkpoint's outcome. OnCommitResult hears of a
// failure, and of the success that ends one.
func (s *Store) checkpointed(err error) {
	s.mu.Lock()
	was := s.checkpointErr
	s.checkpointErr = err
	failing := s.failingLocked()
	s.mu.Unlock()
	if s.onResult != nil && (err != nil || was != nil) {
		s.onResult(failing)
	}
}

// failingLocked is what keeps writes from the disk, nil when nothing does:
// the last write's failure, else the last checkpoint's. s.mu is held.
func (s *Store) failingLocked() error {
	if s.commitErr != nil {
		return s.commitErr
	}
	return s.checkpointErr
}

func getJSON(b *bolt.Bucket, k []byte, v any) (bool, error) {
	data := b.Get(k)
	if data == nil {
		return false, nil
	}
	return true, json.Unmarshal(data, v)
}

// put stores v under k in b, written by enc (one of package encode's).
func put[T any](b interface{ Put(k, v []byte) error }, k []byte, v *T, enc func([]byte, *T) ([]byte, error)) error {
	data, err := enc(nil, v)
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

// loadStored reads incident id for a write, decoded once per stored
// version (see decoded). The result must not change: writers change a Clone.
func (s *Store) loadStored(tx *bolt.Tx, id uint64) (*escalation.Incident, error) {
	raw := tx.Bucket(bIncidents).Get(be64(id))
	if raw == nil {
		return nil, escalation.ErrNotFound
	}
	if inc, ok := s.dec.get(id, raw); ok {
		return inc, nil
	}
	var inc escalation.Incident
	if err := json.Unmarshal(raw, &inc); err != nil {
		return nil, fmt.Errorf("incident %d: %w", id, err)
	}
	s.dec.put(id, bytes.Clone(raw), &inc)
	return &inc, nil
}

func (s *Store) saveIncident(tx *wtx, inc *escalation.Incident) error {
	data, err := encode.Incident(nil, inc)
	if err != nil {
		return err
	}
	if err := tx.bucket(bIncidents).Put(be64(inc.ID), data); err != nil {
		return err
	}
	s.dec.put(inc.ID, data, storedForm(inc))
	if inc.State == escalation.Resolved {
		return tx.bucket(bOpen).Delete(be64(inc.ID))
	}
	return tx.bucket(bOpen).Put(be64(inc.ID), append(be64(index.UnixNano(inc.Escalation.WakeAt())), inc.State...))
}

// openState reads an entry of the schedule index.
func openState(v []byte) (escalation.State, time.Time) {
	if len(v) < 8 {
		return escalation.State(v), time.Time{}
	}
	return escalation.State(v[8:]), index.FromUnixNano(binary.BigEndian.Uint64(v))
}

// indexPage keeps the index of unfinished pages in step with p.
func indexPage(tx *wtx, p *escalation.PageRecord) error {
	b := tx.bucket(bPending)
	k := index.SubKey(p.Incident, p.Seq)
	if p.Status.Done() {
		return b.Delete(k)
	}
	return b.Put(k, index.Pending(p))
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

// loadPages reads incident id's pages. A write passes the writer's cache
// (kept), so that each is decoded once per stored version (see decoded);
// reads pass nil.
func loadPages(tx *bolt.Tx, id uint64, kept *decoded[pageKey, escalation.PageRecord]) ([]escalation.PageRecord, error) {
	var out []escalation.PageRecord
	c := tx.Bucket(bPages).Cursor()
	for k, v := c.Seek(be64(id)); k != nil && len(k) == 12 && binary.BigEndian.Uint64(k) == id; k, v = c.Next() {
		key := pageKey{incident: id, seq: int(binary.BigEndian.Uint32(k[8:]))}
		p, ok := kept.get(key, v)
		if !ok {
			if err := json.Unmarshal(v, &p); err != nil {
				return nil, fmt.Errorf("page %x: %w", k, err)
			}
			kept.put(key, bytes.Clone(v), p)
		}
		out = append(out, p)
	}
	return out, nil
}

// savePage writes page p of incident id and keeps the index of unfinished
// pages in step.
func (s *Store) savePage(tx *wtx, id uint64, p *escalation.PageRecord) error {
	data, err := encode.Page(nil, p)
	if err != nil {
		return err
	}
	if err := tx.bucket(bPages).Put(index.SubKey(id, p.Seq), data); err != nil {
		return err
	}
	s.pages.put(pageKey{incident: id, seq: p.Seq}, data, storedPage(*p))
	return indexPage(tx, p)
}

// fillPercent packs pages of buckets whose keys only grow (incident ids,
// sequence numbers) instead of bbolt's half-full default splits: with 100,000
// open incidents the file, and the memory map the engine touches, is smaller.
const fillPercent = 0.9

// applyChange runs fn and writes the incident and its change. stored, when
// not nil, is the incident as stored before fn changed inc: if inc is still
// the same, it is not written again (a page's result usually changes only
// the page). fresh says inc was opened in this transaction: nothing is
// stored under its id yet (ids come from the bucket's sequence and are never
// reused), so there are no pages or timeline entries to look for.
func (s *Store) applyChange(tx *wtx, inc, stored *escalation.Incident, fresh bool, extra []escalation.Event, fn escalation.UpdateFunc) (escalation.Change, error) {
	for _, name := range [][]byte{bIncidents, bOpen, bPending, bTimeline, bPages} {
		tx.Bucket(name).FillPercent = fillPercent
	}
	var ch escalation.Change
	var pages []escalation.PageRecord
	if !fresh {
		var err error
		if pages, err = loadPages(tx.Tx, inc.ID, &s.pages); err != nil {
			return ch, err
		}
	}
	pseq := 0 // the last page's sequence: pages come in key order
	if n := len(pages); n > 0 {
		pseq = pages[n-1].Seq
	}
	if fn != nil {
		var err error
		ch, err = fn(inc, pages)
		if errors.Is(err, escalation.ErrNoChange) && len(extra) == 0 {
			return ch, err
		}
		if err != nil && !errors.Is(err, escalation.ErrNoChange) {
			return ch, err
		}
	}
	ch.Events = append(extra, ch.Events...)
	if stored == nil || !inc.Same(stored) {
		if err := s.saveIncident(tx, inc); err != nil {
			return ch, err
		}
	}
	tl := tx.bucket(bTimeline)
	seq := 0
	if !fresh {
		seq = lastSeq(tl.Bucket, inc.ID)
	}
	for i := range ch.Events {
		seq++
		if err := put(tl, index.SubKey(inc.ID, seq), &ch.Events[i], encode.Event); err != nil {
			return ch, err
		}
	}
	for i := range ch.Pages {
		p := &ch.Pages[i]
		if p.Seq == 0 {
			pseq++
			p.Seq = pseq
			p.Incident = inc.ID
			p.ID = escalation.PageID(inc.ID, p.Seq)
		}
		if err := s.savePage(tx, inc.ID, p); err != nil {
			return ch, err
		}
	}
	for _, sw := range ch.State {
		if err := putState(tx, sw); err != nil {
			return ch, err
		}
	}
	return ch, nil
}

// Ingest implements escalation.Store.
func (s *Store) Ingest(ctx context.Context, n escalation.Notification, now time.Time, decide escalation.IngestFunc) (escalation.IngestResult, error) {
	var res escalation.IngestResult
	var gone []newGroup // for the index to forget after the commit
	err := s.batch(ctx, prompt, func(tx *wtx) error {
		res, gone = escalation.IngestResult{}, gone[:0]
		g, from, err := s.loadGroup(tx.Tx, n.GroupKey)
		if err != nil {
			return err
		}
		var inc *escalation.Incident
		var ev []escalation.Event
		changed := false
		if g.Open != 0 {
			stored, err := s.loadStored(tx.Tx, g.Open)
			if err != nil {
				return err
			}
			inc = stored.Clone()
			ev, changed = escalation.Merge(inc, &g, n, now)
		} else {
			ib := tx.bucket(bIncidents)
			inc, ev = escalation.OpenIncident(ib.Sequence()+1, &g, n, now)
			changed = inc != nil
			if inc != nil {
				if _, err := ib.NextSequence(); err != nil {
					return err
				}
				res.Opened = true
			}
		}
		if !changed {
			// Nothing new: a duplicate (name the incident it duplicates), or
			// only stale or resolved alerts.
			res.Incident = g.Open
			return nil
		}
		res.Incident, res.Changed, res.Resolved = inc.ID, true, inc.State == escalation.Resolved
		fn := func(inc *escalation.Incident, pages []escalation.PageRecord) (escalation.Change, error) {
			return decide(inc, pages, ev)
		}
		_, err = s.applyChange(tx, inc, nil, res.Opened, ev, fn)
		if errors.Is(err, escalation.ErrNoChange) {
			// A quiet refresh (new annotations): the incident changes, its
			// escalation does not.
			err = s.saveIncident(tx, inc)
		}
		if err != nil {
			return err
		}
		return s.saveGroup(tx, n.GroupKey, &g, from, &gone)
	})
	if err == nil {
		s.newGroups.forget(gone)
	}
	return res, err
}

// Update implements escalation.Store.
func (s *Store) Update(ctx context.Context, id uint64, fn escalation.UpdateFunc) (escalation.Incident, escalation.Change, error) {
	var out escalation.Incident
	var ch escalation.Change
	var gone []newGroup // for the index to forget after the commit
	err := s.batch(ctx, deferrable, func(tx *wtx) error {
		gone = gone[:0]
		stored, err := s.loadStored(tx.Tx, id)
		if err != nil {
			return err
		}
		inc := stored.Clone()
		before := inc.State
		ch, err = s.applyChange(tx, inc, stored, false, nil, fn)
		if err != nil {
			return err
		}
		if before != escalation.Resolved && inc.State == escalation.Resolved && inc.GroupKey != "" {
			// Resolved by hand: detach from the Alertmanager group so its next
			// firing opens a new incident.
			g, from, err := s.loadGroup(tx.Tx, inc.GroupKey)
			if err != nil {
				return err
			}
			escalation.CloseGroup(inc, &g)
			if err := s.saveGroup(tx, inc.GroupKey, &g, from, &gone); err != nil {
				return err
			}
		}
		out = *inc
		return nil
	})
	if err == nil {
		s.newGroups.forget(gone)
	}
	if errors.Is(err, escalation.ErrNoChange) {
		inc, gerr := s.Incident(ctx, id)
		return inc, escalation.Change{}, gerr
	}
	return out, ch, err
}

// Incident implements escalation.Store.
func (s *Store) Incident(ctx context.Context, id uint64) (escalation.Incident, error) {
	var out escalation.Incident
	err := s.pointView(func(tx *bolt.Tx) error {
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
	err := s.pointView(func(tx *bolt.Tx) error {
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
	err := s.pointView(func(tx *bolt.Tx) error {
		var err error
		out, err = loadPages(tx, id, nil)
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
	err := s.view(func(tx *bolt.Tx) error {
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
	return s.view(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	if s.checkpointErr != nil {
		return fmt.Errorf("writes are safe in the write-ahead log but could not be committed to the database: %w", s.checkpointErr)
	}
	return nil
}

// GetState implements notifiers.StateStore.
func (s *Store) GetState(ctx context.Context, bucket, key string) ([]byte, error) {
	var out []byte
	err := s.pointView(func(tx *bolt.Tx) error {
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
	return s.batch(ctx, prompt, func(tx *wtx) error {
		return putState(tx, notifiers.StateWrite{Bucket: bucket, Key: key, Value: v})
	})
}

// putState writes (nil Value: deletes) one state key and when it was
// written, unless w.Replaces turns the write down.
func putState(tx *wtx, w notifiers.StateWrite) error {
	b, err := tx.state([]byte(w.Bucket))
	if err != nil {
		return err
	}
	if w.Replaces != nil && !w.Replaces(b.Get([]byte(w.Key))) {
		return nil
	}
	tk := append(append([]byte(w.Bucket), 0), w.Key...)
	if w.Value == nil {
		if err := tx.bucket(bStateTime).Delete(tk); err != nil {
			return err
		}
		return b.Delete([]byte(w.Key))
	}
	if err := tx.bucket(bStateTime).Put(tk, be64(uint64(time.Now().UnixNano()))); err != nil {
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
	err := s.batch(ctx, prompt, func(tx *wtx) error {
		b, err := tx.state([]byte(bucket))
		if err != nil {
			return err
		}
		if old := b.Get([]byte(key)); old != nil {
			out = append([]byte(nil), old...)
			return nil
		}
		tk := append(append([]byte(bucket), 0), key...)
		if err := tx.bucket(bStateTime).Put(tk, be64(uint64(time.Now().UnixNano()))); err != nil {
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
			err := s.batch(ctx, prompt, func(tx *wtx) error {
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
		err := s.batch(ctx, prompt, func(tx *wtx) error {
			gb := tx.bucket(bGroups)
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
		err := s.batch(ctx, prompt, func(tx *wtx) error {
			b, ok := tx.stateIfAny([]byte(sp.Bucket))
			if !ok {
				return nil
			}
			tb := tx.bucket(bStateTime)
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
func deleteIncident(tx *wtx, id uint64) error {
	if err := tx.bucket(bIncidents).Delete(be64(id)); err != nil {
		return err
	}
	for _, name := range [][]byte{bTimeline, bPages, bPending} {
		b := tx.bucket(name)
		c := b.Cursor()
		for k, _ := c.Seek(be64(id)); k != nil && len(k) >= 8 && binary.BigEndian.Uint64(k) == id; k, _ = c.Seek(be64(id)) {
			if err := b.Delete(bytes.Clone(k)); err != nil {
				return err
			}
		}
	}
	// A resolved incident's group has its record; an entry left over would
	// only cost the index a few bytes until the next open.
	if err := tx.bucket(bNewGroups).Delete(be64(id)); err != nil {
		return err
	}
	return tx.bucket(bOpen).Delete(be64(id))
}

// SweepState implements notifiers.StateSweeper in one write transaction
// (none when nothing is deleted).
func (s *Store) SweepState(ctx context.Context, bucket string, keep func(key string, value []byte) bool) error {
	var drop [][]byte
	err := s.view(func(tx *bolt.Tx) error {
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
	return s.batch(ctx, prompt, func(tx *wtx) error {
		b, ok := tx.stateIfAny([]byte(bucket))
		if !ok {
			return nil
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
			if err := tx.bucket(bStateTime).Delete(append(append([]byte(bucket), 0), k...)); err != nil {
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
	return s.view(func(tx *bolt.Tx) error {
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
			pages, err := loadPages(tx, inc.ID, nil)
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
		if nb := tx.Bucket(bNewGroups); nb != nil { // nil in a file no Klaxon with it has opened
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
