package oncall

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

// now is a week before Europe/Paris changes clocks (2026-10-25).
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

func newSource(url, token string) (*Source, *sleeps) {
	sl := &sleeps{}
	return New(url, token, &importer.RetryTransport{Sleep: sl.sleep}), sl
}

func build(t *testing.T, f *fakeOnCall, mutate func(*importer.Model)) (*Source, *importer.Result) {
	t.Helper()
	src, _ := newSource(f.srv.URL, f.token)
	m, err := src.Read(context.Background(), now, 4)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(m)
	}
	res, err := importer.Build(m, importer.Options{Now: now, Weeks: 4, RouteLabel: "integration"})
	if err != nil {
		t.Fatal(err)
	}
	return src, res
}

func TestImportGolden(t *testing.T) {
	f := newFake(t)
	f.example()
	f.pageSize = 2
	src, res := build(t, f, nil)
	importertest.CheckImport(t, res, src, now, "Grafana OnCall", "final_shifts")
	for _, p := range []string{"/api/v1/users/", "/api/v1/on_call_shifts/", "/api/v1/escalation_policies/"} {
		if f.calls[p] < 2 {
			t.Errorf("%s read in %d pages, want several", p, f.calls[p])
		}
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
		t.Fatalf("%d unexplained hours with the office hours dropped, want many", n)
	}
}

func TestRateLimitedRequestsWaitForRetryAfter(t *testing.T) {
	f := newFake(t)
	f.example()
	f.fail = []int{http.StatusTooManyRequests}
	src, sl := newSource(f.srv.URL, f.token)
	if _, err := src.Read(context.Background(), now, 4); err != nil {
		t.Fatal(err)
	}
	if len(sl.list) != 1 || sl.list[0] != 4*time.Second {
		t.Fatalf("waits %v, want one of 4s", sl.list)
	}
}

func TestBadAnswersGiveClearErrors(t *testing.T) {
	f := newFake(t)
	f.example()
	const wrong = "wrong-oncall-token-555"
	src, _ := newSource(f.srv.URL, wrong)
	if _, err := src.Read(context.Background(), now, 4); err == nil || !strings.Contains(err.Error(), "401: the token in GRAFANA_ONCALL_TOKEN is not valid") || strings.Contains(err.Error(), wrong) {
		t.Fatalf("401: %v", err)
	}
	raw := newFake(t)
	raw.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"results": [`)) })
	src, _ = newSource(raw.srv.URL, f.token)
	if _, err := src.Read(context.Background(), now, 4); err == nil || !strings.Contains(err.Error(), "Grafana OnCall users: the answer is not the JSON OnCall sends") {
		t.Fatalf("malformed: %v", err)
	}
	src, res := build(t, f, nil)
	f.mu.Lock()
	f.schedules = f.schedules[:1]
	f.mu.Unlock()
	if _, _, err := res.VerifyWith(context.Background(), src, now, 24); err == nil || !strings.Contains(err.Error(), `Grafana OnCall schedule "Support" final shifts: not found`) {
		t.Fatalf("missing schedule: %v", err)
	}
}
