// Package fakepagerduty is a faithful in-process fake of the parts of PagerDuty
// Klaxon uses: the Events API v2 (POST /v2/enqueue), the REST API endpoints
// /abilities, /services, /incidents and /incidents/{id}/log_entries (who is
// on call, users without contact methods and the notifications PagerDuty
// logs: see logentries.go), and signed v3 webhooks sent when an incident
// changes state.
//
// It validates requests the way PagerDuty does (32-character routing keys of
// known integrations, event_action, the required trigger payload fields,
// summary length, REST token authentication) and answers with PagerDuty's
// status codes and error bodies. Switches reproduce the failures a paging
// system must survive: an invalid routing key, an expired or unpaid account,
// a disabled service or one in maintenance, rate limiting and server errors.
//
// What PagerDuty answers, and where that is known from:
//
//   - Events API v2 (developer.pagerduty.com, "Events API v2 Overview",
//     "Response Codes & Retry Logic"): 202 accepted, 400 invalid event, 429 too
//     many requests, 5xx server error; nothing else is documented. A 400 body is
//     {"status":"invalid event","message":"Event object is invalid","errors":[...]},
//     e.g. "Length of 'routing_key' is incorrect (should be 32 characters)"
//     (quoted by Alertmanager's and several client libraries' tests). The payload
//     limit is 512 KB; summary is at most 1024 characters.
//   - REST API errors (developer.pagerduty.com, "Errors"): the body is
//     {"error":{"message":...,"code":N,"errors":[...]}}; 401 bad credentials
//     (code 2006 "Authentication failed"); 402 Payment Required when "the account
//     does not have access to one or more abilities needed"; code 2012 "Your
//     account is expired and cannot use the API."; 2014 "Missing Account
//     Ability"; 2008 "Account Locked"; 2100 / 404 Not Found.
//   - An expired trial or unpaid account: the REST API answers 402 with
//     {"error":{"message":"Your account is expired and cannot use the API.","code":2012}}
//     (that body is quoted verbatim by PagerDuty client libraries; one of them
//     saw it with status 401, so Klaxon keys on the code, not the status). The
//     Events API documents no account error at all; the fake models the worst
//     case, which Klaxon must survive: 202 accepted and silently dropped, no
//     incident, nobody paged. The same holds for a disabled service and for a
//     service in maintenance (PagerDuty's knowledge base: "no incidents are
//     created during maintenance").
//   - v3 webhooks (developer.pagerduty.com, "Webhooks Overview", "Verifying
//     Signatures", "Behavior"): body {"event":{id, event_type, resource_type,
//     occurred_at, agent, client, data}} where data is the incident (id, number,
//     status, incident_key, title, service, assignees, ...); header
//     X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>; X-Webhook-Id is
//     repeated on every delivery attempt of one webhook; deliveries are retried
//     on 5xx/429/timeouts, dropped on other 4xx.
package fakepagerduty

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultServiceID is the id of the service New creates.
const DefaultServiceID = "PSVC001"

// DefaultUserID is a user New registers, for Acknowledge and Resolve.
const DefaultUserID = "PUSR001"

