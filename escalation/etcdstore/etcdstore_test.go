package etcdstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/escalation/storetest"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

var (
	cluster  *harness.EtcdCluster
	prefixes atomic.Int64
)

// TestEtcdStore starts one real 3-member etcd cluster for all of this
// package's tests; each works under its own key prefix.
func TestEtcdStore(t *testing.T) {
	cluster = harness.StartEtcd(t, harness.EtcdConfig{})
	t.Run("Contract", testContract)
	t.Run("FencedWritesStopWithLeadership", testFencedWritesStopWithLeadership)
	t.Run("WatchWorkSeesOthersWritesOnly", testWatchWorkSeesOthersWritesOnly)
	t.Run("MaxTxnOpsAboveTheClusters", testMaxTxnOpsAboveTheClusters)
	t.Run("UpdatesShareTransactions", testUpdatesShareTransactions)
	t.Run("SweepStateOneBucket", testSweepStateOneBucket)
	t.Run("TwoWritersLoseNothing", testTwoWritersLoseNothing)
}

// testTwoWritersLoseNothing: two stores on one prefix (two replicas, or a
// leader's fenced view and a follower's) updating one incident at once
// each read, decide and commit only if what they read is unchanged, so no
// update is lost and the outbox's sequence numbers stay distinct.
func testTwoWritersLoseNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := newStore(t, "a")
	b := etcdstore.New(a.Client(), etcdstore.Options{Prefix: a.Prefix(), Writer: "b"})
	if _, err := escalation.Ingest(ctx, a, storetest.Note("g", "firing"), now, storetest.NoDecide); err != nil {
		t.Fatal(err)
	}
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			if _, _, err := escalation.Update(ctx, s, 1, addPage(notifiers.Matrix)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	inc, err := a.Incident(ctx, 1)
	if err != nil || inc.Escalation.Generation != n {
		t.Fatalf("generation %d (%v) after %d updates from two writers: an update was lost", inc.Escalation.Generation, err, n)
	}
	pages, _ := a.Pages(ctx, 1)
	if len(pages) != n {
		t.Fatalf("%d pages after %d updates that each added one: one overwrote another", len(pages), n)
	}
}

func client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func newStore(t *testing.T, writer string) *etcdstore.Store {
	return etcdstore.New(client(t), etcdstore.Options{Prefix: fmt.Sprintf("/test/%d/", prefixes.Add(1)), Writer: writer,
		MaxTxnOps: harness.EtcdMaxTxnOps}) // the cluster allows it: batches as large as the benchmarks'

}

// testContract runs the Store contract every implementation keeps, against a
// real 3-member cluster.
func testContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) escalation.Store { return newStore(t, "w") })
}

var now = time.Date(2026, 11, 26, 23, 33, 0, 0, time.UTC)

func addPage(ch notifiers.Channel) escalation.UpdateFunc {
	return func(inc *escalation.Incident, _ []escalation.PageRecord) (escalation.Change, error) {
		inc.Escalation.Generation++
		return escalation.Change{Pages: []escalation.PageRecord{{Channel: ch, Status: escalation.PagePending, Recipient: notifiers.Recipient{PersonID: "alice"}}}}, nil
	}
}

// testFencedWritesStopWithLeadership shows the fence: a store fenced on an
// election key writes while the key stands, and once the key is gone (the
// lease expired) or held by someone else, every write is refused with
// ErrFenced and leaves no revision behind.
func testFencedWritesStopWithLeadership(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, "recorder")
	cli := s.Client()
	if _, err := escalation.Ingest(ctx, s, storetest.Note("g", "firing"), now, storetest.NoDecide); err != nil {
		t.Fatal(err)
	}
	key := s.Prefix() + "election/1"
	put, err := cli.Put(ctx, key, "replica-a")
	if err != nil {
		t.Fatal(err)
	}
	leader := s.Fenced(key, put.Header.Revision, "replica-a")
	if _, _, err := escalation.Update(ctx, leader, 1, addPage("matrix")); err != nil {
		t.Fatalf("write while leading: %v", err)
	}
	// Leadership passes: the key is deleted and created again by another.
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, key, "replica-b"); err != nil {
		t.Fatal(err)
	}
	before, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	writes := map[string]func() error{
		"update": func() error { _, _, err := escalation.Update(ctx, leader, 1, addPage("phone")); return err },
		"ingest": func() error {
			_, err := escalation.Ingest(ctx, leader, storetest.Note("h", "firing"), now, storetest.NoDecide)
			return err
		},
		"state": func() error { return leader.PutState(ctx, "matrix", "next_batch", []byte("s1")) },
	}
	for name, w := range writes {
		if err := w(); !errors.Is(err, etcdstore.ErrFenced) {
			t.Errorf("%s by a deposed leader: %v, want ErrFenced", name, err)
		}
	}
	after, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Fatalf("the deposed leader's writes moved the revision %d → %d", before.Header.Revision, after.Header.Revision)
	}
	pages, _ := s.Pages(ctx, 1)
	if len(pages) != 1 {
		t.Fatalf("%d pages, want only the one written while leading", len(pages))
	}
}

