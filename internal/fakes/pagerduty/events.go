package fakepagerduty

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
	"unicode/utf8"
)

// Limits PagerDuty's Events API v2 enforces.
const (
	maxEventBytes   = 512 * 1024
	maxSummaryChars = 1024
	maxDedupKeyLen  = 255
	routingKeyLen   = 32
)

var validSeverities = map[string]bool{"critical": true, "error": true, "warning": true, "info": true}

func (s *Server) handleEnqueue(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"status": "invalid request", "message": "Method not allowed"})
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"status": "invalid request", "message": "Request entity too large"})
		return
	}
	if err != nil {
		writeInvalidEvent(w, "Could not read request body")
		return
	}
	s.mu.Lock()
	now := s.now()
	s.mu.Unlock()
	ev := Event{At: now, Raw: raw}
	status, problems, dropped, dedup, fail := s.enqueue(raw, &ev)
	if fail != nil {
		status = fail.status
	}
	ev.Status, ev.Dropped, ev.DedupKey = status, dropped, dedup

	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()

	switch {
	case fail != nil:
		writeFailure(w, *fail, true)
	case status == http.StatusAccepted:
		writeJSON(w, status, map[string]any{"status": "success", "message": "Event processed", "dedup_key": dedup})
	default:
		writeJSON(w, status, map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": problems})
	}
}

// enqueue validates one event and applies it. It returns the status to
// answer, the validation errors, whether the event was dropped, the dedup key
// and the injected failure to answer instead, if any.
func (s *Server) enqueue(raw []byte, ev *Event) (int, []string, bool, string, *failure) {
	var we wireEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&we); err != nil {
		return http.StatusBadRequest, []string{"Event object is not valid JSON"}, false, "", nil
	}
	if we.RoutingKey != nil {
		ev.RoutingKey = *we.RoutingKey
	}
	if we.EventAction != nil {
		ev.Action = *we.EventAction
	}
	if we.DedupKey != nil {
		ev.DedupKey = *we.DedupKey
	}
	ev.Client, ev.ClientURL = we.Client, we.ClientURL
	if len(we.Links) > 0 {
		_ = json.Unmarshal(we.Links, &ev.Links)
	}
	if p := we.Payload; p != nil {
		ev.Summary, ev.Source, ev.Severity = deref(p.Summary), deref(p.Source), deref(p.Severity)
		ev.Component, ev.Group, ev.Class, ev.CustomDetails = p.Component, p.Group, p.Class, p.CustomDetails
	}

	problems := validateEvent(&we)
	if len(problems) > 0 {
		return http.StatusBadRequest, problems, false, ev.DedupKey, nil
	}

	s.mu.Lock()
	svc := s.byKey[ev.RoutingKey]
	invalid := s.invalidRoutingKey
	s.mu.Unlock()
	if svc == nil || invalid {
		return http.StatusBadRequest, []string{"Invalid routing key"}, false, ev.DedupKey, nil
	}

	// Injected failures come after validation: PagerDuty rate-limits valid
	// events, and a bad event is a 400 whatever the load.
	if f, ok := s.takeFailure(); ok {
		return f.status, nil, false, ev.DedupKey, &f
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	dedup := ev.DedupKey
	if ev.Action == "trigger" && dedup == "" {
		dedup = randomToken(32)
	}
	if s.accountExpired || svc.status == ServiceDisabled || svc.status == ServiceMaintenance {
		return http.StatusAccepted, nil, true, dedup, nil
	}
	now := s.now()
	switch ev.Action {
	case "trigger":
		if inc := s.openLocked(svc, dedup); inc != nil {
			inc.Alerts++
			break
		}
		inc := &Incident{
			ID: s.nextIDLocked("PINC"), Number: len(s.incidents) + 1, DedupKey: dedup, ServiceID: svc.id,
			Status: StatusTriggered, Title: ev.Summary, Severity: ev.Severity, Alerts: 1,
			CreatedAt: now, LastStatusChangeAt: now, LastStatusChangeBy: svc.id,
		}
		s.incidents = append(s.incidents, inc)
		s.triggeredLocked(inc, svc, now)
	case "acknowledge":
		if inc := s.openLocked(svc, dedup); inc != nil && inc.Status == StatusTriggered {
			s.setStatusLocked(inc, StatusAcknowledged, svc.id, now)
			s.enqueueWebhookLocked(inc, "incident.acknowledged", svc.id, now, nil)
		}
	case "resolve":
		if inc := s.openLocked(svc, dedup); inc != nil {
			s.setStatusLocked(inc, StatusResolved, svc.id, now)
			s.enqueueWebhookLocked(inc, "incident.resolved", svc.id, now, nil)
		}
	}
	return http.StatusAccepted, nil, false, dedup, nil
}

func (s *Server) setStatusLocked(inc *Incident, status, by string, now time.Time) {
	inc.Status, inc.LastStatusChangeAt, inc.LastStatusChangeBy = status, now, by
	s.logLocked(inc, LogEntry{Type: statusLogType(status), At: now, Agent: by, Summary: s.statusSummaryLocked(status, by)})
	switch status {
	case StatusAcknowledged:
		inc.AcknowledgedBy = by
	case StatusResolved:
		inc.ResolvedBy = by
	case StatusTriggered:
		inc.AcknowledgedBy = ""
	}
}

// validateEvent checks an event as PagerDuty's Events API v2 does.
func validateEvent(we *wireEvent) []string {
	var problems []string
	switch {
	case we.RoutingKey == nil || *we.RoutingKey == "":
		problems = append(problems, "'routing_key' is missing or blank")
	case len(*we.RoutingKey) != routingKeyLen:
		problems = append(problems, "Length of 'routing_key' is incorrect (should be 32 characters)")
	}
	action := deref(we.EventAction)
	switch action {
	case "trigger", "acknowledge", "resolve":
	case "":
		problems = append(problems, "'event_action' is missing or blank")
	default:
		problems = append(problems, "'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
	}
	if we.DedupKey != nil && len(*we.DedupKey) > maxDedupKeyLen {
		problems = append(problems, "'dedup_key' is too long (maximum is 255 characters)")
	}
	if (action == "acknowledge" || action == "resolve") && deref(we.DedupKey) == "" {
		problems = append(problems, "'dedup_key' is missing or blank")
	}
	if action != "trigger" {
		return problems
	}
	p := we.Payload
	if p == nil {
		return append(problems, "'payload' is missing or not an object")
	}
	switch {
	case deref(p.Summary) == "":
		problems = append(problems, "'payload.summary' is missing or blank")
	case utf8.RuneCountInString(*p.Summary) > maxSummaryChars:
		problems = append(problems, "'payload.summary' is too long (maximum is 1024 characters)")
	}
	if deref(p.Source) == "" {
		problems = append(problems, "'payload.source' is missing or blank")
	}
	switch sev := deref(p.Severity); {
	case sev == "":
		problems = append(problems, "'payload.severity' is missing or blank")
	case !validSeverities[sev]:
		problems = append(problems, "'payload.severity' is invalid (must be one of critical, error, warning, info)")
	}
	if p.Timestamp != "" {
		if _, err := time.Parse(time.RFC3339, p.Timestamp); err != nil {
			problems = append(problems, "'payload.timestamp' is not a valid ISO 8601 timestamp")
		}
	}
	return problems
}

func writeInvalidEvent(w http.ResponseWriter, problem string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": []string{problem}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
