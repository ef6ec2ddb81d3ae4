package rotaapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/klaxon-oncall/klaxon/internal/auth"
	"github.com/klaxon-oncall/klaxon/internal/rotawatch"
)

const testRota = `timezone: Europe/London
people:
  alice: {name: Alice, phone: "+15555550101", matrix: "@alice:example.org", pagerduty: PALICE1}
  bob: {name: Bob, phone: "+15555550102", matrix: "@bob:example.org"}
  carol: {name: Carol, phone: "+15555550103", pagerduty: PCAROL3}
rotations:
  primary:
    members: [alice, bob]
    handoff: monday 09:00
    start: 2026-01-05
    overrides:
      - {who: carol, instead_of: bob, from: 2026-01-13 09:00, to: 2026-01-14 09:00, reason: dentist}
  later:
    members: [carol]
    handoff: "09:00"
    shift: 1d
    start: 2027-01-01
policies:
  default:
    steps:
      - {notify: primary, via: [phone, pagerduty], wait: 5m}
      - {notify: later, via: phone, wait: 5m}
routes:
  - policy: default
`

const token = "Bearer s3cret"

// protect is a stand-in for the server's authentication middleware.
func protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// router is a stand-in for the server: it applies protect to API routes.
type router struct{ mux *http.ServeMux }

func (r router) Handle(pattern string, a auth.Access, h http.Handler) {
	if a == auth.APIToken {
		h = protect(h)
	}
	r.mux.Handle(pattern, h)
}

// Feed tokens of the rig.
const (
	feedAlice   = "feed-alice-token"
	feedCarol   = "feed-carol-token"
	feedPrimary = "feed-primary-token"
	feedZed     = "feed-zed-token"
)

func feeds(tok string) (auth.Scope, bool) {
	s, ok := map[string]auth.Scope{feedAlice: {Person: "alice"}, feedCarol: {Person: "carol"},
		feedPrimary: {Rotation: "primary"}, feedZed: {Person: "zed"}}[tok]
	return s, ok
}

type rig struct {
	srv  *httptest.Server
	w    *rotawatch.Watcher
	path string
}

func newRig(t *testing.T, now time.Time) *rig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rota.yaml")
	if err := os.WriteFile(path, []byte(testRota), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := rotawatch.NewWatcher(path, nil, rotawatch.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Register(router{mux}, w, feeds, func() time.Time { return now })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &rig{srv: srv, w: w, path: path}
}

func (r *rig) get(t *testing.T, path string, auth bool) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", token)
	}
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestOnCall(t *testing.T) {
	tests := []struct {
		at                  string
		person, until, next string
		override            bool
	}{
		{"2026-01-06T12:00:00Z", "alice", "2026-01-12T09:00:00Z", "bob", false},
		{"2026-01-13T12:00:00Z", "carol", "2026-01-14T09:00:00Z", "bob", true},
		{"2026-01-14T12:00:00Z", "bob", "2026-01-19T09:00:00Z", "alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.at, func(t *testing.T) {
			r := newRig(t, date(tt.at))
			resp, body := r.get(t, "/api/v1/oncall", true)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			var got OnCallResponse
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Rotations) != 2 || got.Rotations[0].Rotation != "later" || got.Rotations[1].Rotation != "primary" {
				t.Fatalf("rotations %+v", got.Rotations)
			}
			later := got.Rotations[0]
			if later.OnCall != nil || !later.Until.Equal(date("2027-01-01T09:00:00Z")) {
				t.Errorf("a rotation not started yet: %+v", later)
			}
			p := got.Rotations[1]
			if p.OnCall == nil || p.OnCall.ID != tt.person || !p.Until.Equal(date(tt.until)) || p.Override != tt.override {
				t.Fatalf("primary = %+v, want %s until %s", p, tt.person, tt.until)
			}
			if p.Next == nil || p.Next.ID != tt.next {
				t.Errorf("next = %+v, want %s", p.Next, tt.next)
			}
			if tt.override && (p.Reason != "dentist" || p.CoveringFor != "bob") {
				t.Errorf("override details %+v", p)
			}
			if p.OnCall.Phone == "" {
				t.Error("no contact details")
			}
		})
	}
}

