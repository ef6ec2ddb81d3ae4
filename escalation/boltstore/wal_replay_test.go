package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// rolledBack is the title of incidents in writes that fail.
const rolledBack = "changed by a write that failed"

// walOptions keeps every write in the log until a read or Close settles it,
// so that a crash leaves the log something to replay.
var walOptions = boltstore.Options{NoSync: true, CheckpointEvery: time.Hour, ReleaseMapEvery: -1}

// randomWrites runs n random writes of every kind the store takes (opening,
// merging, resolving, acknowledging with pages and state, failing half-way,
// state puts, creates, deletes and sweeps, pruning), and if reads, a read
// now and then, which commits the log to klaxon.db, so that the log's
// records land on a settled file, not only on a fresh one.
func randomWrites(t *testing.T, s *boltstore.Store, r *rand.Rand, n int, reads bool) {
	t.Helper()
	ctx := context.Background()
	var ids []uint64
	at := now
	withPage := func(inc *escalation.Incident, _ []escalation.PageRecord, _ []escalation.Event) (escalation.Change, error) {
		inc.Escalation.NextAt = at.Add(time.Duration(r.IntN(600)) * time.Second)
		return escalation.Change{Pages: []escalation.PageRecord{{Kind: notifiers.KindPage, Channel: "sms",
			Recipient: notifiers.Recipient{PersonID: "alice"}, Status: escalation.PagePending, CreatedAt: at}}}, nil
	}
	for range n {
		at = at.Add(time.Second)
		group := fmt.Sprintf("g%d", r.IntN(30))
		switch op := r.IntN(20); {
		case op < 6:
			res, err := escalation.Ingest(ctx, s, note(group, "firing"), at, withPage)
			if err != nil {
				t.Fatal(err)
			}
			if res.Opened {
				ids = append(ids, res.Incident)
			}
		case op < 8:
			if _, err := escalation.Ingest(ctx, s, note(group, "resolved"), at, noDecide); err != nil {
				t.Fatal(err)
			}
		case op < 12 && len(ids) > 0:
			id := ids[r.IntN(len(ids))]
			fail, failing := op == 11, false
			_, _, err := escalation.Update(ctx, s, id, func(inc *escalation.Incident, pages []escalation.PageRecord) (escalation.Change, error) {
				var ch escalation.Change
				switch {
				case inc.State == escalation.Resolved:
					return ch, escalation.ErrNoChange
				case r.IntN(2) == 0:
					inc.State, inc.ResolvedAt, inc.Escalation.NextAt = escalation.Resolved, at, time.Time{}
				default:
					inc.State = escalation.Acknowledged
				}
				for _, p := range pages {
					if !p.Status.Done() {
						p.Status = escalation.PageCanceled
						ch.Pages = append(ch.Pages, p)
					}
				}
				ch.State = []notifiers.StateWrite{{Bucket: "replies", Key: fmt.Sprint("inc-", inc.ID), Value: []byte(inc.State)}}
				if failing = fail; failing {
					// A state write to no bucket fails after the incident
					// and its pages were written: all of it must be undone.
					inc.Title = rolledBack
					ch.State = append(ch.State, notifiers.StateWrite{Key: "k", Value: []byte("v")})
				}
				return ch, nil
			})
			switch {
			case failing && err == nil:
				t.Fatal("an update with a state write to no bucket succeeded")
			case !failing && err != nil && !errors.Is(err, escalation.ErrNotFound): // pruned
				t.Fatal(err)
			}
		case op < 15:
			var v []byte // nil deletes
			if r.IntN(4) > 0 {
				v = []byte(fmt.Sprint("v", r.IntN(1000)))
			}
			if err := s.PutState(ctx, fmt.Sprint("ns", r.IntN(4)), fmt.Sprint("k", r.IntN(20)), v); err != nil {
				t.Fatal(err)
			}
		case op < 17:
			if _, err := s.CreateState(ctx, fmt.Sprint("ns", r.IntN(5)), fmt.Sprint("c", r.IntN(20)), []byte("first")); err != nil {
				t.Fatal(err)
			}
		case op < 18:
			odd := func(k string, _ []byte) bool { return len(k)%2 == 0 }
			if err := s.SweepState(ctx, fmt.Sprint("ns", r.IntN(4)), odd); err != nil {
				t.Fatal(err)
			}
		case op < 19:
			_, err := s.Prune(ctx, escalation.Prune{ResolvedBefore: at.Add(-time.Duration(r.IntN(10)) * time.Second),
				State: []escalation.StatePrune{{Bucket: "ns1", Prefix: "k1", Before: time.Now().Add(time.Hour)}}})
			if err != nil {
				t.Fatal(err)
			}
		case reads:
			if _, err := s.Counts(ctx); err != nil { // a read: settles the log
				t.Fatal(err)
			}
		}
	}
}

// TestLogReplaysEveryWrite: after a crash, Open rebuilds from klaxon.db and
// the write-ahead log exactly what the writer's transaction held, byte for
// byte: every acknowledged write, and nothing of the ones that failed. A
// write made around the log (a Put on the bbolt transaction's own bucket)
// would be in the transaction but not in the log, and breaks it: the seeds
// without reads keep the whole run in the log.
func TestLogReplaysEveryWrite(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		reads := seed > 3
		t.Run(fmt.Sprint("seed=", seed, "/reads=", reads), func(t *testing.T) {
			dir := t.TempDir()
			s, err := boltstore.Open(dir, walOptions)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(seed, 0))
			randomWrites(t, s, r, 600, reads)
			for range 5 { // whatever the last read left, some writes only in the log
				if err := s.PutState(context.Background(), "ns0", fmt.Sprint("last", r.IntN(100)), []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			want, err := boltstore.Unsettled(s)
			if err != nil {
				t.Fatal(err)
			}
			before, err := boltstore.Committed(s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := diffContents(before, want); len(diff) == 0 {
				t.Fatal("klaxon.db already holds every write: nothing is left for the log to replay")
			}
			boltstore.Crash(s)

			s, err = boltstore.Open(dir, walOptions)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := boltstore.Committed(s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := diffContents(got, want); len(diff) > 0 {
				t.Fatalf("after the crash and Open, %d keys differ from what was acknowledged, e.g.:\n%s", len(diff), diff[0])
			}
			for k, v := range want {
				if strings.Contains(v, rolledBack) {
					t.Fatalf("%q holds the change of a write that failed: %.80q", k, v)
				}
			}
		})
	}
}

// diffContents lists the keys whose values differ between a and b.
func diffContents(a, b boltstore.Contents) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, fmt.Sprintf("%q: %.60q, want %.60q (present %v)", k, v, w, ok))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%q: missing, want %.60q", k, w))
		}
	}
	slices.Sort(out)
	return out
}
