package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

var (
	klaxonOnce sync.Once
	klaxonBin  string
	klaxonErr  string
)

// KlaxonBinary builds cmd/klaxon once per test binary and returns its path.
func KlaxonBinary(tb testing.TB) string {
	tb.Helper()
	klaxonOnce.Do(func() {
		dir, err := os.MkdirTemp("", "klaxon-bin-")
		if err != nil {
			klaxonErr = err.Error()
			return
		}
		// Static and -trimpath, as a release builds it, so that the
		// packaging and image tests (internal/deploytest) reuse the compiled
		// packages and only link again.
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "klaxon"), "./cmd/klaxon")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = testtools.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			klaxonErr = fmt.Sprintf("building klaxon: %v\n%s", err, out)
			return
		}
		klaxonBin = filepath.Join(dir, "klaxon")
	})
	if klaxonErr != "" {
		tb.Fatal(klaxonErr)
	}
	return klaxonBin
}

// KlaxonConfig configures StartKlaxon.
type KlaxonConfig struct {
	DataDir      string // default: a new temp dir
	Listen       string // default 127.0.0.1:0; see FreeAddr when callbacks need the URL up front
	Rota         string // default: the repository's rota.yaml
	WebhookToken string // default: a random token passed as KLAXON_WEBHOOK_TOKEN
	APIToken     string // default: a random token passed as KLAXON_API_TOKEN
	// GeneratedTokens passes no tokens: klaxon serve generates them into the
	// data directory on first start (the quickstart), and the harness reads
	// them from there once it listens.
	GeneratedTokens bool
	Args            []string // more flags for klaxon serve
	Env             []string // more environment (KEY=VALUE)
	Binary          string   // default: cmd/klaxon built from this checkout
}

// Klaxon is a `klaxon serve` subprocess on 127.0.0.1.
type Klaxon struct {
	tb     testing.TB
	cfg    KlaxonConfig
	bin    string
	cmd    *exec.Cmd
	url    string
	done   chan struct{}
	mu     sync.Mutex
	logs   bytes.Buffer
	client *http.Client
}

// StartKlaxon builds and starts klaxon serve, waiting until it listens. It is
// killed when the test ends; its log is printed if the test failed.
func StartKlaxon(tb testing.TB, cfg KlaxonConfig) *Klaxon {
	tb.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if cfg.Rota == "" {
		cfg.Rota = filepath.Join(testtools.Root(), "rota.yaml")
	}
	if !cfg.GeneratedTokens {
		if cfg.WebhookToken == "" {
			cfg.WebhookToken = randomToken(tb)
		}
		if cfg.APIToken == "" {
			cfg.APIToken = randomToken(tb)
		}
	}
	bin := cfg.Binary
	if bin == "" {
		bin = KlaxonBinary(tb)
	}
	k := &Klaxon{tb: tb, cfg: cfg, bin: bin, client: &http.Client{Timeout: 30 * time.Second}}
	k.start()
	tb.Cleanup(func() {
		k.Kill()
		if tb.Failed() {
			tb.Logf("klaxon log:\n%s", k.Logs())
		}
	})
	return k
}

func (k *Klaxon) start() {
	k.tb.Helper()
	listen := k.cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"serve", "--listen", listen, "--data", k.cfg.DataDir, "--rota", k.cfg.Rota, "--log-format", "json", "--log-level", "debug"}
	args = append(args, k.cfg.Args...)
	cmd := exec.Command(k.bin, args...)
	cmd.Env = append(os.Environ(), k.cfg.Env...)
	if !k.cfg.GeneratedTokens {
		cmd.Env = append(cmd.Env, "KLAXON_WEBHOOK_TOKEN="+k.cfg.WebhookToken, "KLAXON_API_TOKEN="+k.cfg.APIToken)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		k.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		k.tb.Fatal(err)
	}
	k.cmd, k.done = cmd, make(chan struct{})
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			k.mu.Lock()
			k.logs.WriteString(line + "\n")
			k.mu.Unlock()
			var rec struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "klaxon serving" {
				select {
				case listening <- rec.Listen:
				default:
				}
			}
		}
		cmd.Wait()
		close(k.done)
	}()
	select {
	case addr := <-listening:
		k.url = "http://" + addr
		if k.cfg.GeneratedTokens {
			k.cfg.WebhookToken = k.readToken("webhook-token")
			k.cfg.APIToken = k.readToken("api-token")
		}
	case <-k.done:
		k.tb.Fatalf("klaxon serve exited before listening:\n%s", k.Logs())
	case <-time.After(60 * time.Second):
		k.tb.Fatalf("klaxon serve did not listen within 60s:\n%s", k.Logs())
	}
}

