package selftest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

const hbSecret = "0b5e-SECRET-c7a1"

// The heartbeat server runs outside the synctest bubble; the client inside
// opens a fresh connection per beat so no goroutine lingers on the network.
func TestHeartbeat(t *testing.T) {
	var hits atomic.Int32
	var mu sync.Mutex
	status := http.StatusOK
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		code := status
		mu.Unlock()
		w.WriteHeader(code)
	}))
	defer srv.Close()
	setStatus := func(c int) { mu.Lock(); status = c; mu.Unlock() }
	hbURL := srv.URL + "/ping/" + hbSecret

	synctest.Test(t, func(t *testing.T) {
		mx := tester(notifiers.Up, "")
		reg := prometheus.NewPedanticRegistry()
		r := newRig(t, testers(notifiers.Matrix, mx), func(c *Config) {
			c.HeartbeatURL = hbURL
			c.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			c.WatchdogTimeout = -1
			c.Registerer = reg
		})
		stop := start(t, r.m)
		ctx := context.Background()
		synctest.Wait()
		if hits.Load() != 0 {
			t.Fatalf("heartbeat before the first minute: %d", hits.Load())
		}
		for i := int32(1); i <= 3; i++ {
			r.clock.Advance(time.Minute)
			synctest.Wait()
			if got := hits.Load(); got != i {
				t.Fatalf("after %d minutes %d heartbeats", i, got)
			}
		}
		mu.Lock()
		if paths[0] != "GET /ping/"+hbSecret {
			t.Errorf("heartbeat request %q", paths[0])
		}
		mu.Unlock()

		// A failing endpoint is only logged, and the beats go on.
		setStatus(http.StatusInternalServerError)
		r.clock.Advance(time.Minute)
		synctest.Wait()
		setStatus(http.StatusOK)
		r.clock.Advance(time.Minute)
		synctest.Wait()
		if hits.Load() != 5 {
			t.Errorf("heartbeats %d, want 5", hits.Load())
		}
		mustContain(t, "logs", r.logs.String(), "heartbeat failed", "500 Internal Server Error")

		// No channel can page: the heartbeat is withheld so the outside monitor alarms.
		mx.set(notifiers.Down, "token revoked", false)
		r.m.CheckNow(ctx)
		r.m.CheckNow(ctx)
		r.clock.Advance(time.Minute)
		synctest.Wait()
		if hits.Load() != 5 {
			t.Errorf("heartbeat sent while no channel can page (%d)", hits.Load())
		}
		mustContain(t, "logs", r.logs.String(), "heartbeat withheld")
		if got := testutil.ToFloat64(r.m.heartbeats.WithLabelValues("ok")); got != 4 {
			t.Errorf("ok heartbeats %v", got)
		}
		if got := testutil.ToFloat64(r.m.heartbeats.WithLabelValues("failed")); got != 1 {
			t.Errorf("failed heartbeats %v", got)
		}
		if got := testutil.ToFloat64(r.m.heartbeats.WithLabelValues("withheld")); got != 1 {
			t.Errorf("withheld heartbeats %v", got)
		}
		if strings.Contains(r.logs.String(), hbSecret) {
			t.Errorf("logs leak the heartbeat URL:\n%s", r.logs.String())
		}
		stop()
	})
}

// hangingTransport never answers until the request's context ends.
type hangingTransport struct{}

func (hangingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, r.Context().Err()
}

func TestHeartbeatFailures(t *testing.T) {
	refusedURL := testtools.RefusedURL(t) // nothing listens, and no later server gets the port
	tests := []struct {
		name   string
		url    string
		client *http.Client
		want   string
	}{
		{"slow endpoint times out", "http://127.0.0.1:1/ping/" + hbSecret + "?key=" + hbSecret, &http.Client{Transport: hangingTransport{}}, "deadline exceeded"},
		{"connection refused", refusedURL + "/ping/" + hbSecret, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, "refused"},
		{"user info and query", "http://user:" + hbSecret + "@127.0.0.1:1/p?k=" + hbSecret, &http.Client{Transport: hangingTransport{}}, "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, testers(notifiers.Matrix, tester(notifiers.Up, "")), func(c *Config) {
					c.HeartbeatURL, c.HTTPClient = tt.url, tt.client
				})
				err := r.m.heartbeat(context.Background())
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("heartbeat error %v, want %q", err, tt.want)
				}
				r.m.noteHeartbeat(err)
				hb := r.m.Heartbeat()
				if !hb.Configured || hb.LastTry.IsZero() || !hb.LastOK.IsZero() || hb.Error == "" {
					t.Errorf("status page view of a failed heartbeat: %+v", hb)
				}
				for what, s := range map[string]string{"error": err.Error(), "logs": r.logs.String(), "status": hb.Error} {
					if strings.Contains(s, hbSecret) {
						t.Errorf("%s leak the heartbeat secret: %s", what, s)
					}
				}
				mustContain(t, "logs", r.logs.String(), "heartbeat failed", "127.0.0.1")
			})
		})
	}
}
