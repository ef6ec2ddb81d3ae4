package boltstore

import (
	"bytes"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzLog: whatever a crash or a bad disk leaves in klaxon.wal, reading it
// returns whole records that check, in order, from its start, and applying
// a record's changes returns an error rather than panicking, whatever they
// say.
func FuzzLog(f *testing.F) {
	salt := []byte("saltsalt")
	w := &wal{salt: salt, epoch: 3}
	var rec []byte
	tx := &wtx{}
	tx.record(opPut, bIncidents, nil, be64(1), []byte(`{"id":1}`))
	tx.record(opDelete, bState, []byte("ns"), []byte("k"), nil)
	tx.record(opSeq, bIncidents, nil, nil, be64(7))
	tx.record(opBucket, bState, []byte("ns2"), nil, nil)
	rec = tx.rec
	f.Add(frame(w, rec))
	f.Add(append(frame(w, rec), frame(w, []byte{opPut, 1, 'x'})...))
	f.Add(frame(&wal{salt: salt, epoch: 2}, rec))
	f.Add([]byte{0, 0, 0, 9, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 3, 1})
	db, err := bolt.Open(filepath.Join(f.TempDir(), "fuzz.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bIncidents, bState} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := readWAL(bytes.NewReader(data), int64(len(data)), salt, 3)
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		rest := data
		for i, r := range recs {
			want := frame(w, r)
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

// frame is payload as w.append writes it.
func frame(w *wal, payload []byte) []byte { return appendRecord(nil, w.salt, w.epoch, payload) }
