package faketwilio

import (
	"net/url"
	"strconv"
	"strings"
)

// Call is an outbound call ringing a Phone. Its methods play the person
// (or the voicemail) at the other end; each posts the callbacks Twilio would
// and returns what the call said in response. Use a Call from one goroutine.
type Call struct {
	srv *Server
	// Sid is the call's CA... id; To and From the numbers.
	Sid, To, From string
	// Params is the create-call request as the application sent it.
	Params url.Values

	status     string
	answeredBy string
	gather     *gatherState
	said       []string // since the last action
	transcript []string
	errors     []string
	events     []string
	callbacks  []*Callback
}

// Callbacks lists the requests the call made to the application, in order.
func (c *Call) Callbacks() []*Callback { return c.callbacks }

// Status is the call's Twilio status: queued, in-progress, completed, busy,
// no-answer, failed or canceled.
func (c *Call) Status() string { return c.status }

// Transcript is everything the call said so far.
func (c *Call) Transcript() string { return strings.Join(c.transcript, " ") }

// Errors lists what went wrong running the application's TwiML (Twilio's
// debugger would show these), e.g. a callback that did not answer 2xx.
func (c *Call) Errors() []string { return c.errors }

// Waiting reports whether a <Gather> is listening for keys.
func (c *Call) Waiting() bool { return c.gather != nil && c.status == "in-progress" }

// StatusEvents lists the CallStatus values posted to the status callback.
func (c *Call) StatusEvents() []string { return c.events }

// Answer picks up as a person: answering-machine detection, if requested,
// says "human". The call's TwiML runs until it waits for keys or ends; the
// return value is what it said.
func (c *Call) Answer() string {
	c.srv.t.Helper()
	if c.Params.Get("MachineDetection") != "" {
		c.answeredBy = "human"
	}
	return c.connect()
}

// Voicemail lets voicemail pick up: detection, if requested, says
// machine_end_beep (DetectMessageEnd) or machine_start (Enable); without
// detection the voicemail hears the TwiML as a person would. A voicemail
// presses no keys, so any Gather times out. Returns what was recorded.
func (c *Call) Voicemail() string {
	c.srv.t.Helper()
	switch c.Params.Get("MachineDetection") {
	case "DetectMessageEnd":
		c.answeredBy = "machine_end_beep"
	case "Enable":
		c.answeredBy = "machine_start"
	}
	c.connect()
	for i := 0; c.Waiting() && i < 10; i++ {
		c.noKeys()
	}
	if c.status == "in-progress" {
		c.end("completed")
	}
	return c.Transcript()
}

func (c *Call) connect() string {
	c.srv.t.Helper()
	if c.status != "queued" {
		c.srv.t.Fatalf("faketwilio: call %s is %s, cannot be answered", c.Sid, c.status)
	}
	c.event("ringing", "ringing")
	c.status = "in-progress"
	c.event("answered", "in-progress")
	c.said = nil
	params := c.callParams()
	if c.answeredBy != "" {
		params.Set("AnsweredBy", c.answeredBy)
	}
	if u := c.Params.Get("Url"); u != "" {
		doc, ok := c.fetch(strings.ToUpper(orDefault(c.Params.Get("Method"), "POST")), u, params)
		if ok {
			c.run(doc.Children, u)
		}
	} else {
		doc, err := ParseTwiML(c.Params.Get("Twiml"))
		if err != nil {
			c.fail(err.Error())
		} else {
			c.run(doc.Children, "")
		}
	}
	return strings.Join(c.said, " ")
}

// Press sends keys to the waiting <Gather> and returns what the call said next.
func (c *Call) Press(digits string) string {
	c.srv.t.Helper()
	if !c.Waiting() {
		c.srv.t.Fatalf("faketwilio: call %s (%s): no <Gather> is listening for %q", c.Sid, c.status, digits)
	}
	g := c.gather
	c.gather = nil
	c.said = nil
	if g.numDigits > 0 && len(digits) > g.numDigits {
		digits = digits[:g.numDigits]
	}
	params := c.callParams()
	params.Set("Digits", digits)
	params.Set("FinishedOnKey", "")
	doc, ok := c.fetch(g.method, g.action, params)
	if ok {
		c.run(doc.Children, g.action)
	}
	return strings.Join(c.said, " ")
}

// NoKeypress lets the waiting <Gather> time out, and returns what the call
// said next (Twilio continues after the Gather, or posts an empty result
// when actionOnEmptyResult is set).
func (c *Call) NoKeypress() string {
	c.srv.t.Helper()
	if !c.Waiting() {
		c.srv.t.Fatalf("faketwilio: call %s (%s): no <Gather> is listening", c.Sid, c.status)
	}
	c.said = nil
	c.noKeys()
	return strings.Join(c.said, " ")
}

