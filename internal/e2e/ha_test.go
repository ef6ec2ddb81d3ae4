package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
)

// haTTL is the leader lease in these tests.
const haTTL = 2 * time.Second

// clusterJSON is GET /api/v1/cluster.
type clusterJSON struct {
	Replica  string   `json:"replica"`
	Leading  bool     `json:"leading"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"`
}

// haWorld is 3 klaxon serve replicas on one 3-member etcd cluster, paging
// through the fake PagerDuty and Twilio.
type haWorld struct {
	etcd     *harness.EtcdCluster
	prefix   string
	pd       *fakepagerduty.Server
	tw       *faketwilio.Server
	replicas []*harness.Klaxon
}

func startHA(t testing.TB, etcd *harness.EtcdCluster, prefix, steps string) *haWorld {
	t.Helper()
	return startHAWith(t, etcd, prefix, steps, nil, nil)
}

// startHAWith is startHA with more environment and flags for every replica.
func startHAWith(t testing.TB, etcd *harness.EtcdCluster, prefix, steps string, moreEnv, moreArgs []string) *haWorld {
	t.Helper()
	w := &haWorld{etcd: etcd, prefix: prefix, pd: fakepagerduty.New(t), tw: faketwilio.New(t, twilioToken)}
	rota := writeRota(t, "example.org", steps)
	// Every replica has the same tokens, as Alertmanager and the CLI need.
	webhookTok, apiTok := fmt.Sprintf("wh-%d", time.Now().UnixNano()), fmt.Sprintf("api-%d", time.Now().UnixNano())
	for i := range 3 {
		addr := harness.FreeAddr(t)
		env := append(pagerdutyEnv(w.pd, ""),
			"KLAXON_TWILIO_ACCOUNT_SID="+w.tw.AccountSID(), "KLAXON_TWILIO_AUTH_TOKEN="+twilioToken,
			"KLAXON_TWILIO_FROM="+faketwilio.DefaultFrom, "KLAXON_TWILIO_API_URL="+w.tw.URL(), "KLAXON_PUBLIC_URL=http://"+addr,
			"KLAXON_ETCD_ENDPOINTS="+strings.Join(etcd.Endpoints(), ","), "KLAXON_ETCD_PREFIX="+prefix)
		env = append(env, moreEnv...)
		args := append([]string{"--store", "etcd", "--leader-ttl", haTTL.String(), "--replica-name", fmt.Sprint("r", i)}, moreArgs...)
		w.replicas = append(w.replicas, harness.StartKlaxon(t, harness.KlaxonConfig{Listen: addr, Env: env, Rota: rota, WebhookToken: webhookTok, APIToken: apiTok,
			Args: args}))
	}
	return w
}

func cluster(k *harness.Klaxon) (clusterJSON, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var c clusterJSON
	code, err := k.Do(ctx, "GET", "/api/v1/cluster", nil, &c)
	if err == nil && code != 200 {
		err = fmt.Errorf("status %d", code)
	}
	return c, err
}

// leader waits until one of the replicas (but not any of except) leads and returns its index.
func (w *haWorld) leader(t testing.TB, within time.Duration, except ...int) int {
	t.Helper()
	found := -1
	harness.Eventually(t, within, func() (bool, string) {
		var seen []string
		for i, k := range w.replicas {
			if containsInt(except, i) {
				continue
			}
			c, err := cluster(k)
			if err != nil {
				seen = append(seen, fmt.Sprintf("r%d: %v", i, err))
				continue
			}
			if c.Leading {
				found = i
				return true, ""
			}
			seen = append(seen, fmt.Sprintf("r%d follows %q", i, c.Leader))
		}
		return false, strings.Join(seen, "; ")
	})
	return found
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestHA runs the failover scenarios on one real 3-member etcd cluster, each
// with its own 3 klaxon serve replicas under its own key prefix.
func TestHA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd and klaxon serve as subprocesses")
	}
	etcd := harness.StartEtcd(t, harness.EtcdConfig{})
	t.Run("KillLeaderMidEscalation", func(t *testing.T) { testKillLeader(t, etcd) })
	t.Run("PausedLeaderWritesAndSendsNothing", func(t *testing.T) { testPausedLeader(t, etcd) })
	t.Run("DeposedLeaderIsFenced", func(t *testing.T) { testDeposedLeader(t, etcd) })
	t.Run("KillEtcdMemberDuringBurst", func(t *testing.T) { testKillEtcdMember(t, etcd) })
	t.Run("AllEtcdDown", func(t *testing.T) { testAllEtcdDown(t, etcd) })
}

