package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/server"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

const secretValue = "sup3r-s3cret-value"

func TestParseServe(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(secretValue+"\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(*testing.T, *serveConfig)
	}{
		{name: "defaults", check: func(t *testing.T, c *serveConfig) {
			if c.listen != "127.0.0.1:9797" || c.rotaPath != "./rota.yaml" || c.dataDir != "./data" || c.maxBody != 1<<20 {
				t.Errorf("defaults %+v", c)
			}
		}},
		{name: "web auth header without proxy", args: []string{"--web-auth-header", "X-Forwarded-Email"}, wantErr: "go together"},
		{name: "web auth proxy without header", env: map[string]string{"KLAXON_WEB_AUTH_PROXY": "127.0.0.1"}, wantErr: "go together"},
		{name: "web auth proxy malformed", args: []string{"--web-auth-header", "X-Email", "--web-auth-proxy", "10.0.0.0/33"}, wantErr: `"10.0.0.0/33" is not an address`},
		{name: "web auth proxies", args: []string{"--web-auth-header", "X-Email"}, env: map[string]string{"KLAXON_WEB_AUTH_PROXY": "127.0.0.1, 10.1.2.3/8,::1"}, check: func(t *testing.T, c *serveConfig) {
			if got := fmt.Sprint(c.webAuthProxies); c.webAuthHeader != "X-Email" || got != "[127.0.0.1/32 10.0.0.0/8 ::1/128]" {
				t.Errorf("header %q, proxies %s", c.webAuthHeader, got)
			}
		}},
		{name: "web link ttl too short", args: []string{"--web-link-ttl", "1s"}, wantErr: "at least a minute"},
		{name: "env fills flags", env: map[string]string{"KLAXON_LISTEN": "127.0.0.1:1234", "KLAXON_DATA": "/var/lib/klaxon"}, check: func(t *testing.T, c *serveConfig) {
			if c.listen != "127.0.0.1:1234" || c.dataDir != "/var/lib/klaxon" {
				t.Errorf("env not applied: %+v", c)
			}
		}},
		{name: "flag beats env", args: []string{"--listen", "127.0.0.1:5"}, env: map[string]string{"KLAXON_LISTEN": "127.0.0.1:1234"}, check: func(t *testing.T, c *serveConfig) {
			if c.listen != "127.0.0.1:5" {
				t.Errorf("listen %q", c.listen)
			}
		}},
		{name: "token from file", args: []string{"--webhook-token-file", tokenFile}, check: func(t *testing.T, c *serveConfig) {
			if c.webhookToken != secretValue {
				t.Errorf("webhook token not read from its file")
			}
		}},
		{name: "token file from env", env: map[string]string{"KLAXON_API_TOKEN_FILE": tokenFile}, check: func(t *testing.T, c *serveConfig) {
			if c.apiToken != secretValue {
				t.Errorf("api token not read from KLAXON_API_TOKEN_FILE")
			}
		}},
		{name: "webhook token as a flag", args: []string{"--webhook-token", secretValue}, wantErr: "set KLAXON_WEBHOOK_TOKEN or KLAXON_WEBHOOK_TOKEN_FILE"},
		{name: "API token as a flag", args: []string{"--api-token", secretValue}, wantErr: "set KLAXON_API_TOKEN or KLAXON_API_TOKEN_FILE"},
		{name: "heartbeat URL as a flag", args: []string{"--heartbeat-url", "https://hc.example/" + secretValue}, wantErr: "set KLAXON_HEARTBEAT_URL"},
		{name: "metrics token as a flag", args: []string{"--metrics-token", secretValue}, wantErr: "set KLAXON_METRICS_TOKEN"},
		{name: "token from env", env: map[string]string{"KLAXON_WEBHOOK_TOKEN": secretValue}, check: func(t *testing.T, c *serveConfig) {
			if c.webhookToken != secretValue {
				t.Errorf("webhook token not read from KLAXON_WEBHOOK_TOKEN")
			}
		}},
		{name: "public address needs no flag", args: []string{"--listen", ":9797"}},
		{name: "insecure", args: []string{"--insecure-no-auth"}, check: func(t *testing.T, c *serveConfig) {
			if !c.insecure {
				t.Error("--insecure-no-auth not set")
			}
		}},
		{name: "insecure with a token", args: []string{"--insecure-no-auth"}, env: map[string]string{"KLAXON_API_TOKEN": secretValue}, wantErr: "choose one"},
		{name: "value and file", args: []string{"--webhook-token-file", tokenFile}, env: map[string]string{"KLAXON_WEBHOOK_TOKEN": secretValue}, wantErr: "not both"},
		{name: "missing token file", args: []string{"--api-token-file", filepath.Join(dir, "nope")}, wantErr: "reading"},
		{name: "empty token file", args: []string{"--api-token-file", empty}, wantErr: "is empty"},
		{name: "tiny body limit", args: []string{"--max-body", "10"}, wantErr: "too small"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected argument"},
		{name: "bad duration", args: []string{"--selftest-interval", "soon"}, wantErr: "invalid value"},
		{name: "notice days from env", env: map[string]string{"KLAXON_NOTICE_DAYS": "14"}, check: func(t *testing.T, c *serveConfig) {
			if c.noticeDays != 14 {
				t.Errorf("notice days %d", c.noticeDays)
			}
		}},
		{name: "notice days out of range", args: []string{"--notice-days", "0"}, wantErr: "--notice-days 0: want 1 to 366"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			c, err := parseServe(tt.args, &stderr)
			if tt.wantErr != "" {
				msg := ""
				if err != nil {
					msg = err.Error() + stderr.String()
				}
				if !strings.Contains(msg, tt.wantErr) {
					t.Fatalf("err = %v (stderr %q), want %q", err, stderr.String(), tt.wantErr)
				}
				if strings.Contains(msg, secretValue) {
					t.Fatalf("the error shows a secret: %s", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseServe: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestServeLifecycle starts serve in-process: it answers, a second server on
// the same data directory fails fast with a clear message, secrets stay out
// of the log, and it shuts down when its context ends.
func TestServeLifecycle(t *testing.T) {
	data := t.TempDir()
	rota := filepath.Join(testtools.Root(), "rota.yaml")
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	t.Setenv("KLAXON_WEBHOOK_TOKEN", secretValue)
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--data", data, "--rota", rota}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, serveHooks{ready: func(s started) { addr <- s.addr }}) }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve ended early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	start := time.Now()
	second, _ := parseServe([]string{"--listen", "127.0.0.1:0", "--data", data, "--rota", rota}, &bytes.Buffer{})
	err = serve(context.Background(), second, slog.New(slog.DiscardHandler), serveHooks{})
	if err == nil || !strings.Contains(err.Error(), "another klaxon serve") {
		t.Fatalf("second serve on the same data: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the second serve took %s to fail: it should fail fast", time.Since(start))
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not shut down")
	}
	if strings.Contains(logs.String(), secretValue) {
		t.Fatal("a secret appears in the log")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown in the log:\n%s", logs.String())
	}
}

func TestSimulateCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"simulate", "--rota", filepath.Join(testtools.Root(), "rota.yaml"),
		"--at", "2026-12-26 03:00", "--fail", "pagerduty", "--ack-after", "12m", "--for", "1h"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"paged Dave Diaz via matrix: sent",                // Dave covers Carol's Christmas override
		"via pagerduty: failed-permanent",                 // --fail pagerduty
		"every page of step 2 failed: escalating at once", // and the engine moves on at once
		"paged Dave Diaz via phone: sent",
		"acknowledged by",
		"the incident is acknowledged",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("simulation lacks %q:\n%s", want, out)
		}
	}
	r := filepath.Join(testtools.Root(), "rota.yaml")
	// --down: a channel whose self-test says down is skipped only while the
	// step pages someone elsewhere; a step with nothing else pages on it.
	stdout.Reset()
	if code := run(context.Background(), []string{"simulate", "--rota", r, "--at", "2026-12-26 03:00", "--down", "phone", "--no-ack", "--for", "20m"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("--down: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{
		"phone is down since 03:00 (self-test failed (--down)), but nothing else of this step can page: paging on it anyway",
		"paged Dave Diaz via phone: sent",
		"skipped: phone down since 03:00",
		"paged Alice Archer via matrix: sent",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--down simulation lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, bad := range [][]string{{"simulate", "--rota", r, "--fail", "carrier-pigeon"}, {"simulate", "--rota", r, "--down", "smoke-signal"}, {"simulate", "--rota", r, "--no-ack", "--ack-after", "1m"}, {"simulate", "--rota", r, "--at", "teatime"}} {
		if code := run(context.Background(), bad, nil, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

// TestSlowWebhookSenderIsCutOff: a client that sends headers and then
// trickles (or stalls) its body is disconnected at the read timeout, and
// nothing is stored for it; a client that never finishes its headers is cut
// off too.
func TestSlowWebhookSenderIsCutOff(t *testing.T) {
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng := escalation.New(escalation.Config{Store: st})
	srv := server.New(server.Config{Engine: eng, Store: st, Insecure: true}) // the body must be read
	hs := httpServer(srv, slog.New(slog.DiscardHandler), timeouts{header: 200 * time.Millisecond, read: 300 * time.Millisecond, write: time.Second, idle: time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()

	for _, tc := range []struct{ name, send string }{
		{"stalled body", "POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"version\":\"4\","},
		{"stalled headers", "POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			// The server must end the exchange by itself; the deadline here
			// only keeps a broken server from hanging the test.
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err = io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the server kept a stalled client's connection open")
			}
		})
	}
	if list, _ := st.Incidents(context.Background(), escalation.Filter{}); len(list) != 0 {
		t.Fatalf("a stalled webhook stored %d incidents", len(list))
	}
}

// startServe runs serve in-process on data until the test ends and returns
// its base URL and a function that stops it and returns serve's result.
func startServe(t *testing.T, data string, log *slog.Logger, hooks serveHooks) (string, func() error) {
	t.Helper()
	// These tests are about recovery and durability, not auth (the auth
	// matrix covers that): no tokens.
	cfg, err := parseServe([]string{"--listen", "127.0.0.1:0", "--data", data, "--rota", filepath.Join(testtools.Root(), "rota.yaml"), "--insecure-no-auth"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	hooks.ready = func(s started) { addr <- s.addr }
	go func() { done <- serve(ctx, cfg, log, hooks) }()
	var once sync.Once
	var result error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("serve did not shut down")
			}
		})
		return result
	}
	select {
	case a := <-addr:
		t.Cleanup(func() { stop() })
		return "http://" + a, stop
	case err := <-done:
		t.Fatalf("serve ended early: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start listening (is it waiting for recovery?)")
	}
	return "", nil
}

func postWebhook(t *testing.T, base, group string) {
	t.Helper()
	body := `{"version":"4","groupKey":"` + group + `","status":"firing","receiver":"klaxon","commonLabels":{"alertname":"Restart"},
"alerts":[{"status":"firing","labels":{"alertname":"Restart","g":"` + group + `"},"startsAt":"2026-11-26T23:33:00Z","fingerprint":"fp-` + group + `"}]}`
	resp, err := http.Post(base+"/webhook/alertmanager", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("webhook %s: %d %s", group, resp.StatusCode, b)
	}
}

// TestServeTakesWebhooksWhileRecovering: a restart listens and stores
// webhooks (200 only once committed) while the escalations stored before it
// are still being recovered; recovery then finds what was there before.
func TestServeTakesWebhooksWhileRecovering(t *testing.T) {
	data := t.TempDir()
	base, stop := startServe(t, data, slog.New(slog.DiscardHandler), serveHooks{})
	postWebhook(t, base, "before-restart")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	unresolved := func() int {
		st, err := boltstore.Open(data, boltstore.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		c, err := st.Counts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c[escalation.Open] + c[escalation.Acknowledged]
	}
	before := unresolved()

	release := make(chan struct{})
	recovered := make(chan struct{})
	var logs syncBuffer
	base, stop = startServe(t, data, slog.New(slog.NewJSONHandler(&logs, nil)), serveHooks{
		recovering: func() { <-release },
		recovered:  func() { close(recovered) },
	})
	postWebhook(t, base, "during-recovery") // recovery is held: this must not wait for it
	select {
	case <-recovered:
		t.Fatal("recovered before it was released")
	default:
	}
	resp, err := http.Get(base + "/api/v1/incidents?limit=10")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "during-recovery") || !strings.Contains(string(b), "before-restart") {
		t.Fatalf("incidents while recovering lack a webhook: %s", b)
	}
	close(release)
	select {
	case <-recovered:
	case <-time.After(30 * time.Second):
		t.Fatal("recovery did not finish")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The snapshot was taken before the second webhook: recovery counted
	// what was stored before the restart, not what arrived during it.
	var rec struct {
		Incidents int `json:"incidents"`
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"escalations recovered"`) {
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rec.Incidents == 0 || rec.Incidents != before {
		t.Fatalf("recovered %d incidents, want the %d unresolved before the restart", rec.Incidents, before)
	}
	if after := unresolved(); after <= before {
		t.Fatalf("%d unresolved after, %d before: the webhook during recovery is missing", after, before)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServeStoreSyncsOnCommit: the store `klaxon serve` opens fsyncs every
// commit before it acknowledges a write. A
// crash test kills the process, but the kernel keeps its page cache, so it
// cannot tell a synced commit from an unsynced one: the configuration is
// what must be checked.
func TestServeStoreSyncsOnCommit(t *testing.T) {
	opened := make(chan *boltstore.Store, 1)
	base, stop := startServe(t, t.TempDir(), slog.New(slog.DiscardHandler), serveHooks{opened: func(s *boltstore.Store) { opened <- s }})
	st := <-opened
	postWebhook(t, base, "synced")
	if db := st.DB(); db.NoSync || db.NoGrowSync || !st.Durable() {
		t.Fatalf("serve's store: NoSync=%v NoGrowSync=%v durable=%v, want every commit synced", db.NoSync, db.NoGrowSync, st.Durable())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestServeRefusesBadWebSetup(t *testing.T) {
	rota := filepath.Join(testtools.Root(), "rota.yaml")
	leaky := t.TempDir()
	os.WriteFile(filepath.Join(leaky, "web.key"), make([]byte, 32), 0o644)
	os.Chmod(filepath.Join(leaky, "web.key"), 0o644)
	tests := []struct {
		name, data string
		args       []string
		want       string
	}{
		{"signing key readable by others", leaky, nil, "readable by others"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseServe(append([]string{"--listen", "127.0.0.1:0", "--data", tc.data, "--rota", rota}, tc.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			err = serve(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)), serveHooks{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve: %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error()+logs.String(), secretValue) {
				t.Fatal("a secret is in the error or the log")
			}
		})
	}
	// A fresh data directory gets a private signing key.
	data := t.TempDir()
	cfg, _ := parseServe([]string{"--listen", "127.0.0.1:0", "--data", data, "--rota", rota}, &bytes.Buffer{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), serveHooks{ready: func(started) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	fi, err := os.Stat(filepath.Join(data, "web.key"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("web.key: %v %v", fi, err)
	}
	cancel()
	<-done
}
