package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

var amUpdate = flag.Bool("update-am-testdata", false, "rewrite testdata/webhook_*.json with the payloads a real Alertmanager sends")

// amWebhook is a version "4" webhook as Alertmanager sends it.
type amWebhook struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []struct {
		Status       string            `json:"status"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       time.Time         `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
		Fingerprint  string            `json:"fingerprint"`
	} `json:"alerts"`
}

// amDelivery is one request the receiver got.
type amDelivery struct {
	method, path, auth, contentType string
	body                            []byte
	msg                             amWebhook
	decodeErr                       error
}

// amRecorder is a webhook endpoint on 127.0.0.1 that records every request.
// It answers 401 to a wrong bearer token, as Klaxon does.
type amRecorder struct {
	srv   *httptest.Server
	token string

	mu         sync.Mutex
	deliveries []amDelivery
	changed    chan struct{} // closed and replaced on every delivery
}

func newAMRecorder(t *testing.T, token string) *amRecorder {
	r := &amRecorder{token: token, changed: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *amRecorder) url() string { return r.srv.URL + "/webhook/alertmanager" }

func (r *amRecorder) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	d := amDelivery{method: req.Method, path: req.URL.Path, auth: req.Header.Get("Authorization"),
		contentType: req.Header.Get("Content-Type"), body: body}
	d.decodeErr = json.Unmarshal(body, &d.msg)
	r.mu.Lock()
	r.deliveries = append(r.deliveries, d)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	if d.auth != "Bearer "+r.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// waitFor returns the first delivery (from index from on) for which match
// holds, failing the test at the deadline. It waits on deliveries, not on time.
func (r *amRecorder) waitFor(t *testing.T, from int, timeout time.Duration, what string, match func(amDelivery) bool) (amDelivery, int) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := from; i < len(r.deliveries); i++ {
			if match(r.deliveries[i]) {
				d := r.deliveries[i]
				r.mu.Unlock()
				return d, i
			}
		}
		changed := r.changed
		n := len(r.deliveries)
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s webhook within %v (%d deliveries)", what, timeout, n)
		}
	}
}

func (r *amRecorder) all() []amDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.deliveries)
}

func amSecret(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "amtok" + hex.EncodeToString(b)
}

func skipAMInShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Alertmanager; skipped with -short")
	}
}

