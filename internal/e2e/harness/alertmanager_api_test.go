package harness

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// amTestServer serves handler on 127.0.0.1 and returns a client for it and a
// counter of requests received.
func amTestServer(t *testing.T, handler http.HandlerFunc) (*amClient, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return newAMClient(u), &n
}

func TestAMClientErrors(t *testing.T) {
	label := []AMAlert{{Labels: map[string]string{"alertname": "A"}}}
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		call     func(context.Context, *amClient) error
		wantErr  string
		wantReqs int64
	}{
		{
			name:    "malformed JSON",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `[{"labels": {`) },
			call:    func(ctx context.Context, c *amClient) error { _, err := c.alerts(ctx); return err },
			wantErr: "decoding response", wantReqs: 1,
		},
		{
			name:    "wrong JSON type",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"cluster": "nope"}`) },
			call:    func(ctx context.Context, c *amClient) error { _, err := c.status(ctx); return err },
			wantErr: "decoding response", wantReqs: 1,
		},
		{
			name: "oversized response",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "[")
				chunk := strings.Repeat(`{"fingerprint":"0123456789abcdef"},`, 1024)
				for written := 0; written <= amMaxResponse; written += len(chunk) {
					if _, err := io.WriteString(w, chunk); err != nil {
						return
					}
				}
			},
			call:    func(ctx context.Context, c *amClient) error { _, err := c.alerts(ctx); return err },
			wantErr: "larger than", wantReqs: 1,
		},
		{
			name: "refused with 400",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, `"start time must be before end time"`, http.StatusBadRequest)
			},
			call:    func(ctx context.Context, c *amClient) error { return c.postAlerts(ctx, label) },
			wantErr: "start time must be before end time", wantReqs: 1,
		},
		{
			name: "long error body is cut",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, strings.Repeat("x", 10000), http.StatusInternalServerError)
			},
			call:    func(ctx context.Context, c *amClient) error { return c.postAlerts(ctx, label) },
			wantErr: "500 Internal Server Error", wantReqs: 1,
		},
		{
			name: "slow server",
			handler: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done() // hangs until the client gives up
			},
			call: func(ctx context.Context, c *amClient) error {
				// Long enough for the request to reach the server on a loaded
				// machine (100ms was not: "server got 0 requests").
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_, err := c.alerts(ctx)
				return err
			},
			wantErr: "deadline exceeded", wantReqs: 1,
		},
		{
			name:    "no alerts is refused locally",
			handler: func(w http.ResponseWriter, r *http.Request) {},
			call:    func(ctx context.Context, c *amClient) error { return c.postAlerts(ctx, nil) },
			wantErr: "no alerts", wantReqs: 0,
		},
		{
			name:    "alert without labels is refused locally",
			handler: func(w http.ResponseWriter, r *http.Request) {},
			call: func(ctx context.Context, c *amClient) error {
				return c.postAlerts(ctx, append(label, AMAlert{Annotations: map[string]string{"a": "b"}}))
			},
			wantErr: "alert 1 has no labels", wantReqs: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, n := amTestServer(t, tc.handler)
			err := tc.call(t.Context(), c)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error is %d bytes long; the body should be cut", len(err.Error()))
			}
			if got := n.Load(); got != tc.wantReqs {
				t.Errorf("server got %d requests, want %d", got, tc.wantReqs)
			}
		})
	}
}

func TestAMClientPostAlertsWire(t *testing.T) {
	var got []map[string]any
	var contentType string
	c, _ := amTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
			http.Error(w, "wrong endpoint "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		contentType = r.Header.Get("Content-Type")
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	start := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	err := c.postAlerts(t.Context(), []AMAlert{
		{Labels: map[string]string{"alertname": "Full"}, Annotations: map[string]string{"summary": "s"},
			StartsAt: start, EndsAt: start.Add(time.Hour), GeneratorURL: "http://prom/g"},
		{Labels: map[string]string{"alertname": "Bare"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "application/json" {
		t.Errorf("Content-Type = %q", contentType)
	}
	if len(got) != 2 {
		t.Fatalf("posted %d alerts, want 2", len(got))
	}
	if got[0]["startsAt"] != "2026-03-29T01:30:00Z" || got[0]["endsAt"] != "2026-03-29T02:30:00Z" ||
		got[0]["generatorURL"] != "http://prom/g" {
		t.Errorf("full alert on the wire = %v", got[0])
	}
	for _, k := range []string{"startsAt", "endsAt", "generatorURL", "annotations"} {
		if _, ok := got[1][k]; ok {
			t.Errorf("bare alert sends %s = %v; zero values must be left out so Alertmanager fills them", k, got[1][k])
		}
	}
}

func TestAMWaitReady(t *testing.T) {
	for _, tc := range []struct {
		name     string
		handler  func(calls int64, w http.ResponseWriter, r *http.Request)
		exited   bool
		timeout  time.Duration
		wantErr  string // "" means ready
		maxCalls int64  // 0: no bound checked
		// exitOnRequest closes exited when the first request arrives.
		exitOnRequest bool
	}{
		{
			name: "ready after a few polls",
			handler: func(calls int64, w http.ResponseWriter, r *http.Request) {
				if calls < 3 {
					http.Error(w, "starting", http.StatusServiceUnavailable)
				}
			},
			timeout: 10 * time.Second,
		},
		{
			name: "never ready",
			handler: func(calls int64, w http.ResponseWriter, r *http.Request) {
				http.Error(w, "starting", http.StatusServiceUnavailable)
			},
			timeout: 150 * time.Millisecond, wantErr: "503",
		},
		{
			name:    "hangs",
			handler: func(calls int64, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 150 * time.Millisecond, wantErr: "not ready",
		},
		{
			name: "process exited",
			handler: func(calls int64, w http.ResponseWriter, r *http.Request) {
				http.Error(w, "starting", http.StatusServiceUnavailable)
			},
			exited: true, timeout: 10 * time.Second, wantErr: "exited before", maxCalls: 1,
		},
		{
			// Another program holds the port: it accepts and never answers.
			name:          "process exits while a request hangs",
			handler:       func(calls int64, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			exitOnRequest: true, timeout: 10 * time.Second, wantErr: "exited before", maxCalls: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			exited := make(chan struct{})
			var exitOnce sync.Once
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				if tc.exitOnRequest {
					exitOnce.Do(func() { close(exited) })
				}
				tc.handler(n, w, r)
			}))
			t.Cleanup(srv.Close)
			if tc.exited {
				close(exited)
			}
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			start := time.Now()
			err := amWaitReady(ctx, srv.URL+"/-/ready", exited)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("amWaitReady() = %v, want ready", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("amWaitReady() = %v, want an error containing %q", err, tc.wantErr)
			}
			if d := time.Since(start); d > tc.timeout+2*time.Second {
				t.Errorf("amWaitReady took %v, beyond its %v deadline", d, tc.timeout)
			}
			if tc.maxCalls > 0 && calls.Load() > tc.maxCalls {
				t.Errorf("polled %d times after the process exited", calls.Load())
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		addr, err := amFreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
		defer cancel()
		if err := amWaitReady(ctx, "http://"+addr+"/-/ready", make(chan struct{})); err == nil ||
			!strings.Contains(err.Error(), "refused") {
			t.Fatalf("amWaitReady() = %v, want connection refused", err)
		}
	})
	t.Run("malformed URL", func(t *testing.T) {
		if err := amWaitReady(t.Context(), "http://[::1/-/ready", make(chan struct{})); err == nil {
			t.Fatal("amWaitReady() accepted a malformed URL")
		}
	})
}

func TestAMFingerprint(t *testing.T) {
	// The empty set hashes to FNV-1a's offset basis; the other values were
	// returned by a real Alertmanager v0.31.1 (and are re-checked against the
	// live one in TestAlertmanagerAPI and TestAlertmanagerWebhookFiringAndResolved).
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{}, "cbf29ce484222325"},
		{nil, "cbf29ce484222325"},
		{map[string]string{"alertname": "KlaxonHarnessDiskFull", "severity": "critical", "instance": "db-1:9100"}, "543e681ac75f8b98"},
	} {
		if got := AMFingerprint(tc.labels); got != tc.want {
			t.Errorf("AMFingerprint(%v) = %s, want %s", tc.labels, got, tc.want)
		}
	}
	// A name/value boundary moved must change the fingerprint.
	if AMFingerprint(map[string]string{"ab": "c"}) == AMFingerprint(map[string]string{"a": "bc"}) {
		t.Error("AMFingerprint ignores the separator between name and value")
	}
	if a := (AMAlert{Labels: map[string]string{"x": "1"}}); a.Fingerprint() != AMFingerprint(a.Labels) {
		t.Error("AMAlert.Fingerprint disagrees with AMFingerprint")
	}
}

func TestAMGroupKey(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"alertname": "DiskFull"}, `{}:{alertname="DiskFull"}`},
		{map[string]string{"team": "db", "alertname": "A"}, `{}:{alertname="A", team="db"}`},
		{map[string]string{"alertname": `say "hi"`}, `{}:{alertname="say \"hi\""}`},
		{map[string]string{}, `{}:{}`},
	} {
		if got := AMGroupKey(tc.labels); got != tc.want {
			t.Errorf("AMGroupKey(%v) = %s, want %s", tc.labels, got, tc.want)
		}
	}
}

func TestParseAMWebhookStats(t *testing.T) {
	const exposition = `# HELP alertmanager_notifications_total The total number of attempted notifications.
