package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
)

// TestHAFaults checks what operators and Alertmanager see of a cluster
// during faults, on one real 3-member etcd cluster: each scenario has its own
// 3 klaxon serve replicas under its own key prefix.
func TestHAFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd and klaxon serve as subprocesses")
	}
	etcd := harness.StartEtcd(t, harness.EtcdConfig{})
	t.Run("FollowersShowLeaderChannels", func(t *testing.T) { testFollowersShowLeaderChannels(t, etcd) })
	t.Run("PagerDutyPollingAfterFailover", func(t *testing.T) { testPagerDutyPollingAfterFailover(t, etcd) })
	t.Run("RaftLeaderKillInvisible", func(t *testing.T) { testRaftLeaderKillInvisible(t, etcd) })
	t.Run("ReadsAnswerWhileEtcdDown", func(t *testing.T) { testReadsAnswerWhileEtcdDown(t, etcd) })
}

// channelsJSON is GET /api/v1/channels.
type channelsJSON struct {
	Channels []struct {
		Channel string `json:"channel"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
	} `json:"channels"`
	RecordedBy string    `json:"recorded_by"`
	RecordedAt time.Time `json:"recorded_at"`
	Age        *float64  `json:"age_seconds"`
}

func (c channelsJSON) channel(name string) (status, reason string) {
	for _, ch := range c.Channels {
		if ch.Channel == name {
			return ch.Status, ch.Reason
		}
	}
	return "", ""
}

// testFollowersShowLeaderChannels suspends the Twilio account: once the
// leader finds the phone down, every follower says so too, naming the
// leader and the verdict's age, and none says "not checked yet" once the
// leader has checked.
func testFollowersShowLeaderChannels(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHAWith(t, etcd, "/followers-view/", `
      - {notify: primary, via: sms, wait: 1m}`, nil, []string{"--selftest-interval", "1s"})
	lead := w.leader(t, 30*time.Second)
	leader := fmt.Sprint("r", lead)
	channels := func(k *harness.Klaxon) (channelsJSON, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var c channelsJSON
		code, err := k.Do(ctx, "GET", "/api/v1/channels", nil, &c)
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return c, err
	}
	// The leader's first round: every replica shows its verdicts.
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		for i, k := range w.replicas {
			c, err := channels(k)
			if err != nil {
				return false, fmt.Sprintf("r%d: %v", i, err)
			}
			if st, reason := c.channel("phone"); st != "up" || strings.Contains(reason, "not checked yet") {
				return false, fmt.Sprintf("r%d: phone %s %q before the suspension", i, st, reason)
			}
		}
		return true, ""
	})
	w.tw.SetAccountStatus("suspended")
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		c, err := channels(w.replicas[lead])
		if err != nil {
			return false, err.Error()
		}
		st, reason := c.channel("phone")
		return st == "down", fmt.Sprintf("the leader says phone %s %q", st, reason)
	})
	for i, k := range w.replicas {
		if i == lead {
			continue
		}
		// Within the follower's short cache of the leader's record.
		harness.Eventually(t, 5*time.Second, func() (bool, string) {
			c, err := channels(k)
			if err != nil {
				return false, err.Error()
			}
			st, reason := c.channel("phone")
			if st != "down" || !strings.Contains(reason, "suspended") {
				return false, fmt.Sprintf("follower r%d says phone %s %q while the leader says down", i, st, reason)
			}
			if c.RecordedBy != leader || c.RecordedAt.IsZero() || c.Age == nil || *c.Age < 0 || *c.Age > 30 {
				return false, fmt.Sprintf("follower r%d: recorded_by %q at %s, age %v: want %s, recently", i, c.RecordedBy, c.RecordedAt, c.Age, leader)
			}
			return true, ""
		})
	}
	// klaxon status pointed at a follower tells the same.
	out, err := klaxonStatus(t, w.replicas[(lead+1)%3], 10*time.Second)
	if !strings.Contains(out, "phone") || !strings.Contains(out, "down") || !strings.Contains(out, "recorded by "+leader) {
		t.Fatalf("klaxon status on a follower (%v):\n%s", err, out)
	}
}

// klaxonStatus runs `klaxon status` against k, killed after within.
func klaxonStatus(t *testing.T, k *harness.Klaxon, within time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.KlaxonBinary(t), "status", "--server", k.URL())
	cmd.Env = append(cmd.Environ(), "KLAXON_API_TOKEN="+k.APIToken())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("klaxon status did not answer within %s:\n%s", within, out)
	}
	return string(out), err
}

// testPagerDutyPollingAfterFailover pages through PagerDuty with polling (no
// webhook secret), kills the leader, and acknowledges in PagerDuty: the new
// leader polls the incident the old one tracked and records the ack.
func testPagerDutyPollingAfterFailover(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHAWith(t, etcd, "/pd-poll-failover/", `
      - {notify: primary, via: pagerduty, wait: 1h}`, []string{"KLAXON_PAGERDUTY_POLL_INTERVAL=1s"}, nil)
	lead := w.leader(t, 30*time.Second)
	fire(t, w.replicas[(lead+1)%3], "pd-poll")
	var key string
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		key = pdKey(w.pd, 1)
		return key != "", "PagerDuty has no incident yet"
	})
	w.replicas[lead].Kill()
	next := w.leader(t, 30*time.Second, lead)
	if _, err := w.pd.Acknowledge(key, "PALICE1"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		inc := getIncident(t, w.replicas[next], 1)
		return inc.State == "acknowledged", fmt.Sprintf("incident 1 is %s on the new leader r%d, acknowledged in PagerDuty", inc.State, next)
	})
}

// raftLeader returns the index of etcd's current Raft leader member.
func raftLeader(t *testing.T, etcd *harness.EtcdCluster) int {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i, m := range etcd.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no etcd member says it leads")
	return -1
}

// testRaftLeaderKillInvisible kills etcd's Raft leader member during a burst
// of webhooks to every replica: a quorum is left, so every webhook gets a
// 200 (the failed-over writes are retried on another member) and every one
// is stored.
func testRaftLeaderKillInvisible(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHA(t, etcd, "/kill-raft-leader/", `
      - {notify: primary, via: sms, wait: 1m}`)
	w.leader(t, 30*time.Second)
	var (
		mu     sync.Mutex
		acked  []string
		failed []string
		wg     sync.WaitGroup
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
				group := fmt.Sprintf("raft-%d-%d", s, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				code, err := k.Do(ctx, "POST", "/webhook/alertmanager", webhookBody(group), nil)
				cancel()
				mu.Lock()
				if err == nil && code == http.StatusOK {
					acked = append(acked, group)
				} else {
					failed = append(failed, fmt.Sprintf("%s on r%d: %d %v after %s", group, s%3, code, err, time.Since(start).Round(time.Millisecond)))
				}
				mu.Unlock()
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	harness.Eventually(t, 30*time.Second, func() (bool, string) { return count() >= 50, fmt.Sprint(count(), " acked") })
	victim := raftLeader(t, etcd)
	etcd.Members[victim].Kill()
	before := count()
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		return count() >= before+300, fmt.Sprintf("%d acked since the Raft leader died", count()-before)
	})
	close(stop)
	wg.Wait()
	etcd.Members[victim].Restart(t)
	if len(failed) > 0 {
		t.Errorf("%d of %d webhooks did not get a 200 while etcd member %s (the Raft leader) failed over, e.g.:\n%s",
			len(failed), len(failed)+len(acked), etcd.Members[victim].Name, strings.Join(failed[:min(len(failed), 5)], "\n"))
	}
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
		if groups[inc.GroupKey] {
			t.Errorf("group %s has two incidents: a retried write was applied twice", inc.GroupKey)
		}
		groups[inc.GroupKey] = true
	}
	for _, g := range acked {
		if !groups[g] {
			t.Fatalf("webhook %s got a 200 but is not in the store", g)
		}
	}
	t.Logf("%d webhooks acknowledged (%d after the Raft leader died), %d not", len(acked), len(acked)-before, len(failed))
}

// testReadsAnswerWhileEtcdDown stops every etcd member: on every replica the
// API's reads answer 503 with the reason within the read bound (2s), the
// cluster view answers from the replica's own knowledge, /readyz answers
// within 1s, and `klaxon status` shows the replica's role and etcd's members.
func testReadsAnswerWhileEtcdDown(t *testing.T, etcd *harness.EtcdCluster) {
	w := startHA(t, etcd, "/reads-down/", `
      - {notify: primary, via: sms, wait: 1m}`)
	lead := w.leader(t, 30*time.Second)
	fire(t, w.replicas[(lead+1)%3], "before-outage")
	etcd.Kill()
	defer etcd.Restart()
	// The read bound (2s) plus a second for the answer to travel on a busy machine.
	const readBound = 3 * time.Second
	get := func(k *harness.Klaxon, path string, within time.Duration) (int, string, error) {
		c := &http.Client{Timeout: within}
		req, _ := http.NewRequest("GET", k.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+k.APIToken())
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		return resp.StatusCode, jsonBody(resp), nil
	}
	for i, k := range w.replicas {
		for _, path := range []string{"/api/v1/incidents", "/api/v1/incidents/1", "/api/v1/channels"} {
			code, body, err := get(k, path, readBound)
			if err != nil {
				t.Errorf("r%d GET %s with etcd down: %v", i, path, err)
				continue
			}
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "etcd unreachable: 0 of 3 members answer") {
				t.Errorf("r%d GET %s with etcd down: %d %s, want 503 naming the unreachable members", i, path, code, body)
			}
		}
		code, body, err := get(k, "/api/v1/cluster", readBound)
		if err != nil || code != http.StatusOK {
			t.Errorf("r%d GET /api/v1/cluster with etcd down: %d %s %v, want 200 from the replica's own knowledge", i, code, body, err)
		} else {
			var c struct {
				Replica string `json:"replica"`
				Etcd    struct {
					Reachable bool `json:"reachable"`
					Members   []struct {
						Endpoint  string `json:"endpoint"`
						Reachable bool   `json:"reachable"`
					} `json:"members"`
				} `json:"etcd"`
			}
			if err := json.Unmarshal([]byte(body), &c); err != nil || c.Replica != fmt.Sprint("r", i) || c.Etcd.Reachable || len(c.Etcd.Members) != 3 {
				t.Errorf("r%d GET /api/v1/cluster with etcd down: %s (%v)", i, body, err)
			}
		}
		code, body, err = get(k, "/readyz", time.Second)
		if err != nil || code != http.StatusServiceUnavailable {
			t.Errorf("r%d /readyz with etcd down: %d %s %v, want 503 within 1s", i, code, body, err)
		}
		out, _ := klaxonStatus(t, k, 10*time.Second)
		for _, want := range []string{fmt.Sprintf("this replica: r%d", i), "etcd: unreachable", "0 of 3 members answer"} {
			if !strings.Contains(out, want) {
				t.Errorf("klaxon status on r%d with etcd down lacks %q:\n%s", i, want, out)
			}
		}
	}
}

// jsonBody reads a response body as one line.
func jsonBody(resp *http.Response) string {
	var v any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "(not JSON: " + err.Error() + ")"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
