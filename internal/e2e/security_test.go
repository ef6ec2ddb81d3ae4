package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/e2e/harness"
)

const defaultWait = 10 * time.Second

func itoa(id uint64) string { return strconv.FormatUint(id, 10) }

// cleanEnv is the environment without KLAXON_ variables, so a developer's
// own token cannot make a test pass.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KLAXON_") {
			out = append(out, kv)
		}
	}
	return out
}

// TestQuickstartIsLockedByDefault: klaxon serve with no token configured
// generates both tokens into the data directory (0600), logs where they are
// but never what they are, refuses requests without them, keeps them across
// a restart, and `klaxon ack` finds the API token in the data directory.
func TestQuickstartIsLockedByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	k := harness.StartKlaxon(t, harness.KlaxonConfig{GeneratedTokens: true})
	wh, api := k.WebhookToken(), k.APIToken()
	if wh == "" || api == "" || wh == api {
		t.Fatal("tokens not generated, or the same token twice")
	}
	for _, name := range []string{"webhook-token", "api-token"} {
		fi, err := os.Stat(filepath.Join(k.DataDir(), name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", name, err, fi.Mode().Perm())
		}
		if !strings.Contains(k.Logs(), filepath.Join(k.DataDir(), name)) {
			t.Errorf("the log does not say where the %s is", name)
		}
	}
	if strings.Contains(k.Logs(), wh) || strings.Contains(k.Logs(), api) {
		t.Fatal("a generated token appears in the log")
	}

	ctx := context.Background()
	if code, _ := k.DoWith(ctx, "POST", "/webhook/alertmanager", "", webhookBody("q-1"), nil); code != 401 {
		t.Fatalf("webhook without a token: %d, want 401", code)
	}
	if code, _ := k.DoWith(ctx, "POST", "/api/v1/incidents/1/ack", "", nil, nil); code != 401 {
		t.Fatalf("ack without a token: %d, want 401", code)
	}
	if code, err := k.Do(ctx, "POST", "/webhook/alertmanager", webhookBody("q-1"), nil); err != nil || code != 200 {
		t.Fatalf("webhook with the generated token: %d %v", code, err)
	}
	var list []incidentJSON
	harness.Eventually(t, defaultWait, func() (bool, string) {
		list = incidents(t, k, "")
		return len(list) > 0, "no incident"
	})
	id := list[0].ID

	// The CLI reads the generated token from --data, as the README's tour does.
	cmd := exec.Command(harness.KlaxonBinary(t), "ack", "--server", k.URL(), "--data", k.DataDir(), itoa(id))
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "acknowledged") {
		t.Fatalf("klaxon ack with the data directory's token: %v\n%s", err, out)
	}
	// Without the data directory (and no env) it is refused, saying what to do.
	cmd = exec.Command(harness.KlaxonBinary(t), "ack", "--server", k.URL(), "--data", t.TempDir(), itoa(id))
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "KLAXON_API_TOKEN_FILE") {
		t.Fatalf("klaxon ack without a token: %v\n%s", err, out)
	}

	k.Stop()
	k.Restart()
	if k.WebhookToken() != wh || k.APIToken() != api {
		t.Fatal("the tokens changed across a restart")
	}
}

// TestInsecureNoAuthWarnsAtEveryStart: the one opt-out waives the tokens and
// says so loudly each time the server starts.
func TestInsecureNoAuthWarnsAtEveryStart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs klaxon serve as a subprocess")
	}
	k := harness.StartKlaxon(t, harness.KlaxonConfig{GeneratedTokens: true, Args: []string{"--insecure-no-auth"}})
	if n := strings.Count(k.Logs(), "AUTHENTICATION DISABLED"); n != 1 {
		t.Fatalf("%d warnings after the first start, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(k.DataDir(), "api-token")); err == nil {
		t.Error("tokens were generated although auth is waived")
	}
	if code, _ := k.DoWith(context.Background(), "POST", "/webhook/alertmanager", "", webhookBody("i-1"), nil); code != 200 {
		t.Fatalf("webhook without a token under --insecure-no-auth: %d", code)
	}
	k.Stop()
	k.Restart()
	if n := strings.Count(k.Logs(), "AUTHENTICATION DISABLED"); n != 2 {
		t.Fatalf("%d warnings after two starts, want 2", n)
	}
}
