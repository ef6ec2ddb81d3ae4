package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// AlertmanagerTool is the package path of the Alertmanager binary declared as a
// tool in tools/alertmanager/go.mod.
const AlertmanagerTool = "github.com/prometheus/alertmanager/cmd/alertmanager"

// amStopTimeout bounds the graceful shutdown after SIGTERM before SIGKILL.
const amStopTimeout = 10 * time.Second

// amStartAttempts is how often StartAlertmanager picks a new port when another
// process took the free port it found before Alertmanager could bind it.
const amStartAttempts = 3

// Alertmanager is a running Prometheus Alertmanager started by
// StartAlertmanager. Its methods are safe for concurrent use.
type Alertmanager struct {
	dir     string
	logPath string
	url     *url.URL
	client  *amClient
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed

	stopOnce sync.Once
	ready    bool // became ready; set before StartAlertmanager returns

	mu     sync.Mutex
	posted map[string]AMAlert // last alert posted per fingerprint, for Resolve
}

// StartAlertmanager builds (once per test binary) and starts a real Alertmanager
// on 127.0.0.1 with gossip disabled, its configuration, credentials file and
// storage in tb.TempDir(), and waits until it answers /-/ready. It fails the test
// if cfg is invalid or Alertmanager does not become ready within
// cfg.ReadyTimeout. The process is stopped (SIGTERM, then SIGKILL) when the test
// ends, and its log is printed if the test failed.
func StartAlertmanager(tb testing.TB, cfg AlertmanagerConfig) *Alertmanager {
	tb.Helper()
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		tb.Fatal(err)
	}
	bin := testtools.Tool(tb, "alertmanager", AlertmanagerTool)
	dir := tb.TempDir()
	configPath, err := writeAMFiles(dir, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		addr, err := amFreeAddr()
		if err != nil {
			tb.Fatal(err)
		}
		am, err := startAMProcess(tb, bin, dir, configPath, addr, cfg, attempt)
		if err == nil {
			return am
		}
		if errors.Is(err, errAMPortTaken) && attempt < amStartAttempts {
			tb.Logf("alertmanager: %v; retrying on another port", err)
			continue
		}
		tb.Fatalf("starting alertmanager: %v", err)
	}
}

// writeAMFiles writes the credentials file (0600) and alertmanager.yml into dir
// and returns the configuration's path.
func writeAMFiles(dir string, cfg AlertmanagerConfig) (string, error) {
	credPath := ""
	if cfg.BearerToken != "" {
		credPath = filepath.Join(dir, "webhook-bearer-token")
		if err := os.WriteFile(credPath, []byte(cfg.BearerToken), 0o600); err != nil {
			return "", fmt.Errorf("writing alertmanager credentials file: %w", err)
		}
	}
	yml, err := renderAMConfig(cfg, credPath)
	if err != nil {
		return "", err
	}
	configPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(configPath, yml, 0o600); err != nil {
		return "", fmt.Errorf("writing alertmanager.yml: %w", err)
	}
	return configPath, nil
}

// errAMPortTaken marks a start that failed because the listen port was taken.
var errAMPortTaken = errors.New("listen address already in use")

