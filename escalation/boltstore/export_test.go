package boltstore

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Crash stops s as a crash of its process would: the writer's transaction
// is dropped, not committed, no last checkpoint runs, and the files keep
// what was written to them (the kernel keeps a dead process's writes).
func Crash(s *Store) {
	s.stopReleasing()
	_ = s.group.stop(nil, true)
	s.log.close()
	s.db.Close()
}

// Contents is everything a store holds, as "bucket/nested/key" → value and
// "bucket/nested#seq" → sequence, but the log's epoch (which every Open
// raises).
type Contents map[string]string

// Unsettled returns what the writer's transaction holds: every write
// acknowledged so far, committed to klaxon.db or only in the log.
func Unsettled(s *Store) (Contents, error) {
	var c Contents
	err := s.group.do(func(w *wtx) error {
		var err error
		c, err = contents(w.Tx)
		return err
	}, false)
	return c, err
}

// Committed returns what klaxon.db holds, read without settling the log.
func Committed(s *Store) (Contents, error) {
	var c Contents
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = contents(tx)
		return err
	})
	return c, err
}

func contents(tx *bolt.Tx) (Contents, error) {
	c := Contents{}
	var walk func(path string, b *bolt.Bucket) error
	walk = func(path string, b *bolt.Bucket) error {
		c[path+"#seq"] = fmt.Sprint(b.Sequence())
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(path+"/"+string(k), b.Bucket(k))
			}
			if path == string(bMeta) && bytes.Equal(k, metaEpoch) {
				return nil
			}
			c[path+"/"+string(k)] = string(v)
			return nil
		})
	}
	return c, tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(string(name), b) })
}
