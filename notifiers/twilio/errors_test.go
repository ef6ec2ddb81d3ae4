package twilio

import (
	"context"
	"errors"
	"fmt"
	"github.com/klaxon-oncall/klaxon/notifiers/recorder"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"

	faketwilio "github.com/klaxon-oncall/klaxon/internal/fakes/twilio"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestNotifyFailuresAreClassified(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(*env)
		to        string
		permanent bool
		code      string
		retry     time.Duration
	}{
		{"suspended account", func(e *env) { e.fake.SetAccountStatus("suspended") }, alice, true, "20005", 0},
		{"closed account", func(e *env) { e.fake.SetAccountStatus("closed") }, alice, true, "20005", 0},
		{"trial, unverified number", func(e *env) { e.fake.SetTrial(true) }, alice, true, "", 0},
		{"from-number released", func(e *env) { e.fake.ReleaseNumber(faketwilio.DefaultFrom) }, alice, true, "", 0},
		{"invalid number per Twilio", func(e *env) { e.fake.FailNext(1, 400, 21211) }, alice, true, "21211", 0},
		{"geo permissions", func(e *env) { e.fake.FailNext(1, 400, 21215) }, alice, true, "21215", 0},
		{"unknown 4xx code", func(e *env) { e.fake.FailNext(1, 400, 29999) }, alice, true, "29999", 0},
		{"rate limited", func(e *env) { e.fake.FailNext(1, 429, 20429) }, alice, false, "20429", time.Second},
		{"Twilio 500", func(e *env) { e.fake.FailNext(1, 500, 20500) }, alice, false, "20500", 0},
		{"Twilio 503 without code", func(e *env) { e.fake.FailNext(1, 503, 0) }, alice, false, "503", 0},
		{"no phone number on rota", nil, "", true, "", 0},
		{"not E.164", nil, "0044 7700 900123", true, "", 0},
	}
	for _, tc := range tests {
		for _, ch := range []string{"voice", "sms"} {
			t.Run(tc.name+"/"+ch, func(t *testing.T) {
				e := newEnv(t)
				if tc.setup != nil {
					tc.setup(e)
				}
				n := e.tw.Voice()
				if ch == "sms" {
					n = e.tw.SMS()
				}
				_, err := n.Notify(context.Background(), page("p1", tc.to))
				if err == nil {
					t.Fatal("Notify succeeded")
				}
				if notifiers.IsPermanent(err) != tc.permanent {
					t.Errorf("IsPermanent = %v, want %v: %v", !tc.permanent, tc.permanent, err)
				}
				var ne *notifiers.Error
				if !errors.As(err, &ne) {
					t.Fatalf("unclassified error %v", err)
				}
				if tc.code != "" && ne.Code != tc.code {
					t.Errorf("code %q, want %q (%v)", ne.Code, tc.code, err)
				}
				if got := notifiers.RetryAfter(err); got != tc.retry {
					t.Errorf("RetryAfter = %s, want %s", got, tc.retry)
				}
				noSecret(t, "error", err.Error())
			})
		}
	}
}

func TestChannelSpecificTwilioCodes(t *testing.T) {
	tests := []struct {
		name  string
		ch    string
		setup func(*env)
		code  string
	}{
		{"trial call to unverified number", "voice", func(e *env) { e.fake.SetTrial(true) }, "21219"},
		{"trial text to unverified number", "sms", func(e *env) { e.fake.SetTrial(true) }, "21608"},
		{"call from released number", "voice", func(e *env) { e.fake.ReleaseNumber(faketwilio.DefaultFrom) }, "21210"},
		{"text from released number", "sms", func(e *env) { e.fake.ReleaseNumber(faketwilio.DefaultFrom) }, "21606"},
		{"text to a landline", "sms", func(e *env) { e.fake.Phone(alice).SetLandline(true) }, "21614"},
		{"unsubscribed", "sms", func(e *env) { e.fake.FailNext(1, 400, 21610) }, "21610"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e)
			n := e.tw.Voice()
			if tc.ch == "sms" {
				n = e.tw.SMS()
			}
			_, err := n.Notify(context.Background(), page("p1", alice))
			var ne *notifiers.Error
			if !errors.As(err, &ne) || !ne.Permanent || ne.Code != tc.code {
				t.Errorf("err %v, want permanent %s", err, tc.code)
			}
		})
	}
}

func TestTrialWorksForVerifiedNumbers(t *testing.T) {
	e := newEnv(t)
	e.fake.SetTrial(true)
	e.fake.VerifyNumber(alice)
	if _, err := e.tw.Voice().Notify(context.Background(), page("p1", alice)); err != nil {
		t.Fatalf("call to a verified number on a trial: %v", err)
	}
}

