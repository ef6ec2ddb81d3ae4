package etcdstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/escalation/storetest"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
)

// TestEtcdStoreFaults runs, on a real one-member etcd, what a replica needs
// when leadership or an etcd member changes hands: walking a channel's state
// and retried writes that apply once.
func TestEtcdStoreFaults(t *testing.T) {
	c := harness.StartEtcd(t, harness.EtcdConfig{Members: 1})
	cli := func(t *testing.T) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	t.Run("SweepState", func(t *testing.T) { testSweepState(t, cli(t)) })
	t.Run("RetriedCommitAppliesOnce", func(t *testing.T) { testRetriedCommitAppliesOnce(t, cli(t), cli(t)) })
}

func testSweepState(t *testing.T, cli *clientv3.Client) {
	s := etcdstore.New(cli, etcdstore.Options{Prefix: "/sweep/", MaxTxnOps: 16}) // 5 keys a transaction: several batches
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var want []string
	for i := range 12 {
		k := fmt.Sprintf("k%02d", i)
		want = append(want, k)
		if err := s.PutState(ctx, "a", k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	// A bucket whose name the first's keys start with, and a key in it that
	// "a" + key would spell: neither is part of bucket "a".
	if err := s.PutState(ctx, "ab", "x", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "a\x00", "b", []byte("other")); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := s.SweepState(ctx, "a", func(key string, v []byte) bool {
		seen = append(seen, key)
		if string(v) != key {
			t.Errorf("key %s holds %q", key, v)
		}
		switch key {
		case "k03":
			// Written again between the walk and the deletion: kept.
			if err := s.PutState(ctx, "a", key, []byte("again")); err != nil {
				t.Fatal(err)
			}
			return false
		case "k01", "k05", "k06", "k07", "k08", "k09", "k10":
			return false
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("walked %v, want every key of the bucket in order %v", seen, want)
	}
	for _, tc := range []struct{ bucket, key, want string }{
		{"a", "k00", "k00"}, {"a", "k01", ""}, {"a", "k03", "again"}, {"a", "k05", ""}, {"a", "k10", ""}, {"a", "k11", "k11"},
		{"ab", "x", "other"}, {"a\x00", "b", "other"},
	} {
		v, err := s.GetState(ctx, tc.bucket, tc.key)
		if err != nil || string(v) != tc.want {
			t.Errorf("%q/%s after the sweep: %q %v, want %q", tc.bucket, tc.key, v, err, tc.want)
		}
	}
	if err := s.SweepState(ctx, "missing", func(string, []byte) bool { t.Error("a key in a missing bucket"); return true }); err != nil {
		t.Fatal(err)
	}
}

// commitThenFail commits every other transaction and then reports it failed,
// as when a member dies after its quorum committed a write but before it
// answered: the worst case for a retried write.
type commitThenFail struct {
	clientv3.KV
	mu    sync.Mutex
	n     int
	fails int
}

func (c *commitThenFail) Txn(ctx context.Context) clientv3.Txn {
	return &ctfTxn{Txn: c.KV.Txn(ctx), c: c}
}

type ctfTxn struct {
	clientv3.Txn
	c *commitThenFail
}

func (t *ctfTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *ctfTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *ctfTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }
func (t *ctfTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.c.n++
	if err == nil && t.c.n%2 == 1 {
		t.c.fails++
		return nil, status.Error(codes.Unavailable, "error reading from server: EOF")
	}
	return resp, err
}

// testRetriedCommitAppliesOnce ingests and updates through a client whose
// every first attempt commits and then fails: RetryKV sends it again, the
// compare-and-swap fails, the store reads its own write and decides again
// on it, and the incidents, the timeline and the counts end as on a
// faultless client.
func testRetriedCommitAppliesOnce(t *testing.T, flakyCli, cleanCli *clientv3.Client) {
	flaky := &commitThenFail{KV: flakyCli.KV}
	flakyCli.KV = etcdstore.RetryKV(flaky, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type outcome struct {
		ids      []uint64
		timeline []escalation.EventKind
		counts   map[escalation.State]int
	}
	run := func(s *etcdstore.Store) outcome {
		var o outcome
		for _, g := range []string{"g1", "g2"} {
			res, err := escalation.Ingest(ctx, s, storetest.Note(g, "firing"), time.Now(), storetest.NoDecide)
			if err != nil {
				t.Fatal(err)
			}
			o.ids = append(o.ids, res.Incident)
		}
		// A decision on the incident as read, as the engine's are: the
		// retry finds it made.
		if _, _, err := escalation.Update(ctx, s, o.ids[0], func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
			if inc.State == escalation.Acknowledged {
				return escalation.Change{}, escalation.ErrNoChange
			}
			var ch escalation.Change
			ch.Note(time.Now(), escalation.EvAcknowledged, "acknowledged by %s", "alice")
			inc.State = escalation.Acknowledged
			return ch, nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := escalation.Ingest(ctx, s, storetest.Note("g1", "resolved"), time.Now(), storetest.NoDecide); err != nil {
			t.Fatal(err)
		}
		tl, err := s.Timeline(ctx, o.ids[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range tl {
			o.timeline = append(o.timeline, e.Kind)
		}
		if o.counts, err = s.Counts(ctx); err != nil {
			t.Fatal(err)
		}
		return o
	}
	want := run(etcdstore.New(cleanCli, etcdstore.Options{Prefix: "/clean/"}))
	got := run(etcdstore.New(flakyCli, etcdstore.Options{Prefix: "/flaky/"}))
	if flaky.fails == 0 {
		t.Fatal("no commit failed: the test proves nothing")
	}
	if !slices.Equal(got.ids, want.ids) || !slices.Equal(got.timeline, want.timeline) || fmt.Sprint(got.counts) != fmt.Sprint(want.counts) {
		t.Fatalf("with %d commits retried after they applied: %+v, want as without faults %+v", flaky.fails, got, want)
	}
}
