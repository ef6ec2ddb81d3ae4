package faketwilio

import (
	"net/url"
	"strconv"
	"time"
)

// SMS is a text the application sent through the fake.
type SMS struct {
	srv *Server
	// Sid is the message's SM... id.
	Sid, From, To, Body string
	// MessagingServiceSid is set when the text went through a messaging service.
	MessagingServiceSid string
	// StatusCallback is where delivery reports go, if anywhere.
	StatusCallback string
	// Received is when the API request creating the text arrived.
	Received time.Time
}

// Delivered posts the "delivered" status callback.
func (m *SMS) Delivered() { m.srv.t.Helper(); m.status("delivered", 0) }

// Undelivered posts an "undelivered" status callback with a Twilio error
// code (30003 unreachable, 30006 landline, ...).
func (m *SMS) Undelivered(code int) { m.srv.t.Helper(); m.status("undelivered", code) }

func (m *SMS) status(st string, code int) {
	m.srv.t.Helper()
	if m.StatusCallback == "" {
		return
	}
	p := url.Values{
		"AccountSid": {m.srv.sid}, "ApiVersion": {"2010-04-01"},
		"MessageSid": {m.Sid}, "SmsSid": {m.Sid}, "MessageStatus": {st}, "SmsStatus": {st},
		"From": {m.From}, "To": {m.To},
	}
	if m.MessagingServiceSid != "" {
		p.Set("MessagingServiceSid", m.MessagingServiceSid)
	}
	if code != 0 {
		p.Set("ErrorCode", strconv.Itoa(code))
	}
	cb := m.srv.post("POST", m.StatusCallback, p)
	if cb.Status < 200 || cb.Status > 299 {
		m.srv.t.Errorf("faketwilio: SMS status callback answered %d: %s", cb.Status, cb.Body)
	}
}