// testWatchWorkSeesOthersWritesOnly shows how a leader learns of new work:
// after recovering from ScheduleRev it watches from the next revision and is
// told of incidents and pages other replicas write, not of its own writes.
func testWatchWorkSeesOthersWritesOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recorder := newStore(t, "recorder")
	if _, err := escalation.Ingest(ctx, recorder, storetest.Note("before", "firing"), now, storetest.NoDecide); err != nil {
		t.Fatal(err)
	}
	leader := etcdstore.New(recorder.Client(), etcdstore.Options{Prefix: recorder.Prefix(), Writer: "leader"})
	var recovered []uint64
	rev, err := leader.ScheduleRev(ctx, func(d escalation.Due) error { recovered = append(recovered, d.Incident); return nil })
	if err != nil || len(recovered) != 1 || recovered[0] != 1 {
		t.Fatalf("recovered %v %v", recovered, err)
	}
	got := make(chan escalation.Due, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- leader.WatchWork(wctx, rev+1, "leader", func(d escalation.Due) { got <- d }) }()

	if _, _, err := escalation.Update(ctx, leader, 1, addPage("matrix")); err != nil { // own write: not reported
		t.Fatal(err)
	}
	res, err := escalation.Ingest(ctx, recorder, storetest.Note("after", "firing"), now, func(inc *escalation.Incident, _ []escalation.PageRecord, _ []escalation.Event) (escalation.Change, error) {
		return addPage("phone")(inc, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d.Incident != res.Incident || len(d.Pages) != 1 || d.Pages[0].Channel != "phone" || d.State != escalation.Open {
			t.Fatalf("watched %+v, want incident %d with its new phone page", d, res.Incident)
		}
	case <-ctx.Done():
		t.Fatal("the watch did not report the other replica's write")
	}
	stop()
	<-done
	select {
	case d := <-got:
		t.Fatalf("the watch also reported %+v (the leader's own write?)", d)
	default:
	}
}

// testMaxTxnOpsAboveTheClusters: a store told the cluster allows more
// operations per transaction than it does (--etcd-max-txn-ops above the
// members' --max-txn-ops) still takes every webhook of a burst, says so in
// its log, and falls back to etcd's default.
func testMaxTxnOpsAboveTheClusters(t *testing.T) {
	small := harness.StartEtcd(t, harness.EtcdConfig{Members: 1, MaxTxnOps: etcdstore.DefaultMaxTxnOps})
	cli, err := clientv3.New(clientv3.Config{Endpoints: small.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var logs bytes.Buffer
	var mu sync.Mutex
	s := etcdstore.New(cli, etcdstore.Options{Prefix: "/burst/", MaxTxnOps: 1024,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A first call alone, then a burst that queues behind it and is
	// committed together: far more than 128 operations.
	storetest.IngestBurst(t, s, ctx, 200, "burst-")
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "refused a transaction as too large") {
		t.Errorf("no log of the refused transaction; logs:\n%s", logs.String())
	}
}

// lockedWriter serialises a test's log writes.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// testUpdatesShareTransactions: concurrent updates of different incidents (a
// leader recording many pages' results) are committed together, not one
// quorum commit each.
func testUpdatesShareTransactions(t *testing.T) {
	var commits atomic.Int64
	s := etcdstore.New(client(t), etcdstore.Options{Prefix: fmt.Sprintf("/test/%d/", prefixes.Add(1)),
		MaxTxnOps: harness.EtcdMaxTxnOps, OnCommit: func(time.Duration) { commits.Add(1) }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 64
	for i := range n {
		if _, err := escalation.Ingest(ctx, s, storetest.Note(fmt.Sprint("g", i), "firing"), now, storetest.NoDecide); err != nil {
			t.Fatal(err)
		}
	}
	commits.Store(0)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, _, err := escalation.Update(ctx, s, uint64(i+1), addPage(notifiers.Matrix)); err != nil {
				t.Error(err)
			}
		})
	}
	// One more, writing one state key twice: etcd refuses two writes of a
	// key in one transaction, so the store keeps the last.
	wg.Go(func() {
		_, _, err := escalation.Update(ctx, s, 1, func(*escalation.Incident, []escalation.PageRecord) (escalation.Change, error) {
			return escalation.Change{State: []notifiers.StateWrite{{Bucket: "b", Key: "k", Value: []byte("v1")}, {Bucket: "b", Key: "k", Value: []byte("v2")}}}, nil
		})
		if err != nil {
			t.Errorf("an update writing one key twice: %v", err)
		}
	})
	wg.Wait()
	if got := commits.Load(); got >= n/2 {
		t.Errorf("%d commits for %d concurrent updates of different incidents: they are not shared", got, n)
	}
	t.Logf("%d commits for %d updates", commits.Load(), n)
	if v, err := s.GetState(ctx, "b", "k"); err != nil || string(v) != "v2" {
		t.Errorf("state written twice in one update = %q %v, want the last, v2", v, err)
	}
}
