package boltstore

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// A commit of bbolt fsyncs twice (its pages, then its meta page) and writes
// every page its writes dirtied: the last, partly filled page and the branch
// pages of each bucket an alert touches, about 43 pages for 31 alerts of
// which 9 are new data. So the writer keeps one bbolt transaction open
// across many batches of writes instead, and makes each batch durable by
// appending what it changed (the puts and deletes, as they were made) to a
// write-ahead log, klaxon.wal, with one fdatasync of only those bytes. Every
// Options.CheckpointEvery, or when a read needs to see the writes, or when the log
// holds checkpointBytes, the open transaction commits to klaxon.db as any
// bbolt commit does (both fsyncs), and the log starts again from its start.
//
// The log is a file of records, each a header (payload length, CRC-32C,
// epoch) and a payload of changes. The CRC covers the store's salt, the
// epoch, the length and the payload. klaxon.db's meta bucket holds the salt
// (random, chosen when the file is created) and the epoch: the checkpoint
// that commits a generation of the log's records also raises the epoch, so
// those records, still in the log file until overwritten, no longer match.
// Open replays the records of the current epoch in file order, stopping at
// the first that does not check (a torn write at a crash, the zeros after
// the end, or an older generation's leftovers), commits them with the next
// epoch, and only then writes to the log again.
//
// Durability is the same as before: a write returns once it is on disk
// (in the log), and a crash loses nothing acknowledged. What changes is what
// readers see: a read transaction of bbolt sees only committed data. So
// while an acknowledged write is only in the log, a read of a few keys runs
// in the writer's transaction (Store.pointView, groupCommit.read), and a
// scan first has the writer checkpoint (Store.view, groupCommit.settle):
// nothing reads a stale store.

// WALFileName is the write-ahead log's file name inside the data directory.
const WALFileName = "klaxon.wal"

var (
	metaEpoch = []byte("walEpoch") // be64: the epoch of the log records that follow this state
	metaSalt  = []byte("walSalt")  // 8 random bytes: this file's records, not a predecessor's
)

// walPrealloc is how much of the log file is allocated up front, so that
// appends overwrite allocated blocks and fdatasync has no file size to
// journal (a generation that outgrows it extends the file).
const walPrealloc = 16 << 20

// walHeader is a record's header: be32 payload length, be32 CRC-32C, be64 epoch.
const walHeader = 16

// maxRecord bounds a record's payload (its length is a be32).
const maxRecord = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The changes of a record, each an op byte then its fields, every byte
// string as uvarint length then bytes: the bucket's name, the nested
// bucket's name (empty for none: the channels' state namespaces are nested
// in bState), and then:
const (
	opPut    byte = 1 // key, value
	opDelete byte = 2 // key
	opSeq    byte = 3 // be64 sequence: the bucket's sequence was set
	opBucket byte = 4 // (nothing): the nested bucket was created
)

// wal is the log file of an open, writable store.
type wal struct {
	f      *os.File
	salt   []byte
	epoch  uint64 // of the records now being written
	off    int64  // where the next record goes
	noSync bool
	sync   func(*os.File) error // datasync; tests replace it
	buf    []byte
}

// openWAL opens (creating) the log at path for a store whose meta bucket
// says salt and epoch, and returns it with the payloads of that epoch's
// records, in order.
func openWAL(path string, salt []byte, epoch uint64, noSync bool) (*wal, [][]byte, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	recs, err := readWAL(f, fi.Size(), salt, epoch)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if fi.Size() < walPrealloc {
		_ = preallocate(f, walPrealloc) // best effort: appends work either way
	}
	if !noSync {
		// The file's size, and for a new file its name, must be on disk
		// before a record in it is acknowledged: fdatasync covers neither
		// a directory entry nor, everywhere, a size it did not change.
		err := f.Sync()
		if err == nil && errors.Is(statErr, os.ErrNotExist) {
			err = syncDir(filepath.Dir(path))
		}
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("syncing %s: %w", path, err)
		}
	}
	return &wal{f: f, salt: salt, epoch: epoch, noSync: noSync, sync: datasync}, recs, nil
}