func TestBadTokenIsPermanentAndSecret(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthToken = "wrongToken0123456789" })
	for _, n := range []notifiers.Notifier{e.tw.Voice(), e.tw.SMS()} {
		_, err := n.Notify(context.Background(), page("p1", alice))
		var ne *notifiers.Error
		if !errors.As(err, &ne) || !ne.Permanent || ne.Code != "20003" {
			t.Errorf("%s: err %v, want permanent 20003", n.Channel(), err)
		}
		if err != nil && strings.Contains(err.Error(), "wrongToken0123456789") {
			t.Errorf("error shows the token: %v", err)
		}
	}
}

// hangingAPI never answers until the client gives up.
func hangingAPI(t *testing.T) string {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client leaving
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first
	return srv.URL
}

func TestSlowTwilioIsTemporary(t *testing.T) {
	t.Run("HTTP client timeout", func(t *testing.T) {
		e := newEnv(t, func(c *Config) {
			c.APIURL = hangingAPI(t)
			c.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond}
		})
		_, err := e.tw.Voice().Notify(context.Background(), page("p1", alice))
		if err == nil || notifiers.IsPermanent(err) {
			t.Errorf("err %v, want temporary", err)
		}
		noSecret(t, "error", err.Error())
	})
	t.Run("context deadline", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.APIURL = hangingAPI(t) })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.tw.SMS().Notify(ctx, page("p1", alice))
		if err == nil || notifiers.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want temporary deadline exceeded", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Notify took %s; ctx deadline not honoured", d)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		u := srv.URL
		srv.Close()
		e := newEnv(t, func(c *Config) { c.APIURL = u })
		_, err := e.tw.Voice().Notify(context.Background(), page("p1", alice))
		if err == nil || notifiers.IsPermanent(err) {
			t.Errorf("err %v, want temporary", err)
		}
	})
}

func TestAPIURLWithPathPrefix(t *testing.T) {
	// An egress proxy at https://proxy/twilio forwards to Twilio.
	fake := faketwilio.New(t, testToken)
	mux := http.NewServeMux()
	mux.Handle("/twilio/", http.StripPrefix("/twilio", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2, _ := http.NewRequest(r.Method, fake.URL()+r.URL.RequestURI(), r.Body)
		r2.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(r2)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 64<<10)
		n, _ := resp.Body.Read(buf)
		w.Write(buf[:n])
	})))
	proxy := httptest.NewServer(mux)
	t.Cleanup(proxy.Close)
	tw, err := New(Config{AccountSID: fake.AccountSID(), AuthToken: testToken, From: faketwilio.DefaultFrom,
		PublicURL: "https://klaxon.example.org", APIURL: proxy.URL + "/twilio/", Responder: &recResponder{}, Reporter: &recorder.Reports{}})
	if err != nil {
		t.Fatal(err)
	}
	if h := tw.SelfTest(context.Background()); h.Status != notifiers.Up {
		t.Errorf("self-test through a path-prefixed proxy: %+v", h)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"5", 5 * time.Second}, {"-3", 0}, {"soon", 0}, {"99999", time.Hour},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCodeTableIsConsistent(t *testing.T) {
	for code, c := range twilioCodes {
		if c.meaning == "" || (c.class != classPermanent && c.class != classTemporary && c.class != classRecipient) {
			t.Errorf("code %d: %+v", code, c)
		}
	}
	// Account-wide: these count against the channel.
	for _, code := range []int{20003, 20005, 10001, 21210, 21212, 21606, 30002} {
		if twilioCodes[code].class != classPermanent {
			t.Errorf("code %d should be permanent for the account", code)
		}
	}
	// One person's problem: invalid, landline, STOP, unknown handset.
	for _, code := range []int{21211, 21608, 21614, 21610, 21219, 30005, 30006} {
		if twilioCodes[code].class != classRecipient {
			t.Errorf("code %d should be permanent for the recipient only", code)
		}
	}
	for _, code := range []int{20429, 20500, 20503, 14107} {
		if twilioCodes[code].class != classTemporary {
			t.Errorf("code %d should be temporary", code)
		}
	}
}

func TestClassifiedErrorsNeverCarryTheToken(t *testing.T) {
	e := newEnv(t)
	for _, err := range []error{
		&client.TwilioRestError{Status: 400, Code: 21211, Message: "echo " + testToken},
		&client.TwilioRestError{Status: 500, Message: testToken},
		errors.New(`Post "https://AC:` + testToken + `@api.twilio.com/": dial tcp: refused`),
		fmt.Errorf("wrapped: %w", context.DeadlineExceeded),
	} {
		got := e.tw.classify("call", err, "")
		noSecret(t, "classified error", got.Error())
		var ne *notifiers.Error
		if !errors.As(got, &ne) {
			t.Errorf("%v not classified", got)
		}
	}
}
