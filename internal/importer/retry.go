package importer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// RetryTransport retries requests answered 429 Too Many Requests (and 503
// with Retry-After) after the wait the server asks for, a few times.
type RetryTransport struct {
	// Base sends the requests (http.DefaultTransport when nil).
	Base http.RoundTripper
	// Sleep waits d or until ctx ends (real time when nil); tests record it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Tries is how many times a request is sent at most (default 5).
	Tries int
	// MaxWait is the longest Retry-After obeyed (default 2m): a longer one
	// is an error rather than a silent hang.
	MaxWait time.Duration
}

// RoundTrip implements http.RoundTripper.
func (t *RetryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	tries, maxWait := t.Tries, t.MaxWait
	if tries <= 0 {
		tries = 5
	}
	if maxWait <= 0 {
		maxWait = 2 * time.Minute
	}
	for i := 1; ; i++ {
		resp, err := base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		retryAfter := resp.Header.Get("Retry-After")
		if resp.StatusCode != http.StatusTooManyRequests && (resp.StatusCode != http.StatusServiceUnavailable || retryAfter == "") {
			return resp, nil
		}
		if i >= tries {
			return resp, nil
		}
		wait := parseRetryAfter(retryAfter, time.Now())
		if wait < 0 {
			wait = time.Duration(i) * time.Second
		}
		if wait > maxWait {
			return resp, nil // the caller sees the 429 and says so
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if req.Body != nil && req.GetBody == nil {
			return nil, fmt.Errorf("%s %s: rate limited, and the request cannot be sent again", req.Method, req.URL.Path)
		}
		sleep := t.Sleep
		if sleep == nil {
			sleep = sleepCtx
		}
		if err := sleep(req.Context(), wait); err != nil {
			return nil, err
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r2 := req.Clone(req.Context())
			r2.Body = body
			req = r2
		}
	}
}

// parseRetryAfter reads seconds or an HTTP date; -1 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return -1
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
