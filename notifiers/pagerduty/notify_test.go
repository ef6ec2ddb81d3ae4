package pagerduty

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	"github.com/klaxon-oncall/klaxon/internal/testtools"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestChannel(t *testing.T) {
	e := newEnv(t, nil)
	if got := e.n.Channel(); got != notifiers.PagerDuty {
		t.Fatalf("Channel() = %q", got)
	}
}

func TestNotifyTriggerSendsWhatPagerDutyNeeds(t *testing.T) {
	e := newEnv(t, nil)
	rec, err := e.n.Notify(context.Background(), page(42))
	if err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if rec.ProviderID != "klaxon-42" {
		t.Errorf("ProviderID = %q, want the dedup key", rec.ProviderID)
	}
	inc, ok := e.fake.Incident("klaxon-42")
	if !ok || inc.Status != fakepd.StatusTriggered || inc.ServiceID != fakepd.DefaultServiceID {
		t.Fatalf("incident = %+v, %v; want a triggered incident on the default service", inc, ok)
	}
	evs := e.fake.Events()
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	ev := evs[0]
	checks := []struct{ name, got, want string }{
		{"action", ev.Action, "trigger"},
		{"dedup_key", ev.DedupKey, "klaxon-42"},
		{"summary", ev.Summary, "[Klaxon #42] DiskFull on db-1"},
		{"severity", ev.Severity, "critical"},
		{"source", ev.Source, "db-1:9100"},
		{"class", ev.Class, "DiskFull"},
		{"component", ev.Component, "node"},
		{"group", ev.Group, "eu1"},
		{"client", ev.Client, "Klaxon"},
		{"client_url", ev.ClientURL, "https://klaxon.example.org"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	d := ev.CustomDetails
	if d["klaxon_incident"] != float64(42) || d["incident_key"] != "klaxon-42" || d["klaxon_link"] != "https://klaxon.example.org/incidents/42" {
		t.Errorf("custom_details lacks incident number, key or link: %v", d)
	}
	pf, _ := d["paged_for"].(map[string]any)
	if pf["pagerduty_user"] != "PUSR001" || pf["person"] != "alice" || !strings.Contains(pf["note"].(string), "cannot address a user") {
		t.Errorf("paged_for = %v", pf)
	}
	alerts, _ := d["alerts"].([]any)
	if len(alerts) != 1 {
		t.Fatalf("alerts in details = %v", d["alerts"])
	}
	a := alerts[0].(map[string]any)
	if a["labels"].(map[string]any)["alertname"] != "DiskFull" || a["annotations"].(map[string]any)["summary"] != "disk / is 99% full" {
		t.Errorf("alert detail = %v", a)
	}
	var hrefs []string
	for _, l := range ev.Links {
		hrefs = append(hrefs, l.Href)
	}
	want := []string{"https://klaxon.example.org/incidents/42", "https://am.example.org", "https://prom.example.org/graph?g0.expr=x"}
	if strings.Join(hrefs, " ") != strings.Join(want, " ") {
		t.Errorf("links = %v, want %v", hrefs, want)
	}
}

func TestNotifyDedupAcrossRetriesAndRestarts(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 2 {
		if _, err := e.n.Notify(ctx, page(42)); err != nil {
			t.Fatal(err)
		}
	}
	restarted, err := New(e.cfg) // a new process: nothing remembered
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Notify(ctx, page(42)); err != nil {
		t.Fatal(err)
	}
	incs := e.fake.Incidents()
	if len(incs) != 1 || incs[0].Alerts != 3 {
		t.Fatalf("incidents = %+v; want one incident holding 3 triggers", incs)
	}
}

func TestNotifyAcknowledgeAndResolveStopPagerDuty(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.n.Notify(ctx, page(42)); err != nil {
		t.Fatal(err)
	}
	p := page(42)
	p.Kind = notifiers.KindAcknowledged
	if _, err := e.n.Notify(ctx, p); err != nil {
		t.Fatal(err)
	}
	if inc, _ := e.fake.Incident("klaxon-42"); inc.Status != fakepd.StatusAcknowledged {
		t.Fatalf("status after acknowledge = %q", inc.Status)
	}
	p.Kind = notifiers.KindUnacknowledged
	rec, err := e.n.Notify(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if inc, _ := e.fake.Incident("klaxon-42"); inc.Status != fakepd.StatusAcknowledged || !strings.Contains(rec.Detail, "keeps an acknowledged incident acknowledged") {
		t.Errorf("after re-trigger: status %q, detail %q", inc.Status, rec.Detail)
	}
	p.Kind = notifiers.KindResolved
	if _, err := e.n.Notify(ctx, p); err != nil {
		t.Fatal(err)
	}
	if inc, _ := e.fake.Incident("klaxon-42"); inc.Status != fakepd.StatusResolved {
		t.Fatalf("status after resolve = %q", inc.Status)
	}
	var actions []string
	for _, ev := range e.fake.Events() {
		actions = append(actions, ev.Action)
		if ev.Action != "trigger" && ev.Summary != "" {
			t.Errorf("%s event carries a payload", ev.Action)
		}
	}
	if got := strings.Join(actions, ","); got != "trigger,acknowledge,trigger,resolve" {
		t.Errorf("actions = %s", got)
	}
}

func TestNotifyStepRoutingKeyIsUsedForTheWholeIncident(t *testing.T) {
	e := newEnv(t, nil)
	svc2, key2 := e.fake.AddService("Database team")
	ctx := context.Background()
	p := page(7)
	p.RoutingKey = key2
	if _, err := e.n.Notify(ctx, p); err != nil {
		t.Fatal(err)
	}
	// The engine tells the channel about the resolution without the step's key.
	p.RoutingKey, p.Kind = "", notifiers.KindResolved
	if _, err := e.n.Notify(ctx, p); err != nil {
		t.Fatal(err)
	}
	inc, _ := e.fake.Incident("klaxon-7")
	if inc.ServiceID != svc2 || inc.Status != fakepd.StatusResolved {
		t.Fatalf("incident = %+v; want resolved on %s", inc, svc2)
	}
	for _, ev := range e.fake.Events() {
		if ev.RoutingKey != key2 {
			t.Errorf("%s event went to another routing key", ev.Action)
		}
	}
}

func TestNotifyKindsWithNothingToDo(t *testing.T) {
	e := newEnv(t, nil)
	for _, k := range []notifiers.Kind{notifiers.KindEscalated, notifiers.KindNotice} {
		p := page(1)
		p.Kind = k
		rec, err := e.n.Notify(context.Background(), p)
		if err != nil || rec.ProviderID != "" || rec.Detail != "" || rec.State != nil {
			t.Errorf("%s: got %+v, %v; want zero receipt and nil", k, rec, err)
		}
	}
	if n := len(e.fake.Events()); n != 0 {
		t.Errorf("%d events sent", n)
	}
}

func TestNotifyRejectsBadPagesWithoutSending(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*notifiers.Page)
	}{
		{"no incident key", func(p *notifiers.Page) { p.IncidentKey = "" }},
		{"incident key too long", func(p *notifiers.Page) { p.IncidentKey = strings.Repeat("k", 256) }},
		{"short step routing key", func(p *notifiers.Page) { p.RoutingKey = "abc" }},
		{"step routing key with symbols", func(p *notifiers.Page) { p.RoutingKey = strings.Repeat("a", 31) + "/" }},
		{"unknown kind", func(p *notifiers.Page) { p.Kind = "shout" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			p := page(3)
			tc.mutate(&p)
			_, err := e.n.Notify(context.Background(), p)
			if !notifiers.IsPermanent(err) {
				t.Fatalf("err = %v, want permanent", err)
			}
			if n := len(e.fake.Events()); n != 0 {
				t.Errorf("%d events sent", n)
			}
		})
	}
}

func TestNotifyErrorClasses(t *testing.T) {
	cases := []struct {
		name       string
		setup      func(e *env)
		permanent  bool
		code       string
		retryAfter time.Duration
		mentions   string
	}{
		{"invalid routing key", func(e *env) { e.fake.SetInvalidRoutingKey(true) }, true, "400", 0, "Invalid routing key"},
		{"rate limited", func(e *env) { e.fake.FailNext(1, 429) }, false, "429", default429RetryAfter, "429"},
		{"rate limited with Retry-After", func(e *env) { e.fake.FailNextRetryAfter(1, 429, 7*time.Second) }, false, "429", 7 * time.Second, "429"},
		{"internal error", func(e *env) { e.fake.FailNext(1, 500) }, false, "500", 0, "500"},
		{"bad gateway", func(e *env) { e.fake.FailNext(1, 502) }, false, "502", 0, "502"},
		{"unavailable with Retry-After", func(e *env) { e.fake.FailNextRetryAfter(1, 503, 30*time.Second) }, false, "503", 30 * time.Second, "503"},
		{"request timeout", func(e *env) { e.fake.FailNext(1, 408) }, false, "408", 0, "408"},
		{"unauthorized", func(e *env) { e.fake.FailNext(1, 401) }, true, "401", 0, "401"},
		{"payment required", func(e *env) { e.fake.FailNext(1, 402) }, true, "402", 0, "402"},
		{"forbidden", func(e *env) { e.fake.FailNext(1, 403) }, true, "403", 0, "403"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tc.setup(e)
			_, err := e.n.Notify(context.Background(), page(5))
			var ne *notifiers.Error
			if !errors.As(err, &ne) {
				t.Fatalf("err = %v, want a *notifiers.Error", err)
			}
			if ne.Permanent != tc.permanent || ne.Code != tc.code || ne.RetryAfter != tc.retryAfter {
				t.Errorf("got permanent=%v code=%q retryAfter=%v, want %v %q %v (%v)", ne.Permanent, ne.Code, ne.RetryAfter, tc.permanent, tc.code, tc.retryAfter, err)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %q does not mention %q", err, tc.mentions)
			}
			assertNoSecrets(t, "error", err.Error(), e.cfg.RoutingKey, e.cfg.APIToken, e.secret)
		})
	}
}