// testKillLeader kills the leader with SIGKILL while incidents escalate
// through PagerDuty, SMS and a phone call: another replica takes over within
// the lease TTL plus a second, every step still happens in order, and each
// incident gets at most 1 + failovers calls and texts.
func testKillLeader(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHA(t, etcd, "/kill-leader/", `
      - {notify: primary, via: pagerduty, wait: 2s}
      - {notify: primary, via: sms, wait: 2s}
      - {notify: primary, via: phone, wait: 2s}`)
	lead := w.leader(t, 30*time.Second)
	follower := (lead + 1) % 3
	const incidents = 3
	for i := range incidents {
		fire(t, w.replicas[follower], fmt.Sprint("ha-", i)) // any replica records
	}
	alice := w.tw.Phone("+15555550101")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return len(w.pd.Events()) >= 1, "no PagerDuty event yet"
	})
	w.replicas[lead].Kill()
	killed := time.Now()
	next := w.leader(t, 30*time.Second, lead)
	took := time.Since(killed)
	t.Logf("leader r%d killed; r%d leads after %s", lead, next, took.Round(time.Millisecond))
	if took > haTTL+time.Second {
		t.Errorf("takeover took %s, want within the lease TTL %s + 1s", took, haTTL)
	}
	k := w.replicas[next]
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for id := uint64(1); id <= incidents; id++ {
			inc := getIncident(t, k, id)
			if !inc.Escalation.Exhausted {
				return false, fmt.Sprintf("incident %d still escalating: %s", id, textOf(inc))
			}
		}
		return true, ""
	})
	for id := uint64(1); id <= incidents; id++ {
		text := textOf(getIncident(t, k, id))
		last := -1
		for _, step := range []string{"step 1 of 3", "step 2 of 3", "step 3 of 3", "escalation exhausted"} {
			i := strings.Index(text, step)
			if i < 0 || i < last {
				t.Fatalf("incident %d: %q missing or out of order:\n%s", id, step, text)
			}
			last = i
		}
	}
	// Per incident: at least one text and call, at most 1 + failovers.
	const failovers = 1
	texts, calls := map[string]int{}, map[string]int{}
	for range alice.PendingSMS() {
		sms := alice.ExpectSMS(t)
		if m := smsIncident.FindStringSubmatch(sms.Body); m != nil {
			texts[m[1]]++
		}
	}
	for range alice.PendingCalls() {
		c := alice.ExpectCall(t)
		if u, err := url.Parse(c.Params.Get("Url")); err == nil {
			calls[u.Query().Get("incident")]++ // the call's TwiML URL names its incident
		}
	}
	for id := 1; id <= incidents; id++ {
		tn, cn := texts[fmt.Sprint(id)], calls[fmt.Sprint(id)]
		if tn < 1 || tn > 1+failovers || cn < 1 || cn > 1+failovers {
			t.Errorf("incident %d: alice got %d texts and %d calls across %d failover: want each in [1, %d] (texts %v, calls %v)",
				id, tn, cn, failovers, 1+failovers, texts, calls)
		}
	}
}

var smsIncident = regexp.MustCompile(`^Klaxon #(\d+)\b`)

