package pagerduty

import (
	"context"
	"github.com/klaxon-oncall/klaxon/internal/importer/importertest"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
	fakepagerduty "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// sleeps records the waits the retrying transport was asked for.
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

func newSource(t *testing.T, url, token string) (*Source, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	return New(url, token, &importer.RetryTransport{Sleep: sl.sleep}), sl
}

func example(t *testing.T) *fakepagerduty.Server {
	t.Helper()
	fake := fakepagerduty.New(t)
	fake.SetClock(func() time.Time { return fakepagerduty.ExampleNow })
	fake.AddExampleAccount()
	return fake
}

func importExample(t *testing.T, fake *fakepagerduty.Server, mutate func(*importer.Model)) (*Source, *importer.Result) {
	t.Helper()
	src, _ := newSource(t, fake.URL(), fake.APIToken())
	now := fakepagerduty.ExampleNow
	m, err := src.Read(context.Background(), now, 4)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(m)
	}
	res, err := importer.Build(m, importer.Options{Now: now, Weeks: 4, RouteLabel: "service"})
	if err != nil {
		t.Fatal(err)
	}
	return src, res
}

// The rota written from the example account, its report and its test file
// are the golden ones; the rota parses, and its test file passes.
func TestImportGolden(t *testing.T) {
	fake := example(t)
	fakepagerduty.SetMaxPageSize(t, 1) // every list takes several pages
	src, res := importExample(t, fake, nil)
	// The weekend schedule has nobody on weekdays, which a rotation cannot
	// say: those hours are listed in verify.txt, and marked as in the report.
	importertest.CheckImport(t, res, src, fakepagerduty.ExampleNow, "PagerDuty", "PagerDuty's /oncalls")
	// Every list was read across pages.
	pages := map[string]int{}
	for _, c := range fake.RESTCalls() {
		if c.Status == 200 {
			pages[c.Path]++
		}
	}
	for _, p := range []string{"/users", "/schedules", "/escalation_policies", "/services", "/oncalls"} {
		if pages[p] < 2 {
			t.Errorf("%s read in %d pages, want several", p, pages[p])
		}
	}
}

// --verify notices when the importer loses a layer's restriction: with the
// office-hours restriction dropped, the office-hours people are on call
// around the clock in the rota but not at PagerDuty.
func TestVerifyFailsWhenARestrictionIsDropped(t *testing.T) {
	fake := example(t)
	src, res := importExample(t, fake, func(m *importer.Model) {
		for _, s := range m.Schedules {
			for _, l := range s.Layers {
				l.Restrictions = nil
			}
		}
	})
	bad, _, err := res.VerifyWith(context.Background(), src, fakepagerduty.ExampleNow, 28*24)
	if err != nil {
		t.Fatal(err)
	}
	if n := importer.Unreported(bad); n < 100 {
		t.Fatalf("--verify found %d disagreeing hours with the restrictions dropped, want many", n)
	}
	var b strings.Builder
	res.WriteMismatches(&b, bad[:3])
	t.Logf("first disagreements:\n%s", b.String())
}

// A schedule whose layers follow a daylight-saving change keeps its
// handoffs at local time, and the rota follows across the change.
func TestDSTInsideALayer(t *testing.T) {
	fake := example(t)
	_, res := importExample(t, fake, nil)
	ny, _ := time.LoadLocation("America/New_York")
	// Clocks go back on 2026-11-01; the weekly handoff on Monday 11-02 is at 09:00 EST.
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 2, 8, 59, 0, 0, ny), "ben"},
		{time.Date(2026, 11, 2, 17, 0, 0, 0, ny), "ann"},
		{time.Date(2026, 11, 2, 8, 59, 0, 0, ny).Add(-24 * time.Hour), "ben"},
		{time.Date(2026, 11, 2, 9, 0, 0, 0, ny), "cat"}, // office hours layer, 09:00 EST
		{time.Date(2026, 11, 3, 16, 59, 0, 0, ny), "dan"},
		{time.Date(2026, 11, 3, 17, 0, 0, 0, ny), "ann"},
		{time.Date(2026, 10, 26, 8, 59, 0, 0, ny), "ann"}, // the week after Berlin changed clocks, before New York did
		{time.Date(2026, 10, 26, 9, 0, 0, 0, ny), "dan"},
		{time.Date(2026, 10, 26, 17, 0, 0, 0, ny), "ben"},
	} {
		if got := rota.OnCall(res.Rota.Rotations["ops"], c.at); got != c.want {
			t.Errorf("ops at %s: %q, want %q", c.at, got, c.want)
		}
	}
}

func TestRateLimitedRequestsAreRetriedAfterRetryAfter(t *testing.T) {
	fake := example(t)
	fake.FailNextRetryAfter(2, http.StatusTooManyRequests, 3*time.Second)
	src, sl := newSource(t, fake.URL(), fake.APIToken())
	if _, err := src.Read(context.Background(), fakepagerduty.ExampleNow, 4); err != nil {
		t.Fatal(err)
	}
	if len(sl.list) != 2 || sl.list[0] != 3*time.Second || sl.list[1] != 3*time.Second {
		t.Fatalf("waits %v, want two of 3s as Retry-After said", sl.list)
	}
}

// proxy serves the fake, except the paths broken answers.
func proxy(t *testing.T, fake *fakepagerduty.Server, broken map[string]func(w http.ResponseWriter)) string {
	t.Helper()
	u, _ := url.Parse(fake.URL())
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := broken[r.URL.Path]; f != nil {
			f(w)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestBadAnswersGiveClearErrors(t *testing.T) {
	fake := example(t)
	const secret = "s3cr3t-token-never-shown"
	cases := []struct {
		name   string
		url    func() string
		token  string
		want   string
		limits int
	}{
		{"401 bad token", fake.URL, secret, "401 Unauthorized: the token in PAGERDUTY_TOKEN is not valid", 0},
		{"malformed JSON", func() string {
			return proxy(t, fake, map[string]func(http.ResponseWriter){"/users": func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"users": [{"id": `))
			}})
		}, fake.APIToken(), "PagerDuty users:", 0},
		{"missing schedule", func() string {
			return proxy(t, fake, map[string]func(http.ResponseWriter){"/schedules/PSCHDB1": func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"error":{"message":"Not Found","code":2100}}`))
			}})
		}, fake.APIToken(), "PagerDuty schedule PSCHDB1: not found", 0},
		{"rate limited for good", fake.URL, fake.APIToken(), "still rate limited (429) after retries", 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.limits > 0 {
				fake.FailNextRetryAfter(c.limits, http.StatusTooManyRequests, time.Second)
			}
			src, _ := newSource(t, c.url(), c.token)
			_, err := src.Read(context.Background(), fakepagerduty.ExampleNow, 4)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to say %q", err, c.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), fake.APIToken()) {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
}
