package canary

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	fakepd "github.com/klaxon-oncall/klaxon/internal/fakes/pagerduty"
	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
	"github.com/klaxon-oncall/klaxon/notifiers/pagerduty"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
	"github.com/klaxon-oncall/klaxon/notifiers/twilio"
)

// delivery is one call of Runner.Deliveries.
type delivery struct {
	ch        notifiers.Channel
	confirmed bool
	reason    string
}

type deliveries struct {
	mu  sync.Mutex
	got []delivery
}

func (d *deliveries) add(ch notifiers.Channel, ok bool, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, delivery{ch, ok, reason})
}

func (d *deliveries) all() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]delivery(nil), d.got...)
}

// relay stands in for a Matrix room seen by an observer account: the bot's
// m.notice is posted, and the observer sees it unless the homeserver
// swallows it. It is the shape the Matrix notifier's Canary will have.
type relay struct {
	mu       sync.Mutex
	swallow  bool
	observed []string
}

func (r *relay) Canary(ctx context.Context) (bool, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.swallow {
		return false, "m.notice posted but not seen by the observer within 30s: the homeserver may not be delivering", nil
	}
	r.observed = append(r.observed, "m.notice")
	return true, "m.notice seen by the observer", nil
}

func TestRunnerRunsEachCanaryAtItsIntervalAndReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got deliveries
		mx := &relay{}
		calls := 0
		failing := ProberFunc(func(context.Context) (bool, string, error) {
			calls++
			return false, "text not received back within 2m", nil
		})
		r := &Runner{Deliveries: got.add, Checks: []Check{
			{Channel: notifiers.Matrix, Prober: mx, Interval: 5 * time.Minute},
			{Channel: notifiers.SMS, Prober: failing, Interval: 15 * time.Minute},
		}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		time.Sleep(time.Minute) // virtual time: nothing runs before one interval
		synctest.Wait()
		if n := len(got.all()); n != 0 {
			t.Fatalf("%d canaries ran at start; the first waits one interval", n)
		}
		time.Sleep(30*time.Minute - time.Minute + time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		var mxRuns, smsRuns int
		for _, d := range got.all() {
			switch {
			case d.ch == notifiers.Matrix && d.confirmed && d.reason == "m.notice seen by the observer":
				mxRuns++
			case d.ch == notifiers.SMS && !d.confirmed && d.reason == "canary: text not received back within 2m":
				smsRuns++
			default:
				t.Errorf("unexpected delivery %+v", d)
			}
		}
		if mxRuns != 6 || smsRuns != 2 || calls != 2 {
			t.Fatalf("matrix ran %d times, sms %d (%d calls) in 30 minutes; want 6 and 2", mxRuns, smsRuns, calls)
		}
		if res, ok := r.Last(notifiers.SMS); !ok || res.Confirmed {
			t.Fatalf("last SMS result %+v", res)
		}
	})
}

func TestRunnerFailingMatrixCanaryIsEvidenceAndRecoveryClearsIt(t *testing.T) {
	var got deliveries
	mx := &relay{swallow: true}
	r := &Runner{Deliveries: got.add}
	c := Check{Channel: notifiers.Matrix, Prober: mx, Interval: time.Minute}
	r.RunOnce(context.Background(), c)
	mx.mu.Lock()
	mx.swallow = false
	mx.mu.Unlock()
	r.RunOnce(context.Background(), c)
	want := []delivery{
		{notifiers.Matrix, false, "canary: m.notice posted but not seen by the observer within 30s: the homeserver may not be delivering"},
		{notifiers.Matrix, true, "m.notice seen by the observer"},
	}
	if g := got.all(); len(g) != 2 || g[0] != want[0] || g[1] != want[1] {
		t.Fatalf("deliveries %+v, want %+v", g, want)
	}
}

func TestRunnerCanaryThatCannotRunFeedsNoHealth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got deliveries
		logs := &recorder.LogBuffer{}
		r := &Runner{Deliveries: got.add, Logger: slog.New(slog.NewTextHandler(logs, nil))}
		broken := ProberFunc(func(context.Context) (bool, string, error) { return false, "", errors.New("API unreachable") })
		hung := ProberFunc(func(ctx context.Context) (bool, string, error) { <-ctx.Done(); return false, "", ctx.Err() })
		r.RunOnce(context.Background(), Check{Channel: notifiers.PagerDuty, Prober: broken, Interval: time.Minute})
		res := r.RunOnce(context.Background(), Check{Channel: notifiers.SMS, Prober: hung, Interval: time.Hour, Timeout: 3 * time.Minute})
		if !errors.Is(res.Err, context.DeadlineExceeded) {
			t.Fatalf("a hung canary was not bounded by its timeout: %+v", res)
		}
		if g := got.all(); len(g) != 0 {
			t.Fatalf("deliveries %+v from canaries that could not run", g)
		}
		if !strings.Contains(logs.String(), "API unreachable") {
			t.Error("a canary that could not run was not logged")
		}
	})
}