// readWAL returns the payloads of the records of epoch at the start of r,
// up to the first that is torn, of another epoch or of another store. It
// reads no further than that: the preallocated rest of the file is zeros.
// size bounds a record's length, against a corrupt one.
func readWAL(r io.Reader, size int64, salt []byte, epoch uint64) ([][]byte, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var out [][]byte
	var h [walHeader]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil
			}
			return nil, err
		}
		n := binary.BigEndian.Uint32(h[:])
		sum := binary.BigEndian.Uint32(h[4:])
		size -= walHeader
		if n == 0 || int64(n) > size || binary.BigEndian.Uint64(h[8:]) != epoch {
			return out, nil
		}
		size -= int64(n)
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil
			}
			return nil, err
		}
		if recordSum(salt, epoch, payload) != sum {
			return out, nil
		}
		out = append(out, payload)
	}
}

func recordSum(salt []byte, epoch uint64, payload []byte) uint32 {
	var h [12]byte
	binary.BigEndian.PutUint64(h[:], epoch)
	binary.BigEndian.PutUint32(h[8:], uint32(len(payload)))
	sum := crc32.Update(0, castagnoli, salt)
	sum = crc32.Update(sum, castagnoli, h[:])
	return crc32.Update(sum, castagnoli, payload)
}

// append writes one record and waits for it to reach the disk.
func (w *wal) append(payload []byte) error {
	if len(payload) > maxRecord {
		return fmt.Errorf("write-ahead log: a batch of %d bytes is over the %d a record holds", len(payload), maxRecord)
	}
	w.buf = appendRecord(w.buf[:0], w.salt, w.epoch, payload)
	if _, err := w.f.WriteAt(w.buf, w.off); err != nil {
		return fmt.Errorf("write-ahead log: %w", err)
	}
	if !w.noSync {
		if err := w.sync(w.f); err != nil {
			return fmt.Errorf("write-ahead log: %w", err)
		}
	}
	w.off += int64(len(w.buf))
	if cap(w.buf) > 1<<20 {
		w.buf = nil // one big batch (a prune) need not stay allocated
	}
	return nil
}

// appendRecord appends payload to dst as a record of epoch.
func appendRecord(dst, salt []byte, epoch uint64, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, recordSum(salt, epoch, payload))
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	return append(dst, payload...)
}

// restart begins the next generation: klaxon.db has committed every record
// so far, with epoch as its new epoch.
func (w *wal) restart(epoch uint64) {
	w.epoch, w.off = epoch, 0
}

func (w *wal) close() error { return w.f.Close() }

// walMeta reads (creating, in a writable transaction) the salt and epoch of
// klaxon.db's log.
func walMeta(tx *bolt.Tx) (salt []byte, epoch uint64, err error) {
	m := tx.Bucket(bMeta)
	if m == nil {
		return nil, 0, nil // a file opened read-only before any Klaxon initialised it
	}
	if v := m.Get(metaEpoch); len(v) == 8 {
		epoch = binary.BigEndian.Uint64(v)
	}
	if v := m.Get(metaSalt); len(v) == 8 {
		return bytes.Clone(v), epoch, nil
	}
	if !tx.Writable() {
		return nil, epoch, nil // a file no Klaxon with a log has written
	}
	salt = make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return nil, 0, err
	}
	return salt, epoch, m.Put(metaSalt, salt)
}

// setEpoch records in tx that the log's records of earlier epochs are in it.
func setEpoch(tx *bolt.Tx, epoch uint64) error {
	return tx.Bucket(bMeta).Put(metaEpoch, be64(epoch))
}

// wtx is the writer's transaction. Reads use the bbolt transaction as they
// would; writes go through bucket and state, whose Put, Delete and
// NextSequence record each change for the log. A change made around them
// (tx.Bucket(...).Put) would be committed at the next checkpoint but lost
// from a crash before it: TestLogReplaysEveryWrite catches one.
type wtx struct {
	*bolt.Tx
	rec []byte // this batch's changes so far
}

// wbucket is a bucket of a wtx whose changes are recorded.
type wbucket struct {
	*bolt.Bucket
	w         *wtx
	name, sub []byte
}

// bucket returns the top-level bucket name.
func (w *wtx) bucket(name []byte) wbucket {
	return wbucket{Bucket: w.Tx.Bucket(name), w: w, name: name}
}