// Server is a running fake PagerDuty. Its methods are safe for concurrent use.
type Server struct {
	srv *httptest.Server

	mu                sync.Mutex
	now               func() time.Time
	apiToken          string
	services          []*service
	byKey             map[string]*service
	incidents         []*Incident
	users             map[string]User
	userOrder         []string
	schedules         []*Schedule
	policies          []*EscalationPolicy
	abilities         []string
	events            []Event
	restCalls         []RESTCall
	failures          []failure
	invalidRoutingKey bool
	accountExpired    bool
	omitIncidentKey   bool
	webhookURL        string
	webhookSecrets    []string
	webhookClient     *http.Client
	deliveries        []Delivery
	seq               int
	logs              map[string][]LogEntry // incident id → log, oldest first
	notifyDelay       time.Duration

	pending []deliveryJob
	wake    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

type failure struct {
	status     int
	retryAfter time.Duration
}

// New starts a fake PagerDuty on 127.0.0.1 that is closed when tb ends. It has
// one active service (DefaultServiceID) with one Events API v2 integration
// (RoutingKey), one REST API token (APIToken) and one user (DefaultUserID).
func New(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{
		now:           time.Now,
		apiToken:      randomToken(20),
		byKey:         map[string]*service{},
		users:         map[string]User{},
		abilities:     []string{"teams", "urgencies", "sso", "advanced_reports", "read_only_users", "response_operations"},
		webhookClient: &http.Client{Timeout: 5 * time.Second},
		wake:          make(chan struct{}, 1),
		done:          make(chan struct{}),
	}
	s.addService(DefaultServiceID, "Klaxon")
	s.users[DefaultUserID] = User{ID: DefaultUserID, Name: "Alice Example", Email: "alice@example.org"}
	s.userOrder = []string{DefaultUserID}

	mux := http.NewServeMux()
	mux.HandleFunc("/v2/enqueue", s.handleEnqueue)
	mux.HandleFunc("/abilities", s.rest(s.handleAbilities))
	mux.HandleFunc("/abilities/{name}", s.rest(s.handleAbility))
	mux.HandleFunc("/services", s.rest(s.handleServices))
	mux.HandleFunc("/services/{id}", s.rest(s.handleService))
	mux.HandleFunc("/incidents", s.rest(s.handleIncidents))
	mux.HandleFunc("/incidents/{id}", s.rest(s.handleIncident))
	mux.HandleFunc("/incidents/{id}/log_entries", s.rest(s.handleLogEntries))
	mux.HandleFunc("/users/{id}", s.rest(s.handleUser))
	mux.HandleFunc("/users", s.rest(s.handleUsers))
	mux.HandleFunc("/schedules", s.rest(s.handleSchedules))
	mux.HandleFunc("/schedules/{id}", s.rest(s.handleSchedule))
	mux.HandleFunc("/schedules/{id}/overrides", s.rest(s.handleOverrides))
	mux.HandleFunc("/escalation_policies", s.rest(s.handleEscalationPolicies))
	mux.HandleFunc("/oncalls", s.rest(s.handleOnCalls))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeRESTError(w, http.StatusNotFound, 2100, "Not Found")
	})

	srv := httptest.NewUnstartedServer(mux)
	srv.Start() // httptest listens on 127.0.0.1:0
	s.srv = srv

	s.wg.Add(1)
	go s.deliverLoop()
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and the webhook sender. It is called automatically
// when the test ends; calling it twice is harmless.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.srv.Close()
}

// URL is the base URL of both the Events API and the REST API
// (e.g. http://127.0.0.1:41234); the paths are PagerDuty's.
func (s *Server) URL() string { return s.srv.URL }

// RoutingKey is the integration key of the default service.
func (s *Server) RoutingKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.services[0].routingKeys[0]
}

// APIToken is the REST API token the fake accepts.
func (s *Server) APIToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiToken
}

// AddService adds an active service with one Events API v2 integration and
// returns its id and routing key.
func (s *Server) AddService(name string) (serviceID, routingKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("PSVC%03d", len(s.services)+1)
	svc := s.addService(id, name)
	return id, svc.routingKeys[0]
}

func (s *Server) addService(id, name string) *service {
	svc := &service{id: id, name: name, status: ServiceActive, routingKeys: []string{randomToken(32)}}
	s.services = append(s.services, svc)
	s.byKey[svc.routingKeys[0]] = svc
	return svc
}

// AddUser registers a user that Acknowledge, Resolve and Reassign can name.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.ID]; !ok {
		s.userOrder = append(s.userOrder, u.ID)
	}
	s.users[u.ID] = u
}

// SetClock replaces the fake's clock (default time.Now), used for incident
// and webhook timestamps.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetInvalidRoutingKey makes the Events API reject every routing key as
// PagerDuty does for a deleted integration: 400 invalid event.
func (s *Server) SetInvalidRoutingKey(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidRoutingKey = on
}

// SetAccountExpired makes the account lapsed (expired trial, unpaid): every
// REST call answers 402 with error code 2012, and the Events API accepts
// events (202) but drops them, so nobody is paged.
func (s *Server) SetAccountExpired(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accountExpired = on
}

// SetServiceDisabled sets or clears the disabled status of a service. Events
// for a disabled service are accepted and dropped.
func (s *Server) SetServiceDisabled(serviceID string, on bool) {
	s.setServiceStatus(serviceID, ServiceDisabled, on)
}

// SetMaintenance puts a service in or out of a maintenance window. Events for
// a service in maintenance are accepted and create no incident.
func (s *Server) SetMaintenance(serviceID string, on bool) {
	s.setServiceStatus(serviceID, ServiceMaintenance, on)
}

func (s *Server) setServiceStatus(serviceID, status string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if svc.id != serviceID {
			continue
		}
		switch {
		case on:
			svc.status = status
		case svc.status == status:
			svc.status = ServiceActive
		}
		return
	}
	panic("fakepagerduty: unknown service " + serviceID)
}