func TestNotifyRetryAfterRecovers(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.FailNext(2, 503)
	for i := range 2 {
		if _, err := e.n.Notify(context.Background(), page(9)); notifiers.IsPermanent(err) || err == nil {
			t.Fatalf("attempt %d: err = %v, want temporary", i+1, err)
		}
	}
	if _, err := e.n.Notify(context.Background(), page(9)); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if incs := e.fake.Incidents(); len(incs) != 1 {
		t.Fatalf("%d incidents after retries, want 1", len(incs))
	}
}

func TestNotifyNetworkFailuresAreTemporary(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select { // answers only when the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) }) // runs first
	closedURL := testtools.RefusedURL(t) // nothing listens, and no later server gets the port

	cases := []struct {
		name string
		url  string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"connection refused", closedURL, func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
		{"slow server, deadline", slow.URL, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.EventsURL = tc.url })
			ctx, cancel := tc.ctx()
			defer cancel()
			_, err := e.n.Notify(ctx, page(1))
			if err == nil || notifiers.IsPermanent(err) {
				t.Fatalf("err = %v, want temporary", err)
			}
			assertNoSecrets(t, "error", err.Error(), e.cfg.RoutingKey, e.cfg.APIToken)
		})
	}
}

func TestNotifyOddResponses(t *testing.T) {
	cases := []struct {
		name      string
		handler   http.HandlerFunc
		wantErr   bool
		permanent bool
	}{
		{"202 with a huge body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			chunk := []byte(strings.Repeat("x", 1<<20))
			for range 8 {
				_, _ = w.Write(chunk)
			}
		}, false, false},
		{"202 with garbage", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte("<html>"))
		}, false, false},
		{"400 without a body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
		}, true, true},
		{"500 with HTML", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("<h1>oops</h1>"))
		}, true, false},
		{"400 with errors as a string", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"status":"invalid event","message":"Event object is invalid","errors":"bad"}`))
		}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			e := newEnv(t, func(c *Config) { c.EventsURL = srv.URL; c.APIToken = "" })
			_, err := e.n.Notify(context.Background(), page(1))
			if (err != nil) != tc.wantErr || (err != nil && notifiers.IsPermanent(err) != tc.permanent) {
				t.Fatalf("err = %v; want error %v, permanent %v", err, tc.wantErr, tc.permanent)
			}
		})
	}
}

func TestNotifyLapsedAccountFailsPermanently(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.SetAccountExpired(true)
	rec, err := e.n.Notify(context.Background(), page(11))
	var ne *notifiers.Error
	if !errors.As(err, &ne) || !ne.Permanent || ne.Code != "2012" {
		t.Fatalf("err = %v; want permanent with code 2012", err)
	}
	if !strings.Contains(err.Error(), "expired") || rec.Detail == "" {
		t.Errorf("err %q / receipt %+v should say the account expired", err, rec)
	}
	evs := e.fake.Events()
	if len(evs) != 1 || !evs[0].Dropped {
		t.Fatalf("events = %+v; want one dropped trigger", evs)
	}
	// Once the account is paid again, pages work after the next check.
	e.fake.SetAccountExpired(false)
	if h := e.n.SelfTest(context.Background()); h.Status != notifiers.Up {
		t.Fatalf("self-test after renewal = %+v", h)
	}
	if _, err := e.n.Notify(context.Background(), page(11)); err != nil {
		t.Fatalf("page after renewal: %v", err)
	}
}

func TestNotifyServiceThatCannotPage(t *testing.T) {
	cases := []struct {
		name  string
		set   func(f *fakepd.Server)
		code  string
		words string
	}{
		{"disabled", func(f *fakepd.Server) { f.SetServiceDisabled(fakepd.DefaultServiceID, true) }, "disabled", "disabled"},
		{"maintenance", func(f *fakepd.Server) { f.SetMaintenance(fakepd.DefaultServiceID, true) }, "maintenance", "maintenance"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tc.set(e.fake)
			e.n.SelfTest(context.Background())
			_, err := e.n.Notify(context.Background(), page(12))
			var ne *notifiers.Error
			if !errors.As(err, &ne) || !ne.Permanent || ne.Code != tc.code || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("err = %v; want permanent %q", err, tc.code)
			}
			if _, ok := e.fake.Incident("klaxon-12"); ok {
				t.Error("the fake opened an incident for a service that cannot page")
			}
		})
	}
}

func TestSummaryAndSeverity(t *testing.T) {
	long := page(1)
	long.Title = strings.Repeat("é", 5000)
	synthetic := page(2)
	synthetic.Synthetic, synthetic.Title = true, "PagerDuty channel is down"
	untitled := page(3)
	untitled.Title = ""
	untitled.Alerts = append(untitled.Alerts, untitled.Alerts[0])
	cases := []struct {
		name string
		p    notifiers.Page
		want string
	}{
		{"synthetic alarm", synthetic, "[Klaxon alarm] PagerDuty channel is down"},
		{"title from alerts", untitled, "[Klaxon #3] DiskFull on db-1:9100 (+1 more)"},
		{"whitespace folded", notifiers.Page{Incident: 4, Title: "a\n\tb  c"}, "[Klaxon #4] a b c"},
	}
	for _, tc := range cases {
		if got := summary(tc.p); got != tc.want {
			t.Errorf("%s: summary = %q, want %q", tc.name, got, tc.want)
		}
	}
	if s := summary(long); utf8.RuneCountInString(s) != maxSummaryRunes || !strings.HasSuffix(s, "…") {
		t.Errorf("long summary has %d runes", utf8.RuneCountInString(s))
	}
	sev := map[string]string{
		"critical": "critical", "page": "critical", "": "critical", "bogus": "critical",
		"error": "error", "major": "error", "Warning": "warning", "warn": "warning",
		"info": "info", "none": "info", " low ": "info",
	}
	for in, want := range sev {
		if got := severity(in); got != want {
			t.Errorf("severity(%q) = %q, want %q", in, got, want)
		}
	}

	// PagerDuty accepts the longest summary Klaxon builds.
	e := newEnv(t, nil)
	if _, err := e.n.Notify(context.Background(), long); err != nil {
		t.Fatalf("long title: %v", err)
	}
}

func TestNotifyBoundsLargePages(t *testing.T) {
	e := newEnv(t, nil)
	p := page(13)
	big := strings.Repeat("z", 10000)
	for i := range 500 {
		p.Alerts = append(p.Alerts, notifiers.Alert{Status: "firing",
			Labels:      map[string]string{"alertname": "Flood", "i": itoa(uint64(i))},
			Annotations: map[string]string{"description": big}})
	}
	if _, err := e.n.Notify(context.Background(), p); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	ev := e.fake.Events()[0]
	if len(ev.Raw) > 512<<10 {
		t.Errorf("event is %d bytes, over PagerDuty's 512 KB", len(ev.Raw))
	}
	if ev.CustomDetails["alerts_omitted"] != float64(501-maxAlertsInDetail) {
		t.Errorf("alerts_omitted = %v", ev.CustomDetails["alerts_omitted"])
	}
}
