package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// lastTx is the id of the latest committed write transaction.
func lastTx(t *testing.T, s *boltstore.Store) int {
	t.Helper()
	var id int
	if err := s.DB().View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// A write with no other writer in sight commits at once: it does not wait
// out a batch window for company (in the bubble, any timer it waited on
// would show as time passed).
func TestLoneWriteCommitsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := range 3 {
			start := time.Now()
			if _, err := escalation.Ingest(context.Background(), s, note(fmt.Sprint("lone", i), "firing"), now, noDecide); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 0 {
				t.Fatalf("write %d waited %s before its commit with no other writer", i, d)
			}
		}
	})
}

// Writes that arrive while a transaction runs its writes join it, so a storm
// pays far fewer fsyncs than writes, and fewer than if they waited for the
// next commit.
func TestWritesArrivingDuringATransactionJoinIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		before := lastTx(t, s)
		hold, held := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := escalation.Ingest(ctx, s, note("first", "firing"), now, func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
				select {
				case <-held:
				default:
					close(held)
				}
				<-hold // the first commit is still running
				return escalation.Change{}, escalation.ErrNoChange
			})
			if err != nil {
				t.Error(err)
			}
		})
		<-held
		const n = 20
		for i := range n {
			wg.Go(func() {
				if _, err := escalation.Ingest(ctx, s, note(fmt.Sprint("later", i), "firing"), now, noDecide); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait() // all 20 are queued while the first write runs
		close(hold)
		wg.Wait()
		if got := lastTx(t, s) - before; got != 1 {
			t.Fatalf("1 + %d writes took %d commits, want 1 (the 20 joining the first's transaction)", n, got)
		}
		c, err := s.Counts(ctx)
		if err != nil || c[escalation.Open] != n+1 {
			t.Fatalf("counts %v, %v: want %d open", c, err, n+1)
		}
	})
}

// A write that fails inside a shared commit gets its own error and takes no
// one else's write down with it.
func TestFailedWriteInAGroupLeavesTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		hold, held := make(chan struct{}), make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			escalation.Ingest(ctx, s, note("first", "firing"), now, func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
				select {
				case <-held:
				default:
					close(held)
				}
				<-hold
				return escalation.Change{}, escalation.ErrNoChange
			})
		})
		<-held
		boom := errors.New("boom")
		var failErr error
		wg.Go(func() {
			_, failErr = escalation.Ingest(ctx, s, note("bad", "firing"), now, func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
				return escalation.Change{}, boom
			})
		})
		for i := range 5 {
			wg.Go(func() {
				if _, err := escalation.Ingest(ctx, s, note(fmt.Sprint("good", i), "firing"), now, noDecide); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		close(hold)
		wg.Wait()
		if !errors.Is(failErr, boom) {
			t.Fatalf("failing write got %v, want its own error", failErr)
		}
		c, _ := s.Counts(ctx)
		if c[escalation.Open] != 6 {
			t.Fatalf("%d open, want 6 (first and five good ones; the bad one rolled back)", c[escalation.Open])
		}
	})
}

// Close fails writes instead of leaving them waiting forever.
func TestWriteAfterCloseFails(t *testing.T) {
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := escalation.Ingest(context.Background(), s, note("late", "firing"), now, noDecide); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}