// testPausedLeader freezes the leader with SIGSTOP past its lease while an
// incident escalates, lets another replica lead and page, acknowledges, then
// lets the old leader run again: it writes nothing (the etcd revision does
// not move) and sends nothing (the fake's counts do not move), and says it
// stepped down.
func testPausedLeader(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHA(t, etcd, "/paused-leader/", `
      - {notify: primary, via: sms, wait: 1s}
      - {notify: primary, via: phone, wait: 1s}`)
	lead := w.leader(t, 30*time.Second)
	old := w.replicas[lead]
	fire(t, w.replicas[(lead+1)%3], "paused")
	alice := w.tw.Phone("+15555550101")
	harness.Eventually(t, 30*time.Second, func() (bool, string) { return alice.PendingSMS() >= 1, "no text yet" })
	old.Pause()
	paused := true
	defer func() {
		if paused {
			old.Resume()
		}
	}()
	next := w.leader(t, 30*time.Second, lead)
	k := w.replicas[next]
	// The new leader carries the escalation on: the phone step, and the
	// repeats after it.
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return alice.PendingCalls() >= 1, "the new leader has not called"
	})
	if code, err := k.Do(context.Background(), "POST", "/api/v1/incidents/1/ack", nil, nil); err != nil || code != 200 {
		t.Fatalf("ack: %d %v", code, err)
	}
	waitState(t, k, 1, "acknowledged")
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// Quiet: nobody has anything left to do (the ack's updates went out).
	var rev int64
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		r1, err := cli.Get(context.Background(), w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return false, err.Error()
		}
		inc := getIncident(t, k, 1)
		if len(inc.Timeline) == 0 || !pagesSettled(t, k) {
			return false, "pages still pending"
		}
		r2, err := cli.Get(context.Background(), w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return false, err.Error()
		}
		rev = r2.Header.Revision
		return r1.Header.Revision == r2.Header.Revision, "store still moving"
	})
	sms, calls := alice.PendingSMS(), alice.PendingCalls()
	old.Resume()
	paused = false
	harness.Eventually(t, 15*time.Second, func() (bool, string) {
		return strings.Contains(old.Logs(), "leader lease lost") || strings.Contains(old.Logs(), "leadership ended"),
			"the old leader did not notice it lost the lease"
	})
	// Give the old leader's stale timers two leases' time to fire, watching
	// every write under the prefix. Only candidacy keys may appear (the old
	// replica campaigns again, as a follower), and the view of its checks the
	// new leader records for the other replicas, which names who wrote it.
	wctx, wcancel := context.WithTimeout(context.Background(), 2*haTTL)
	defer wcancel()
	view, viewTime := w.prefix+"state/\x00\x08selftestview", w.prefix+"statet/\x00\x08selftestview"
	viewRevs := map[int64]bool{} // the new leader's view writes (with their write time)
	for resp := range cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		for _, ev := range resp.Events {
			var v struct {
				RecordedBy string `json:"recorded_by"`
			}
			if string(ev.Kv.Key) == view && json.Unmarshal(ev.Kv.Value, &v) == nil && v.RecordedBy != fmt.Sprint("r", lead) {
				viewRevs[ev.Kv.ModRevision] = true
				continue
			}
			if string(ev.Kv.Key) == viewTime && viewRevs[ev.Kv.ModRevision] {
				continue
			}
			if key := string(ev.Kv.Key); !strings.HasPrefix(key, w.prefix+"election/") {
				t.Fatalf("after the old leader resumed, %s %q was written at revision %d", ev.Type, key, ev.Kv.ModRevision)
			}
		}
	}
	if s, c := alice.PendingSMS(), alice.PendingCalls(); s != sms || c != calls {
		t.Fatalf("after the old leader resumed alice got %d texts and %d calls, had %d and %d", s, c, sms, calls)
	}
	if c, err := cluster(old); err != nil || c.Leading {
		t.Fatalf("the old leader still claims to lead: %+v %v", c, err)
	}
}

