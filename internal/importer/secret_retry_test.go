package importer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(file, []byte("  s3cret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, env, file string
		want, err       string
	}{
		{"from the environment", "s3cret-value", "", "s3cret-value", ""},
		{"from a file, trimmed", "", file, "s3cret-value", ""},
		{"both", "s3cret-value", file, "", "both TEST_KEY and TEST_KEY_FILE are set"},
		{"an empty file", "", empty, "", "is empty"},
		{"a missing file", "", filepath.Join(dir, "nope"), "", "TEST_KEY_FILE:"},
		{"neither", "", "", "", "set TEST_KEY (or TEST_KEY_FILE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Unsetenv("TEST_KEY")
			os.Unsetenv("TEST_KEY_FILE")
			if c.env != "" {
				t.Setenv("TEST_KEY", c.env)
			}
			if c.file != "" {
				t.Setenv("TEST_KEY_FILE", c.file)
			}
			got, err := Secret("TEST_KEY")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				if strings.Contains(err.Error(), "s3cret-value") {
					t.Fatalf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

func TestRetryTransport(t *testing.T) {
	var calls atomic.Int32
	var retryAfter atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", retryAfter.Load().(string))
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write(body) // the retried request carries its body again
	}))
	defer srv.Close()
	now := time.Now()
	for _, c := range []struct {
		name, header string
		wait         time.Duration
		status       int
	}{
		{"seconds", "7", 7 * time.Second, 200},
		{"an HTTP date", now.Add(30 * time.Second).UTC().Format(http.TimeFormat), 30 * time.Second, 200},
		{"longer than MaxWait is the caller's 429", "3600", 0, 429},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls.Store(0)
			retryAfter.Store(c.header)
			var waited time.Duration
			rt := &RetryTransport{Sleep: func(_ context.Context, d time.Duration) error { waited = d; return nil }}
			req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"q":1}`))
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.status == 200 && string(body) != `{"q":1}` {
				t.Fatalf("retried body %q", body)
			}
			if d := waited - c.wait; d < -2*time.Second || d > 2*time.Second {
				t.Fatalf("waited %s, want about %s", waited, c.wait)
			}
		})
	}
}
