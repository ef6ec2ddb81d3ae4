package twilio

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Delivery confirmation. A text is confirmed by Twilio's "delivered" status
// callback (a handset receipt); "undelivered" and "failed" are Failed
// reports, as before; "sent" and "queued" say nothing about the handset and
// are no report. The SMS channel promises the engine an answer within
// SMSConfirmWithin; when no receipt comes, it sends nothing, and the
// engine's deadline counts the page unconfirmed.
//
// Calls are confirmed by a keypress (Delivered when the call completes);
// they promise no deadline, because a person not answering is normal.

var _ notifiers.Confirmer = smsNotifier{}

// ConfirmWithin implements notifiers.Confirmer for texts: SMSConfirmWithin
// (DefaultSMSConfirmWithin by default), or 0 when turned off.
func (s smsNotifier) ConfirmWithin() time.Duration {
	if s.t.cfg.SMSConfirmWithin < 0 {
		return 0
	}
	return s.t.cfg.SMSConfirmWithin
}

// The SMS canary: a text from From to CanaryTo carrying a random token,
// whose incoming-message webhook must come back to Klaxon within
// SMSConfirmWithin. Its status callback names no page (canaryPage), so a
// failure report ends the wait early without reaching the engine.
const (
	canaryPrefix = "Klaxon canary "
	canaryPage   = "canary"
)

// canaryWaits are the SMS canaries waiting for their text, by token.
type canaryWaits struct {
	mu sync.Mutex
	m  map[string]chan string // token → "" when the text came back, else why it failed
}

func (c *canaryWaits) add(token string) chan string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]chan string{}
	}
	ch := make(chan string, 1)
	c.m[token] = ch
	return ch
}

func (c *canaryWaits) remove(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, token)
}

// settle ends the wait for token with why ("" for arrived); false if none waits.
func (c *canaryWaits) settle(token, why string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.m[token]
	if ok {
		delete(c.m, token)
		ch <- why
	}
	return ok
}

// Canary texts CanaryTo from the channel's number and waits for the text to
// come back through the incoming-message webhook: confirmed, or not with the
// reason (undelivered with Twilio's code, not back within the deadline,
// refused by Twilio for good). err is set when nothing could be judged: no
// canary number configured, a temporary API failure, or ctx ended. Each
// canary costs one outbound and one inbound text.
func (s smsNotifier) Canary(ctx context.Context) (confirmed bool, reason string, err error) {
	t := s.t
	if t.cfg.CanaryTo == "" {
		return false, "", errors.New("twilio: no SMS canary number configured")
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	arrived := t.canaries.add(token)
	defer t.canaries.remove(token)

	params := (&openapi.CreateMessageParams{}).
		SetTo(t.cfg.CanaryTo).
		SetBody(canaryPrefix + token + " (a test of Klaxon's texts; no action needed)").
		SetStatusCallback(t.callbackURL("sms-status", pageQuery(canaryPage+":"+token, 0)))
	if t.cfg.MessagingServiceSID != "" {
		params.SetMessagingServiceSid(t.cfg.MessagingServiceSID)
	} else {
		params.SetFrom(t.cfg.From)
	}
	start := time.Now()
	api, rw := t.api(ctx)
	if _, err := api.CreateMessage(params); err != nil {
		cerr := t.classify("sms canary", err, rw.lastRetryAfter())
		if notifiers.IsPermanent(cerr) {
			return false, "Twilio refused the canary text: " + cerr.Error(), nil
		}
		return false, "", cerr
	}
	within := s.ConfirmWithin()
	if within == 0 {
		within = DefaultSMSConfirmWithin
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case why := <-arrived:
		if why != "" {
			return false, why, nil
		}
		t.cfg.Logger.Info("twilio: SMS canary came back", "after", time.Since(start).Round(time.Millisecond))
		return true, fmt.Sprintf("canary text to %s came back in %s", t.cfg.CanaryTo, time.Since(start).Round(time.Second)), nil
	case <-timer.C:
		return false, fmt.Sprintf("canary text to %s accepted by Twilio but not received back within %s: texts may not be delivered", t.cfg.CanaryTo, within), nil
	case <-ctx.Done():
		return false, "", ctx.Err()
	}
}

// canaryText takes an incoming canary text: it ends its canary's wait and
// is answered with nothing (a reply would be another text).
func (t *Twilio) canaryText(body string) bool {
	rest, ok := strings.CutPrefix(strings.TrimSpace(body), canaryPrefix)
	if !ok {
		return false
	}
	token, _, _ := strings.Cut(rest, " ")
	if !t.canaries.settle(token, "") {
		t.cfg.Logger.Info("twilio: late or unknown canary text ignored")
	}
	return true
}

// canaryStatus takes a status callback of a canary text.
func (t *Twilio) canaryStatus(cb *callback) {
	token, ok := strings.CutPrefix(cb.pageID, canaryPage+":")
	status := cb.form.Get("MessageStatus")
	if !ok || (status != "undelivered" && status != "failed") {
		return
	}
	why := "canary text " + status
	if code, err := strconv.Atoi(cb.form.Get("ErrorCode")); err == nil && code != 0 {
		why = fmt.Sprintf("canary text %s: %d %s", status, code, codeMeaning(code))
	}
	t.canaries.settle(token, why)
}
