// Package faketwilio is a faithful fake of the parts of Twilio's REST API
// Klaxon uses (Calls, Messages, Accounts, Balance, IncomingPhoneNumbers),
// served on 127.0.0.1 for tests. It checks Basic auth and validates requests
// the way Twilio does, answering Twilio's JSON errors and codes. A test plays
// the phone: it answers a call, presses keys, lets it ring out, is busy, goes
// to voicemail or replies to a text; the fake runs the TwiML it is given with
// a small interpreter (Say, Play, Pause, Gather, Hangup, Redirect, Reject) and
// posts callbacks signed as Twilio signs them (HMAC-SHA1 over the URL and
// sorted parameters), computed here independently of twilio-go. A text to
// one of the account's own numbers comes back through that number's
// incoming-message webhook (unless SetDropInbound), and a text from a
// number to itself is refused with 21266, as Twilio does.
//
// Not modelled: trial-account preambles on calls, asynchronous AMD, MMS,
// call updates and pagination beyond the first page.
package faketwilio

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultFrom is the number the fake account owns from the start, able to
// make calls and send texts.
const DefaultFrom = "+15005550006"

// DefaultWait is how long Expect* wait for a call or text to arrive.
const DefaultWait = 10 * time.Second

// Server is a fake Twilio account and API.
type Server struct {
	t     testing.TB
	srv   *httptest.Server
	sid   string
	token string
	hc    *http.Client

	mu       sync.Mutex
	changed  chan struct{}
	status   string
	trial    bool
	balance  string
	currency string
	numbers  map[string]*number
	verified map[string]bool
	fails    []failure
	phones   map[string]*Phone
	requests int
	last     *Callback
	onSMS    func(*SMS)
	// dropInbound swallows texts to the account's own numbers (see SetDropInbound).
	dropInbound bool
	inbound     []*Callback
	conns       int
}

// number is a phone number the account owns.
type number struct {
	sid        string
	phone      string
	voice, sms bool
	smsURL     string
}

type failure struct {
	resource     string // "" for any
	status, code int
}

// New starts a fake Twilio for an account with a fresh SID and authToken
// (alphanumeric, as twilio-go insists). The account is active, Full, with a
// balance of 20.00 USD and owns DefaultFrom. It stops when the test ends.
func New(t testing.TB, authToken string) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		sid:      NewSID("AC"),
		token:    authToken,
		hc:       &http.Client{Timeout: 10 * time.Second},
		changed:  make(chan struct{}),
		status:   "active",
		balance:  "20.00",
		currency: "USD",
		numbers:  map[string]*number{},
		verified: map[string]bool{},
		phones:   map[string]*Phone{},
	}
	s.numbers[DefaultFrom] = &number{sid: NewSID("PN"), phone: DefaultFrom, voice: true, sms: true}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveAPI))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the fake API's base URL (use it as the Twilio API URL).
func (s *Server) URL() string { return s.srv.URL }

// AccountSID is the fake account's SID.
func (s *Server) AccountSID() string { return s.sid }

// NewSID returns a random Twilio-style SID with the given two-letter prefix.
func NewSID(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// notify wakes Expect* waiters; call with s.mu held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetAccountStatus sets the account status: active, suspended or closed.
// A suspended or closed account can still be fetched but nothing else:
// Twilio answers 20005 (account not active).
func (s *Server) SetAccountStatus(status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// SetTrial makes the account a trial (true) or a Full account. A trial
// account calls and texts only verified numbers (21219 / 21608 otherwise).
func (s *Server) SetTrial(trial bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trial = trial
}

// VerifyNumber adds n to the trial account's verified caller ids.
func (s *Server) VerifyNumber(n string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verified[n] = true
}

// SetBalance sets the account balance.
func (s *Server) SetBalance(x float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.balance = fmt.Sprintf("%.2f", x)
}

// OwnNumber adds n to the account's numbers with the given capabilities.
func (s *Server) OwnNumber(n string, voice, sms bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.numbers[n] = &number{sid: NewSID("PN"), phone: n, voice: voice, sms: sms}
}

// ReleaseNumber removes n from the account: calls and texts from it fail
// (21210 / 21606) and it no longer lists.
func (s *Server) ReleaseNumber(n string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.numbers, n)
}

// SetSMSURL sets the incoming-SMS webhook of owned number n (its sms_url):
// texts a Phone sends to n are posted there.
func (s *Server) SetSMSURL(n, url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if num, ok := s.numbers[n]; ok {
		num.smsURL = url
		return
	}
	s.t.Fatalf("faketwilio: SetSMSURL: %s is not owned by the account", n)
}

// Connections is how many connections clients opened to the API so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// OnMessage calls fn with every text the API accepts, after it reached the
// phone's inbox and before the API answers the request that sent it (nil:
// none). Tests use it to reply while the sender still waits for Twilio, and
// benchmarks to time each text's arrival.
func (s *Server) OnMessage(fn func(*SMS)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onSMS = fn
}

// FailNext makes the next n API requests fail with httpStatus and Twilio
// error code (429 responses carry Retry-After: 1).
func (s *Server) FailNext(n, httpStatus, twilioCode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fails = append(s.fails, failure{"", httpStatus, twilioCode})
	}
}

// FailNextOn is FailNext for requests to one resource only: "Account",
// "Balance", "Calls", "Messages" or "IncomingPhoneNumbers".
func (s *Server) FailNextOn(resource string, n, httpStatus, twilioCode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fails = append(s.fails, failure{resource, httpStatus, twilioCode})
	}
}

// ClearFailures drops every failure still queued by FailNext and FailNextOn:
// Twilio has recovered.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = nil
}

// Requests is how many API requests the fake has received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// writeError answers like Twilio: {"code","message","more_info","status"}.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code": code, "message": msg, "status": status,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func rfc2822(t time.Time) string { return t.UTC().Format(time.RFC1123Z) }

// isAbsHTTP reports whether u is an absolute http(s) URL.
func isAbsHTTP(u string) bool {
	return (strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")) && len(u) > len("https://") && !strings.ContainsAny(u, " \t\n")
}