func TestRunnerValidate(t *testing.T) {
	p := ProberFunc(func(context.Context) (bool, string, error) { return true, "", nil })
	cases := []struct {
		name   string
		checks []Check
		want   string
	}{
		{"fine", []Check{{Channel: notifiers.SMS, Prober: p, Interval: time.Hour}}, ""},
		{"no prober", []Check{{Channel: notifiers.Phone, Interval: time.Hour}}, "cannot run canaries"},
		{"too often", []Check{{Channel: notifiers.SMS, Prober: p, Interval: time.Second}}, "below 1m0s"},
		{"twice", []Check{{Channel: notifiers.SMS, Prober: p, Interval: time.Hour}, {Channel: notifiers.SMS, Prober: p, Interval: time.Hour}}, "twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Runner{Checks: tc.checks}).Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// The real channels' canaries, against the fakes, through the runner.

type noResponder struct{}

func (noResponder) Respond(context.Context, notifiers.Response) (notifiers.Outcome, error) {
	return notifiers.Outcome{}, notifiers.ErrNotOnRota
}

func TestPagerDutyCanaryThroughTheRunner(t *testing.T) {
	fake := fakepd.New(t)
	_, key := fake.AddService("Klaxon canary")
	n, err := pagerduty.New(pagerduty.Config{RoutingKey: fake.RoutingKey(), CanaryRoutingKey: key, APIToken: fake.APIToken(),
		EventsURL: fake.URL(), APIURL: fake.URL(), Responder: noResponder{}, Reporter: &recorder.Reports{}})
	if err != nil {
		t.Fatal(err)
	}
	var got deliveries
	r := &Runner{Deliveries: got.add}
	res := r.RunOnce(context.Background(), Check{Channel: notifiers.PagerDuty, Prober: n, Interval: time.Hour, Timeout: 30 * time.Second})
	if res.Err != nil || !res.Confirmed {
		t.Fatalf("PagerDuty canary %+v", res)
	}
	if g := got.all(); len(g) != 1 || !g[0].confirmed || !strings.Contains(g[0].reason, "notified Alice Example") {
		t.Fatalf("deliveries %+v", g)
	}
	if incs := fake.Incidents(); len(incs) != 1 || incs[0].Open() {
		t.Fatalf("canary incidents %+v, want one, resolved", incs)
	}
}

func TestSMSCanaryThroughTheRunner(t *testing.T) {
	const token = "s3cr3tAuthToken0123456789abcdef"
	const canaryTo = "+15005550010"
	for _, swallow := range []bool{false, true} {
		fake := faketwilio.New(t, token)
		mux := http.NewServeMux()
		hook := httptest.NewServer(mux)
		t.Cleanup(hook.Close)
		tw, err := twilio.New(twilio.Config{AccountSID: fake.AccountSID(), AuthToken: token, From: faketwilio.DefaultFrom,
			CanaryTo: canaryTo, SMSConfirmWithin: 500 * time.Millisecond, PublicURL: hook.URL, APIURL: fake.URL(),
			Responder: noResponder{}, Reporter: &recorder.Reports{}})
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle("/webhook/twilio/", tw.Handler())
		fake.OwnNumber(canaryTo, false, true)
		fake.SetSMSURL(canaryTo, hook.URL+"/webhook/twilio/sms")
		fake.SetDropInbound(swallow)
		prober, ok := tw.SMS().(Prober)
		if !ok {
			t.Fatal("the SMS channel is not a canary Prober")
		}
		var got deliveries
		res := (&Runner{Deliveries: got.add}).RunOnce(context.Background(), Check{Channel: notifiers.SMS, Prober: prober, Interval: time.Hour})
		if res.Err != nil || res.Confirmed == swallow {
			t.Fatalf("swallow=%v: SMS canary %+v", swallow, res)
		}
		if g := got.all(); len(g) != 1 || g[0].confirmed == swallow {
			t.Fatalf("swallow=%v: deliveries %+v", swallow, g)
		}
	}
}
