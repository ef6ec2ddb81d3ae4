package twilio

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/twilio/twilio-go/twiml"
)

const menu = "Press 1 to acknowledge. Press 2 to escalate to the next person. Press 9 to hear this again."

// say is a <Say> with the configured voice and language.
func (t *Twilio) say(text string) twiml.Element {
	return &twiml.VoiceSay{Message: text, Voice: t.cfg.Voice, Language: t.cfg.Language}
}

// voiceDoc renders verbs as a TwiML document.
func voiceDoc(verbs ...twiml.Element) string {
	s, err := twiml.Voice(verbs)
	if err != nil { // etree cannot fail on these elements; keep the call alive regardless
		return `<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>`
	}
	return s
}

// menuDoc reads the page and offers the keys; with no keypress Twilio falls
// through to the Redirect, which offers the menu again (attempt+1).
func (t *Twilio) menuDoc(rec pageRecord, attempt int, prefix string) string {
	if attempt > maxAttempts {
		return t.goodbyeDoc(rec.Incident)
	}
	q := withAttempt(pageQuery(rec.PageID, rec.Incident), attempt)
	var inner []twiml.Element
	if prefix != "" {
		inner = append(inner, t.say(prefix))
	}
	inner = append(inner, t.say(rec.Script), &twiml.VoicePause{Length: "1"}, t.say(menu))
	return voiceDoc(
		&twiml.VoiceGather{
			Input:         "dtmf",
			NumDigits:     "1",
			Timeout:       "8",
			Action:        t.callbackURL("gather", q),
			Method:        "POST",
			InnerElements: inner,
		},
		&twiml.VoiceRedirect{Method: "POST", Url: t.callbackURL("voice", withAttempt(pageQuery(rec.PageID, rec.Incident), attempt+1))},
	)
}

// goodbyeDoc ends a call on which nobody pressed a key.
func (t *Twilio) goodbyeDoc(incident uint64) string {
	return voiceDoc(t.say(fmt.Sprintf("No key pressed. Incident %d is not acknowledged. Goodbye.", incident)), &twiml.VoiceHangup{})
}

// sayAndHangup says text and ends the call.
func (t *Twilio) sayAndHangup(text string) string {
	return voiceDoc(t.say(text), &twiml.VoiceHangup{})
}

func hangupDoc() string { return voiceDoc(&twiml.VoiceHangup{}) }

func withAttempt(q url.Values, attempt int) url.Values {
	q.Set("attempt", strconv.Itoa(attempt))
	return q
}

// messageDoc is a messaging TwiML reply; an empty body sends nothing.
func messageDoc(body string) string {
	var verbs []twiml.Element
	if body != "" {
		verbs = append(verbs, &twiml.MessagingMessage{Body: body})
	}
	s, err := twiml.Messages(verbs)
	if err != nil {
		return `<?xml version="1.0" encoding="UTF-8"?><Response></Response>`
	}
	return s
}