func (c *Call) noKeys() {
	g := c.gather
	c.gather = nil
	if g.actionOnEmptyResult {
		doc, ok := c.fetch(g.method, g.action, c.callParams())
		if ok {
			c.run(doc.Children, g.action)
		}
		return
	}
	c.run(g.rest, g.docURL)
}

// Hangup: the person hangs up.
func (c *Call) Hangup() {
	c.srv.t.Helper()
	if c.status != "in-progress" {
		c.srv.t.Fatalf("faketwilio: call %s is %s, cannot hang up", c.Sid, c.status)
	}
	c.end("completed")
}

// NoAnswer lets the call ring out.
func (c *Call) NoAnswer() { c.srv.t.Helper(); c.ring(); c.finish("no-answer") }

// Busy answers busy.
func (c *Call) Busy() { c.srv.t.Helper(); c.finish("busy") }

// Failed fails the call before it connects (carrier rejected it).
func (c *Call) Failed() { c.srv.t.Helper(); c.finish("failed") }

// Canceled cancels the call while it rings.
func (c *Call) Canceled() { c.srv.t.Helper(); c.ring(); c.finish("canceled") }

func (c *Call) ring() { c.event("ringing", "ringing") }

func (c *Call) finish(status string) {
	c.srv.t.Helper()
	if c.status != "queued" {
		c.srv.t.Fatalf("faketwilio: call %s is already %s", c.Sid, c.status)
	}
	c.end(status)
}

// end finishes the call and posts the final status callback.
func (c *Call) end(status string) {
	c.srv.t.Helper()
	if c.status != "queued" && c.status != "in-progress" {
		return
	}
	duration := "0"
	if c.status == "in-progress" {
		duration = "1"
	}
	c.status = status
	c.gather = nil
	cb := c.Params.Get("StatusCallback")
	if cb == "" {
		return
	}
	p := c.callParams()
	p.Set("CallDuration", duration)
	p.Set("Duration", duration)
	c.events = append(c.events, status)
	c.recordStatus(c.srv.post(strings.ToUpper(orDefault(c.Params.Get("StatusCallbackMethod"), "POST")), cb, p))
}

// recordStatus records a status callback and flags a non-2xx answer.
func (c *Call) recordStatus(cb *Callback) {
	c.callbacks = append(c.callbacks, cb)
	if cb.Status < 200 || cb.Status > 299 {
		c.errors = append(c.errors, "status callback answered "+strconv.Itoa(cb.Status))
	}
}

// event posts an intermediate status callback if the application asked for it.
func (c *Call) event(name, callStatus string) {
	c.srv.t.Helper()
	cb := c.Params.Get("StatusCallback")
	if cb == "" {
		return
	}
	wanted := false
	for _, e := range c.Params["StatusCallbackEvent"] {
		for _, f := range strings.Fields(e) {
			wanted = wanted || f == name
		}
	}
	if !wanted {
		return
	}
	p := c.callParams()
	p.Set("CallStatus", callStatus)
	c.events = append(c.events, callStatus)
	c.recordStatus(c.srv.post(strings.ToUpper(orDefault(c.Params.Get("StatusCallbackMethod"), "POST")), cb, p))
}

// callParams are the parameters Twilio sends with every voice request.
func (c *Call) callParams() url.Values {
	p := url.Values{
		"AccountSid": {c.srv.sid},
		"ApiVersion": {"2010-04-01"},
		"CallSid":    {c.Sid},
		"CallStatus": {c.status},
		"Called":     {c.To},
		"Caller":     {c.From},
		"Direction":  {"outbound-api"},
		"From":       {c.From},
		"To":         {c.To},
	}
	if c.answeredBy != "" && c.status != "in-progress" {
		p.Set("AnsweredBy", c.answeredBy)
	}
	return p
}

// fetch requests TwiML from the application. On anything but a 2xx XML
// answer Twilio says an application error occurred and hangs up.
func (c *Call) fetch(method, target string, params url.Values) (Node, bool) {
	c.srv.t.Helper()
	cb := c.srv.post(method, target, params)
	c.callbacks = append(c.callbacks, cb)
	if cb.Status < 200 || cb.Status > 299 {
		c.fail("11200 HTTP retrieval failure: " + target + " answered " + strconv.Itoa(cb.Status))
		return Node{}, false
	}
	doc, err := ParseTwiML(cb.Body)
	if err != nil {
		c.fail(err.Error())
		return Node{}, false
	}
	return doc, true
}

func (c *Call) say(text string) {
	text = strings.Join(strings.Fields(text), " ")
	if text == "" {
		return
	}
	c.said = append(c.said, text)
	c.transcript = append(c.transcript, text)
}

// fail ends the call as Twilio does when the application's TwiML breaks.
func (c *Call) fail(why string) {
	c.srv.t.Helper()
	c.errors = append(c.errors, why)
	c.say("We are sorry, an application error has occurred. Goodbye.")
	c.end("completed")
}
