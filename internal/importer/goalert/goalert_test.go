package goalert

import (
	"context"
	"github.com/klaxon-oncall/klaxon/internal/importer/importertest"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// now is inside four weeks holding both zones' clock changes (Europe/London
// on 2026-10-25, America/Chicago on 2026-11-01).
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

func build(t *testing.T, f *fake, mutate func(*importer.Model)) (*Source, *importer.Result) {
	t.Helper()
	src, _ := newSource(f.srv.URL, f.token)
	m, err := src.Read(context.Background(), now, 4)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(m)
	}
	res, err := importer.Build(m, importer.Options{Now: now, Weeks: 4})
	if err != nil {
		t.Fatal(err)
	}
	return src, res
}

func TestImportGolden(t *testing.T) {
	f := newFake(t, now)
	f.example()
	f.pageSize = 1 // every connection takes several pages
	src, res := build(t, f, nil)
	importertest.CheckImport(t, res, src, now, "GoAlert", "GoAlert's shifts")
	counts := map[string]int{}
	for _, op := range f.ops {
		counts[op]++
	}
	for _, op := range []string{"users", "rotations", "schedules", "policies", "services"} {
		if counts[op] < 2 {
			t.Errorf("%s read in %d pages, want several", op, counts[op])
		}
	}
}

// With the Nights rule's hours dropped, --verify finds the daytime hours in
// which GoAlert has nobody but the rota has the night person: they are no
// longer explained by the report.
func TestVerifyFailsWhenARestrictionIsDropped(t *testing.T) {
	f := newFake(t, now)
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
		t.Fatalf("%d unexplained hours with the rules' hours dropped, want many", n)
	}
}

func TestDSTInsideARotation(t *testing.T) {
	f := newFake(t, now)
	f.example()
	_, res := build(t, f, nil)
	chicago, _ := time.LoadLocation("America/Chicago")
	// Primary hands off on Mondays at 09:00 Chicago time, before and after
	// Chicago's clocks go back on 2026-11-01.
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 10, 26, 8, 59, 0, 0, chicago), "ben"},
		{time.Date(2026, 10, 26, 9, 0, 0, 0, chicago), "cat"},
		{time.Date(2026, 11, 2, 8, 59, 0, 0, chicago), "cat"},
		{time.Date(2026, 11, 2, 9, 0, 0, 0, chicago), "ann"},
	} {
		got := rota.OnCall(res.Rota.Rotations["platform-primary"], c.at)
		if got != c.want {
			t.Errorf("platform-primary at %s: %q, want %q", c.at, got, c.want)
		}
	}
}

func TestRateLimitedRequestsWaitForRetryAfter(t *testing.T) {
	f := newFake(t, now)
	f.example()
	f.fail = []int{http.StatusTooManyRequests, http.StatusTooManyRequests}
	src, sl := newSource(f.srv.URL, f.token)
	if _, err := src.Read(context.Background(), now, 4); err != nil {
		t.Fatal(err)
	}
	if len(sl.list) != 2 || sl.list[0] != 2*time.Second {
		t.Fatalf("waits %v, want two of 2s", sl.list)
	}
}

func TestBadAnswersGiveClearErrors(t *testing.T) {
	f := newFake(t, now)
	f.example()
	const wrong = "not-the-token-987654321"
	t.Run("401", func(t *testing.T) {
		src, _ := newSource(f.srv.URL, wrong)
		_, err := src.Read(context.Background(), now, 4)
		if err == nil || !strings.Contains(err.Error(), "401 Unauthorized: the token in GOALERT_TOKEN is not valid") || strings.Contains(err.Error(), wrong) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		srv := newRaw(t, `{"data": {"users": {"nodes": [`)
		src, _ := newSource(srv, f.token)
		_, err := src.Read(context.Background(), now, 4)
		if err == nil || !strings.Contains(err.Error(), "GoAlert users: the answer is not GraphQL JSON") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("GraphQL error", func(t *testing.T) {
		srv := newRaw(t, `{"errors": [{"message": "Cannot query field \"value\" on type \"UserContactMethod\"."}]}`)
		src, _ := newSource(srv, f.token)
		_, err := src.Read(context.Background(), now, 4)
		if err == nil || !strings.Contains(err.Error(), `Cannot query field "value"`) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("missing schedule", func(t *testing.T) {
		src, res := build(t, f, nil)
		f.mu.Lock()
		f.schedules = f.schedules[:1]
		f.mu.Unlock()
		_, _, err := res.VerifyWith(context.Background(), src, now, 24)
		if err == nil || !strings.Contains(err.Error(), "GoAlert schedule s-nights: not found") {
			t.Fatalf("error %v", err)
		}
	})
}

func newRaw(t *testing.T, body string) string {
	f := newFake(t, now)
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
	return f.srv.URL
}
