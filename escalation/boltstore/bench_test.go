package boltstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
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
						if _, err := escalation.Ingest(context.Background(), s, note(fmt.Sprint("g", i), "firing"), now, noDecide); err != nil {
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

// BenchmarkCommitAfterPrune is BenchmarkCommit/writers=1 on a store whose
// retention has just pruned a storm: 100,000 incidents opened, resolved and
// deleted, their pages left free in the file (fsync on for the commits
// measured). ns/op is a lone write's latency; bytes/commit is what each
// commit writes besides its meta page.
//
//	go test -run '^$' -bench CommitAfterPrune -benchtime 200x -count 6 ./escalation/boltstore/
func BenchmarkCommitAfterPrune(b *testing.B) {
	dir := b.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{NoSync: true}) // the storm is set-up, not measured
	if err != nil {
		b.Fatal(err)
	}
	openAndResolve(b, s, 100000, "")
	if _, err := s.Prune(context.Background(), escalation.Prune{ResolvedBefore: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s, err = boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	allocated := func() int64 { st := s.DB().Stats(); return st.TxStats.GetPageAlloc() }
	free := s.DB().Stats().FreePageN
	a0 := allocated()
	b.ResetTimer()
	for i := range b.N {
		if _, err := escalation.Ingest(context.Background(), s, note(fmt.Sprint("after-", i), "firing"), now, noDecide); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(allocated()-a0)/float64(b.N), "bytes/commit")
	b.ReportMetric(float64(free), "free-pages")
}
