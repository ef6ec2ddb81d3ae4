package web

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/rotawatch"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
)

const testRota = `timezone: UTC
people:
  alice: {name: Alice Archer, phone: "+15555550101"}
  bob:   {name: Bob Baker, phone: "+15555550102"}
rotations:
  primary:   {members: [alice], shift: 7d, handoff: "monday 09:00", start: 2026-01-05}
  secondary: {members: [bob], shift: 7d, handoff: "monday 09:00", start: 2026-01-05}
policies:
  default:
    steps:
      - {notify: primary, via: sms, wait: 1h}
      - {notify: secondary, via: sms, wait: 1h}
routes:
  - policy: default
owners: [alice]
`

const (
	aliceToken = "aliceSignInToken-0123456789"
	bobToken   = "bobSignInToken-0123456789ab"
	carolToken = "carolIsNotOnTheRota-0123456"
	// adminToken is the shared admin API token: it belongs to nobody.
	adminToken = "adminApiToken-0123456789abc"
	// aliceFeed is alice's calendar feed token: not an API token.
	aliceFeed = "aliceFeedToken-0123456789ab"
)

// writeTokenFile writes the API token file (auth.File's format) giving
// alice, bob and carol their tokens and alice a feed token.
func writeTokenFile(t testing.TB, path string) {
	t.Helper()
	var b strings.Builder
	for i, e := range []struct{ kind, scope, token string }{
		{"api", "person:alice", aliceToken}, {"api", "person:bob", bobToken}, {"api", "person:carol", carolToken},
		{"feed", "person:alice", aliceFeed},
	} {
		h := auth.Hash(e.token)
		fmt.Fprintf(&b, "t%d %s %s 2026-12-01T10:00:00Z %s\n", i, e.kind, e.scope, hex.EncodeToString(h[:]))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// muxRouter mounts routes on a plain mux for tests; klaxon serve mounts
// them on its server, whose TestAuthMatrix checks every auth decision.
type muxRouter struct{ *http.ServeMux }

func (m muxRouter) Handle(pattern string, _ auth.Access, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
}

// lateActor lets the web interface be built before the engine it acts through.
type lateActor struct{ e *escalation.Engine }

func (l *lateActor) ActAs(ctx context.Context, id uint64, a notifiers.Action, person, via, pageID string) (notifiers.Outcome, error) {
	return l.e.ActAs(ctx, id, a, person, via, pageID)
}

// syncBuffer is a log buffer safe for concurrent writes.
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

// fixture is the web interface on a real store, engine and rota, behind a
// loopback server, paging through a recording SMS channel.
type fixture struct {
	t        testing.TB
	web      *Web
	srv      *httptest.Server
	store    *boltstore.Store
	eng      *escalation.Engine
	sms      *recorder.Recorder
	watcher  *rotawatch.Watcher
	rotaPath string
	logs     *syncBuffer
	client   *http.Client
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "data"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rp := filepath.Join(dir, "rota.yaml")
	if err := os.WriteFile(rp, []byte(testRota), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	wt, err := rotawatch.NewWatcher(rp, log)
	if err != nil {
		t.Fatal(err)
	}
	key, err := LoadKey(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	tokenPath := filepath.Join(dir, "tokens")
	writeTokenFile(t, tokenPath)
	tokens := PersonTokens(auth.NewFile(tokenPath, adminToken))
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	actor := &lateActor{}
	cfg := Config{Store: st, Actor: actor, Rota: wt, Signer: NewSigner(key), Tokens: tokens, PublicURL: srv.URL,
		LiveInterval: 10 * time.Millisecond, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Register(muxRouter{mux})
	sms := recorder.New(notifiers.SMS)
	eng := escalation.New(escalation.Config{Store: st, Rota: func() escalation.Rota { return rota.ForEngine(wt.Current()) },
		Notifiers: []notifiers.Notifier{sms}, Inline: true, Link: w.Link, Logger: log,
		OnChange: func(uint64) { w.Changed() }})
	actor.e = eng
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &fixture{t: t, web: w, srv: srv, store: st, eng: eng, sms: sms, watcher: wt, rotaPath: rp, logs: logs, client: client}
}

// fire opens an incident for group and returns its number.
func (f *fixture) fire(group string) uint64 {
	f.t.Helper()
	now := time.Now()
	res, err := f.eng.Ingest(context.Background(), escalation.Notification{GroupKey: group, Status: "firing",
		CommonLabels: map[string]string{"alertname": "DiskFull", "severity": "critical"},
		Alerts: []escalation.Alert{{Fingerprint: "fp-" + group, Status: "firing", StartsAt: now,
			Labels:       map[string]string{"alertname": "DiskFull", "severity": "critical", "instance": "db-1"},
			Annotations:  map[string]string{"summary": "Disk full on db-1", "runbook_url": "https://runbooks.example.org/disk", "description": "javascript-free"},
			GeneratorURL: "javascript:alert(1)"}}})
	if err != nil || !res.Opened {
		f.t.Fatalf("ingest: %+v %v", res, err)
	}
	return res.Incident
}

// linkFor returns the link in the latest page texted to person.
func (f *fixture) linkFor(person string) string {
	f.t.Helper()
	pages := f.sms.Pages()
	for i := len(pages) - 1; i >= 0; i-- {
		if pages[i].Kind == notifiers.KindPage && pages[i].Recipient.PersonID == person {
			return pages[i].Link
		}
	}
	f.t.Fatalf("no page for %s among %d", person, len(pages))
	return ""
}

type response struct {
	code   int
	body   string
	header http.Header
}

func (f *fixture) do(method, path string, form url.Values, cookie string, hdr map[string]string) response {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = f.srv.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: f.web.CookieName(), Value: cookie})
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b), resp.Header}
}

// signIn exchanges token for a session cookie value.
func (f *fixture) signIn(token string) string {
	f.t.Helper()
	r := f.do("POST", "/signin", url.Values{"token": {token}}, "", nil)
	if r.code != http.StatusSeeOther {
		f.t.Fatalf("sign-in: %d %s", r.code, r.body)
	}
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == f.web.CookieName() {
			return c.Value
		}
	}
	f.t.Fatal("sign-in set no session cookie")
	return ""
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the first form on the page at path.
func (f *fixture) csrf(path, cookie string) string {
	f.t.Helper()
	r := f.do("GET", path, nil, cookie, nil)
	m := csrfField.FindStringSubmatch(r.body)
	if r.code != 200 || m == nil {
		f.t.Fatalf("GET %s: %d, no CSRF token in\n%s", path, r.code, r.body)
	}
	return m[1]
}

// snapshot is an incident's state and timeline length, to prove nothing changed.
func (f *fixture) snapshot(id uint64) (escalation.State, int) {
	f.t.Helper()
	inc, err := f.store.Incident(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	tl, err := f.store.Timeline(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return inc.State, len(tl)
}
