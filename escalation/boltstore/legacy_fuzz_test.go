package boltstore

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzLegacyLog: whatever a crash or a bad disk left in a klaxon.wal of
// c735968, reading it returns whole records that check, in order, from its
// start, and applying a record's changes returns an error rather than
// panicking, whatever they say. The seeds include the log of
// testdata/legacy/crashed (its salt and epoch are read from its klaxon.db).
func FuzzLegacyLog(f *testing.F) {
	salt, epoch := []byte("saltsalt"), uint64(3)
	var rec []byte
	rec = change(rec, opPut, bIncidents, nil, be64(1), []byte(`{"id":1}`))
	rec = change(rec, opDelete, bState, []byte("ns"), []byte("k"), nil)
	rec = change(rec, opSeq, bIncidents, nil, nil, be64(7))
	rec = change(rec, opBucket, bState, []byte("ns2"), nil, nil)
	f.Add(frame(salt, epoch, rec))
	f.Add(append(frame(salt, epoch, rec), frame(salt, epoch, []byte{opPut, 1, 'x'})...))
	f.Add(frame(salt, 2, rec))
	f.Add([]byte{0, 0, 0, 9, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 3, 1})
	if fx, err := os.ReadFile(filepath.Join("testdata", "legacy", "crashed", legacyWALName)); err == nil {
		db, err := bolt.Open(filepath.Join("testdata", "legacy", "crashed", FileName), 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			f.Fatal(err)
		}
		_ = db.View(func(tx *bolt.Tx) error {
			s, e := legacyMeta(tx)
			recs, _ := readWAL(bytes.NewReader(fx), s, e)
			for _, r := range recs {
				f.Add(frame(salt, epoch, r))
			}
			return nil
		})
		db.Close()
	}
	db, err := bolt.Open(filepath.Join(f.TempDir(), "fuzz.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bIncidents, bOpen, bPending, bGroups, bNewGroups, bTimeline, bPages, bState, bStateTime, bMeta} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := readWAL(bytes.NewReader(data), salt, epoch)
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		rest := data
		for i, r := range recs {
			want := frame(salt, epoch, r)
			if !bytes.HasPrefix(rest, want) {
				t.Fatalf("record %d is not the next whole record of the file", i)
			}
			rest = rest[len(want):]
		}
		for _, payload := range append(recs, data) {
			tx, err := db.Begin(true)
			if err != nil {
				t.Fatal(err)
			}
			_ = replay(tx, payload) // an error is fine; a panic is not
			_ = tx.Rollback()
		}
	})
}

// frame is payload as a record of c735968's log.
func frame(salt []byte, epoch uint64, payload []byte) []byte {
	dst := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, recordSum(salt, epoch, payload))
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	return append(dst, payload...)
}

// change appends one change to a record's payload, as c735968 wrote it.
func change(rec []byte, op byte, name, sub, k, v []byte) []byte {
	str := func(b, s []byte) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	rec = str(str(append(rec, op), name), sub)
	switch op {
	case opPut:
		rec = str(str(rec, k), v)
	case opDelete:
		rec = str(rec, k)
	case opSeq:
		rec = append(rec, v...)
	}
	return rec
}