func randomToken(tb testing.TB) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (k *Klaxon) readToken(name string) string {
	b, err := os.ReadFile(filepath.Join(k.cfg.DataDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "" // none generated (--insecure-no-auth)
	}
	if err != nil {
		k.tb.Fatalf("klaxon serve did not generate its %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

// WebhookToken is the Alertmanager webhook token the server uses.
func (k *Klaxon) WebhookToken() string { return k.cfg.WebhookToken }

// APIToken is the admin API token the server uses.
func (k *Klaxon) APIToken() string { return k.cfg.APIToken }

// URL is the server's base URL.
func (k *Klaxon) URL() string { return k.url }

// PID is the server process's id (for reading its memory from /proc).
func (k *Klaxon) PID() int { return k.cmd.Process.Pid }

// DataDir is the server's data directory.
func (k *Klaxon) DataDir() string { return k.cfg.DataDir }

// Logs returns what the server logged so far.
func (k *Klaxon) Logs() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.logs.String()
}

// Kill stops the server with SIGKILL, like a crash, and waits for it to exit.
func (k *Klaxon) Kill() {
	if k.cmd == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGKILL)
	<-k.done
}

// Pause freezes the server with SIGSTOP: a process that stops answering
// without dying (a long GC pause, a stalled VM) until Resume.
func (k *Klaxon) Pause() { _ = k.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server run again with SIGCONT.
func (k *Klaxon) Resume() { _ = k.cmd.Process.Signal(syscall.SIGCONT) }

// Stop stops the server with SIGTERM (graceful shutdown) and waits.
func (k *Klaxon) Stop() {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(30 * time.Second):
		k.tb.Errorf("klaxon did not stop within 30s of SIGTERM")
		k.Kill()
	}
}

// Restart starts the server again on the same data directory.
func (k *Klaxon) Restart() {
	k.tb.Helper()
	k.start()
}

// Do sends a request with the webhook token (paths under /webhook/) or the
// API token, and decodes a JSON answer into out (if not nil).
func (k *Klaxon) Do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	tok := k.cfg.APIToken
	if strings.HasPrefix(path, "/webhook/") {
		tok = k.cfg.WebhookToken
	}
	return k.DoWith(ctx, method, path, tok, body, out)
}

// DoWith is Do with the given bearer token ("" sends none).
func (k *Klaxon) DoWith(ctx context.Context, method, path, token string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, k.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decoding %s: %w", raw, err)
		}
	}
	return resp.StatusCode, nil
}

// Eventually polls cond until it returns true or the deadline passes, failing
// the test with what cond last reported.
func Eventually(tb testing.TB, within time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %s: %s", within, why)
		}
		<-tick.C
	}
}

// FreeAddr returns a loopback address that was free a moment ago, for a
// Klaxon whose public URL (provider callbacks) must be known before it starts.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// PersonToken creates an API token for a rota person the way an operator
// does (`klaxon token create --person ID --server URL` with the admin API
// token: tokens live in the running server's store) and returns it. The
// server accepts it at once: for the API, and for signing in to the web
// interface.
func (k *Klaxon) PersonToken(person string) string {
	k.tb.Helper()
	cmd := exec.Command(k.bin, "token", "create", "--person", person, "--server", k.url, "--data", k.cfg.DataDir, "--rota", k.cfg.Rota)
	cmd.Env = append(os.Environ(), "KLAXON_API_TOKEN="+k.APIToken())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		k.tb.Fatalf("klaxon token create --person %s: %v\n%s", person, err, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	if tok == "" {
		k.tb.Fatalf("klaxon token create --person %s printed no token", person)
	}
	return tok
}