// pollUntil polls cond every 25ms until it holds or timeout passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func TestAlertmanagerWebhookFiringAndResolved(t *testing.T) {
	skipAMInShort(t)
	t.Parallel()
	token := amSecret(t)
	rcv := newAMRecorder(t, token)
	am := StartAlertmanager(t, AlertmanagerConfig{WebhookURL: rcv.url(), BearerToken: token})

	labels := map[string]string{"alertname": "KlaxonHarnessDiskFull", "severity": "critical", "instance": "db-1:9100"}
	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	alert := AMAlert{
		Labels:       labels,
		Annotations:  map[string]string{"summary": "Disk on db-1 is 97% full", "runbook_url": "https://runbooks.example/disk"},
		StartsAt:     startsAt,
		GeneratorURL: "http://prometheus.example:9090/graph?g0.expr=disk_free%3C0.03",
	}
	am.PostAlerts(t, alert)

	const wait = 10 * time.Second
	firing, idx := rcv.waitFor(t, 0, wait, "firing", func(d amDelivery) bool { return d.msg.Status == "firing" })
	wantGroupKey := AMGroupKey(map[string]string{"alertname": labels["alertname"]})
	checkAMDelivery(t, firing, token, "firing", wantGroupKey, alert)
	if got := firing.msg.Alerts[0].EndsAt; !got.IsZero() {
		t.Errorf("firing alert endsAt = %v, want the zero time (unknown)", got)
	}
	if !strings.HasPrefix(firing.msg.ExternalURL, strings.TrimSuffix(am.URL(), "/")) {
		t.Errorf("externalURL = %q, want it under %q", firing.msg.ExternalURL, am.URL())
	}

	active := am.Alerts(t)
	if len(active) != 1 {
		t.Fatalf("Alerts() = %d alerts, want 1: %+v", len(active), active)
	}
	if a := active[0]; a.Fingerprint != alert.Fingerprint() || a.Status.State != "active" ||
		len(a.Receivers) != 1 || a.Receivers[0].Name != DefaultAMReceiver || !a.StartsAt.Equal(startsAt) {
		t.Errorf("Alerts()[0] = %+v, want fingerprint %s, active, receiver %s, startsAt %v",
			a, alert.Fingerprint(), DefaultAMReceiver, startsAt)
	}

	resolvedAt := time.Now()
	am.Resolve(t, labels)
	resolved, _ := rcv.waitFor(t, idx+1, wait, "resolved", func(d amDelivery) bool { return d.msg.Status == "resolved" })
	checkAMDelivery(t, resolved, token, "resolved", wantGroupKey, alert)
	if got := resolved.msg.Alerts[0].EndsAt; got.Before(resolvedAt.Add(-time.Second)) || got.After(time.Now()) {
		t.Errorf("resolved alert endsAt = %v, want about %v", got, resolvedAt)
	}
	pollUntil(t, wait, "Alerts() to drop the resolved alert", func() bool { return len(am.Alerts(t)) == 0 })
	if st := am.WebhookStats(t); st.Notifications < 2 || st.NotificationsFailed != 0 || st.RequestsFailed != 0 {
		t.Errorf("webhook stats = %+v, want at least 2 notifications and no failures", st)
	}

	for _, d := range rcv.all() {
		if d.auth != "Bearer "+token {
			t.Errorf("a delivery came with Authorization %q", d.auth)
		}
	}
	checkAMSecretKept(t, am, token)
	checkAMTestdata(t, firing.body, resolved.body)
}

// A receiver refusing the token (as Klaxon refuses a forged or stale one)
// answers 401; Alertmanager counts the failure and, a 4xx being final, does not
// retry it.
func TestAlertmanagerWrongTokenIsRefusedNotRetried(t *testing.T) {
	skipAMInShort(t)
	t.Parallel()
	rcv := newAMRecorder(t, amSecret(t))
	staleToken := amSecret(t)
	am := StartAlertmanager(t, AlertmanagerConfig{WebhookURL: rcv.url(), BearerToken: staleToken})
	am.PostAlerts(t, AMAlert{Labels: map[string]string{"alertname": "KlaxonHarnessWrongToken"}})
	d, _ := rcv.waitFor(t, 0, 10*time.Second, "firing", func(d amDelivery) bool { return d.msg.Status == "firing" })
	if d.auth != "Bearer "+staleToken {
		t.Errorf("Authorization = %q, want the configured token", d.auth)
	}
	var st AMWebhookStats
	pollUntil(t, 10*time.Second, "the failed notification to be counted", func() bool {
		st = am.WebhookStats(t)
		return st.NotificationsFailed >= 1
	})
	if st.Notifications != 1 || st.NotificationsFailed != 1 || st.Requests != 1 || st.RequestsFailed != 1 {
		t.Errorf("webhook stats = %+v, want one notification, one request, both failed", st)
	}
	if n := len(rcv.all()); n != 1 {
		t.Errorf("receiver got %d requests, want 1 (a 401 is not retried)", n)
	}
	if strings.Contains(am.Log(), staleToken) {
		t.Error("the Alertmanager log holds the bearer token")
	}
}

