package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// PagerDuty REST API error codes that mean the account itself cannot be used
// (developer.pagerduty.com, REST API "Errors"). An expired trial or an unpaid
// account answers 402 Payment Required (or, as one client library saw it,
// 401) with code 2012; Klaxon keys on the code, whatever the status.
const (
	codeAccountNotFound  = 2007
	codeAccountLocked    = 2008
	codeAccountExpired   = 2012
	codeMissingAbility   = 2014
	codeAuthFailed       = 2006
	maxResponseBytes     = 4 << 20
	maxErrorBodyBytes    = 64 << 10
	maxRetryAfter        = 10 * time.Minute
	default429RetryAfter = 20 * time.Second
)

// capture records what go-pagerduty does not expose: the HTTP status, the
// Retry-After header and the error body (the Events API's error body is not
// the REST shape go-pagerduty decodes, so its message would otherwise be lost).
type capture struct {
	status     int
	retryAfter string
	body       []byte
}

type captureKey struct{}

func withCapture(ctx context.Context) (context.Context, *capture) {
	c := &capture{}
	return context.WithValue(ctx, captureKey{}, c), c
}

// doer is the go-pagerduty HTTPClient: it bounds response bodies and fills
// the request's capture, if any.
type doer struct{ hc *http.Client }

func (d doer) Do(r *http.Request) (*http.Response, error) {
	resp, err := d.hc.Do(r)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxResponseBytes), resp.Body}
	c, ok := r.Context().Value(captureKey{}).(*capture)
	if !ok {
		return resp, nil
	}
	c.status = resp.StatusCode
	c.retryAfter = resp.Header.Get("Retry-After")
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		_ = resp.Body.Close()
		c.body = b
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

// providerError is PagerDuty's error body: the Events API's
// {"status","message","errors"} or the REST API's {"error":{"code","message","errors"}}.
type providerError struct {
	Status  string   `json:"status"`
	Message string   `json:"message"`
	Errors  []string `json:"errors"`
	Code    int      `json:"code"`
}

func parseProviderError(body []byte) providerError {
	var rest struct {
		Error json.RawMessage `json:"error"`
	}
	var pe providerError
	if json.Unmarshal(body, &rest) == nil && len(rest.Error) > 0 && rest.Error[0] == '{' {
		var inner struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Errors  json.RawMessage `json:"errors"`
		}
		if json.Unmarshal(rest.Error, &inner) == nil {
			pe.Code, pe.Message = inner.Code, inner.Message
			pe.Errors = stringsOf(inner.Errors)
			return pe
		}
	}
	var ev struct {
		Status  string          `json:"status"`
		Message string          `json:"message"`
		Errors  json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(body, &ev) == nil {
		pe.Status, pe.Message, pe.Errors = ev.Status, ev.Message, stringsOf(ev.Errors)
	}
	return pe
}

// stringsOf accepts errors as a list of strings or a single string (PagerDuty
// has sent both; go-pagerduty issues 339 and 478).
func stringsOf(raw json.RawMessage) []string {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var one string
	if json.Unmarshal(raw, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

// describe renders the provider's words, bounded and single-line.
func (pe providerError) describe() string {
	var parts []string
	if pe.Message != "" {
		parts = append(parts, pe.Message)
	}
	if len(pe.Errors) > 0 {
		errs := pe.Errors
		if len(errs) > 3 {
			errs = append(errs[:3:3], fmt.Sprintf("and %d more", len(pe.Errors)-3))
		}
		parts = append(parts, strings.Join(errs, "; "))
	}
	s := strings.Join(parts, ": ")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, s)
	return truncate(s, 300)
}

// accountProblem says in words why the account cannot be used, or "".
func accountProblem(status int, pe providerError) string {
	switch pe.Code {
	case codeAccountExpired:
		return "PagerDuty account expired (trial ended or unpaid)"
	case codeAccountLocked:
		return "PagerDuty account locked"
	case codeAccountNotFound:
		return "PagerDuty account not found"
	}
	if status == http.StatusPaymentRequired {
		return "PagerDuty account lacks an ability this needs (402 Payment Required: plan lapsed or downgraded)"
	}
	return ""
}

// classify turns a failed call into a notifiers error. c holds the response
// (status 0: none arrived). err is go-pagerduty's error, used only when no
// response arrived. Codes: PagerDuty's error code when it gave one, else the
// HTTP status.
// extra are further secrets to redact (a policy step's routing key).
func (n *Notifier) classify(op string, err error, c *capture, extra ...string) error {
	if c.status == 0 {
		return notifiers.Temporary("", 0, fmt.Errorf("%s: %s", op, n.redactWith(err.Error(), extra...)))
	}
	pe := parseProviderError(c.body)
	code := strconv.Itoa(c.status)
	if pe.Code != 0 {
		code = strconv.Itoa(pe.Code)
	}
	what := fmt.Sprintf("PagerDuty answered %d %s", c.status, http.StatusText(c.status))
	if d := pe.describe(); d != "" {
		what += ": " + d
	}
	if p := accountProblem(c.status, pe); p != "" {
		what = p + "; " + what
	}
	e := fmt.Errorf("%s: %s", op, n.redactWith(what, extra...))
	switch {
	case accountProblem(c.status, pe) != "":
		return notifiers.Permanent(code, e)
	case c.status == http.StatusRequestTimeout || c.status == http.StatusTooManyRequests || c.status >= 500:
		return notifiers.Temporary(code, n.retryAfter(c), e)
	case c.status >= 400:
		// 400 invalid event (bad or deleted routing key), 401, 403, 404, 413:
		// sending the same thing again cannot work.
		return notifiers.Permanent(code, e)
	default:
		// A 2xx whose body could not be read, or a 1xx/3xx: odd enough to retry.
		return notifiers.Temporary(code, 0, fmt.Errorf("%s: %s", op, n.redactWith(err.Error(), extra...)))
	}
}

// retryAfter reads Retry-After (seconds or HTTP date). Without one, a 429
// gets a modest default: PagerDuty's limits reset every minute and a page
// must not wait minutes.
func (n *Notifier) retryAfter(c *capture) time.Duration {
	var d time.Duration
	if secs, err := strconv.Atoi(strings.TrimSpace(c.retryAfter)); err == nil && secs >= 0 {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(c.retryAfter); err == nil {
		d = t.Sub(n.cfg.Now())
	}
	if d <= 0 && c.status == http.StatusTooManyRequests {
		d = default429RetryAfter
	}
	return min(max(d, 0), maxRetryAfter)
}

// redact removes every configured secret from s, defence in depth for text
// that quotes what PagerDuty or the HTTP stack said.
func (n *Notifier) redact(s string) string {
	for _, secret := range n.secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// redactWith also removes extra (a policy step's routing key).
func (n *Notifier) redactWith(s string, extra ...string) string {
	for _, x := range extra {
		if len(x) >= 8 {
			s = strings.ReplaceAll(s, x, "[redacted]")
		}
	}
	return n.redact(s)
}

func truncate(s string, maxRunes int) string {
	if len(s) <= maxRunes {
		return s
	}
	r := []rune(s)
	if len(r) <= maxRunes {
		return s
	}
	return string(r[:maxRunes-1]) + "…"
}