// testDeposedLeader takes leadership away from a leader that does not know
// it (its election key is deleted while its lease and session live on, as
// when it is cut off from etcd's watch but not its lease): it goes on
// escalating on its own timers, and the fence and the send gate must stop
// every one of its writes and texts while the new leader pages. Writes are
// told apart by the writer tag in the schedule index, texts by the status
// callback URL, which names the replica that sent them.
func testDeposedLeader(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHA(t, etcd, "/deposed-leader/", `
      - {notify: primary, via: sms, wait: 1s}
    repeat: 100`)
	lead := w.leader(t, 30*time.Second)
	old := w.replicas[lead]
	fire(t, w.replicas[(lead+1)%3], "deposed")
	alice := w.tw.Phone("+15555550101")
	harness.Eventually(t, 30*time.Second, func() (bool, string) { return alice.PendingSMS() >= 1, "no text yet" })
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys, err := cli.Get(ctx, w.prefix+"election/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil || len(keys.Kvs) == 0 || string(keys.Kvs[0].Value) != fmt.Sprint("r", lead) {
		t.Fatalf("election keys %v %v: want r%d first", keys, err, lead)
	}
	del, err := cli.Delete(ctx, string(keys.Kvs[0].Key))
	if err != nil {
		t.Fatal(err)
	}
	oldWriter := fmt.Sprintf("leader:r%d:", lead)
	for range alice.PendingSMS() {
		alice.ExpectSMS(t)
	}
	next := w.leader(t, 30*time.Second, lead)
	// Watch three seconds of the store and the phone while both believe they lead.
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	writes := 0
	for resp := range cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(del.Header.Revision+1)) {
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			if !strings.HasPrefix(key, w.prefix+"open/") && !strings.HasPrefix(key, w.prefix+"pend/") {
				continue
			}
			writes++
			v := string(ev.Kv.Value)
			if writer := v[strings.LastIndexByte(v, 0)+1:]; strings.HasPrefix(writer, oldWriter) {
				t.Fatalf("the deposed leader r%d wrote %q at revision %d", lead, key, ev.Kv.ModRevision)
			}
		}
	}
	if writes == 0 {
		t.Fatalf("the new leader r%d wrote nothing in 3s: the test saw no escalation", next)
	}
	texts := 0
	for range alice.PendingSMS() {
		sms := alice.ExpectSMS(t)
		texts++
		if strings.HasPrefix(sms.StatusCallback, old.URL()) {
			t.Fatalf("the deposed leader r%d sent a text: %q", lead, sms.Body)
		}
	}
	if texts == 0 {
		t.Fatal("nobody texted alice in 3s")
	}
	// It did try: its own timers kept firing, and the fence refused them.
	if logs := old.Logs(); !strings.Contains(logs, "election fence") && !strings.Contains(logs, "not the leader") {
		t.Fatalf("the deposed leader r%d never tried to write or send (the test proves nothing):\n%s", lead, logs)
	}
	t.Logf("deposed r%d refused; r%d made %d schedule writes and sent %d texts", lead, next, writes, texts)
}

// pagesSettled reports whether incident 1 has no unfinished page.
func pagesSettled(t *testing.T, k *harness.Klaxon) bool {
	var v struct {
		Pages []struct {
			Status string `json:"status"`
		} `json:"pages"`
	}
	if code, err := k.Do(context.Background(), "GET", "/api/v1/incidents/1", nil, &v); err != nil || code != 200 {
		return false
	}
	for _, p := range v.Pages {
		switch p.Status {
		case "pending", "failed-temporary", "deferred":
			return false
		}
	}
	return true
}