// checkAMDelivery checks one webhook against the alert that caused it.
func checkAMDelivery(t *testing.T, d amDelivery, token, status, groupKey string, alert AMAlert) {
	t.Helper()
	if d.decodeErr != nil {
		t.Fatalf("%s webhook is not JSON: %v: %s", status, d.decodeErr, d.body)
	}
	m := d.msg
	checks := []struct {
		name      string
		got, want any
	}{
		{"method", d.method, http.MethodPost},
		{"path", d.path, "/webhook/alertmanager"},
		{"Authorization", d.auth == "Bearer "+token, true},
		{"Content-Type", d.contentType, "application/json"},
		{"version", m.Version, "4"},
		{"groupKey", m.GroupKey, groupKey},
		{"status", m.Status, status},
		{"receiver", m.Receiver, DefaultAMReceiver},
		{"groupLabels", fmt.Sprint(m.GroupLabels), fmt.Sprint(map[string]string{"alertname": alert.Labels["alertname"]})},
		{"commonLabels", fmt.Sprint(m.CommonLabels), fmt.Sprint(alert.Labels)},
		{"truncatedAlerts", m.TruncatedAlerts, uint64(0)},
		{"len(alerts)", len(m.Alerts), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s webhook: %s = %v, want %v", status, c.name, c.got, c.want)
		}
	}
	if len(m.Alerts) != 1 {
		t.FailNow()
	}
	a := m.Alerts[0]
	if a.Status != status || a.Fingerprint != alert.Fingerprint() || fmt.Sprint(a.Labels) != fmt.Sprint(alert.Labels) ||
		fmt.Sprint(a.Annotations) != fmt.Sprint(alert.Annotations) || !a.StartsAt.Equal(alert.StartsAt) ||
		a.GeneratorURL != alert.GeneratorURL {
		t.Errorf("%s webhook alert = %+v, want status %s, fingerprint %s, the posted labels, annotations, startsAt %v and generatorURL",
			status, a, status, alert.Fingerprint(), alert.StartsAt)
	}
}

// checkAMSecretKept checks the bearer token is only in its 0600 credentials file.
func checkAMSecretKept(t *testing.T, am *Alertmanager, token string) {
	t.Helper()
	cred := filepath.Join(am.Dir(), "webhook-bearer-token")
	fi, err := os.Stat(cred)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode = %v, want 0600", fi.Mode().Perm())
	}
	yml, err := os.ReadFile(filepath.Join(am.Dir(), "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"alertmanager.yml": string(yml),
		"alertmanager log": am.Log(),
		"status config":    am.Status(t).Config.Original,
	} {
		if strings.Contains(text, token) {
			t.Errorf("the bearer token appears in the %s", name)
		}
	}
	if !strings.Contains(string(yml), cred) {
		t.Errorf("alertmanager.yml does not refer to the credentials file %s:\n%s", cred, yml)
	}
}

// checkAMTestdata rewrites (with -update-am-testdata) or checks the recorded
// payloads: the seeds must have the same JSON fields as what this Alertmanager
// sends, so a version bump that changes the payload shows up here.
func checkAMTestdata(t *testing.T, firing, resolved []byte) {
	t.Helper()
	for name, live := range map[string][]byte{"webhook_firing.json": firing, "webhook_resolved.json": resolved} {
		path := filepath.Join("testdata", name)
		if *amUpdate {
			if err := os.WriteFile(path, live, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		seed, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update-am-testdata to record it)", err)
		}
		if got, want := amJSONKeys(t, seed), amJSONKeys(t, live); !slices.Equal(got, want) {
			t.Errorf("%s fields %v, but Alertmanager now sends %v: run with -update-am-testdata", path, got, want)
		}
	}
}

// amJSONKeys lists the object keys of a webhook payload and of its first alert.
func amJSONKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatalf("payload is not a JSON object: %v", err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, k)
	}
	var alerts []map[string]json.RawMessage
	if err := json.Unmarshal(top["alerts"], &alerts); err != nil || len(alerts) == 0 {
		t.Fatalf("payload has no alerts: %v", err)
	}
	for k := range alerts[0] {
		keys = append(keys, "alerts[]."+k)
	}
	slices.Sort(keys)
	return keys
}

