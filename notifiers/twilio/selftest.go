package twilio

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// trialLimits says what a trial account cannot do, for the alarm.
const trialLimits = "trial account: calls and texts reach only verified numbers and start with a trial notice"

// SelfTest checks the account behind both channels without paging anyone:
// the account is active (suspended or closed: down; trial: degraded), the
// balance is at least MinBalance (degraded below), and the from-number is
// still the account's and can make calls and send texts (down otherwise).
func (t *Twilio) SelfTest(ctx context.Context) notifiers.Health {
	return t.selfTest(ctx, true, true)
}

func (t *Twilio) selfTest(ctx context.Context, voice, sms bool) notifiers.Health {
	api, rw := t.api(ctx)
	var degraded []string
	willFail := false

	acct, err := api.FetchAccount(t.cfg.AccountSID)
	if err != nil {
		return down("account", t.classify("account check", err, rw.lastRetryAfter()))
	}
	switch st := deref(acct.Status); st {
	case "active":
	case "suspended", "closed":
		return notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("Twilio account %s", st)}
	default:
		return notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("Twilio account status %q is not active", speakable(st, 30))}
	}
	if strings.EqualFold(deref(acct.Type), "Trial") {
		degraded = append(degraded, trialLimits)
		willFail = true
	}

	if t.cfg.MinBalance > 0 {
		bal, err := api.FetchBalance(&openapi.FetchBalanceParams{})
		if err != nil {
			degraded = append(degraded, "balance unknown: "+t.classify("balance check", err, rw.lastRetryAfter()).Error())
		} else if v, perr := strconv.ParseFloat(deref(bal.Balance), 64); perr != nil {
			degraded = append(degraded, fmt.Sprintf("balance unreadable (%q)", speakable(deref(bal.Balance), 20)))
		} else if v < t.cfg.MinBalance {
			degraded = append(degraded, fmt.Sprintf("balance %.2f %s is below %.2f", v, speakable(deref(bal.Currency), 5), t.cfg.MinBalance))
			willFail = true
		}
	}

	needNumber := voice || (sms && t.cfg.MessagingServiceSID == "")
	if needNumber && t.cfg.From != "" {
		page, err := api.PageIncomingPhoneNumber((&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber(t.cfg.From).SetPageSize(20), "", "")
		if err != nil {
			return down("number", t.classify("number check", err, rw.lastRetryAfter()))
		}
		var found *openapi.ApiV2010IncomingPhoneNumber
		for i := range page.IncomingPhoneNumbers {
			if deref(page.IncomingPhoneNumbers[i].PhoneNumber) == t.cfg.From {
				found = &page.IncomingPhoneNumbers[i]
				break
			}
		}
		if found == nil {
			return notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("from-number %s is no longer owned by the Twilio account", t.cfg.From)}
		}
		caps := found.Capabilities
		if voice && (caps == nil || !caps.Voice) {
			return notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("from-number %s cannot make voice calls", t.cfg.From)}
		}
		if sms && t.cfg.MessagingServiceSID == "" && (caps == nil || !caps.Sms) {
			return notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("from-number %s cannot send SMS", t.cfg.From)}
		}
	} else if voice && t.cfg.From == "" {
		return notifiers.Health{Status: notifiers.Down, Reason: "no from-number configured for calls"}
	}

	if len(degraded) > 0 {
		return notifiers.Health{Status: notifiers.Degraded, Reason: strings.Join(degraded, "; "), WillFail: willFail}
	}
	return notifiers.Health{Status: notifiers.Up, Reason: "account active, balance and from-number fine"}
}

// down turns a classified API error into a Down health with the code.
func down(what string, err error) notifiers.Health {
	var e *notifiers.Error
	reason := err.Error()
	if errors.As(err, &e) && e.Code != "" {
		if n, cerr := strconv.Atoi(e.Code); cerr == nil {
			if m := codeMeaning(n); m != "" {
				reason = fmt.Sprintf("Twilio %s check: %s (code %s)", what, m, e.Code)
			}
		}
	}
	return notifiers.Health{Status: notifiers.Down, Reason: reason}
}
