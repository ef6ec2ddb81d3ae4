package matrix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// maxRetryAfter caps a homeserver's rate-limit hint so a hostile or broken
// server cannot park a page for hours.
const maxRetryAfter = 10 * time.Minute

// classify turns an error from the mautrix client into a notifiers.Error:
//
//   - M_UNKNOWN_TOKEN, M_MISSING_TOKEN, HTTP 401, M_FORBIDDEN, HTTP 403 and
//     M_USER_DEACTIVATED are permanent: the token is revoked or the bot may not
//     post, and retrying cannot help.
//   - M_LIMIT_EXCEEDED and HTTP 429 are temporary with the server's
//     retry_after_ms (or Retry-After header) as the hint.
//   - 5xx, network errors and timeouts are temporary.
//   - other 4xx (M_NOT_FOUND for an unknown room, M_BAD_JSON, M_TOO_LARGE) are
//     permanent: the same request will be refused again.
//
// The message is built by describe from the error code, status and server
// message only; Notifier.fail additionally scrubs the access token from it.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ne *notifiers.Error
	if errors.As(err, &ne) {
		return err
	}
	var he mautrix.HTTPError
	if !errors.As(err, &he) {
		var hep *mautrix.HTTPError
		if errors.As(err, &hep) && hep != nil {
			he = *hep
		}
	}
	status := 0
	if he.Response != nil {
		status = he.Response.StatusCode
	}
	code := ""
	if he.RespError != nil {
		code = he.RespError.ErrCode
	}
	wrapped := fmt.Errorf("matrix %s: %s", op, describe(err, he))
	switch {
	case code == "M_LIMIT_EXCEEDED" || status == http.StatusTooManyRequests:
		if code == "" {
			code = strconv.Itoa(status)
		}
		return notifiers.Temporary(code, retryAfter(he), wrapped)
	case code == "M_UNKNOWN_TOKEN" || code == "M_MISSING_TOKEN" || code == "M_USER_DEACTIVATED" ||
		code == "M_FORBIDDEN" || status == http.StatusUnauthorized || status == http.StatusForbidden:
		if code == "" {
			code = strconv.Itoa(status)
		}
		return notifiers.Permanent(code, wrapped)
	case status >= 500:
		if code == "" {
			code = strconv.Itoa(status)
		}
		return notifiers.Temporary(code, 0, wrapped)
	case status >= 400:
		if code == "" {
			code = strconv.Itoa(status)
		}
		return notifiers.Permanent(code, wrapped)
	case errors.Is(err, context.DeadlineExceeded):
		return notifiers.Temporary("timeout", 0, wrapped)
	default:
		// Network errors, cancelled contexts, undecodable responses: a blip
		// must not skip a channel.
		return notifiers.Temporary("", 0, wrapped)
	}
}

// describe renders err from its code, status and (bounded) server message.
// Network errors print the request URL, which never holds the token (mautrix
// sends it in the Authorization header). A server that echoes the token in its
// message is handled by scrub, which Notifier.fail applies to every error.
func describe(err error, he mautrix.HTTPError) string {
	if he.RespError != nil && he.Response != nil {
		msg := he.RespError.Err
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return fmt.Sprintf("%s (HTTP %d): %s", he.RespError.ErrCode, he.Response.StatusCode, msg)
	}
	if he.Response != nil {
		return fmt.Sprintf("HTTP %d", he.Response.StatusCode)
	}
	return err.Error()
}

// retryAfter reads the homeserver's hint from retry_after_ms in the error body
// or from the Retry-After header, capped at maxRetryAfter.
func retryAfter(he mautrix.HTTPError) time.Duration {
	var d time.Duration
	if he.RespError != nil {
		switch v := he.RespError.ExtraData["retry_after_ms"].(type) {
		case float64:
			d = msDuration(v)
		case string:
			if ms, err := strconv.ParseFloat(v, 64); err == nil {
				d = msDuration(ms)
			}
		}
	}
	if d == 0 && he.Response != nil {
		if s, err := strconv.ParseFloat(strings.TrimSpace(he.Response.Header.Get("Retry-After")), 64); err == nil {
			d = msDuration(s * 1000)
		}
	}
	return d
}

// msDuration converts a millisecond count from the wire into a Duration in
// [0, maxRetryAfter], guarding against NaN, negatives and overflow.
func msDuration(ms float64) time.Duration {
	if !(ms > 0) { // also false for NaN
		return 0
	}
	if ms >= float64(maxRetryAfter/time.Millisecond) {
		return maxRetryAfter
	}
	return time.Duration(ms * float64(time.Millisecond))
}

// scrub removes secret from err's message, keeping its classification.
func scrub(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	var ne *notifiers.Error
	if errors.As(err, &ne) && ne.Err != nil {
		clean := errors.New(strings.ReplaceAll(ne.Err.Error(), secret, "[redacted]"))
		return &notifiers.Error{Permanent: ne.Permanent, RetryAfter: ne.RetryAfter, Code: ne.Code, Err: clean}
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "[redacted]"))
}