func TestAlertmanagerAPI(t *testing.T) {
	skipAMInShort(t)
	t.Parallel()
	token := amSecret(t)
	rcv := newAMRecorder(t, token)
	am := StartAlertmanager(t, AlertmanagerConfig{
		WebhookURL: rcv.url(), BearerToken: token, GroupBy: []string{"alertname", "team"}, Receiver: "oncall",
	})

	st := am.Status(t)
	if st.Cluster.Status != "disabled" {
		t.Errorf("cluster status = %q, want disabled (no gossip)", st.Cluster.Status)
	}
	if st.VersionInfo["goVersion"] == "" || st.Uptime.IsZero() {
		t.Errorf("status = %+v, want versionInfo.goVersion and uptime", st)
	}
	if !strings.Contains(st.Config.Original, "group_interval: 1s") || !strings.Contains(st.Config.Original, "send_resolved: true") {
		t.Errorf("loaded config lacks the harness settings:\n%s", st.Config.Original)
	}

	now := time.Now().UTC()
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			alerts  []AMAlert
			wantErr string
		}{
			{"no alerts", nil, "no alerts"},
			{"no labels", []AMAlert{{}}, "has no labels"},
			{"only empty label values", []AMAlert{{Labels: map[string]string{"alertname": ""}}}, "400"},
			{"ends before it starts", []AMAlert{{Labels: map[string]string{"alertname": "Backwards"},
				StartsAt: now, EndsAt: now.Add(-time.Hour)}}, "400"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				err := am.PostAlertsContext(ctx, tc.alerts...)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("PostAlertsContext() = %v, want an error containing %q", err, tc.wantErr)
				}
			})
		}
		if got := am.Alerts(t); len(got) != 0 {
			t.Errorf("refused alerts were stored: %+v", got)
		}
	})

	t.Run("fingerprints and grouping", func(t *testing.T) {
		alerts := []AMAlert{
			{Labels: map[string]string{"alertname": "QueueBacklog", "team": "payments", "queue": "settlements"}},
			{Labels: map[string]string{"alertname": "QueueBacklog", "team": "payments", "queue": "refunds"}},
			{Labels: map[string]string{"alertname": "QueueBacklog", "team": "search", "shard": "ünïcode ☃ \"quoted\""}},
		}
		am.PostAlerts(t, alerts...)
		got := am.Alerts(t)
		var gotFP, wantFP []string
		for _, a := range got {
			gotFP = append(gotFP, a.Fingerprint)
			if a.Receivers[0].Name != "oncall" {
				t.Errorf("alert %v receivers = %+v, want oncall", a.Labels, a.Receivers)
			}
		}
		for _, a := range alerts {
			wantFP = append(wantFP, a.Fingerprint())
		}
		slices.Sort(wantFP)
		if !slices.Equal(gotFP, wantFP) {
			t.Errorf("Alertmanager fingerprints %v, AMFingerprint %v", gotFP, wantFP)
		}

		// Two groups: {alertname, team=payments} with two alerts, and team=search.
		var keys []string
		seen := map[string]amDelivery{}
		pollUntil(t, 10*time.Second, "a webhook for each group", func() bool {
			for _, d := range rcv.all() {
				seen[d.msg.GroupKey] = d
			}
			return len(seen) >= 2
		})
		for k, d := range seen {
			keys = append(keys, k)
			if d.msg.Receiver != "oncall" {
				t.Errorf("webhook receiver = %q, want oncall", d.msg.Receiver)
			}
		}
		slices.Sort(keys)
		want := []string{
			AMGroupKey(map[string]string{"alertname": "QueueBacklog", "team": "payments"}),
			AMGroupKey(map[string]string{"alertname": "QueueBacklog", "team": "search"}),
		}
		if !slices.Equal(keys, want) {
			t.Errorf("group keys %q, want %q", keys, want)
		}
		if n := len(seen[want[0]].msg.Alerts); n != 2 {
			t.Errorf("payments group webhook has %d alerts, want 2", n)
		}
	})

	t.Run("resolve an alert never posted here", func(t *testing.T) {
		am.Resolve(t, map[string]string{"alertname": "NeverSeen"})
		for _, a := range am.Alerts(t) {
			if a.Labels["alertname"] == "NeverSeen" {
				t.Errorf("resolved alert listed as active: %+v", a)
			}
		}
	})

	t.Run("stop", func(t *testing.T) {
		am.Stop()
		if !am.Exited() {
			t.Fatal("Exited() = false after Stop")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := am.PostAlertsContext(ctx, AMAlert{Labels: map[string]string{"alertname": "AfterStop"}}); err == nil {
			t.Error("posting to a stopped Alertmanager succeeded")
		}
		am.Stop() // idempotent
	})
}

