package opsgenie

import (
	"context"
	"github.com/klaxon-oncall/klaxon/internal/importer/importertest"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// now is before Europe/Berlin (2026-10-25) and America/Los_Angeles
// (2026-11-01) change clocks.
var now = time.Date(2026, 10, 20, 12, 0, 0, 0, time.UTC)

type sleeps struct {
	mu   sync.Mutex
	list []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, d)
	return nil
}

func newSource(t *testing.T, url, key string) (*Source, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	s, err := New(url, key, &importer.RetryTransport{Sleep: sl.sleep})
	if err != nil {
		t.Fatal(err)
	}
	return s, sl
}

func build(t *testing.T, f *fakeOpsgenie, mutate func(*importer.Model)) (*Source, *importer.Result) {
	t.Helper()
	src, _ := newSource(t, f.srv.URL, f.key)
	m, err := src.Read(context.Background(), now, 4)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(m)
	}
	res, err := importer.Build(m, importer.Options{Now: now, Weeks: 4, RouteLabel: "team"})
	if err != nil {
		t.Fatal(err)
	}
	return src, res
}

func TestImportGolden(t *testing.T) {
	f := newFake(t)
	f.example()
	f.pageSize = 1
	src, res := build(t, f, nil)
	importertest.CheckImport(t, res, src, now, "Opsgenie", "who is on call")
	if f.calls["users"] < 4 {
		t.Errorf("users read in %d requests, want one per page and contacts", f.calls["users"])
	}
}

func TestVerifyFailsWhenARestrictionIsDropped(t *testing.T) {
	f := newFake(t)
	f.example()
	src, res := build(t, f, func(m *importer.Model) {
		for _, s := range m.Schedules {
			for _, l := range s.Layers {
				l.Restrictions = nil
			}
		}
	})
	bad, _, err := res.VerifyWith(context.Background(), src, now, 28*24)
	if err != nil {
		t.Fatal(err)
	}
	if n := importer.Unreported(bad); n < 100 {
		t.Fatalf("%d unexplained hours with the time restrictions dropped, want many", n)
	}
}

func TestRateLimitedRequestsWaitForRetryAfter(t *testing.T) {
	f := newFake(t)
	f.example()
	f.fail = []int{http.StatusTooManyRequests, http.StatusTooManyRequests}
	src, sl := newSource(t, f.srv.URL, f.key)
	if _, err := src.Read(context.Background(), now, 4); err != nil {
		t.Fatal(err)
	}
	if len(sl.list) != 2 || sl.list[0] != 3*time.Second {
		t.Fatalf("waits %v, want two of 3s", sl.list)
	}
}

func TestBadAnswersGiveClearErrors(t *testing.T) {
	f := newFake(t)
	f.example()
	const wrong = "11111111-2222-3333-4444-555555555555"
	src, _ := newSource(t, f.srv.URL, wrong)
	if _, err := src.Read(context.Background(), now, 4); err == nil || !strings.Contains(err.Error(), "401 Unauthorized: the key in OPSGENIE_API_KEY is not valid") || strings.Contains(err.Error(), wrong) {
		t.Fatalf("401: %v", err)
	}
	raw := newFake(t)
	raw.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"data": [{"id": `)) })
	src, _ = newSource(t, raw.srv.URL, f.key)
	if _, err := src.Read(context.Background(), now, 4); err == nil || !strings.Contains(err.Error(), "Opsgenie users: the answer is not the JSON Opsgenie sends") {
		t.Fatalf("malformed: %v", err)
	}
	src, res := build(t, f, nil)
	f.mu.Lock()
	f.schedules = f.schedules[:1]
	f.mu.Unlock()
	if _, _, err := res.VerifyWith(context.Background(), src, now, 2); err == nil || !strings.Contains(err.Error(), `Opsgenie schedule "Nights" on-calls: not found`) {
		t.Fatalf("missing schedule: %v", err)
	}
	if _, err := New("https://opsgenie.internal.example", f.key, nil); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("a host without api: %v", err)
	}
}
