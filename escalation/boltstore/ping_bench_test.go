package boltstore_test

import (
	"context"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// BenchmarkReadiness compares what a /readyz probe costs now (Ping: a read
// transaction) with the synced write transaction it used to run, on a
// store with fsync on.
func BenchmarkReadiness(b *testing.B) {
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.Run("ping-read", func(b *testing.B) {
		for b.Loop() {
			if err := s.Ping(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("old-write-tx", func(b *testing.B) {
		for b.Loop() {
			if err := s.DB().Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("ping"), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