// startAMProcess starts one Alertmanager process listening on addr and waits
// for it to be ready. On error the process has been stopped; the error wraps
// errAMPortTaken if addr was in use.
func startAMProcess(tb testing.TB, bin, dir, configPath, addr string, cfg AlertmanagerConfig, attempt int) (*Alertmanager, error) {
	tb.Helper()
	base := &url.URL{Scheme: "http", Host: addr, Path: "/"}
	logPath := filepath.Join(dir, "alertmanager-"+strconv.Itoa(attempt)+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating log file: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor

	args := []string{
		"--config.file=" + configPath,
		"--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--web.external-url=" + base.String(),
		"--cluster.listen-address=",
	}
	cmd := exec.Command(bin, append(args, cfg.ExtraArgs...)...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", bin, err)
	}
	am := &Alertmanager{
		dir:     dir,
		logPath: logPath,
		url:     base,
		client:  newAMClient(base),
		cmd:     cmd,
		exited:  make(chan struct{}),
		posted:  map[string]AMAlert{},
	}
	go func() {
		am.waitErr = cmd.Wait()
		close(am.exited)
	}()
	tb.Cleanup(func() {
		am.stop()
		if am.ready && tb.Failed() {
			tb.Logf("alertmanager log (%s):\n%s", am.logPath, am.Log())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ReadyTimeout)
	defer cancel()
	if err := amWaitReady(ctx, am.url.JoinPath("/-/ready").String(), am.exited); err != nil {
		if amExitedBefore(am.exited) { // exited on its own: say how
			err = fmt.Errorf("%w (%v)", err, am.waitErr)
		}
		am.stop()
		log := am.Log()
		if strings.Contains(log, "address already in use") {
			return nil, fmt.Errorf("%s: %w", addr, errAMPortTaken)
		}
		return nil, fmt.Errorf("%w; log:\n%s", err, log)
	}
	am.ready = true
	return am, nil
}

func amExitedBefore(exited <-chan struct{}) bool {
	select {
	case <-exited:
		return true
	default:
		return false
	}
}

// amFreeAddr returns a loopback address whose port was free a moment ago.
func amFreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	return addr, nil
}

// amReadyPoll is how often amWaitReady asks.
const amReadyPoll = 25 * time.Millisecond

// amWaitReady polls readyURL until it answers 200, the process exits (exited is
// closed) or ctx ends. Each request is bounded so a hung server cannot outlast
// ctx.
func amWaitReady(ctx context.Context, readyURL string, exited <-chan struct{}) error {
	// A request in flight is abandoned as soon as the process exits: the port
	// may belong to another program that accepts and never answers.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	client := &http.Client{}
	tick := time.NewTicker(amReadyPoll)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		reqCtx, cancelReq := context.WithTimeout(ctx, time.Second)
		req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, readyURL, nil)
		if err != nil {
			cancelReq()
			return fmt.Errorf("waiting for %s: %w", readyURL, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancelReq()
				return nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else if ctx.Err() == nil { // keep the last real answer, not our own deadline
			last = err
		}
		cancelReq()
		select {
		case <-ctx.Done():
			if amExitedBefore(exited) {
				return fmt.Errorf("alertmanager exited before %s answered (last: %v)", readyURL, last)
			}
			return fmt.Errorf("alertmanager not ready at %s: %w (last: %v)", readyURL, parent.Err(), last)
		case <-tick.C:
		}
	}
}

// stop ends the process: SIGTERM, then SIGKILL after amStopTimeout. It is
// idempotent and returns once the process has exited.
func (am *Alertmanager) stop() {
	am.stopOnce.Do(func() {
		if amExitedBefore(am.exited) {
			return
		}
		_ = am.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(amStopTimeout)
		defer t.Stop()
		select {
		case <-am.exited:
		case <-t.C:
			_ = am.cmd.Process.Kill()
			<-am.exited
		}
	})
}

// Stop stops Alertmanager now (SIGTERM, then SIGKILL), e.g. to test that
// Klaxon notices the Watchdog alert no longer arriving. Later calls and the
// test's cleanup do nothing more.
func (am *Alertmanager) Stop() { am.stop() }

// Exited reports whether the Alertmanager process has exited.
func (am *Alertmanager) Exited() bool { return amExitedBefore(am.exited) }

// URL returns Alertmanager's base URL, e.g. http://127.0.0.1:PORT/.
func (am *Alertmanager) URL() string { return am.url.String() }

// Dir returns the directory holding alertmanager.yml, the credentials file,
// the log and the storage.
func (am *Alertmanager) Dir() string { return am.dir }

// Log returns what Alertmanager has logged so far.
func (am *Alertmanager) Log() string {
	b, err := os.ReadFile(am.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", am.logPath, err)
	}
	return string(b)
}

// amCallContext returns the context for one API call made on behalf of tb. It
// is not derived from tb.Context(), which is canceled before cleanups run, so
// the methods also work inside a t.Cleanup function.
func amCallContext(testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), amRequestTimeout)
}

// PostAlerts posts alerts through POST /api/v2/alerts and fails the test if
// Alertmanager refuses any of them. The harness remembers each alert so that
// Resolve can re-post it unchanged but for endsAt.
func (am *Alertmanager) PostAlerts(tb testing.TB, alerts ...AMAlert) {
	tb.Helper()
	ctx, cancel := amCallContext(tb)
	defer cancel()
	if err := am.PostAlertsContext(ctx, alerts...); err != nil {
		tb.Fatal(err)
	}
}

// PostAlertsContext is PostAlerts returning the error, for tests that expect
// Alertmanager to refuse alerts.
func (am *Alertmanager) PostAlertsContext(ctx context.Context, alerts ...AMAlert) error {
	if err := am.client.postAlerts(ctx, alerts); err != nil {
		return err
	}
	am.mu.Lock()
	defer am.mu.Unlock()
	for _, a := range alerts {
		a.Labels = maps.Clone(a.Labels)
		a.Annotations = maps.Clone(a.Annotations)
		am.posted[a.Fingerprint()] = a
	}
	return nil
}

// Resolve resolves the alert with exactly these labels: it posts the alert last
// posted with them (annotations, startsAt and generatorURL unchanged; only the
// labels if none was posted through this harness) with endsAt = now, which
// Alertmanager treats as resolved. The resolved webhook follows at the group's
// next group_interval.
func (am *Alertmanager) Resolve(tb testing.TB, labels map[string]string) {
	tb.Helper()
	fp := AMFingerprint(labels)
	am.mu.Lock()
	a, ok := am.posted[fp]
	am.mu.Unlock()
	if !ok {
		a = AMAlert{Labels: maps.Clone(labels)}
	}
	a.EndsAt = time.Now().UTC()
	if !a.StartsAt.IsZero() && a.StartsAt.After(a.EndsAt) {
		a.StartsAt = a.EndsAt
	}
	am.PostAlerts(tb, a)
}

// Alerts returns the alerts Alertmanager holds that have not resolved (GET
// /api/v2/alerts), sorted by fingerprint.
func (am *Alertmanager) Alerts(tb testing.TB) []AMGettableAlert {
	tb.Helper()
	ctx, cancel := amCallContext(tb)
	defer cancel()
	out, err := am.client.alerts(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Status returns GET /api/v2/status: version, uptime, cluster state and the
// loaded configuration.
func (am *Alertmanager) Status(tb testing.TB) AMStatus {
	tb.Helper()
	ctx, cancel := amCallContext(tb)
	defer cancel()
	s, err := am.client.status(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// WebhookStats returns Alertmanager's counters for the webhook integration.
func (am *Alertmanager) WebhookStats(tb testing.TB) AMWebhookStats {
	tb.Helper()
	ctx, cancel := amCallContext(tb)
	defer cancel()
	s, err := am.client.webhookStats(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
