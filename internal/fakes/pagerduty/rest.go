package fakepagerduty

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// rest wraps a REST handler with what every PagerDuty REST call goes through:
// token authentication, the lapsed-account check, injected failures, and
// recording of the call.
func (s *Server) rest(h func(w http.ResponseWriter, r *http.Request) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		status := s.serveREST(w, r, h)
		s.mu.Lock()
		s.restCalls = append(s.restCalls, RESTCall{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: status})
		s.mu.Unlock()
	}
}

func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, h func(w http.ResponseWriter, r *http.Request) int) int {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeRESTError(w, http.StatusMethodNotAllowed, 2100, "Method Not Allowed")
		return http.StatusMethodNotAllowed
	}
	s.mu.Lock()
	token, expired := s.apiToken, s.accountExpired
	s.mu.Unlock()
	if !authorized(r.Header.Get("Authorization"), token) {
		writeRESTError(w, http.StatusUnauthorized, 2006, "Authentication failed")
		return http.StatusUnauthorized
	}
	if expired {
		writeRESTError(w, http.StatusPaymentRequired, 2012, "Your account is expired and cannot use the API.")
		return http.StatusPaymentRequired
	}
	if f, ok := s.takeFailure(); ok {
		writeFailure(w, f, false)
		return f.status
	}
	return h(w, r)
}

// authorized checks "Authorization: Token token=<token>", the REST API's
// account/user token scheme.
func authorized(header, token string) bool {
	v, ok := strings.CutPrefix(header, "Token token=")
	return ok && v != "" && v == token
}

func (s *Server) handleAbilities(w http.ResponseWriter, r *http.Request) int {
	s.mu.Lock()
	abilities := slices.Clone(s.abilities)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"abilities": abilities})
	return http.StatusOK
}

func (s *Server) handleAbility(w http.ResponseWriter, r *http.Request) int {
	s.mu.Lock()
	has := slices.Contains(s.abilities, r.PathValue("name"))
	s.mu.Unlock()
	if !has {
		writeRESTError(w, http.StatusPaymentRequired, 2014, "Missing Account Ability")
		return http.StatusPaymentRequired
	}
	w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent
}

func (s *Server) handleServices(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	offset, limit, ok := paging(q.Get("offset"), q.Get("limit"))
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	withIntegrations := slices.Contains(q["include[]"], "integrations")
	s.mu.Lock()
	var all []map[string]any
	for _, svc := range s.services {
		all = append(all, s.serviceJSONLocked(svc, withIntegrations))
	}
	s.mu.Unlock()
	page, more := window(all, offset, limit)
	writeJSON(w, http.StatusOK, map[string]any{"services": page, "offset": offset, "limit": limit, "more": more, "total": nil})
	return http.StatusOK
}

func (s *Server) handleService(w http.ResponseWriter, r *http.Request) int {
	withIntegrations := slices.Contains(r.URL.Query()["include[]"], "integrations")
	s.mu.Lock()
	svc := s.serviceLocked(r.PathValue("id"))
	var body map[string]any
	if svc != nil {
		body = s.serviceJSONLocked(svc, withIntegrations)
	}
	s.mu.Unlock()
	if svc == nil {
		writeRESTError(w, http.StatusNotFound, 2100, "Not Found")
		return http.StatusNotFound
	}
	writeJSON(w, http.StatusOK, map[string]any{"service": body})
	return http.StatusOK
}

func (s *Server) serviceJSONLocked(svc *service, withIntegrations bool) map[string]any {
	ref := s.serviceRefLocked(svc.id)
	out := map[string]any{
		"id": svc.id, "type": "service", "summary": svc.name, "name": svc.name,
		"self": ref.Self, "html_url": ref.HTMLURL, "status": svc.status,
	}
	if svc.escalationPolicy != "" {
		name := svc.escalationPolicy
		for _, ep := range s.policies {
			if ep.ID == svc.escalationPolicy {
				name = ep.Name
			}
		}
		out["escalation_policy"] = s.ref("escalation_policy_reference", svc.escalationPolicy, name)
	}
	var integrations []map[string]any
	for i, key := range svc.routingKeys {
		in := map[string]any{
			"id":   svc.id + "I" + strconv.Itoa(i),
			"type": "events_api_v2_inbound_integration_reference", "summary": "Events API v2",
		}
		if withIntegrations {
			in["type"] = "events_api_v2_inbound_integration"
			in["name"] = "Events API v2"
			in["integration_key"] = key
		}
		integrations = append(integrations, in)
	}
	out["integrations"] = integrations
	return out
}

