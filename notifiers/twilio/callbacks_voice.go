package twilio

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// record returns the stored page, or one rebuilt from the signed query when
// the store lost it (the call still works, just with a shorter script).
func (t *Twilio) record(ctx context.Context, cb *callback) pageRecord {
	var rec pageRecord
	ok, err := t.getJSON(ctx, bucketPage, cb.pageID, &rec)
	if err != nil {
		t.cfg.Logger.Warn("twilio: reading page record", "page", cb.pageID, "err", err)
	}
	if !ok || err != nil || rec.Incident != cb.incident {
		rec = pageRecord{PageID: cb.pageID, Incident: cb.incident, Script: fmt.Sprintf("Klaxon alert. Incident %d.", cb.incident)}
	}
	if rec.To == "" {
		rec.To = cb.form.Get("To")
	}
	return rec
}

func attemptOf(cb *callback) int {
	n, err := strconv.Atoi(cb.query.Get("attempt"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func isMachine(answeredBy string) bool {
	return strings.HasPrefix(answeredBy, "machine_") || answeredBy == "fax"
}

// onVoice serves the call's TwiML once Twilio has connected it (and,
// with answering-machine detection, knows who answered). A machine gets a
// short message or a hang-up, never the menu.
func (t *Twilio) onVoice(ctx context.Context, cb *callback) (string, string, error) {
	rec := t.record(ctx, cb)
	sid := cb.form.Get("CallSid")
	answeredBy := cb.form.Get("AnsweredBy")
	if isMachine(answeredBy) {
		var cs callState
		if sid != "" {
			var err error
			if cs, err = t.updateCall(ctx, sid, func(cs *callState) { cs.Machine = true }); err != nil {
				return "", "", err
			}
		}
		if !cs.Final {
			err := t.cfg.Reporter.Report(ctx, notifiers.Report{
				PageID: rec.PageID, Incident: rec.Incident, Channel: notifiers.Phone,
				Status: notifiers.NoAnswer, Detail: "voicemail (" + answeredBy + ")", At: t.cfg.Now(),
			})
			switch {
			case err != nil: // the completed status callback reports it instead
				t.cfg.Logger.Error("twilio: reporting voicemail", "page", rec.PageID, "call", sid, "err", err)
			case sid != "":
				if _, err := t.updateCall(ctx, sid, func(cs *callState) { cs.Final = true }); err != nil {
					return "", "", err
				}
			}
		}
		t.cfg.Logger.Info("twilio: machine answered; no acknowledgement possible", "page", rec.PageID, "call", sid, "answered_by", answeredBy)
		if strings.HasPrefix(answeredBy, "machine_end") {
			return xmlType, t.sayAndHangup(fmt.Sprintf("This is Klaxon. Incident %d needs attention. Please check Klaxon. This message cannot acknowledge it. Goodbye.", rec.Incident)), nil
		}
		return xmlType, hangupDoc(), nil
	}
	if sid != "" {
		cs, err := t.updateCall(ctx, sid, func(*callState) {})
		if err != nil {
			return "", "", err
		}
		if cs.Machine {
			return xmlType, hangupDoc(), nil
		}
	}
	return xmlType, t.menuDoc(rec, attemptOf(cb), ""), nil
}

// onGather takes a keypress: 1 acknowledges, 2 escalates, 9 repeats.
// Acknowledge and escalate are deduplicated by call and digit so a retried
// callback neither acts twice nor answers differently.
func (t *Twilio) onGather(ctx context.Context, cb *callback) (string, string, error) {
	rec := t.record(ctx, cb)
	sid := cb.form.Get("CallSid")
	digits := cb.form.Get("Digits")
	attempt := attemptOf(cb)
	if sid == "" {
		return xmlType, hangupDoc(), nil
	}
	cs, err := t.updateCall(ctx, sid, func(*callState) {})
	if err != nil {
		return "", "", err
	}
	if cs.Machine || isMachine(cb.form.Get("AnsweredBy")) {
		return xmlType, hangupDoc(), nil
	}
	var action notifiers.Action
	switch digits {
	case "1":
		action = notifiers.Ack
	case "2":
		action = notifiers.Escalate
	case "9":
		return xmlType, t.menuDoc(rec, attempt, ""), nil
	case "":
		return xmlType, t.menuDoc(rec, attempt+1, ""), nil
	default:
		if attempt+1 > maxAttempts {
			return xmlType, t.goodbyeDoc(rec.Incident), nil
		}
		return xmlType, t.menuDoc(rec, attempt+1, "Sorry, that key is not an option."), nil
	}
	seenKey := "gather:" + sid + ":" + digits
	defer t.keys.lock(seenKey)()
	if prev, err := t.state.GetState(ctx, bucketSeen, seenKey); err != nil {
		return "", "", err
	} else if prev != nil {
		return xmlType, string(prev), nil
	}
	out, err := t.cfg.Responder.Respond(ctx, notifiers.Response{
		Action: action, Incident: rec.Incident, PageID: rec.PageID,
		Channel: notifiers.Phone, From: rec.To, At: t.cfg.Now(),
	})
	var doc string
	switch {
	case errors.Is(err, notifiers.ErrNotOnRota):
		doc = t.sayAndHangup("Sorry. Only people on the rota can acknowledge. Goodbye.")
	case errors.Is(err, notifiers.ErrUnknownIncident):
		doc = t.sayAndHangup(fmt.Sprintf("Klaxon does not know incident %d. Goodbye.", rec.Incident))
	case err != nil:
		// Not recorded as seen: the person (or Twilio's retry) may try again.
		t.cfg.Logger.Error("twilio: responder failed", "page", rec.PageID, "call", sid, "action", action, "err", err)
		return xmlType, t.menuDoc(rec, attempt, "Sorry, Klaxon could not record your answer. Please try again."), nil
	default:
		doc = t.sayAndHangup(confirmation(action, rec.Incident, out))
	}
	if _, err := t.updateCall(ctx, sid, func(cs *callState) { cs.Acted = true }); err != nil {
		return "", "", err
	}
	if err := t.state.PutState(ctx, bucketSeen, seenKey, []byte(doc)); err != nil {
		return "", "", err
	}
	t.cfg.Logger.Info("twilio: keypress taken", "page", rec.PageID, "incident", rec.Incident, "call", sid, "action", action, "applied", out.Applied)
	return xmlType, doc, nil
}

// confirmation is what the call says after a keypress was taken.
func confirmation(a notifiers.Action, incident uint64, out notifiers.Outcome) string {
	msg := sentence(speakable(out.Message, 200))
	if msg == "" {
		switch {
		case !out.Applied:
			msg = fmt.Sprintf("Incident %d: nothing changed.", incident)
		case a == notifiers.Ack:
			msg = fmt.Sprintf("Incident %d acknowledged.", incident)
		default:
			msg = fmt.Sprintf("Incident %d escalated to the next person.", incident)
		}
	}
	if a == notifiers.Ack && out.Applied {
		return msg + " Thank you. Goodbye."
	}
	return msg + " Goodbye."
}

// onStatus records how a call ended. Only a keypress acknowledges; an
// answered call without one, a voicemail, busy, no answer and cancelled are
// NoAnswer, failed is Failed.
func (t *Twilio) onStatus(ctx context.Context, cb *callback) (string, string, error) {
	sid := cb.form.Get("CallSid")
	status := cb.form.Get("CallStatus")
	if sid == "" || status == "" {
		return "", "", nil
	}
	seenKey := "status:" + sid + ":" + status
	if prev, err := t.state.GetState(ctx, bucketSeen, seenKey); err != nil {
		return "", "", err
	} else if prev != nil {
		return "", "", nil
	}
	rep := notifiers.Report{PageID: cb.pageID, Incident: cb.incident, Channel: notifiers.Phone, At: t.cfg.Now()}
	answeredBy := cb.form.Get("AnsweredBy")
	var skip bool
	switch status {
	case "completed":
		cs, err := t.updateCall(ctx, sid, func(*callState) {})
		if err != nil {
			return "", "", err
		}
		skip = !cs.Acted && cs.Final
		switch {
		case cs.Acted:
			rep.Status, rep.Detail = notifiers.Delivered, "answered; key pressed"
		case isMachine(answeredBy) || cs.Machine:
			rep.Status, rep.Detail = notifiers.NoAnswer, "voicemail"
		default:
			rep.Status, rep.Detail = notifiers.NoAnswer, "answered, no key pressed"
		}
		if d := cb.form.Get("CallDuration"); d != "" {
			rep.Detail += " (" + d + "s)"
		}
	case "busy", "no-answer", "canceled":
		rep.Status, rep.Detail = notifiers.NoAnswer, strings.ReplaceAll(status, "-", " ")
	case "failed":
		rep.Status, rep.Detail = notifiers.Failed, "call failed"
		if code, err := strconv.Atoi(cb.form.Get("ErrorCode")); err == nil && code != 0 {
			rep.Detail = fmt.Sprintf("call failed: %d %s", code, codeMeaning(code))
			rep.Permanent = twilioCodes[code].class == classPermanent || twilioCodes[code].class == classRecipient
			rep.Recipient = twilioCodes[code].class == classRecipient
		}
	default: // queued, initiated, ringing, in-progress: progress, not an outcome
		return "", "", nil
	}
	if !skip {
		if err := t.cfg.Reporter.Report(ctx, rep); err != nil {
			return "", "", fmt.Errorf("report call %s: %w", status, err)
		}
		if _, err := t.updateCall(ctx, sid, func(cs *callState) { cs.Final = true }); err != nil {
			return "", "", err
		}
	}
	if err := t.state.PutState(ctx, bucketSeen, seenKey, []byte{1}); err != nil {
		return "", "", err
	}
	return "", "", nil
}