// testKillEtcdMember kills one etcd member during a burst of webhooks sent to
// every replica: every webhook that got a 200 is in the store, and Klaxon
// keeps serving.
func testKillEtcdMember(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHA(t, etcd, "/kill-member/", `
      - {notify: primary, via: sms, wait: 1m}`)
	w.leader(t, 30*time.Second)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for s := range 12 {
		wg.Go(func() {
			k := w.replicas[s%3]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				group := fmt.Sprintf("burst-%d-%d", s, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				code, err := k.Do(ctx, "POST", "/webhook/alertmanager", webhookBody(group), nil)
				cancel()
				if err == nil && code == http.StatusOK {
					mu.Lock()
					acked = append(acked, group)
					mu.Unlock()
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	harness.Eventually(t, 30*time.Second, func() (bool, string) { return count() >= 50, fmt.Sprint(count(), " acked") })
	etcd.Members[0].Kill()
	before := count()
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return count() >= before+100, fmt.Sprintf("%d acked since the member died", count()-before)
	})
	close(stop)
	wg.Wait()
	etcd.Members[0].Restart(t)
	groups := map[string]bool{}
	for id := uint64(1); ; id++ {
		var inc incidentJSON
		code, err := w.replicas[1].Do(context.Background(), "GET", fmt.Sprintf("/api/v1/incidents/%d", id), nil, &inc)
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusNotFound {
			break
		}
		groups[inc.GroupKey] = true
	}
	for _, g := range acked {
		if !groups[g] {
			t.Fatalf("webhook %s got a 200 but is not in the store", g)
		}
	}
	t.Logf("%d webhooks acknowledged (%d after the member died), all stored", len(acked), len(acked)-before)
}

// testAllEtcdDown stops every etcd member: webhooks get 503 (Alertmanager
// retries), /readyz fails, the leader steps down; when etcd returns,
// everything resumes and nothing that got a 200 is lost.
func testAllEtcdDown(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHA(t, etcd, "/all-down/", `
      - {notify: primary, via: sms, wait: 1m}`)
	lead := w.leader(t, 30*time.Second)
	k := w.replicas[(lead+1)%3]
	fire(t, k, "before-outage")
	alice := w.tw.Phone("+15555550101")
	harness.Eventually(t, 30*time.Second, func() (bool, string) { return alice.PendingSMS() >= 1, "no text yet" })
	etcd.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	code, err := k.Do(ctx, "POST", "/webhook/alertmanager", webhookBody("during-outage"), nil)
	cancel()
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("webhook with etcd down: %d %v, want 503", code, err)
	}
	for i, r := range w.replicas {
		code, _ := r.Do(context.Background(), "GET", "/readyz", nil, nil)
		if code != http.StatusServiceUnavailable {
			t.Errorf("replica %d /readyz with etcd down: %d, want 503", i, code)
		}
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		c, err := cluster(w.replicas[lead])
		return err != nil || !c.Leading, "the leader has not stepped down"
	})
	etcd.Restart()
	w.leader(t, 60*time.Second)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		code, _ := k.Do(context.Background(), "GET", "/readyz", nil, nil)
		return code == http.StatusOK, fmt.Sprint("/readyz ", code)
	})
	fire(t, k, "after-outage")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		return alice.PendingSMS() >= 2, fmt.Sprint(alice.PendingSMS(), " texts: the incident after the outage was not paged")
	})
	inc := getIncident(t, k, 1)
	if inc.GroupKey != "before-outage" {
		t.Fatalf("incident 1 is %q after the outage", inc.GroupKey)
	}
	if inc2 := getIncident(t, k, 2); inc2.GroupKey != "after-outage" {
		t.Fatalf("incident 2 is %q, want after-outage (the 503'd webhook must not be stored)", inc2.GroupKey)
	}
}

// BenchmarkFailover kills the leader b.N times while an incident pages Alice
// by SMS every second, and reports the time from the kill to the next text
// (p50, p90, max), with a lease TTL of 2s. The killed replica is started
// again before the next round.
//
//	go test -run '^$' -bench Failover -benchtime 20x ./internal/e2e/
func BenchmarkFailover(b *testing.B) {
	etcd := harness.StartEtcd(b, harness.EtcdConfig{})
	w := startHA(b, etcd, "/failover-bench/", `
      - {notify: primary, via: sms, wait: 1s}
    repeat: 100`)
	w.leader(b, 30*time.Second)
	fire(b, w.replicas[0], "failover")
	alice := w.tw.Phone("+15555550101")
	harness.Eventually(b, 30*time.Second, func() (bool, string) { return alice.PendingSMS() >= 1, "no text yet" })
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		lead := w.leader(b, 30*time.Second)
		w.replicas[lead].Kill()
		killed := time.Now()
		before := alice.PendingSMS()
		harness.Eventually(b, 30*time.Second, func() (bool, string) {
			return alice.PendingSMS() > before, fmt.Sprintf("round %d: no text since the leader died; incident: %s", i, textOf(getIncident(b, w.replicas[(lead+1)%3], 1)))
		})
		took = append(took, time.Since(killed))
		b.StopTimer()
		w.replicas[lead].Restart()
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(took[len(took)/2].Seconds(), "p50-s")
	b.ReportMetric(took[len(took)*9/10].Seconds(), "p90-s")
	b.ReportMetric(took[len(took)-1].Seconds(), "max-s")
}
