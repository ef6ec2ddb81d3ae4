package twilio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// errorClass says whether retrying a Twilio error can help.
type errorClass int

const (
	classPermanent errorClass = iota + 1
	classTemporary
	// classRecipient is permanent for one recipient only (invalid or landline
	// number, STOP, unknown handset): it says nothing of the account.
	classRecipient
)

// twilioCodes classifies Twilio's REST and delivery error codes
// (https://www.twilio.com/docs/api/errors). Codes not listed fall back to the
// HTTP status: 429 and 5xx temporary, other 4xx permanent.
var twilioCodes = map[int]struct {
	class   errorClass
	meaning string
}{
	10001: {classPermanent, "account is not active"},
	20003: {classPermanent, "authentication failed: wrong credentials, or the account is suspended"},
	20005: {classPermanent, "account not active (suspended or closed)"},
	20008: {classPermanent, "test credentials cannot access this resource"},
	20404: {classPermanent, "resource not found"},
	20429: {classTemporary, "too many requests"},
	20500: {classTemporary, "Twilio internal server error"},
	20503: {classTemporary, "Twilio service unavailable"},
	21203: {classPermanent, "international calling not enabled"},
	21205: {classPermanent, "callback URL is not valid"},
	21210: {classPermanent, "from-number is not a Twilio number or verified caller id of the account"},
	21211: {classRecipient, "invalid 'To' phone number"},
	21212: {classPermanent, "invalid 'From' phone number"},
	21214: {classRecipient, "'To' phone number cannot be reached"},
	21215: {classRecipient, "geo permissions do not allow calling this number"},
	21216: {classRecipient, "call blocked by Twilio's blocklist"},
	21217: {classRecipient, "phone number does not appear to be valid"},
	21219: {classRecipient, "trial account: 'To' number is not verified"},
	21401: {classRecipient, "invalid phone number"},
	21408: {classPermanent, "SMS to this region is not enabled"},
	21601: {classRecipient, "phone number is not SMS-capable"},
	21602: {classPermanent, "message body is required"},
	21603: {classPermanent, "a 'From' number or messaging service is required"},
	21606: {classPermanent, "from-number is not an SMS-capable number of the account"},
	21608: {classRecipient, "trial account: 'To' number is not verified"},
	21610: {classRecipient, "recipient unsubscribed (replied STOP)"},
	21611: {classTemporary, "too many messages queued for the from-number"},
	21612: {classRecipient, "'To' number is not reachable by SMS"},
	21614: {classRecipient, "'To' number is not a mobile number (landline)"},
	21617: {classPermanent, "message body too long"},
	13224: {classRecipient, "invalid phone number for a call"},
	13227: {classRecipient, "geo permissions do not allow calling this number"},
	14107: {classTemporary, "SMS send rate limit exceeded"},
	30001: {classTemporary, "message queue overflow"},
	30002: {classPermanent, "account suspended"},
	30003: {classTemporary, "destination handset unreachable"},
	30004: {classRecipient, "message blocked"},
	30005: {classRecipient, "unknown destination handset"},
	30006: {classRecipient, "landline or unreachable carrier"},
	30007: {classRecipient, "message filtered by the carrier"},
	30008: {classTemporary, "unknown delivery error"},
	30034: {classPermanent, "sender not registered for US A2P 10DLC"},
}

// codeMeaning names a Twilio code in words, or "" when it is not in the table.
func codeMeaning(code int) string {
	return twilioCodes[code].meaning
}

// classify turns an error from twilio-go into a notifiers error: Permanent
// for a lapsed account or an unusable number, Temporary for rate limits,
// Twilio outages, timeouts and network trouble. retryAfter is the response's
// Retry-After header, if any.
func (t *Twilio) classify(op string, err error, retryAfter string) error {
	var rest *client.TwilioRestError
	if errors.As(err, &rest) {
		code := rest.Code
		msg := strings.TrimSpace(rest.Message)
		if m := codeMeaning(code); m != "" && msg == "" {
			msg = m
		}
		e := fmt.Errorf("twilio %s: HTTP %d, code %d: %s", op, rest.Status, code, t.redact(msg))
		codeStr := strconv.Itoa(code)
		if code == 0 {
			codeStr = strconv.Itoa(rest.Status)
		}
		if c, ok := twilioCodes[code]; ok {
			switch c.class {
			case classPermanent:
				return notifiers.Permanent(codeStr, e)
			case classRecipient:
				return notifiers.PermanentRecipient(codeStr, e)
			}
			return notifiers.Temporary(codeStr, parseRetryAfter(retryAfter, t.cfg.Now()), e)
		}
		if rest.Status == http.StatusTooManyRequests || rest.Status >= 500 || rest.Status == 0 {
			return notifiers.Temporary(codeStr, parseRetryAfter(retryAfter, t.cfg.Now()), e)
		}
		return notifiers.Permanent(codeStr, e)
	}
	// Not a Twilio error body: network failure, timeout, cancelled context,
	// or an error page that was not JSON (twilio-go reports the status in words).
	msg := t.redact(err.Error())
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return notifiers.Temporary("", 0, fmt.Errorf("twilio %s: %s: %w", op, msg, errorsOnlyKind(err)))
	}
	return notifiers.Temporary("", parseRetryAfter(retryAfter, t.cfg.Now()), fmt.Errorf("twilio %s: %s", op, msg))
}

// errorsOnlyKind keeps errors.Is(err, context.DeadlineExceeded) working on the
// classified error without carrying the original (unredacted) text.
func errorsOnlyKind(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

// redact removes the auth token from text that may echo a request.
func (t *Twilio) redact(s string) string {
	if t.cfg.AuthToken == "" {
		return s
	}
	return strings.ReplaceAll(s, t.cfg.AuthToken, "[redacted]")
}

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date),
// capped at an hour. It returns 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	}
	if d < 0 {
		return 0
	}
	return min(d, time.Hour)
}
