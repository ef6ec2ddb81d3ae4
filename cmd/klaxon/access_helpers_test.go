package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
)

// Credentials of the servers the access tests start.
const (
	acWebhookToken = "access-webhook-token"
	acAPIToken     = "access-api-token"
)

// klaxonUnderTest is a `klaxon serve` the access tests attack.
type klaxonUnderTest struct {
	base, data, rota string
	logs             *syncBuffer
	store            *boltstore.Store // the bolt store serve opened (nil with etcd)
}

// startKlaxon runs `klaxon serve` on loopback with data in data (a temp
// directory when ""), a copy of the example rota (with eve added, see
// testRota) and the webhook and admin tokens above, plus args and env. It
// stops when the test ends.
func startKlaxon(t *testing.T, data string, args []string, env map[string]string) *klaxonUnderTest {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	k := &klaxonUnderTest{data: data, rota: filepath.Join(t.TempDir(), "rota.yaml"), logs: &syncBuffer{}}
	writeTestRota(t, k.rota, true)
	t.Setenv("KLAXON_WEBHOOK_TOKEN", acWebhookToken)
	t.Setenv("KLAXON_API_TOKEN", acAPIToken)
	for key, v := range env {
		t.Setenv(key, v)
	}
	cfg, err := parseServe(append([]string{"--listen", "127.0.0.1:0", "--data", data, "--rota", k.rota}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(k.logs, nil)), serveHooks{
			ready:  func(s started) { ready <- s },
			opened: func(s *boltstore.Store) { k.store = s },
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case st := <-ready:
		k.base = "http://" + st.addr
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}
	return k
}

// writeTestRota writes the example rota to path, with alice given an email
// (for the trusted-header sign-in) and, when withEve, a fifth person, eve,
// whom tests then remove by writing the rota again without her.
func writeTestRota(t *testing.T, path string, withEve bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testtools.Root(), "rota.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "    name: Alice Archer\n", "    name: Alice Archer\n    email: alice@example.org\n", 1)
	if withEve {
		s = strings.Replace(s, "  dave:\n", "  eve:\n    name: Eve Evans\n    phone: \"+15555550105\"\n    email: eve@example.org\n  dave:\n", 1)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// removeEve writes the rota without eve and waits until the server has it
// in force (the rota API no longer lists her).
func (k *klaxonUnderTest) removeEve(t *testing.T) { t.Helper(); k.removeEveWith(t, acAPIToken) }

// removeEveWith is removeEve asking the rota API with the admin token given:
// it waits for the rota's load time to move on.
func (k *klaxonUnderTest) removeEveWith(t *testing.T, adminToken string) {
	t.Helper()
	loaded := func() string {
		var st struct {
			LoadedAt string `json:"loaded_at"`
			Valid    bool
		}
		_, body := do(t, bearer(newReq(t, "GET", k.base+"/api/v1/rota", nil), adminToken))
		if err := json.Unmarshal([]byte(body), &st); err != nil || !st.Valid {
			t.Fatalf("rota status: %s", body)
		}
		return st.LoadedAt
	}
	before := loaded()
	writeTestRota(t, k.rota, false)
	deadline := time.Now().Add(30 * time.Second)
	for loaded() == before {
		if time.Now().After(deadline) {
			t.Fatal("the rota without eve did not come into force")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline, not a timed wait
	}
}

// webhook posts an Alertmanager notification for group, firing, and returns
// the incident it went to ("" and a test error unless it answered 200).
// Tests use the id: a self-test alarm may open an incident first.
func (k *klaxonUnderTest) webhook(t *testing.T, group string, labels string) string {
	t.Helper()
	if labels == "" {
		labels = `"alertname":"DiskFull","severity":"critical"`
	}
	body := `{"version":"4","groupKey":"` + group + `","status":"firing","receiver":"klaxon","groupLabels":{},"commonLabels":{` + labels +
		`},"commonAnnotations":{},"externalURL":"http://am.example","alerts":[{"status":"firing","labels":{` + labels +
		`},"annotations":{},"startsAt":"2026-12-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"fp-` + url.PathEscape(group) + `"}]}`
	resp, answer := do(t, bearer(newReq(t, "POST", k.base+"/webhook/alertmanager", []byte(body)), acWebhookToken))
	var out struct{ Incident uint64 }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(answer), &out) != nil || out.Incident == 0 {
		t.Fatalf("webhook: %d %s", resp.StatusCode, answer)
	}
	return strconv.FormatUint(out.Incident, 10)
}

// do sends r without following redirects and returns the response with its body read.
func do(t *testing.T, r *http.Request) (*http.Response, string) {
	t.Helper()
	// The transport, not a client: a client parses a redirect's Location
	// first, and refuses the very targets an attack test looks for.
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// form makes a form POST.
func formPost(t *testing.T, u string, f url.Values) *http.Request {
	t.Helper()
	r := newReq(t, "POST", u, []byte(f.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// incidentState reads an incident's state through the API.
func (k *klaxonUnderTest) incidentState(t *testing.T, id string) string {
	t.Helper()
	_, body := do(t, bearer(newReq(t, "GET", k.base+"/api/v1/incidents/"+id, nil), acAPIToken))
	i := strings.Index(body, `"state": "`)
	if i < 0 {
		t.Fatalf("incident %s: %s", id, body)
	}
	rest := body[i+len(`"state": "`):]
	return rest[:strings.IndexByte(rest, '"')]
}

// aliceTokenBeforeStart writes a person token for alice the way a server
// of an earlier version kept it (DATA/tokens), before the server starts.
func aliceTokenBeforeStart(t *testing.T, data string) string {
	t.Helper()
	tok, _, err := auth.Create(filepath.Join(data, tokensFile), auth.API, auth.Scope{Person: "alice"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
