package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

const (
	testToken = "syt_a2xheG9u_SECRETtokenVALUE_0xyz"
	testBot   = "@klaxon:example.org"
	testRoom  = "!alerts:example.org"
)

// sent is one event the fake homeserver accepted.
type sent struct {
	Room    string
	Type    string
	Txn     string
	EventID string
	Content map[string]any
}

// fakeHS is a small, faithful-enough Matrix client-server API for unit tests:
// it checks the bearer token, deduplicates transaction ids like a real
// homeserver, and can be told to fail specific endpoints.
type fakeHS struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	token    string
	whoami   string
	joined   []string
	aliases  map[string]string
	power    map[string]any
	sent     []sent
	txns     map[string]string // room/txn → event id
	seq      int
	fail     map[string][]failure // path prefix (after /_matrix/client/v3) → queued failures
	syncs    chan string          // queued /sync bodies; an empty queue long-polls
	syncReqs []string             // since values of /sync requests
	inSync   int                  // /sync requests being served
	filters  int
	created  []map[string]any
	messages map[string]string // from token → /messages body
	authSeen []string
}

type failure struct {
	status int
	body   string
	header map[string]string
}

func newFakeHS(t *testing.T) *fakeHS {
	f := &fakeHS{
		t:        t,
		token:    testToken,
		whoami:   testBot,
		joined:   []string{testRoom},
		aliases:  map[string]string{},
		txns:     map[string]string{},
		fail:     map[string][]failure{},
		messages: map[string]string{},
		power: map[string]any{
			"users":          map[string]any{testBot: 50},
			"users_default":  0,
			"events":         map[string]any{"m.room.power_levels": 100},
			"events_default": 0,
		},
	}
	f.syncs = make(chan string, 100)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHS) failNext(prefix string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[prefix] = append(f.fail[prefix], failure{status: status, body: body})
}

func (f *fakeHS) queueSync(body string) { f.syncs <- body }

// syncIdle reports whether no /sync request is being served, so that a body
// queued now goes to the next request, not to an abandoned one.
func (f *fakeHS) syncIdle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inSync == 0
}

func (f *fakeHS) syncSince() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.syncReqs...)
}

func (f *fakeHS) sentEvents() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.sent...)
}

func (f *fakeHS) writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errcode":%q,"error":%q}`, code, msg)
}