// state returns the channels' state namespace ns, creating it if need be.
func (w *wtx) state(ns []byte) (wbucket, error) {
	if b, ok := w.stateIfAny(ns); ok {
		return b, nil
	}
	b, err := w.Tx.Bucket(bState).CreateBucket(ns)
	if err != nil {
		return wbucket{}, err
	}
	w.record(opBucket, bState, ns, nil, nil)
	return wbucket{Bucket: b, w: w, name: bState, sub: ns}, nil
}

func (w *wtx) record(op byte, name, sub, k, v []byte) {
	w.rec = append(w.rec, op)
	w.rec = appendBytes(w.rec, name)
	w.rec = appendBytes(w.rec, sub)
	switch op {
	case opPut:
		w.rec = appendBytes(appendBytes(w.rec, k), v)
	case opDelete:
		w.rec = appendBytes(w.rec, k)
	case opSeq:
		w.rec = append(w.rec, v...)
	}
}

func appendBytes(b, s []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// Put stores v under k and records it.
func (b wbucket) Put(k, v []byte) error {
	if err := b.Bucket.Put(k, v); err != nil {
		return err
	}
	b.w.record(opPut, b.name, b.sub, k, v)
	return nil
}

// Delete removes k and records it.
func (b wbucket) Delete(k []byte) error {
	if err := b.Bucket.Delete(k); err != nil {
		return err
	}
	b.w.record(opDelete, b.name, b.sub, k, nil)
	return nil
}

// NextSequence raises the bucket's sequence and records it.
func (b wbucket) NextSequence() (uint64, error) {
	n, err := b.Bucket.NextSequence()
	if err != nil {
		return 0, err
	}
	b.w.record(opSeq, b.name, b.sub, nil, be64(n))
	return n, nil
}

// replay applies a record's changes to tx.
func replay(tx *bolt.Tx, payload []byte) error {
	r := payload
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(r)
		if k <= 0 || n > uint64(len(r)-k) {
			return nil, errors.New("truncated change")
		}
		s := r[k : k+int(n)]
		r = r[k+int(n):]
		return s, nil
	}
	for len(r) > 0 {
		op := r[0]
		r = r[1:]
		name, err := next()
		if err != nil {
			return err
		}
		sub, err := next()
		if err != nil {
			return err
		}
		b := tx.Bucket(name)
		if b == nil {
			return fmt.Errorf("change to unknown bucket %q", name)
		}
		if len(sub) > 0 {
			nb := b.Bucket(sub)
			if nb == nil && op != opDelete {
				if nb, err = b.CreateBucket(sub); err != nil {
					return err
				}
			}
			b = nb
		}
		switch op {
		case opPut:
			k, err := next()
			if err != nil {
				return err
			}
			v, err := next()
			if err != nil {
				return err
			}
			err = b.Put(k, v)
			if err != nil {
				return err
			}
		case opDelete:
			k, err := next()
			if err != nil {
				return err
			}
			if b != nil {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		case opSeq:
			if len(r) < 8 {
				return errors.New("truncated sequence")
			}
			if err := b.SetSequence(binary.BigEndian.Uint64(r)); err != nil {
				return err
			}
			r = r[8:]
		case opBucket:
		default:
			return fmt.Errorf("unknown change %d", op)
		}
	}
	return nil
}

// stateIfAny returns the channels' state namespace ns if it exists.
func (w *wtx) stateIfAny(ns []byte) (wbucket, bool) {
	b := w.Tx.Bucket(bState).Bucket(ns)
	return wbucket{Bucket: b, w: w, name: bState, sub: ns}, b != nil
}

// checkNoPendingWAL fails if the log at path holds writes that db, opened
// read-only, does not: a server that stopped without closing the store
// (a crash, a kill) leaves them for its next start to apply, and a reader
// of db alone would miss them.
func checkNoPendingWAL(db *bolt.DB, path string) error {
	var salt []byte
	var epoch uint64
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		salt, epoch, err = walMeta(tx)
		return err
	})
	if err != nil || salt == nil {
		return err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	recs, err := readWAL(f, fi.Size(), salt, epoch)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if len(recs) > 0 {
		return fmt.Errorf("%s holds %d batches of writes not yet in %s (the server stopped without closing it): start klaxon serve on this data directory once to apply them, or ask the running server", path, len(recs), FileName)
	}
	return nil
}
