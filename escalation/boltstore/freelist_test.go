package boltstore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
)

// TestCommitWritesDoNotGrowWithFreeSpace: after retention has pruned a
// storm's incidents, thousands of the file's pages are free. What a lone
// commit writes must stay what it was before: bbolt, left to its default,
// writes the id of every free page with every commit, for as long as they
// stay free, and the first page of every later night waits for that write
// and its fsync.
func TestCommitWritesDoNotGrowWithFreeSpace(t *testing.T) {
	// What is measured is how much a commit writes, which fsync does not change.
	s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	// bytesPerCommit is what a lone commit opening a new incident writes
	// (bbolt's page allocations: every page a commit writes but its meta page).
	lone := 0
	bytesPerCommit := func() float64 {
		const n = 20
		allocated := func() int64 { st := s.DB().Stats(); return st.TxStats.GetPageAlloc() }
		before := allocated()
		for range n {
			lone++
			if _, err := escalation.Ingest(ctx, s, note(fmt.Sprint("lone-", lone), "firing"), now, noDecide); err != nil {
				t.Fatal(err)
			}
		}
		return float64(allocated()-before) / n
	}

	storm(t, s)
	before := bytesPerCommit()

	free := prune(t, s)
	after := bytesPerCommit()
	t.Logf("a lone commit wrote %.0f bytes before the prune, %.0f after it (%d pages free: %d bytes of page ids)", before, after, free, 8*free)
	if after > 1.25*before {
		t.Errorf("a lone commit writes %.0f bytes with %d pages free, against %.0f before the prune: commits write the free list", after, free, before)
	}
}

// TestFreeSpaceIsReusedAfterARestart: the free pages commits no longer
// record are found again when the store opens, after a clean Close (which
// writes the list) and after a crash (Open walks the file), and new
// incidents fill them instead of growing the file.
func TestFreeSpaceIsReusedAfterARestart(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	storm(t, s)
	free := prune(t, s)
	crashDir := closeAndKeepCrash(t, s)
	for _, c := range []struct{ name, dir string }{{"after a clean close", dir}, {"after a crash", crashDir}} {
		t.Run(c.name, func(t *testing.T) {
			size := fileSize(t, c.dir)
			s, err := boltstore.Open(c.dir, boltstore.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.DB().Stats().FreePageN; got < free/2 {
				t.Fatalf("after a restart bbolt knows of %d free pages, against %d before it", got, free)
			}
			// About half the freed space again (incidents of about 4 KB, a page each).
			for i := range free / 2 {
				n := note(fmt.Sprint("after-", i), "firing")
				n.Alerts[0].Annotations = map[string]string{"description": stormText}
				if _, err := escalation.Ingest(context.Background(), s, n, now, noDecide); err != nil {
					t.Fatal(err)
				}
			}
			if grown := fileSize(t, c.dir) - size; grown > 0 {
				t.Errorf("the file grew by %d bytes for incidents that fit in the %d pages retention freed before the restart", grown, free)
			}
		})
	}
}

// stormText makes an incident about 4 KB.
var stormText = strings.Repeat("the disk of db-1 is full; ", 140)

// stormSize is how many incidents storm opens and resolves.
const stormSize = 5000

// storm opens stormSize incidents of about 4 KB each, then resolves them.
func storm(t *testing.T, s *boltstore.Store) {
	t.Helper()
	openAndResolve(t, s, stormSize, stormText)
}

// openAndResolve opens n incidents, each with text as its alert's
// description, then resolves them, from 32 writers.
func openAndResolve(t testing.TB, s *boltstore.Store, n int64, text string) {
	t.Helper()
	for _, status := range []string{"firing", "resolved"} {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for i := next.Add(1); i <= n; i = next.Add(1) {
					n := note(fmt.Sprint("storm-", i), status)
					n.Alerts[0].Annotations = map[string]string{"description": text}
					if _, err := escalation.Ingest(context.Background(), s, n, now, noDecide); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

// prune deletes every resolved incident and returns how many pages are free.
func prune(t *testing.T, s *boltstore.Store) int {
	t.Helper()
	pruned, err := s.Prune(context.Background(), escalation.Prune{ResolvedBefore: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	free := s.DB().Stats().FreePageN
	if pruned.Incidents < stormSize || free < stormSize {
		t.Fatalf("the prune deleted %d incidents and left %d pages free: the storm did not make free space", pruned.Incidents, free)
	}
	return free
}

func fileSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// closeAndKeepCrash copies s's file as a crash would leave it (as its last
// commit wrote it, not as Close leaves it) into a directory of its own, then
// closes s, and returns that directory.
func closeAndKeepCrash(t *testing.T, s *boltstore.Store) string {
	t.Helper()
	var crashed bytes.Buffer
	if err := s.DB().View(func(tx *bolt.Tx) error { _, err := tx.WriteTo(&crashed); return err }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, boltstore.FileName), crashed.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