// amFakeTB records a fatal failure instead of failing the real test; Fatal
// ends the calling goroutine as testing.T's does.
type amFakeTB struct {
	testing.TB
	mu    sync.Mutex
	fatal string
}

func (f *amFakeTB) Fatal(args ...any) { f.fail(fmt.Sprint(args...)) }
func (f *amFakeTB) Fatalf(format string, args ...any) {
	f.fail(fmt.Sprintf(format, args...))
}
func (f *amFakeTB) fail(msg string) {
	f.mu.Lock()
	f.fatal = msg
	f.mu.Unlock()
	runtime.Goexit()
}

// runFatal runs fn with a fake TB and returns the fatal message ("" if none).
func runFatal(t *testing.T, fn func(tb testing.TB)) string {
	f := &amFakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal
}

func TestStartAlertmanagerFails(t *testing.T) {
	secret := "amtokDoNotLeak0123"
	for _, tc := range []struct {
		name       string
		cfg        AlertmanagerConfig
		needBinary bool
		want       []string
	}{
		{name: "missing webhook URL", cfg: AlertmanagerConfig{BearerToken: secret}, want: []string{"WebhookURL is required"}},
		{name: "token with newline", cfg: AlertmanagerConfig{WebhookURL: "http://127.0.0.1:1/w", BearerToken: secret + "\n"},
			want: []string{"BearerToken must not contain"}},
		{name: "unknown flag", needBinary: true,
			cfg:  AlertmanagerConfig{WebhookURL: "http://127.0.0.1:1/w", BearerToken: secret, ExtraArgs: []string{"--no-such-flag"}},
			want: []string{"exited before", "no-such-flag"}},
		{name: "config Alertmanager rejects", needBinary: true,
			cfg: AlertmanagerConfig{WebhookURL: "http://127.0.0.1:1/w", BearerToken: secret,
				ExtraArgs: []string{"--web.config.file=/nonexistent/web.yml"}},
			want: []string{"exited before", "web.yml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needBinary {
				skipAMInShort(t)
				// A ready timeout far beyond the test's: the failure can only
				// say "exited before" if the early exit is noticed at once.
				tc.cfg.ReadyTimeout = time.Hour
			}
			t.Parallel()
			msg := runFatal(t, func(tb testing.TB) { StartAlertmanager(tb, tc.cfg) })
			if msg == "" {
				t.Fatal("StartAlertmanager did not fail")
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("failure %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("failure message leaks the bearer token: %q", msg)
			}
		})
	}
}

// A port taken between finding it free and Alertmanager binding it is reported
// as errAMPortTaken, which StartAlertmanager answers by trying another port.
func TestStartAMProcessPortTaken(t *testing.T) {
	skipAMInShort(t)
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := AlertmanagerConfig{WebhookURL: "http://127.0.0.1:1/w"}.withDefaults()
	dir := t.TempDir()
	configPath, err := writeAMFiles(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bin := testtools.Tool(t, "alertmanager", AlertmanagerTool)
	am, err := startAMProcess(t, bin, dir, configPath, l.Addr().String(), cfg, 1)
	if !errors.Is(err, errAMPortTaken) {
		t.Fatalf("startAMProcess on a taken port = %v, %v; want errAMPortTaken", am, err)
	}
}
