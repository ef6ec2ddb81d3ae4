package faketwilio

import (
	"net/url"
	"testing"
	"time"
)

// Phone is a phone a test holds: calls and texts to its number arrive here.
type Phone struct {
	srv        *Server
	number     string
	landline   bool
	calls      []*Call
	inbox      []*SMS
	lastSender string
}

// Phone returns the phone with E.164 number n.
func (s *Server) Phone(n string) *Phone {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phoneLocked(n)
}

func (s *Server) phoneLocked(n string) *Phone {
	p, ok := s.phones[n]
	if !ok {
		p = &Phone{srv: s, number: n}
		s.phones[n] = p
	}
	return p
}

// Number is the phone's number.
func (p *Phone) Number() string { return p.number }

// SetLandline makes the phone a landline: texts to it fail with 21614.
func (p *Phone) SetLandline(landline bool) {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	p.landline = landline
}

// PendingCalls is how many calls rang this phone and were not yet taken
// with ExpectCall.
func (p *Phone) PendingCalls() int {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	return len(p.calls)
}

// PendingSMS is how many texts arrived and were not yet taken with ExpectSMS.
func (p *Phone) PendingSMS() int {
	p.srv.mu.Lock()
	defer p.srv.mu.Unlock()
	return len(p.inbox)
}

// ExpectCall waits up to DefaultWait for a call to ring this phone and
// returns it, ringing (answer it, let it ring out, ...). It fails t otherwise.
func (p *Phone) ExpectCall(t testing.TB) *Call {
	t.Helper()
	var c *Call
	p.await(t, "a call", func() bool {
		if len(p.calls) == 0 {
			return false
		}
		c, p.calls = p.calls[0], p.calls[1:]
		return true
	})
	return c
}

// ExpectSMS waits up to DefaultWait for a text to this phone and returns it.
func (p *Phone) ExpectSMS(t testing.TB) *SMS {
	t.Helper()
	var m *SMS
	p.await(t, "a text", func() bool {
		if len(p.inbox) == 0 {
			return false
		}
		m, p.inbox = p.inbox[0], p.inbox[1:]
		return true
	})
	return m
}

// await polls cond (under the server lock) whenever the server changes,
// until it holds or DefaultWait passes.
func (p *Phone) await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(DefaultWait)
	defer deadline.Stop()
	for {
		p.srv.mu.Lock()
		ok := cond()
		ch := p.srv.changed
		p.srv.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("faketwilio: %s expected %s within %s, none came", p.number, what, DefaultWait)
		}
	}
}

// ReplySMS texts body back to the number that last texted this phone (or,
// if none has, to DefaultFrom) and returns Klaxon's answer (the bodies of
// the <Message> verbs in its TwiML, joined by newlines).
func (p *Phone) ReplySMS(body string) string {
	p.srv.t.Helper()
	p.srv.mu.Lock()
	to := p.lastSender
	p.srv.mu.Unlock()
	if to == "" {
		to = DefaultFrom
	}
	return p.SendSMS(to, body)
}

// SendSMS texts body to the account's number to, posting the signed
// incoming-message webhook to that number's SMS URL, and returns the answer.
func (p *Phone) SendSMS(to, body string) string {
	s := p.srv
	s.t.Helper()
	s.mu.Lock()
	num, ok := s.numbers[to]
	var target string
	if ok {
		target = num.smsURL
	}
	s.mu.Unlock()
	if !ok || target == "" {
		s.t.Fatalf("faketwilio: %s is not an account number with an SMS URL (see SetSMSURL)", to)
	}
	sid := NewSID("SM")
	params := url.Values{
		"AccountSid": {s.sid}, "ApiVersion": {"2010-04-01"},
		"MessageSid": {sid}, "SmsSid": {sid}, "SmsMessageSid": {sid},
		"From": {p.number}, "To": {to}, "Body": {body},
		"NumMedia": {"0"}, "NumSegments": {"1"}, "SmsStatus": {"received"},
	}
	cb := s.post("POST", target, params)
	if cb.Status < 200 || cb.Status > 299 {
		s.t.Errorf("faketwilio: SMS webhook %s answered %d: %s", target, cb.Status, cb.Body)
		return ""
	}
	return messageBodies(cb.Body)
}

// messageBodies reads the texts a messaging TwiML answer sends back.
func messageBodies(doc string) string {
	if doc == "" {
		return ""
	}
	n, err := ParseTwiML(doc)
	if err != nil {
		return "(unparseable TwiML: " + err.Error() + ")"
	}
	var out string
	for _, v := range n.Children {
		if v.XMLName.Local != "Message" {
			continue
		}
		text := v.Text
		for _, b := range v.Children {
			if b.XMLName.Local == "Body" {
				text += b.Text
			}
		}
		if out != "" {
			out += "\n"
		}
		out += text
	}
	return out
}
