package twilio

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// maxSMS keeps a text within two concatenated GSM segments.
const maxSMS = 300

// smsNotifier is the SMS channel.
type smsNotifier struct{ t *Twilio }

// SMS returns the SMS channel: KindPage texts the page with reply codes and
// routes replies from that number to it; KindAcknowledged and KindResolved
// send a one-line notice; KindMessage texts its Text; other kinds are ignored. It also implements
// notifiers.SelfTester.
func (t *Twilio) SMS() notifiers.Notifier { return smsNotifier{t} }

func (s smsNotifier) Channel() notifiers.Channel { return notifiers.SMS }

// SelfTest checks what texts need: an active account, a balance, and a
// from-number owned by the account that can send SMS (or a messaging service).
func (s smsNotifier) SelfTest(ctx context.Context) notifiers.Health {
	return s.t.selfTest(ctx, false, true)
}

func (s smsNotifier) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	t := s.t
	var body string
	switch p.Kind {
	case notifiers.KindPage:
		body = smsPageBody(p)
	case notifiers.KindAcknowledged, notifiers.KindResolved:
		body = smsNoticeBody(p)
	case notifiers.KindMessage:
		body = "Klaxon: " + speakable(p.Text, maxSMS-8)
	default:
		return notifiers.Receipt{}, nil
	}
	if err := checkPage(p); err != nil {
		return notifiers.Receipt{}, err
	}
	var route smsRoute
	if p.Kind == notifiers.KindPage {
		// Route replies in memory before sending (a reply may beat the API's
		// answer) and on disk after it, so no synced write delays the text.
		route = t.routes.begin(p.Recipient.Phone, p.ID, p.Incident, time.Now())
	}
	params := (&openapi.CreateMessageParams{}).
		SetTo(p.Recipient.Phone).
		SetBody(body)
	if p.Kind != notifiers.KindMessage { // a message is no page: nothing to report on
		params.SetStatusCallback(t.callbackURL("sms-status", pageQuery(p.ID, p.Incident)))
	}
	if t.cfg.MessagingServiceSID != "" {
		params.SetMessagingServiceSid(t.cfg.MessagingServiceSID)
	} else {
		params.SetFrom(t.cfg.From)
	}
	api, rw := t.api(ctx)
	msg, err := api.CreateMessage(params)
	if err != nil {
		cerr := t.classify("sms", err, rw.lastRetryAfter())
		t.cfg.Logger.Warn("twilio: sending text failed", "page", p.ID, "incident", p.Incident, "err", cerr)
		return notifiers.Receipt{}, cerr
	}
	sid := deref(msg.Sid)
	if sid == "" {
		return notifiers.Receipt{}, notifiers.Temporary("", 0, errors.New("twilio sms: response has no message SID"))
	}
	rc := notifiers.Receipt{ProviderID: sid, Detail: "sms " + orDefault(deref(msg.Status), "queued")}
	if p.Kind == notifiers.KindPage {
		// The route goes to disk with the page's result, in the engine's
		// transaction that records the page as sent: no commit of its own
		// after the text. A crash before that transaction leaves the page in
		// flight, and it is texted again, with its route.
		rc.State = append(rc.State, t.routeWrite(p.Recipient.Phone, route))
	}
	t.cfg.Logger.Info("twilio: text sent", "page", p.ID, "incident", p.Incident, "message", sid, "kind", p.Kind)
	return rc, nil
}

// smsPageBody: "Klaxon #42 CRITICAL: Disk full on db-1. Reply 1 to ack, 2 to escalate."
// followed by the page's link (the recipient's signed web link), when it has one.
// The title is shortened so that the link always fits whole.
func smsPageBody(p notifiers.Page) string {
	tail := " Reply 1 to ack, 2 to escalate."
	if smsLinkOK(p.Link) {
		tail += " " + p.Link
	}
	head := fmt.Sprintf("Klaxon #%d", p.Incident)
	if sev := speakable(p.Severity, 20); sev != "" {
		head += " " + strings.ToUpper(sev)
	}
	title := p.Title
	if title == "" && len(p.Alerts) > 0 {
		title = p.Alerts[0].Name()
	}
	// Pages held back by a rate limit ride along: "3 incidents need you: ...".
	also := speakable(p.Text, 120)
	if also != "" {
		also = " " + sentence(also)
	}
	room := maxSMS - len([]rune(head)) - len([]rune(tail)) - len([]rune(also)) - 3 // ": " and a full stop
	if t := speakable(title, room); t != "" {
		head += ": " + sentence(t)
	}
	return head + also + tail
}

// smsLinkOK reports whether link can go into a text whole: an http(s) URL
// without spaces, short enough to leave room for the alert.
func smsLinkOK(link string) bool {
	return len(link) <= maxSMS/2 && !strings.ContainsAny(link, " \t\r\n") &&
		(strings.HasPrefix(link, "https://") || strings.HasPrefix(link, "http://"))
}

// smsNoticeBody: "Klaxon #42 acknowledged by Alice via phone."
func smsNoticeBody(p notifiers.Page) string {
	text := speakable(p.Text, maxSMS-20)
	if text == "" {
		text = string(p.Kind)
	}
	return fmt.Sprintf("Klaxon #%d %s", p.Incident, sentence(text))
}

