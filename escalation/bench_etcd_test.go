package escalation_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// BenchmarkFirstPageEtcd is BenchmarkFirstPage for replicas on a real
// 3-member etcd cluster: a follower's record-only engine ingests the new
// group (quorum commit, first step planned in the same transaction), the
// leader's engine learns of it by watching etcd and sends the page, its
// writes fenced on an election key.
//
//	go test -run '^$' -bench FirstPageEtcd -benchtime 2000x -count 6 ./escalation/
func BenchmarkFirstPageEtcd(b *testing.B) {
	c := harness.StartEtcd(b, harness.EtcdConfig{})
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := fmt.Sprintf("/bench-%d/", time.Now().UnixNano())
	follower := etcdstore.New(cli, etcdstore.Options{Prefix: prefix, Writer: "follower"})
	elect, err := cli.Put(ctx, prefix+"election/leader", "leader")
	if err != nil {
		b.Fatal(err)
	}
	leader := follower.Fenced(prefix+"election/leader", elect.Header.Revision, "leader")
	rota := newRota(defaultPolicy())
	rec := &stampNotifier{first: map[uint64]time.Time{}}
	rcv := escalation.New(escalation.Config{Store: follower, Rota: func() escalation.Rota { return rota }, Notifiers: []notifiers.Notifier{rec}, RecordOnly: true})
	eng := escalation.New(escalation.Config{Store: leader, Rota: func() escalation.Rota { return rota }, Notifiers: []notifiers.Notifier{rec}})
	rev, err := leader.ScheduleRev(ctx, func(d escalation.Due) error { eng.Track(d); return nil })
	if err != nil {
		b.Fatal(err)
	}
	go leader.WatchWork(ctx, rev+1, "leader", eng.Track)
	go eng.Run(ctx)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		res, err := rcv.Ingest(ctx, firing(fmt.Sprint("new-", i), "a"))
		if err != nil || !res.Opened {
			b.Fatal(res, err)
		}
		for {
			rec.mu.Lock()
			at, ok := rec.first[res.Incident]
			rec.mu.Unlock()
			if ok {
				lat = append(lat, at.Sub(t0))
				break
			}
			runtime.Gosched()
		}
	}
	b.StopTimer()
	cancel()
	eng.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