func (f *fakeHS) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/_matrix/client/v3")
	f.authSeen = append(f.authSeen, r.Header.Get("Authorization"))
	for prefix, q := range f.fail {
		if strings.HasPrefix(path, prefix) && len(q) > 0 {
			fl := q[0]
			f.fail[prefix] = q[1:]
			for k, v := range fl.header {
				w.Header().Set(k, v)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(fl.status)
			io.WriteString(w, fl.body)
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.writeErr(w, 401, "M_UNKNOWN_TOKEN", "Unrecognised access token")
		return
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range parts {
		parts[i] = unescape(p)
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && path == "/account/whoami":
		fmt.Fprintf(w, `{"user_id":%q}`, f.whoami)
	case r.Method == http.MethodGet && path == "/joined_rooms":
		json.NewEncoder(w).Encode(map[string]any{"joined_rooms": f.joined})
	case r.Method == http.MethodGet && len(parts) >= 2 && parts[0] == "directory" && parts[1] == "room":
		room, ok := f.aliases[parts[2]]
		if !ok {
			f.writeErr(w, 404, "M_NOT_FOUND", "Room alias not found")
			return
		}
		fmt.Fprintf(w, `{"room_id":%q,"servers":["example.org"]}`, room)
	case r.Method == http.MethodGet && len(parts) >= 4 && parts[0] == "rooms" && parts[2] == "state" && parts[3] == "m.room.power_levels":
		json.NewEncoder(w).Encode(f.power)
	case r.Method == http.MethodPut && len(parts) == 5 && parts[0] == "rooms" && parts[2] == "send":
		room, typ, txn := parts[1], parts[3], parts[4]
		if ev, ok := f.txns[room+"/"+txn]; ok {
			fmt.Fprintf(w, `{"event_id":%q}`, ev)
			return
		}
		var content map[string]any
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&content); err != nil {
			f.writeErr(w, 400, "M_NOT_JSON", "bad json")
			return
		}
		f.seq++
		ev := fmt.Sprintf("$ev%d", f.seq)
		f.txns[room+"/"+txn] = ev
		f.sent = append(f.sent, sent{Room: room, Type: typ, Txn: txn, EventID: ev, Content: content})
		fmt.Fprintf(w, `{"event_id":%q}`, ev)
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "user" && parts[2] == "filter":
		f.filters++
		fmt.Fprintf(w, `{"filter_id":"filter%d"}`, f.filters)
	case r.Method == http.MethodGet && path == "/sync":
		f.syncReqs = append(f.syncReqs, r.URL.Query().Get("since"))
		f.inSync++
		defer func() { f.inSync-- }() // runs after the re-lock below
		f.mu.Unlock()
		defer f.mu.Lock()
		select {
		case body := <-f.syncs:
			io.WriteString(w, body)
		case <-r.Context().Done():
		}
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "rooms" && parts[2] == "messages":
		body, ok := f.messages[r.URL.Query().Get("from")]
		if !ok {
			body = `{"chunk":[],"start":"x"}`
		}
		io.WriteString(w, body)
	case r.Method == http.MethodPost && path == "/createRoom":
		var req map[string]any
		json.NewDecoder(r.Body).Decode(&req)
		f.created = append(f.created, req)
		f.seq++
		room := fmt.Sprintf("!dm%d:example.org", f.seq)
		f.joined = append(f.joined, room)
		fmt.Fprintf(w, `{"room_id":%q}`, room)
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "rooms" && parts[2] == "join":
		f.joined = append(f.joined, parts[1])
		fmt.Fprintf(w, `{"room_id":%q}`, parts[1])
	default:
		f.writeErr(w, 404, "M_UNRECOGNIZED", "unrecognised "+r.Method+" "+path)
	}
}

func unescape(s string) string {
	out, err := urlPathUnescape(s)
	if err != nil {
		return s
	}
	return out
}

// mapState is a map-backed notifiers.StateStore.
type mapState struct {
	mu   sync.Mutex
	m    map[string][]byte
	fail error
}

func newMapState() *mapState { return &mapState{m: map[string][]byte{}} }

func (s *mapState) GetState(_ context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	v, ok := s.m[bucket+"\x00"+key]
	if !ok {
		return nil, nil
	}
	return bytes.Clone(v), nil
}

func (s *mapState) PutState(_ context.Context, bucket, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[bucket+"\x00"+key] = bytes.Clone(value)
	return nil
}

// recResponder records responses; people in onRota are accepted.
type recResponder struct {
	mu     sync.Mutex
	onRota map[string]string // matrix id → name
	got    []notifiers.Response
	err    error // returned (for people on the rota) while set
	calls  chan notifiers.Response
}

func newResponder(onRota map[string]string) *recResponder {
	return &recResponder{onRota: onRota, calls: make(chan notifiers.Response, 100)}
}

func (r *recResponder) Respond(_ context.Context, resp notifiers.Response) (notifiers.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() { r.calls <- resp }()
	name, ok := r.onRota[resp.From]
	if !ok {
		return notifiers.Outcome{}, notifiers.ErrNotOnRota
	}
	if r.err != nil {
		return notifiers.Outcome{}, r.err
	}
	r.got = append(r.got, resp)
	return notifiers.Outcome{Incident: resp.Incident, Applied: true, By: name,
		Message: fmt.Sprintf("Incident #%d %sed by %s (via Matrix)", resp.Incident, resp.Action, name)}, nil
}

func (r *recResponder) responses() []notifiers.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notifiers.Response(nil), r.got...)
}

// logBuffer captures slog output for secret-leak checks.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var fixedNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// newTestNotifier returns a notifier talking to f, with state, responder and
// a captured log.
func newTestNotifier(t *testing.T, f *fakeHS, mod func(*Config)) (*Notifier, *mapState, *recResponder, *logBuffer) {
	t.Helper()
	st := newMapState()
	resp := newResponder(map[string]string{"@alice:example.org": "Alice"})
	logs := &logBuffer{}
	cfg := Config{
		Homeserver:  f.srv.URL,
		UserID:      testBot,
		AccessToken: testToken,
		Room:        testRoom,
		HTTPClient:  f.srv.Client(),
		Responder:   resp,
		State:       st,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:         func() time.Time { return fixedNow },
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), testToken) {
			t.Errorf("the access token appears in the logs:\n%s", logs.String())
		}
	})
	return n, st, resp, logs
}

// testPage is a realistic first page for incident 42.
func testPage() notifiers.Page {
	return notifiers.Page{
		ID:          "out-42-1",
		Kind:        notifiers.KindPage,
		Incident:    42,
		IncidentKey: "grp-abc",
		Channel:     notifiers.Matrix,
		Recipient:   notifiers.Recipient{PersonID: "alice", Name: "Alice", MatrixID: "@alice:example.org"},
		Title:       "HighErrorRate on api",
		Severity:    "critical",
		Alerts: []notifiers.Alert{{
			Fingerprint:  "f1",
			Status:       "firing",
			Labels:       map[string]string{"alertname": "HighErrorRate", "severity": "critical", "job": "api", "instance": "api-1:9090"},
			Annotations:  map[string]string{"summary": "5xx ratio above 5%", "description": "The API returns errors for 12% of requests.", "runbook_url": "https://runbooks.example.org/api-errors"},
			StartsAt:     fixedNow.Add(-5 * time.Minute),
			GeneratorURL: "https://prometheus.example.org/graph?g0.expr=rate",
		}},
		ExternalURL: "https://alertmanager.example.org",
		Link:        "https://klaxon.example.org/incidents/42",
	}
}

func urlPathUnescape(s string) (string, error) { return url.PathUnescape(s) }

func urlEscape(s string) string { return url.PathEscape(s) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }
