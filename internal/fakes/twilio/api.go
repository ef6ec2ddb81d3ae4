package faketwilio

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	e164Re    = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	mgSIDRe   = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	pathRe    = regexp.MustCompile(`^/2010-04-01/Accounts/([^/]+?)(/[A-Za-z]+)?\.json$`)
	callEvent = map[string]bool{"initiated": true, "ringing": true, "answered": true, "completed": true}
)

// maxForm bounds an API request body.
const maxForm = 1 << 20

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(s.sid)) != 1 || subtle.ConstantTimeCompare([]byte(pass), []byte(s.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	m := pathRe.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	if m[1] != s.sid {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	resource := strings.TrimPrefix(m[2], "/")
	named := resource
	if named == "" {
		named = "Account"
	}
	s.mu.Lock()
	s.requests++
	var fail *failure
	for i, f := range s.fails {
		if f.resource == "" || f.resource == named {
			s.fails = append(s.fails[:i:i], s.fails[i+1:]...)
			fail = &f
			break
		}
	}
	active := s.status == "active"
	s.mu.Unlock()
	if fail != nil {
		writeError(w, fail.status, fail.code, "injected failure")
		return
	}
	if resource != "" && !active {
		writeError(w, http.StatusUnauthorized, 20005, "Account not active")
		return
	}
	if r.Method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			writeError(w, http.StatusBadRequest, 20001, "Content-Type must be application/x-www-form-urlencoded")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, 20001, "malformed form")
			return
		}
	}
	switch {
	case resource == "" && r.Method == http.MethodGet:
		s.getAccount(w)
	case resource == "Balance" && r.Method == http.MethodGet:
		s.getBalance(w)
	case resource == "IncomingPhoneNumbers" && r.Method == http.MethodGet:
		s.listNumbers(w, r)
	case resource == "Calls" && r.Method == http.MethodPost:
		s.createCall(w, r)
	case resource == "Messages" && r.Method == http.MethodPost:
		s.createMessage(w, r, arrived)
	default:
		writeError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
	}
}

func (s *Server) getAccount(w http.ResponseWriter) {
	s.mu.Lock()
	typ := "Full"
	if s.trial {
		typ = "Trial"
	}
	acct := map[string]any{
		"sid": s.sid, "owner_account_sid": s.sid, "friendly_name": "klaxon test",
		"status": s.status, "type": typ, "auth_token": s.token,
		"date_created": rfc2822(time.Unix(1700000000, 0)), "date_updated": rfc2822(time.Now()),
		"uri": "/2010-04-01/Accounts/" + s.sid + ".json",
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, acct)
}

func (s *Server) getBalance(w http.ResponseWriter) {
	s.mu.Lock()
	b := map[string]any{"account_sid": s.sid, "balance": s.balance, "currency": s.currency}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) listNumbers(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("PhoneNumber")
	s.mu.Lock()
	list := []map[string]any{}
	for _, n := range s.numbers {
		if want != "" && n.phone != want {
			continue
		}
		list = append(list, map[string]any{
			"sid": n.sid, "account_sid": s.sid, "phone_number": n.phone, "friendly_name": n.phone,
			"capabilities": map[string]bool{"voice": n.voice, "sms": n.sms, "mms": false, "fax": false},
			"sms_url":      n.smsURL, "status": "in-use",
		})
	}
	s.mu.Unlock()
	uri := "/2010-04-01/Accounts/" + s.sid + "/IncomingPhoneNumbers.json"
	writeJSON(w, http.StatusOK, map[string]any{
		"incoming_phone_numbers": list, "page": 0, "page_size": 50, "start": 0, "end": max(len(list)-1, 0),
		"uri": uri, "first_page_uri": uri, "next_page_uri": nil, "previous_page_uri": nil,
	})
}

// createCall validates a call as Twilio does and queues it for the phone.
func (s *Server) createCall(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	to, from := f.Get("To"), f.Get("From")
	switch {
	case to == "":
		writeError(w, 400, 21201, "No 'To' number is specified")
		return
	case !e164Re.MatchString(to):
		writeError(w, 400, 21211, "Invalid 'To' Phone Number: "+to)
		return
	case from == "":
		writeError(w, 400, 21213, "No 'From' number is specified")
		return
	case !e164Re.MatchString(from):
		writeError(w, 400, 21212, "Invalid 'From' Phone Number: "+from)
		return
	}
	twimlDoc, callURL := f.Get("Twiml"), f.Get("Url")
	switch {
	case callURL == "" && twimlDoc == "" && f.Get("ApplicationSid") == "":
		writeError(w, 400, 21205, "Url, Twiml or ApplicationSid is required")
		return
	case callURL != "" && !isAbsHTTP(callURL):
		writeError(w, 400, 21205, "Url is not a valid URL: "+callURL)
		return
	case callURL == "" && len(twimlDoc) > 4000:
		writeError(w, 400, 21205, "Twiml must be at most 4000 characters")
		return
	}
	if cb := f.Get("StatusCallback"); cb != "" && !isAbsHTTP(cb) {
		writeError(w, 400, 21205, "StatusCallback is not a valid URL: "+cb)
		return
	}
	for _, k := range []string{"Method", "StatusCallbackMethod"} {
		if v := f.Get(k); v != "" && v != "GET" && v != "POST" {
			writeError(w, 400, 20001, k+" must be GET or POST")
			return
		}
	}
	for _, e := range f["StatusCallbackEvent"] {
		for _, ev := range strings.Fields(e) {
			if !callEvent[ev] {
				writeError(w, 400, 20001, "StatusCallbackEvent "+ev+" is not valid")
				return
			}
		}
	}
	if md := f.Get("MachineDetection"); md != "" && md != "Enable" && md != "DetectMessageEnd" {
		writeError(w, 400, 20001, "MachineDetection must be Enable or DetectMessageEnd")
		return
	}
	if v := f.Get("Timeout"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 600 {
			writeError(w, 400, 20001, "Timeout must be an integer from 1 to 600")
			return
		}
	}
	s.mu.Lock()
	num, owned := s.numbers[from]
	trialBlocked := s.trial && !s.verified[to]
	s.mu.Unlock()
	if !owned || !num.voice {
		writeError(w, 400, 21210, "The source phone number provided, "+from+", is not yet verified for your account")
		return
	}
	if trialBlocked {
		writeError(w, 400, 21219, "The number "+to+" is unverified. Trial accounts may only make calls to verified numbers.")
		return
	}
	c := &Call{srv: s, Sid: NewSID("CA"), To: to, From: from, Params: cloneValues(f), status: "queued"}
	now := time.Now()
	s.mu.Lock()
	ph := s.phoneLocked(to)
	ph.calls = append(ph.calls, c)
	s.notify()
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"sid": c.Sid, "account_sid": s.sid, "to": to, "from": from, "status": "queued",
		"direction": "outbound-api", "api_version": "2010-04-01", "date_created": rfc2822(now),
		"date_updated": rfc2822(now), "uri": "/2010-04-01/Accounts/" + s.sid + "/Calls/" + c.Sid + ".json",
	})
}

// createMessage validates a text as Twilio does and delivers it to the phone.
func (s *Server) createMessage(w http.ResponseWriter, r *http.Request, received time.Time) {
	f := r.PostForm
	to, from, svc, body := f.Get("To"), f.Get("From"), f.Get("MessagingServiceSid"), f.Get("Body")
	switch {
	case to == "":
		writeError(w, 400, 21604, "A 'To' phone number is required")
		return
	case !e164Re.MatchString(to):
		writeError(w, 400, 21211, "Invalid 'To' Phone Number: "+to)
		return
	case from == "" && svc == "":
		writeError(w, 400, 21603, "A 'From' phone number or MessagingServiceSid is required")
		return
	case svc != "" && !mgSIDRe.MatchString(svc):
		writeError(w, 400, 21701, "The Messaging Service Sid "+svc+" is invalid")
		return
	case body == "" && f.Get("MediaUrl") == "":
		writeError(w, 400, 21602, "Message body is required")
		return
	case len([]rune(body)) > 1600:
		writeError(w, 400, 21617, "The concatenated message body exceeds the 1600 character limit")
		return
	}
	if cb := f.Get("StatusCallback"); cb != "" && !isAbsHTTP(cb) {
		writeError(w, 400, 21609, "Invalid StatusCallback: "+cb)
		return
	}
	s.mu.Lock()
	if from == "" { // a messaging service picks a sender from its pool
		for n, num := range s.numbers {
			if num.sms {
				from = n
				break
			}
		}
	}
	num, owned := s.numbers[from]
	trialBlocked := s.trial && !s.verified[to]
	ph := s.phoneLocked(to)
	landline := ph.landline
	s.mu.Unlock()
	switch {
	case to == from:
		writeError(w, 400, 21266, "'To' and 'From' number cannot be the same: "+to)
		return
	case !owned || !num.sms:
		writeError(w, 400, 21606, "The From phone number "+from+" is not a valid, SMS-capable inbound phone number or short code for your account.")
		return
	case trialBlocked:
		writeError(w, 400, 21608, "The number "+to+" is unverified. Trial accounts cannot send messages to unverified numbers.")
		return
	case landline:
		writeError(w, 400, 21614, "'To' number "+to+" is not a valid mobile number")
		return
	}
	status := "queued"
	if svc != "" && f.Get("From") == "" {
		status = "accepted"
	}
	m := &SMS{srv: s, Sid: NewSID("SM"), From: from, To: to, Body: body, MessagingServiceSid: svc,
		StatusCallback: f.Get("StatusCallback"), Received: received}
	now := time.Now()
	s.mu.Lock()
	ph.inbox = append(ph.inbox, m)
	ph.lastSender = from
	s.notify()
	hook := s.onSMS
	var inbound string
	if dst, ok := s.numbers[to]; ok && dst.sms && !s.dropInbound {
		inbound = dst.smsURL
	}
	s.mu.Unlock()
	if hook != nil {
		hook(m)
	}
	if inbound != "" {
		s.routeInbound(m, inbound)
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"sid": m.Sid, "account_sid": s.sid, "to": to, "from": from, "body": body, "status": status,
		"messaging_service_sid": svc, "direction": "outbound-api", "num_segments": "1", "num_media": "0",
		"api_version": "2010-04-01", "date_created": rfc2822(now), "date_updated": rfc2822(now),
		"uri": "/2010-04-01/Accounts/" + s.sid + "/Messages/" + m.Sid + ".json",
	})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
