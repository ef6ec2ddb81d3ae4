package boltstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// Klaxon up to c735968 kept a write-ahead log, klaxon.wal, in front of
// klaxon.db: a write was acknowledged once its changes (bbolt puts and
// deletes) were in the log, and committed to klaxon.db up to 30 ms later.
// It also kept a new Alertmanager group's record as an entry of bNewGroups
// (under the incident it opened) until Close wrote it under its key. A data
// directory that build left after a crash holds acknowledged writes only in
// the log and groups only in bNewGroups. Open applies both, once, in its
// first transaction: the log's records, then bNewGroups folded into
// bGroups; the same commit drops the log's salt and epoch from bMeta, so the
// log can never be applied twice, and then the log file is removed. This
// file only reads that format; testdata/legacy holds images that build
// made.

const legacyWALName = "klaxon.wal"

var (
	bNewGroups = []byte("newGroups") // be64(incident id) → groupKey: a group that only opened that incident
	metaEpoch  = []byte("walEpoch")  // be64: the epoch of the log records that follow klaxon.db's state
	metaSalt   = []byte("walSalt")   // 8 random bytes: this file's records, not a predecessor's
)

// A record is a header (be32 payload length; be32 CRC-32C over the salt,
// be64 epoch, be32 length and payload; be64 epoch) and its payload.
const walHeader = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// A payload is a list of changes, each an op byte, the bucket's name and
// the nested bucket's name (empty for none), every byte string as uvarint
// length then bytes, and then:
const (
	opPut    byte = 1 // key, value
	opDelete byte = 2 // key
	opSeq    byte = 3 // be64 sequence: the bucket's sequence was set
	opBucket byte = 4 // (nothing): the nested bucket was created
)

// upgradeLegacy applies what a data directory of c735968 holds outside
// klaxon.db's buckets (see above), in tx, and reports whether there was a
// log at path to remove once tx is committed.
func upgradeLegacy(tx *bolt.Tx, path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	hadLog := err == nil
	if hadLog {
		defer f.Close()
		salt, epoch := legacyMeta(tx)
		if salt != nil {
			recs, err := readWAL(f, salt, epoch)
			if err != nil {
				return false, fmt.Errorf("reading %s: %w", path, err)
			}
			for i, rec := range recs {
				if err := replay(tx, rec); err != nil {
					return false, fmt.Errorf("%s: record %d of %d: %w", path, i+1, len(recs), err)
				}
			}
		}
	}
	if err := foldNewGroups(tx); err != nil {
		return false, err
	}
	if m := tx.Bucket(bMeta); m.Get(metaSalt) != nil || m.Get(metaEpoch) != nil {
		if err := m.Delete(metaSalt); err != nil {
			return false, err
		}
		if err := m.Delete(metaEpoch); err != nil {
			return false, err
		}
	}
	return hadLog, nil
}

// removeLegacyWAL removes the log once klaxon.db holds its records.
func removeLegacyWAL(path string, noSync bool) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s (its records are in %s): %w", path, FileName, err)
	}
	if noSync {
		return nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// legacyMeta reads klaxon.db's log salt and epoch (nil salt: no log of
// this file's can apply).
func legacyMeta(tx *bolt.Tx) (salt []byte, epoch uint64) {
	m := tx.Bucket(bMeta)
	if m == nil {
		return nil, 0
	}
	if v := m.Get(metaEpoch); len(v) == 8 {
		epoch = binary.BigEndian.Uint64(v)
	}
	if v := m.Get(metaSalt); len(v) == 8 {
		salt = bytes.Clone(v)
	}
	return salt, epoch
}

// readWAL returns the payloads of the records of epoch at the start of r,
// up to the first that is torn, of another epoch or of another store (the
// rest of the file was preallocated zeros or an older generation).
func readWAL(r io.Reader, salt []byte, epoch uint64) ([][]byte, error) {
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
		if n == 0 || n > 1<<30 || binary.BigEndian.Uint64(h[8:]) != epoch {
			return out, nil
		}
		payload, err := readN(br, nil, int(n))
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil
			}
			return nil, err
		}
		if recordSum(salt, epoch, payload) != binary.BigEndian.Uint32(h[4:]) {
			return out, nil
		}
		out = append(out, payload)
	}
}

// readN appends n bytes of r to buf, growing it as they come (a corrupt
// length must not allocate a gigabyte up front).
func readN(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		chunk := min(n-len(buf), 1<<20)
		start := len(buf)
		buf = append(buf, make([]byte, chunk)...)
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

func recordSum(salt []byte, epoch uint64, payload []byte) uint32 {
	var h [12]byte
	binary.BigEndian.PutUint64(h[:], epoch)
	binary.BigEndian.PutUint32(h[8:], uint32(len(payload)))
	sum := crc32.Update(0, castagnoli, salt)
	sum = crc32.Update(sum, castagnoli, h[:])
	return crc32.Update(sum, castagnoli, payload)
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
			if err := b.Put(k, v); err != nil {
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

// foldNewGroups writes the record of every group in bNewGroups under its
// key (unless one is written there: that is the whole truth) and drops the
// bucket.
func foldNewGroups(tx *bolt.Tx) error {
	nb := tx.Bucket(bNewGroups)
	if nb == nil {
		return nil
	}
	gb := tx.Bucket(bGroups)
	err := nb.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("new group entry %x: key is not an incident id", k)
		}
		if gb.Get(v) != nil {
			return nil
		}
		data, err := json.Marshal(escalation.Group{Open: binary.BigEndian.Uint64(k)})
		if err != nil {
			return err
		}
		return gb.Put(bytes.Clone(v), data)
	})
	if err != nil {
		return err
	}
	return tx.DeleteBucket(bNewGroups)
}

// checkNoPendingWAL fails if the log at path holds writes that db, opened
// read-only, does not: a server of c735968 that stopped without closing the
// store left them for the next start to apply.
func checkNoPendingWAL(db *bolt.DB, path string) error {
	var salt []byte
	var epoch uint64
	_ = db.View(func(tx *bolt.Tx) error { salt, epoch = legacyMeta(tx); return nil })
	if salt == nil {
		return nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := readWAL(f, salt, epoch)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if len(recs) > 0 {
		return fmt.Errorf("%s holds %d batches of writes not yet in %s (the server stopped without closing it): start klaxon serve on this data directory once to apply them", path, len(recs), FileName)
	}
	return nil
}