// SetAbilities replaces the account's abilities listed by GET /abilities.
func (s *Server) SetAbilities(abilities ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abilities = slices.Clone(abilities)
}

// FailNext makes the next n requests (Events or REST) answer status, as
// PagerDuty does when rate limiting (429) or failing (5xx).
func (s *Server) FailNext(n, status int) { s.FailNextRetryAfter(n, status, 0) }

// FailNextRetryAfter is FailNext with a Retry-After header (whole seconds).
func (s *Server) FailNextRetryAfter(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, failure{status: status, retryAfter: retryAfter})
	}
}

// SetWebhook configures where v3 webhooks go and the signing secrets (more
// than one while a secret is being rotated: each signs, comma-separated).
// An empty url stops webhooks.
func (s *Server) SetWebhook(url string, secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhookURL = url
	s.webhookSecrets = slices.Clone(secrets)
}

// SetWebhookOmitsIncidentKey makes webhooks leave data.incident_key out, so
// the receiver must look the incident up by id.
func (s *Server) SetWebhookOmitsIncidentKey(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omitIncidentKey = on
}

// Events returns a copy of every Events API request received, in order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// RESTCalls returns a copy of every REST request received, in order.
func (s *Server) RESTCalls() []RESTCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.restCalls)
}

// Deliveries returns a copy of every webhook delivery attempted, in order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// Incident returns the most recent incident with dedupKey.
func (s *Server) Incident(dedupKey string) (Incident, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc := s.latestLocked(dedupKey); inc != nil {
		return *inc, true
	}
	return Incident{}, false
}

// Incidents returns a copy of every incident, oldest first.
func (s *Server) Incidents() []Incident {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Incident, len(s.incidents))
	for i, inc := range s.incidents {
		out[i] = *inc
	}
	return out
}

func (s *Server) latestLocked(dedupKey string) *Incident {
	for i := len(s.incidents) - 1; i >= 0; i-- {
		if s.incidents[i].DedupKey == dedupKey {
			return s.incidents[i]
		}
	}
	return nil
}

func (s *Server) openLocked(svc *service, dedupKey string) *Incident {
	for i := len(s.incidents) - 1; i >= 0; i-- {
		inc := s.incidents[i]
		if inc.DedupKey == dedupKey && inc.ServiceID == svc.id && inc.Open() {
			return inc
		}
	}
	return nil
}

func (s *Server) serviceLocked(id string) *service {
	for _, svc := range s.services {
		if svc.id == id {
			return svc
		}
	}
	return nil
}

// takeFailure pops an injected failure, if any.
func (s *Server) takeFailure() (failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) == 0 {
		return failure{}, false
	}
	f := s.failures[0]
	s.failures = s.failures[1:]
	return f, true
}

func writeFailure(w http.ResponseWriter, f failure, events bool) {
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(f.retryAfter.Round(time.Second)/time.Second)))
	}
	switch {
	case events && f.status == http.StatusTooManyRequests:
		writeJSON(w, f.status, map[string]any{"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."})
	case events:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(http.StatusText(f.status)))
	case f.status == http.StatusTooManyRequests:
		writeRESTError(w, f.status, 2020, "Rate limit exceeded")
	default:
		writeRESTError(w, f.status, 2000, "An internal error has occurred. PagerDuty team has been notified.")
	}
}

func randomToken(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

func (s *Server) nextIDLocked(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%05d", prefix, s.seq)
}

func (s *Server) userRefLocked(id string) apiRef {
	u, ok := s.users[id]
	name := id
	if ok {
		name = u.Name
	}
	return apiRef{ID: id, Type: "user_reference", Summary: name,
		Self: s.srv.URL + "/users/" + id, HTMLURL: "https://fake.pagerduty.example/users/" + id}
}

func (s *Server) serviceRefLocked(id string) apiRef {
	name := id
	if svc := s.serviceLocked(id); svc != nil {
		name = svc.name
	}
	return apiRef{ID: id, Type: "service_reference", Summary: name,
		Self: s.srv.URL + "/services/" + id, HTMLURL: "https://fake.pagerduty.example/services/" + id}
}

// agentRefLocked describes who changed an incident: a user id registered or
// formatted like a user (P...), or a service (changes made by events).
func (s *Server) agentRefLocked(id string) apiRef {
	if strings.HasPrefix(id, "PSVC") {
		return s.serviceRefLocked(id)
	}
	return s.userRefLocked(id)
}
