package boltstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// BenchmarkCommit measures durable commits (fsync on) of Ingest, each opening
// a new incident: with one writer ns/op is a lone write's latency (what the
// first page of a quiet night waits for); with 64 writers it is the inverse
// of throughput under load.
//
//	go test -run '^$' -bench Commit -count 6 ./escalation/boltstore/
func BenchmarkCommit(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := boltstore.Open(b.TempDir(), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range writers {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := s.Ingest(context.Background(), note(fmt.Sprint("g", i), "firing"), now, noDecide); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
