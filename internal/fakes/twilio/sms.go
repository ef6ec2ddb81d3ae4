package faketwilio

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// Sent posts the "sent" status callback: the carrier took the text, which
// says nothing about the handset (many carriers never send more).
func (m *SMS) Sent() { m.srv.t.Helper(); m.status("sent", 0) }

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

// SetDropInbound makes texts sent to the account's own numbers vanish (a
// carrier that accepts and relays nothing): their incoming-message webhooks
// are never posted.
func (s *Server) SetDropInbound(drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropInbound = drop
}

// Inbound returns the incoming-message webhooks the fake posted for texts
// sent to the account's own numbers, in order.
func (s *Server) Inbound() []*Callback {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Callback(nil), s.inbound...)
}

// routeInbound posts the incoming-message webhook of a text m sent to one
// of the account's own numbers, as Twilio does when the number's messaging
// webhook (sms_url) is set. It runs before the API answers the request
// that sent m, so a test sees it at once; a failed post is recorded with
// status 0, not fatal (it runs on the API's goroutine).
func (s *Server) routeInbound(m *SMS, target string) {
	sid := NewSID("SM")
	params := url.Values{
		"AccountSid": {s.sid}, "ApiVersion": {"2010-04-01"},
		"MessageSid": {sid}, "SmsSid": {sid}, "SmsMessageSid": {sid},
		"From": {m.From}, "To": {m.To}, "Body": {m.Body},
		"NumMedia": {"0"}, "NumSegments": {"1"}, "SmsStatus": {"received"},
	}
	cb := &Callback{Method: http.MethodPost, URL: target, Params: params}
	cb.Signature = Signature(s.token, cb.URL, cb.Params)
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(params.Encode()))
	if err == nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", cb.Signature)
		req.Header.Set("User-Agent", "TwilioProxy/1.1")
		if resp, err := s.hc.Do(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			cb.Status, cb.Body = resp.StatusCode, string(b)
		}
	}
	s.mu.Lock()
	s.inbound = append(s.inbound, cb)
	s.notify()
	s.mu.Unlock()
}
