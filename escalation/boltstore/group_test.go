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
			if _, err := s.Ingest(context.Background(), note(fmt.Sprint("lone", i), "firing"), now, noDecide); err != nil {
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
			_, err := s.Ingest(ctx, note("first", "firing"), now, func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
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
				if _, err := s.Ingest(ctx, note(fmt.Sprint("later", i), "firing"), now, noDecide); err != nil {
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
			s.Ingest(ctx, note("first", "firing"), now, func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
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
			_, failErr = s.Ingest(ctx, note("bad", "firing"), now, func(*escalation.Incident, []escalation.PageRecord, []escalation.Event) (escalation.Change, error) {
				return escalation.Change{}, boom
			})
		})
		for i := range 5 {
			wg.Go(func() {
				if _, err := s.Ingest(ctx, note(fmt.Sprint("good", i), "firing"), now, noDecide); err != nil {
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
	if _, err := s.Ingest(context.Background(), note("late", "firing"), now, noDecide); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}

// With DeferUpdates, an update with no other write in sight waits that long
// for company while webhooks are arriving, and a webhook arriving meanwhile
// shares its commit at once; a webhook alone never waits, and neither do
// updates when no webhook came lately.
func TestDeferredUpdateWaitsForCompany(t *testing.T) {
	const hold = 10 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true, DeferUpdates: hold, ReleaseMapEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		start := time.Now()
		res, err := s.Ingest(ctx, note("a", "firing"), now, noDecide)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("a lone webhook waited %s with DeferUpdates set", d)
		}
		touch := func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
			inc.Title += "!"
			return escalation.Change{}, nil
		}

		// Alone, an update waits hold, then commits.
		start = time.Now()
		if _, _, err := s.Update(ctx, res.Incident, touch); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != hold {
			t.Fatalf("a lone update committed after %s, want %s", d, hold)
		}

		// A webhook 1 ms later: both commit then, together.
		before := lastTx(t, s)
		var wg sync.WaitGroup
		var updated time.Duration
		start = time.Now()
		wg.Go(func() {
			if _, _, err := s.Update(ctx, res.Incident, touch); err != nil {
				t.Error(err)
			}
			updated = time.Since(start)
		})
		time.Sleep(time.Millisecond) // the bubble's clock
		if _, err := s.Ingest(ctx, note("b", "firing"), now, noDecide); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if updated != time.Millisecond || lastTx(t, s)-before != 1 {
			t.Fatalf("update committed after %s in %d commits with the webhook, want 1ms and 1", updated, lastTx(t, s)-before)
		}

		// With no webhook for a while, updates (a loop over held pages) do
		// not wait each time.
		time.Sleep(time.Second)
		start = time.Now()
		for range 3 {
			if _, _, err := s.Update(ctx, res.Incident, touch); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("3 updates a second after the last webhook took %s, want no wait", d)
		}
	})
}
