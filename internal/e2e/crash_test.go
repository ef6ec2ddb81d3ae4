package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
	bolt "go.etcd.io/bbolt"
)

func webhookBody(group string) []byte {
	return fmt.Appendf(nil, `{"version":"4","groupKey":%q,"status":"firing","receiver":"klaxon","groupLabels":{"g":%q},
"commonLabels":{"alertname":"Crash","g":%q},"alerts":[{"status":"firing","labels":{"alertname":"Crash","g":%q},
"startsAt":"2026-11-26T23:33:00Z","fingerprint":%q}]}`, group, group, group, group, "fp-"+group)
}

// TestKillDuringIngestLosesNothingAcknowledged posts webhooks from many
// senders, kills klaxon serve with SIGKILL mid-stream, restarts it, and checks
// that every webhook answered 200 is on disk and the database opens cleanly.
func TestKillDuringIngestLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	k := harness.StartKlaxon(t, harness.KlaxonConfig{WebhookToken: "crash-token"})
	var (
		mu    sync.Mutex
		acked []string
		sent  atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for s := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				group := fmt.Sprintf("s%d-%d", s, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				code, err := k.Do(ctx, "POST", "/webhook/alertmanager", webhookBody(group), nil)
				cancel()
				sent.Add(1)
				if err == nil && code == 200 {
					mu.Lock()
					acked = append(acked, group)
					mu.Unlock()
				} else if err != nil {
					return // the server is gone
				}
			}
		})
	}
	// Kill once a good number of webhooks went through.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 300, fmt.Sprintf("%d acknowledged", len(acked))
	})
	k.Kill()
	close(stop)
	wg.Wait()
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	t.Logf("sent %d webhooks, %d answered 200 before the kill", sent.Load(), len(want))

	// klaxon.db is consistent as the crash left it, and the store opens
	// (as the next klaxon serve does) with
	// every acknowledged webhook.
	db, err := bolt.Open(filepath.Join(k.DataDir(), boltstore.FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("opening the database after the crash: %v", err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("bbolt consistency check after the crash: %v", err)
	}
	db.Close()
	s, err := boltstore.Open(k.DataDir(), boltstore.Options{})
	if err != nil {
		t.Fatalf("opening the store after the crash: %v", err)
	}
	have := map[string]bool{}
	list, err := s.Incidents(context.Background(), escalation.Filter{Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, inc := range list {
		have[inc.GroupKey] = true
	}
	s.Close()
	var missing []string
	for _, g := range want {
		if !have[g] {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d webhooks answered 200 are not on disk: %v", len(missing), len(want), missing[:min(10, len(missing))])
	}
	// And the server starts again on it and serves them. (/readyz stays 503
	// here: no channel is configured, so nobody could be paged.)
	k.Restart()
	var got struct{ Incidents []incidentJSON }
	code, err := k.Do(context.Background(), "GET", "/api/v1/incidents?limit=1", nil, &got)
	if err != nil || code != 200 || len(got.Incidents) != 1 {
		t.Fatalf("incidents after restart: %d %v %v", code, err, got)
	}
}
