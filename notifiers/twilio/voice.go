package twilio

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// maxAttempts is how many times a call offers the menu before hanging up.
const maxAttempts = 3

// voiceNotifier is the phone channel.
type voiceNotifier struct{ t *Twilio }

// Voice returns the phone channel: Notify places a call for KindPage and
// ignores every other kind. It also implements notifiers.SelfTester.
func (t *Twilio) Voice() notifiers.Notifier { return voiceNotifier{t} }

func (v voiceNotifier) Channel() notifiers.Channel { return notifiers.Phone }

// SelfTest checks what calls need: an active account, a balance, and a
// from-number owned by the account that can make calls.
func (v voiceNotifier) SelfTest(ctx context.Context) notifiers.Health {
	return v.t.selfTest(ctx, true, false)
}

func (v voiceNotifier) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	if p.Kind != notifiers.KindPage {
		return notifiers.Receipt{}, nil
	}
	t := v.t
	if err := checkPage(p); err != nil {
		return notifiers.Receipt{}, err
	}
	if t.cfg.From == "" {
		return notifiers.Receipt{}, notifiers.Permanent("", errors.New("twilio call: no from-number configured (a messaging service cannot place calls)"))
	}
	rec := pageRecord{PageID: p.ID, Incident: p.Incident, To: p.Recipient.Phone, Script: script(p)}
	if err := t.putJSON(ctx, bucketPage, p.ID, rec); err != nil {
		return notifiers.Receipt{}, notifiers.Temporary("", 0, fmt.Errorf("twilio call: %w", err))
	}
	q := pageQuery(p.ID, p.Incident)
	params := (&openapi.CreateCallParams{}).
		SetTo(p.Recipient.Phone).
		SetFrom(t.cfg.From).
		SetUrl(t.callbackURL("voice", q)).
		SetMethod("POST").
		SetStatusCallback(t.callbackURL("status", q)).
		SetStatusCallbackMethod("POST").
		SetMachineDetection(t.cfg.MachineDetection).
		SetTimeout(int(t.cfg.RingTimeout.Seconds()))
	api, rw := t.api(ctx)
	call, err := api.CreateCall(params)
	if err != nil {
		cerr := t.classify("call", err, rw.lastRetryAfter())
		t.cfg.Logger.Warn("twilio: placing call failed", "page", p.ID, "incident", p.Incident, "err", cerr)
		return notifiers.Receipt{}, cerr
	}
	sid, status := deref(call.Sid), deref(call.Status)
	if sid == "" {
		return notifiers.Receipt{}, notifiers.Temporary("", 0, errors.New("twilio call: response has no call SID"))
	}
	t.cfg.Logger.Info("twilio: call placed", "page", p.ID, "incident", p.Incident, "call", sid, "status", status)
	return notifiers.Receipt{ProviderID: sid, Detail: "call " + orDefault(status, "queued")}, nil
}

// checkPage rejects pages no retry can send.
func checkPage(p notifiers.Page) error {
	if p.ID == "" {
		return notifiers.Permanent("", errors.New("twilio: page has no id"))
	}
	if !e164Re.MatchString(p.Recipient.Phone) {
		who := orDefault(p.Recipient.PersonID, "recipient")
		return notifiers.PermanentRecipient("", fmt.Errorf("twilio: %s has no E.164 phone number (got %q)", who, p.Recipient.Phone))
	}
	return nil
}

// pageQuery is the query every callback URL of a page carries; Twilio signs it.
func pageQuery(pageID string, incident uint64) url.Values {
	return url.Values{"page": {pageID}, "incident": {strconv.FormatUint(incident, 10)}}
}

// callbackURL is the public URL of a callback endpoint.
func (t *Twilio) callbackURL(endpoint string, q url.Values) string {
	u := t.cfg.PublicURL + callbackPrefix + endpoint
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// script is what the call says about the page, briefly:
// "Klaxon alert. Incident 42. Critical. Disk full on db-1."
func script(p notifiers.Page) string {
	parts := []string{"Klaxon alert.", fmt.Sprintf("Incident %d.", p.Incident)}
	if s := speakable(p.Severity, 30); s != "" {
		parts = append(parts, sentence(capitalize(s)))
	}
	title := p.Title
	if title == "" && len(p.Alerts) > 0 {
		title = p.Alerts[0].Name()
	}
	if s := speakable(title, 200); s != "" {
		parts = append(parts, sentence(s))
	}
	if p.Synthetic {
		parts = append(parts, "This is an alarm about Klaxon itself.")
	}
	if s := speakable(p.Text, 300); s != "" {
		// Pages held back by a rate limit, folded into this call.
		parts = append(parts, sentence(s))
	}
	return strings.Join(parts, " ")
}

// speakable removes control characters, collapses space and cuts s to max runes.
func speakable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		s = strings.TrimSpace(string(r[:max]))
	}
	return s
}

func sentence(s string) string {
	if s == "" || strings.ContainsAny(s[len(s)-1:], ".!?") {
		return s
	}
	return s + "."
}

func capitalize(s string) string {
	r := []rune(s)
	if len(r) == 0 {
		return s
	}
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