// onSMS takes a reply: "1"/"ack" acknowledges, "2"/"esc" escalates the
// latest page texted to the sender. Numbers never paged are refused.
func (t *Twilio) onSMS(ctx context.Context, cb *callback) (string, string, error) {
	from := cb.form.Get("From")
	sid := cb.form.Get("MessageSid")
	if sid == "" {
		sid = cb.form.Get("SmsSid")
	}
	if sid != "" {
		defer t.keys.lock("sms:" + sid)()
		if prev, err := t.state.GetState(ctx, bucketSeen, "sms:"+sid); err != nil {
			return "", "", err
		} else if prev != nil {
			return xmlType, string(prev), nil
		}
	}
	if t.canaryText(cb.form.Get("Body")) {
		return t.smsAnswer(ctx, sid, "")
	}
	route, ok, err := t.route(ctx, from)
	if err != nil {
		return "", "", err
	}
	if from == "" || !ok {
		t.cfg.Logger.Warn("twilio: text from a number never paged refused", "message", sid)
		return t.smsAnswer(ctx, sid, "Klaxon: this number is not on the rota.")
	}
	word := strings.ToLower(strings.Trim(strings.TrimSpace(cb.form.Get("Body")), ".!"))
	var action notifiers.Action
	switch word {
	case "1", "ack", "acknowledge", "a", "ok":
		action = notifiers.Ack
	case "2", "esc", "escalate", "e":
		action = notifiers.Escalate
	case "stop", "stopall", "unsubscribe", "cancel", "end", "quit", "start", "unstop", "yes", "help", "info":
		// Twilio's opt-out keywords: Twilio answers these itself.
		return t.smsAnswer(ctx, sid, "")
	default:
		return t.smsAnswer(ctx, sid, fmt.Sprintf("Klaxon #%d: reply 1 to ack, 2 to escalate.", route.Incident))
	}
	out, err := t.cfg.Responder.Respond(ctx, notifiers.Response{
		Action: action, Incident: route.Incident, PageID: route.PageID,
		Channel: notifiers.SMS, From: from, At: t.cfg.Now(),
	})
	switch {
	case errors.Is(err, notifiers.ErrNotOnRota):
		return t.smsAnswer(ctx, sid, "Klaxon: only people on the rota can acknowledge.")
	case errors.Is(err, notifiers.ErrUnknownIncident):
		return t.smsAnswer(ctx, sid, fmt.Sprintf("Klaxon: incident %d is unknown.", route.Incident))
	case err != nil:
		t.cfg.Logger.Error("twilio: responder failed", "page", route.PageID, "message", sid, "action", action, "err", err)
		return xmlType, messageDoc("Klaxon: could not record that, please try again."), nil
	}
	msg := speakable(out.Message, 200)
	if msg == "" {
		msg = fmt.Sprintf("incident %d %s", route.Incident, map[notifiers.Action]string{notifiers.Ack: "acknowledged", notifiers.Escalate: "escalated"}[action])
	}
	t.cfg.Logger.Info("twilio: text reply taken", "page", route.PageID, "incident", route.Incident, "message", sid, "action", action, "applied", out.Applied)
	return t.smsAnswer(ctx, sid, "Klaxon: "+sentence(msg))
}

// smsAnswer replies with body and remembers the answer for retries of sid.
func (t *Twilio) smsAnswer(ctx context.Context, sid, body string) (string, string, error) {
	doc := messageDoc(body)
	if sid != "" {
		if err := t.state.PutState(ctx, bucketSeen, "sms:"+sid, []byte(doc)); err != nil {
			return "", "", err
		}
	}
	return xmlType, doc, nil
}

// onSMSStatus records a text's delivery: delivered, or failed/undelivered
// with Twilio's error code.
func (t *Twilio) onSMSStatus(ctx context.Context, cb *callback) (string, string, error) {
	sid := cb.form.Get("MessageSid")
	status := cb.form.Get("MessageStatus")
	if sid == "" || status == "" {
		return "", "", nil
	}
	if strings.HasPrefix(cb.pageID, canaryPage+":") {
		t.canaryStatus(cb)
		return "", "", nil
	}
	rep := notifiers.Report{PageID: cb.pageID, Incident: cb.incident, Channel: notifiers.SMS, At: t.cfg.Now()}
	switch status {
	case "delivered":
		rep.Status, rep.Detail = notifiers.Delivered, "delivered"
	case "undelivered", "failed":
		rep.Status, rep.Detail = notifiers.Failed, "sms "+status
		if code, err := strconv.Atoi(cb.form.Get("ErrorCode")); err == nil && code != 0 {
			rep.Detail = fmt.Sprintf("sms %s: %d %s", status, code, codeMeaning(code))
			rep.Permanent = twilioCodes[code].class == classPermanent || twilioCodes[code].class == classRecipient
			rep.Recipient = twilioCodes[code].class == classRecipient
		}
	default:
		return "", "", nil
	}
	seenKey := "sms-status:" + sid + ":" + status
	if prev, err := t.state.GetState(ctx, bucketSeen, seenKey); err != nil {
		return "", "", err
	} else if prev != nil {
		return "", "", nil
	}
	if err := t.cfg.Reporter.Report(ctx, rep); err != nil {
		return "", "", fmt.Errorf("report sms %s: %w", status, err)
	}
	return "", "", t.state.PutState(ctx, bucketSeen, seenKey, []byte{1})
}
