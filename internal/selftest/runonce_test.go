package selftest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestRunOnce(t *testing.T) {
	tests := []struct {
		name    string
		testers map[notifiers.Channel]notifiers.SelfTester
		wantOK  bool
		want    []string
	}{
		{"all up", testers(notifiers.Matrix, tester(notifiers.Up, "logged in as @klaxon:example.org"),
			notifiers.PagerDuty, tester(notifiers.Up, "")), true,
			[]string{"CHANNEL", "matrix", "up", "logged in as @klaxon:example.org", "pagerduty", "2 channels: 2 up, 0 degraded, 0 down"}},
		{"degraded is not down", testers(notifiers.Phone, &fakeTester{h: notifiers.Health{Status: notifiers.Degraded, Reason: "balance $3.20", WillFail: true}}), true,
			[]string{"phone", "degraded (will fail)", "balance $3.20", "1 channel: 0 up, 1 degraded, 0 down"}},
		{"one down fails", testers(notifiers.Matrix, tester(notifiers.Up, ""), notifiers.PagerDuty, tester(notifiers.Down, "account expired (402)")), false,
			[]string{"pagerduty", "down", "account expired (402)", "1 down"}},
		{"nothing configured fails", nil, false, []string{"no channel with a self-test is configured"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if got := RunOnce(context.Background(), tt.testers, &b); got != tt.wantOK {
				t.Errorf("RunOnce = %v, want %v\n%s", got, tt.wantOK, b.String())
			}
			mustContain(t, "output", b.String(), tt.want...)
		})
	}
}

func TestRunOnceHungTester(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hung := tester(notifiers.Up, "")
		hung.block = make(chan struct{})
		defer close(hung.block)
		var b strings.Builder
		start := time.Now()
		ok := RunOnce(context.Background(), testers(notifiers.SMS, hung, notifiers.Matrix, tester(notifiers.Up, "")), &b)
		if ok {
			t.Error("a hung channel passed")
		}
		if took := time.Since(start); took != DefaultTestTimeout {
			t.Errorf("took %s, want %s", took, DefaultTestTimeout)
		}
		mustContain(t, "output", b.String(), "sms", "no answer within 30s")
		// Rows are in policy order.
		if strings.Index(b.String(), "matrix") > strings.Index(b.String(), "sms") {
			t.Errorf("rows out of order:\n%s", b.String())
		}
	})
}

func TestHandler(t *testing.T) {
	pd := tester(notifiers.Down, "account expired (402)")
	r := newRig(t, testers(notifiers.PagerDuty, pd, notifiers.Matrix, tester(notifiers.Up, "ok")), nil)
	r.m.CheckNow(context.Background())
	r.clock.Advance(5 * time.Minute)
	r.m.CheckNow(context.Background())
	srv := httptest.NewServer(r.m.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/v1/channels")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Channels) != 2 || rep.Usable != 1 || !rep.Watchdog.Enabled {
		t.Fatalf("report %+v", rep)
	}
	mxs, pds := rep.Channels[0], rep.Channels[1]
	if mxs.Channel != notifiers.Matrix || mxs.Status != notifiers.Up || !mxs.LastSuccess.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("matrix %+v", mxs)
	}
	if pds.Channel != notifiers.PagerDuty || pds.Status != notifiers.Down || pds.Reason != "account expired (402)" ||
		!pds.Since.Equal(t0) || pds.Failures != 2 || pds.Alarm != "down" || !pds.HasSelfTest || !pds.LastSuccess.IsZero() {
		t.Errorf("pagerduty %+v", pds)
	}

	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		req, _ := http.NewRequest(method, srv.URL+"/api/v1/channels", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "GET") {
			t.Errorf("%s: %d allow %q", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}