# TYPE alertmanager_notifications_total counter
alertmanager_notifications_total{integration="email"} 9
alertmanager_notifications_total{integration="webhook"} 3
# TYPE alertmanager_notifications_failed_total counter
alertmanager_notifications_failed_total{integration="webhook",reason="clientError"} 1
alertmanager_notifications_failed_total{integration="webhook",reason="serverError"} 2
alertmanager_notifications_failed_total{integration="webhooks",reason="other"} 50
alertmanager_notification_requests_total{integration="webhook",receiver_name="klaxon"} 7
alertmanager_notification_requests_failed_total{integration="webhook"} 4 1700000000000
go_goroutines 42
`
	for _, tc := range []struct {
		name    string
		text    string
		want    AMWebhookStats
		wantErr string
	}{
		{name: "sums reasons, ignores other integrations", text: exposition,
			want: AMWebhookStats{Notifications: 3, NotificationsFailed: 3, Requests: 7, RequestsFailed: 4}},
		{name: "no counters", text: "go_goroutines 42\n", wantErr: "no webhook notification counters"},
		{name: "empty", text: "", wantErr: "no webhook notification counters"},
		{name: "unclosed labels", text: `alertmanager_notifications_total{integration="webhook" 3`, wantErr: "unclosed"},
		{name: "no value", text: `alertmanager_notifications_total{integration="webhook"}`, wantErr: "no value"},
		{name: "bad value", text: `alertmanager_notifications_total{integration="webhook"} three`, wantErr: "invalid syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAMWebhookStats(tc.text)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseAMWebhookStats() = %+v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseAMWebhookStats() = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestAMClientWebhookStatsErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{"server error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, "500"},
		{"oversized", func(w http.ResponseWriter, r *http.Request) {
			line := strings.Repeat("#", 1023) + "\n"
			for written := 0; written <= amMaxResponse; written += len(line) {
				if _, err := io.WriteString(w, line); err != nil {
					return
				}
			}
		}, "larger than"},
		{"not an exposition", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") }, "no webhook"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := amTestServer(t, tc.handler)
			if _, err := c.webhookStats(t.Context()); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("webhookStats() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