func TestAuthAndBadRequests(t *testing.T) {
	r := newRig(t, date("2026-01-06T12:00:00Z"))
	tests := []struct {
		path   string
		auth   bool
		status int
	}{
		{"/api/v1/oncall", false, http.StatusUnauthorized},
		{"/api/v1/rota", false, http.StatusUnauthorized},
		{"/api/v1/oncall?x=1", true, http.StatusBadRequest},
		{"/api/v1/rota?x=1", true, http.StatusBadRequest},
		{"/rota.ics", false, http.StatusUnauthorized},
		{"/rota.ics?person=alice", false, http.StatusUnauthorized},
		{"/rota.ics?person=alice&token=wrong", false, http.StatusUnauthorized},
		{"/rota.ics?token=s3cret", true, http.StatusUnauthorized},
		{"/rota.ics?token=" + feedAlice, false, http.StatusOK},
		{"/rota.ics?token=" + feedAlice + "&person=alice&days=7", false, http.StatusOK},
		{"/rota.ics?token=" + feedAlice + "&person=bob", false, http.StatusForbidden},
		{"/rota.ics?token=" + feedAlice + "&rotation=primary", false, http.StatusForbidden},
		{"/rota.ics?token=" + feedPrimary, false, http.StatusOK},
		{"/rota.ics?token=" + feedPrimary + "&person=alice", false, http.StatusForbidden},
		{"/rota.ics?token=" + feedZed, false, http.StatusNotFound},
		{"/rota.ics?token=" + feedAlice + "&token=" + feedAlice, false, http.StatusBadRequest},
		{"/rota.ics?person=alice&person=bob", false, http.StatusBadRequest},
		{"/rota.ics?who=alice", false, http.StatusBadRequest},
		{"/rota.ics?person=", false, http.StatusBadRequest},
		{"/rota.ics?person=%00", false, http.StatusBadRequest},
		{"/rota.ics?person=../etc", false, http.StatusBadRequest},
		{"/rota.ics?person=%zz", false, http.StatusBadRequest},
		{"/rota.ics?days=0", false, http.StatusBadRequest},
		{"/rota.ics?days=367", false, http.StatusBadRequest},
		{"/rota.ics?days=ten", false, http.StatusBadRequest},
		{"/rota.ics?person=" + strings.Repeat("a", 2000), false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		resp, body := r.get(t, tt.path, tt.auth)
		if resp.StatusCode != tt.status {
			t.Errorf("GET %.60s: %d, want %d (%s)", tt.path, resp.StatusCode, tt.status, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+"/api/v1/oncall", nil)
	req.Header.Set("Authorization", token)
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestICSFeed(t *testing.T) {
	r := newRig(t, date("2026-01-06T12:00:00Z"))
	resp, body := r.get(t, "/rota.ics?token="+feedCarol+"&days=30", false)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/calendar") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cal, err := ics.ParseCalendar(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	evs := cal.Events()
	if len(evs) != 1 {
		t.Fatalf("%d events for carol, want 1 (the override):\n%s", len(evs), body)
	}
	start, _ := evs[0].GetStartAt()
	end, _ := evs[0].GetEndAt()
	if !start.Equal(date("2026-01-13T09:00:00Z")) || !end.Equal(date("2026-01-14T09:00:00Z")) {
		t.Errorf("carol's shift %s – %s", start, end)
	}
	for _, secret := range []string{"+1555", "example.org", "PCAROL3"} {
		if strings.Contains(body, secret) {
			t.Errorf("the public feed contains contact detail %q", secret)
		}
	}
}

func TestRotaStatusAfterBrokenReload(t *testing.T) {
	r := newRig(t, date("2026-01-06T12:00:00Z"))
	var st RotaResponse
	_, body := r.get(t, "/api/v1/rota", true)
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Valid || len(st.Errors) != 0 || st.Source != r.path || st.LoadedAt.IsZero() {
		t.Fatalf("initial status %+v", st)
	}
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "people.bob: bob has no PagerDuty user") {
		t.Errorf("warnings %q", st.Warnings)
	}
	broken := strings.Replace(testRota, "notify: primary", "notify: primry", 1)
	broken = strings.Replace(broken, "Europe/London", "Europe/Lundon", 1)
	if err := os.WriteFile(r.path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.w.Reload(); err == nil {
		t.Fatal("broken reload accepted")
	}
	_, body = r.get(t, "/api/v1/rota", true)
	st = RotaResponse{}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Valid || len(st.Errors) != 2 || !strings.Contains(st.Errors[0], "rota.yaml:1:11: timezone") ||
		!strings.Contains(st.Errors[1], "policies.default.steps[0].notify: unknown rotation \"primry\"") {
		t.Errorf("status after a broken reload: %+v", st)
	}
	// The old rota still serves.
	resp, _ := r.get(t, "/api/v1/oncall", true)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("oncall after broken reload: %d", resp.StatusCode)
	}
}
