package matrix

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/testtools"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		header     map[string]string
		permanent  bool
		code       string
		retryAfter time.Duration
	}{
		{"revoked token", 401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`, nil, true, "M_UNKNOWN_TOKEN", 0},
		{"missing token", 401, `{"errcode":"M_MISSING_TOKEN","error":"Missing token"}`, nil, true, "M_MISSING_TOKEN", 0},
		{"bare 401", 401, `unauthorized`, nil, true, "401", 0},
		{"not joined", 403, `{"errcode":"M_FORBIDDEN","error":"User @klaxon:example.org not in room"}`, nil, true, "M_FORBIDDEN", 0},
		{"deactivated", 403, `{"errcode":"M_USER_DEACTIVATED","error":"deactivated"}`, nil, true, "M_USER_DEACTIVATED", 0},
		{"unknown room", 404, `{"errcode":"M_NOT_FOUND","error":"Unknown room"}`, nil, true, "M_NOT_FOUND", 0},
		{"too large", 413, `{"errcode":"M_TOO_LARGE","error":"event too large"}`, nil, true, "M_TOO_LARGE", 0},
		{"rate limited", 429, `{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":1500}`, nil, false, "M_LIMIT_EXCEEDED", 1500 * time.Millisecond},
		{"rate limited, header only", 429, `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down"}`, map[string]string{"Retry-After": "7"}, false, "M_LIMIT_EXCEEDED", 7 * time.Second},
		{"rate limited, absurd hint", 429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":1e15}`, nil, false, "M_LIMIT_EXCEEDED", maxRetryAfter},
		{"rate limited, negative hint", 429, `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":-5}`, nil, false, "M_LIMIT_EXCEEDED", 0},
		{"rate limited, no body", 429, ``, nil, false, "429", 0},
		{"server error", 500, `{"errcode":"M_UNKNOWN","error":"database locked"}`, nil, false, "M_UNKNOWN", 0},
		{"bad gateway", 502, `<html>Bad Gateway</html>`, nil, false, "502", 0},
		{"unavailable", 503, ``, nil, false, "503", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			n, _, _, _ := newTestNotifier(t, &fakeHS{srv: srv}, nil)
			start := time.Now()
			_, err := n.Notify(context.Background(), testPage())
			if err == nil {
				t.Fatal("Notify succeeded")
			}
			if got := notifiers.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v (%v)", got, tc.permanent, err)
			}
			var ne *notifiers.Error
			if !errorsAs(err, &ne) || ne.Code != tc.code {
				t.Errorf("code = %v, want %q (%v)", ne, tc.code, err)
			}
			if got := notifiers.RetryAfter(err); got != tc.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", got, tc.retryAfter)
			}
			if c := calls.Load(); c != 1 {
				t.Errorf("the client made %d requests, want 1 (no retries inside mautrix)", c)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Notify took %v; the engine needs a prompt answer", d)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestNetworkErrorsAreTemporary(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := &httptest.Server{URL: testtools.RefusedURL(t)} // nothing listens, and no later server gets the port
		n, _, _, _ := newTestNotifier(t, &fakeHS{srv: srv}, func(c *Config) { c.HTTPClient = nil })
		_, err := n.Notify(context.Background(), testPage())
		if err == nil || notifiers.IsPermanent(err) {
			t.Fatalf("Notify = %v, want a temporary error", err)
		}
	})
	t.Run("slow server", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer srv.Close()
		defer close(release)
		n, _, _, _ := newTestNotifier(t, &fakeHS{srv: srv}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := n.Notify(ctx, testPage())
		if err == nil || notifiers.IsPermanent(err) {
			t.Fatalf("Notify = %v, want a temporary error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Notify took %v past its deadline", d)
		}
	})
	t.Run("garbage response", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"event_id":`))
		}))
		defer srv.Close()
		n, _, _, _ := newTestNotifier(t, &fakeHS{srv: srv}, nil)
		if _, err := n.Notify(context.Background(), testPage()); err == nil || notifiers.IsPermanent(err) {
			t.Fatalf("Notify = %v, want a temporary error", err)
		}
	})
	t.Run("no event id", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{}`))
		}))
		defer srv.Close()
		n, _, _, _ := newTestNotifier(t, &fakeHS{srv: srv}, nil)
		if _, err := n.Notify(context.Background(), testPage()); err == nil || notifiers.IsPermanent(err) {
			t.Fatalf("Notify = %v, want a temporary error", err)
		}
	})
}

func TestTokenNeverInErrors(t *testing.T) {
	// A hostile or buggy server echoes the Authorization header back.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(403)
		w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"token ` + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + ` not allowed"}`))
	}))
	defer srv.Close()
	n, _, _, _ := newTestNotifier(t, &fakeHS{srv: srv}, nil)
	_, err := n.Notify(context.Background(), testPage())
	if !notifiers.IsPermanent(err) {
		t.Fatalf("Notify = %v, want permanent", err)
	}
	if strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error = %v, want the token redacted", err)
	}
	h := n.SelfTest(context.Background())
	if strings.Contains(h.Reason, testToken) {
		t.Errorf("self-test reason leaks the token: %s", h.Reason)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Authorization"), testToken) {
			leaked.Store(true)
		}
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	n, _, _, _ := newTestNotifier(t, &fakeHS{srv: srv}, func(c *Config) { c.HTTPClient = nil })
	if _, err := n.Notify(context.Background(), testPage()); err == nil {
		t.Error("Notify succeeded through a redirect")
	}
	if leaked.Load() {
		t.Error("the token was sent to the redirect target")
	}
}
