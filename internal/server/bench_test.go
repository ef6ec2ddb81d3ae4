package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	"github.com/klaxon-oncall/klaxon/internal/gctune"
	"github.com/klaxon-oncall/klaxon/internal/loadgen"
	"github.com/klaxon-oncall/klaxon/internal/metrics"
	"github.com/klaxon-oncall/klaxon/internal/server"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// BenchmarkDurableIngest measures webhooks through a real listener into a
// bbolt file with fsync on every commit, from 64 concurrent senders posting
// distinct groups (one alert each), with the example rota.yaml in force, so
// every new incident plans its first page in the ingest transaction and the
// page is handed to a channel and recorded as sent, as a user's Klaxon would.
// It reports alerts/s and the p50/p99 of the time from sending a webhook to
// its 200; the CPU the process spent per alert (Klaxon and the senders);
// and pages-behind-s, how long after the last 200 the last page was sent and
// recorded (near 0 when the pages keep up with the webhooks); and, on bbolt,
// the database pages written per alert, fsynced with their commits. The senders
// are loadgen connections, which cost a fraction of net/http's client.
//
//	go test -run '^$' -bench DurableIngest -benchtime 20000x -count 6 ./internal/server/
func BenchmarkDurableIngest(b *testing.B) { benchDurableIngest(b, ingestOptions{}) }

// BenchmarkDurableIngestHashedGroups is BenchmarkDurableIngest with group
// keys as Alertmanager writes them when every alert is its own group
// (group_by: ['...']): {}:{alertname="Bench", instance="host-<hash>"}, each
// new group's record landing on a random page of the groups bucket instead of
// beside the previous one's, as the near-sorted "bench-N" keys do.
//
//	go test -run '^$' -bench DurableIngestHashedGroups -benchtime 20000x -count 6 ./internal/server/
func BenchmarkDurableIngestHashedGroups(b *testing.B) {
	benchDurableIngest(b, ingestOptions{hashedGroups: true})
}

func benchDurableIngest(b *testing.B, o ingestOptions) {
	st, err := boltstore.Open(b.TempDir(), boltstore.Options{}) // fsync on, as klaxon serve opens it
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s0 := st.DB().Stats()
	benchIngest(b, st, o)
	s1 := st.DB().Stats()
	d := s1.Sub(&s0)
	b.ReportMetric(float64(d.TxStats.GetWrite())/float64(b.N), "page-writes/alert")
}

// BenchmarkDurableIngestEtcd is BenchmarkDurableIngest on a real 3-member etcd
// cluster on this machine (each member fsyncs its WAL; a 200 means a quorum
// committed), with the same policy and channels as the bbolt benchmark.
//
//	go test -run '^$' -bench DurableIngestEtcd -benchtime 20000x -count 6 ./internal/server/
func BenchmarkDurableIngestEtcd(b *testing.B) {
	c := harness.StartEtcd(b, harness.EtcdConfig{})
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	// leader: the engine plans, sends and records every first page, as the
	// leading replica does; replica: it only records (a follower's answer to
	// Alertmanager), the leader's work left to it.
	for _, mode := range []string{"leader", "replica"} {
		b.Run(mode, func(b *testing.B) {
			st := etcdstore.New(cli, etcdstore.Options{Prefix: fmt.Sprintf("/bench-%d/", time.Now().UnixNano()), MaxTxnOps: harness.EtcdMaxTxnOps})
			benchIngest(b, st, ingestOptions{recordOnly: mode == "replica"})
		})
	}
}

// ingestOptions varies benchIngest.
type ingestOptions struct {
	// recordOnly: the engine records webhooks and plans nothing (a follower).
	recordOnly bool
	// hashedGroups: group keys in no order (see BenchmarkDurableIngestHashedGroups).
	hashedGroups bool
}

func benchIngest(b *testing.B, st escalation.Store, o ingestOptions) {
	only := o.recordOnly
	r, _, err := rota.Load("../../rota.yaml")
	if err != nil {
		b.Fatal(err)
	}
	er := rota.ForEngine(r)
	chans := []notifiers.Notifier{}
	for _, ch := range notifiers.Channels {
		chans = append(chans, &countingChannel{ch: ch})
	}
	eng := escalation.New(escalation.Config{Store: st, Rota: func() escalation.Rota { return er }, Notifiers: chans,
		RecordOnly: only})
	s := server.New(server.Config{Engine: eng, Store: st, Metrics: metrics.New(nil), WebhookToken: webhookToken,
		Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(s)
	defer hs.Close()
	_, restore := gctune.Apply(80 << 20) // as klaxon serve's default --memory-limit does
	defer restore()
	const senders = 64
	conns := make([]*loadgen.Conn, senders)
	for w := range conns {
		c, err := loadgen.Dial(hs.Listener.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[w] = c
	}
	var next atomic.Int64
	lat := make([][]time.Duration, senders)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for w := range senders {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				group := fmt.Appendf(nil, "bench-%d", i)
				if o.hashedGroups {
					group = fmt.Appendf(group[:0], `{}:{alertname=\"Bench\", instance=\"host-%016x\"}`, uint64(i)*0x9E3779B97F4A7C15)
				}
				body := fmt.Appendf(nil, `{"version":"4","groupKey":"%s","status":"firing","receiver":"klaxon",
"commonLabels":{"alertname":"Bench","n":"%d"},"alerts":[{"status":"firing","labels":{"alertname":"Bench","n":"%d"},
"startsAt":"2026-11-26T23:33:00Z","fingerprint":"fp%d"}]}`, group, i, i, i)
				t0 := time.Now()
				code, _, err := conns[w].Post("/webhook/alertmanager", webhookToken, body)
				if err != nil {
					b.Error(err)
					return
				}
				if code != 200 {
					b.Errorf("status %d", code)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	eng.Wait()
	behind := time.Since(start) - elapsed
	pages := 0
	for _, n := range chans {
		pages += int(n.(*countingChannel).pages.Load())
	}
	if pages < b.N && !only {
		b.Fatalf("%d pages for %d new incidents: the policy planned no first step", pages, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "alerts/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-us/alert")
	if !only {
		b.ReportMetric(behind.Seconds(), "pages-behind-s")
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingChannel stands in for a provider that accepts every page at once:
// it counts them and keeps nothing, so the benchmark's heap (and the
// collector's work) is Klaxon's, not a record of every page sent.
type countingChannel struct {
	ch    notifiers.Channel
	pages atomic.Int64
}

func (c *countingChannel) Channel() notifiers.Channel { return c.ch }

func (c *countingChannel) Notify(_ context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	if p.Kind == notifiers.KindPage {
		c.pages.Add(1)
	}
	return notifiers.Receipt{ProviderID: p.ID}, nil
}