func (s *Server) handleIncidents(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	offset, limit, ok := paging(q.Get("offset"), q.Get("limit"))
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	statuses := q["statuses[]"]
	for _, st := range statuses {
		if st != StatusTriggered && st != StatusAcknowledged && st != StatusResolved {
			writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
			return http.StatusBadRequest
		}
	}
	key := q.Get("incident_key")
	s.mu.Lock()
	var all []map[string]any
	for _, inc := range s.incidents {
		if key != "" && inc.DedupKey != key {
			continue
		}
		if len(statuses) > 0 && !slices.Contains(statuses, inc.Status) {
			continue
		}
		all = append(all, s.incidentJSONLocked(inc, true))
	}
	s.mu.Unlock()
	page, more := window(all, offset, limit)
	writeJSON(w, http.StatusOK, map[string]any{"incidents": page, "offset": offset, "limit": limit, "more": more, "total": nil})
	return http.StatusOK
}

func (s *Server) handleIncident(w http.ResponseWriter, r *http.Request) int {
	id := r.PathValue("id")
	s.mu.Lock()
	var body map[string]any
	for _, inc := range s.incidents {
		if inc.ID == id || strconv.Itoa(inc.Number) == id {
			body = s.incidentJSONLocked(inc, true)
		}
	}
	s.mu.Unlock()
	if body == nil {
		writeRESTError(w, http.StatusNotFound, 2100, "Not Found")
		return http.StatusNotFound
	}
	writeJSON(w, http.StatusOK, map[string]any{"incident": body})
	return http.StatusOK
}

// incidentJSONLocked renders an incident as the REST API does (rest) or as a
// v3 webhook's event.data does.
func (s *Server) incidentJSONLocked(inc *Incident, rest bool) map[string]any {
	out := map[string]any{
		"id": inc.ID, "type": "incident", "title": inc.Title, "status": inc.Status,
		"incident_key": inc.DedupKey,
		"self":         s.srv.URL + "/incidents/" + inc.ID,
		"html_url":     "https://fake.pagerduty.example/incidents/" + inc.ID,
		"created_at":   inc.CreatedAt.UTC().Format(time.RFC3339),
		"service":      s.serviceRefLocked(inc.ServiceID),
		"urgency":      "high",
	}
	if inc.AssignedTo != "" {
		out["assignees"] = []apiRef{s.userRefLocked(inc.AssignedTo)}
	}
	if !rest {
		out["number"] = inc.Number
		out["resolve_reason"] = nil
		return out
	}
	out["incident_number"] = inc.Number
	out["assignments"] = []map[string]any{}
	if inc.AssignedTo != "" {
		out["assignments"] = []map[string]any{{"at": inc.CreatedAt.UTC().Format(time.RFC3339), "assignee": s.userRefLocked(inc.AssignedTo)}}
	}
	out["summary"] = inc.Title
	out["last_status_change_at"] = inc.LastStatusChangeAt.UTC().Format(time.RFC3339)
	out["last_status_change_by"] = s.agentRefLocked(inc.LastStatusChangeBy)
	if inc.Status == StatusAcknowledged {
		out["acknowledgements"] = []map[string]any{{
			"at":           inc.LastStatusChangeAt.UTC().Format(time.RFC3339),
			"acknowledger": s.agentRefLocked(inc.AcknowledgedBy),
		}}
	} else {
		out["acknowledgements"] = []map[string]any{}
	}
	if inc.Status == StatusResolved {
		out["resolved_at"] = inc.LastStatusChangeAt.UTC().Format(time.RFC3339)
	}
	return out
}

// paging parses offset and limit as PagerDuty does: limit defaults to 25
// and is capped at 100.
func paging(offsetStr, limitStr string) (offset, limit int, ok bool) {
	defer func() { limit = min(limit, int(maxPage.Load())) }()
	limit = 25
	if offsetStr != "" {
		n, err := strconv.Atoi(offsetStr)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		offset = n
	}
	if limitStr != "" {
		n, err := strconv.Atoi(limitStr)
		if err != nil || n < 1 {
			return 0, 0, false
		}
		limit = min(n, 100)
	}
	return offset, limit, true
}

func window[T any](all []T, offset, limit int) ([]T, bool) {
	if offset >= len(all) {
		return []T{}, false
	}
	end := min(offset+limit, len(all))
	return all[offset:end], end < len(all)
}

func writeRESTError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": message, "code": code}})
}

// handleUser serves GET /users/{id} as the REST API does (the fields Klaxon reads).
func (s *Server) handleUser(w http.ResponseWriter, r *http.Request) int {
	s.mu.Lock()
	u, ok := s.users[r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		writeRESTError(w, http.StatusNotFound, 2100, "Not Found")
		return http.StatusNotFound
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": map[string]any{
		"id": u.ID, "type": "user", "summary": u.Name, "name": u.Name, "email": u.Email,
		"self": "https://api.pagerduty.com/users/" + u.ID, "html_url": "https://fake.pagerduty.com/users/" + u.ID,
	}})
	return http.StatusOK
}
