package fakepagerduty

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Incident log entries, as the REST API serves them at
// GET /incidents/{id}/log_entries (developer.pagerduty.com, "List log
// entries for an incident"; the shapes follow PagerDuty's reference examples,
// also used by go-pagerduty's tests): every entry has id, type, summary,
// self, html_url, created_at, agent, channel, service, incident, teams,
// contexts and event_details; a notify_log_entry adds the user notified and
// its channel carries the notification {type, address, status}; assign and
// escalate entries carry assignees. Lists page with offset, limit (default
// 25, at most 100) and more; is_overview=true leaves out the notifications.
//
// What the fake logs when an incident is triggered, by the service's on-call
// set (SetOnCall): trigger_log_entry; then, when somebody is on call,
// assign_log_entry naming them; then a notify_log_entry for each of them who
// has a contact method, NotifyDelay after the trigger (entries are listed
// only once the fake's clock reaches their created_at). Nobody on call: the
// incident stays unassigned and nothing but the trigger is logged, as
// PagerDuty does ("When services automatically try to create incidents,
// they will be created, but remain unassigned"); it logs no reason. A user
// without contact methods is assigned but never notified, and PagerDuty
// logs no reason for that either.

// Log entry types the fake writes.
const (
	LogTrigger     = "trigger_log_entry"
	LogAssign      = "assign_log_entry"
	LogEscalate    = "escalate_log_entry"
	LogNotify      = "notify_log_entry"
	LogAcknowledge = "acknowledge_log_entry"
	LogUnack       = "unacknowledge_log_entry"
	LogResolve     = "resolve_log_entry"
)

// LogEntry is one entry of an incident's log as the fake keeps it.
type LogEntry struct {
	ID   string
	Type string
	At   time.Time
	// Agent is who or what made the entry (a user or service id).
	Agent string
	// User is the user notified (notify_log_entry).
	User string
	// Assignees are the users assigned (assign and escalate entries).
	Assignees []string
	// Notification is the contact method type of a notify entry (email).
	Notification string
	Summary      string
}

// SetOnCall sets who the service's escalation policy reaches now (default:
// DefaultUserID). With no users, nobody is on call: incidents are created
// unassigned and nobody is notified.
func (s *Server) SetOnCall(serviceID string, userIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.serviceLocked(serviceID)
	if svc == nil {
		panic("fakepagerduty: unknown service " + serviceID)
	}
	svc.onCall = append([]string{}, userIDs...) // never nil: nil means the default
}

// SetNotifyDelay sets how long after a trigger PagerDuty logs that it
// notified the people on call (default 0). Entries are listed only once the
// fake's clock has reached them.
func (s *Server) SetNotifyDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notifyDelay = d
}

// Escalate escalates the open incident with dedupKey to toUser, as a
// policy's escalation timeout does: an escalate_log_entry and, if the user
// has a contact method, a notify_log_entry at once.
func (s *Server) Escalate(dedupKey, toUser string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inc := s.latestLocked(dedupKey)
	if inc == nil || !inc.Open() {
		return false
	}
	now := s.now()
	inc.AssignedTo = toUser
	s.logLocked(inc, LogEntry{Type: LogEscalate, At: now, Agent: inc.ServiceID, Assignees: []string{toUser},
		Summary: "Escalated to " + s.userRefLocked(toUser).Summary + " by escalation policy"})
	s.notifyLocked(inc, toUser, now)
	return true
}

// LogEntries returns the log of the most recent incident with dedupKey, in
// the order written, including entries not yet due. The REST API lists them
// by created_at.
func (s *Server) LogEntries(dedupKey string) []LogEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	inc := s.latestLocked(dedupKey)
	if inc == nil {
		return nil
	}
	return slices.Clone(s.logs[inc.ID])
}

// triggeredLocked writes the log of a newly triggered incident and assigns it.
func (s *Server) triggeredLocked(inc *Incident, svc *service, now time.Time) {
	s.logLocked(inc, LogEntry{Type: LogTrigger, At: now, Agent: svc.id, Summary: "Triggered through the API."})
	onCall := svc.onCall
	if onCall == nil {
		onCall = []string{DefaultUserID}
	}
	if len(onCall) == 0 {
		inc.AssignedTo = ""
		return
	}
	inc.AssignedTo = onCall[0]
	names := make([]string, len(onCall))
	for i, u := range onCall {
		names[i] = s.userRefLocked(u).Summary
	}
	s.logLocked(inc, LogEntry{Type: LogAssign, At: now, Agent: svc.id, Assignees: slices.Clone(onCall),
		Summary: "Assigned to " + strings.Join(names, ", ") + "."})
	for _, u := range onCall {
		s.notifyLocked(inc, u, now.Add(s.notifyDelay))
	}
}

// notifyLocked logs a notification to user, unless the user has no
// contact method (then PagerDuty notifies nobody and logs nothing).
func (s *Server) notifyLocked(inc *Incident, user string, at time.Time) {
	u, ok := s.users[user]
	if !ok || u.NoContactMethods {
		return
	}
	s.logLocked(inc, LogEntry{Type: LogNotify, At: at, Agent: inc.ServiceID, User: user, Notification: "email",
		Summary: "Notified " + u.Name + " by email."})
}

func (s *Server) logLocked(inc *Incident, e LogEntry) {
	if s.logs == nil {
		s.logs = map[string][]LogEntry{}
	}
	e.ID = s.nextIDLocked("PLOG")
	s.logs[inc.ID] = append(s.logs[inc.ID], e)
}

// statusLogType is the log entry type of a status change.
func statusLogType(status string) string {
	switch status {
	case StatusAcknowledged:
		return LogAcknowledge
	case StatusResolved:
		return LogResolve
	default:
		return LogUnack
	}
}

// statusSummaryLocked words a status change as PagerDuty's log does.
func (s *Server) statusSummaryLocked(status, by string) string {
	who := s.agentRefLocked(by).Summary
	switch status {
	case StatusAcknowledged:
		return "Acknowledged by " + who + "."
	case StatusResolved:
		return "Resolved by " + who + "."
	default:
		return "Unacknowledged by " + who + "."
	}
}

// handleLogEntries serves GET /incidents/{id}/log_entries.
func (s *Server) handleLogEntries(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	offset, limit, ok := paging(q.Get("offset"), q.Get("limit"))
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	overview := q.Get("is_overview") == "true"
	id := r.PathValue("id")
	s.mu.Lock()
	var inc *Incident
	for _, i := range s.incidents {
		if i.ID == id || strconv.Itoa(i.Number) == id {
			inc = i
		}
	}
	if inc == nil {
		s.mu.Unlock()
		writeRESTError(w, http.StatusNotFound, 2100, "Not Found")
		return http.StatusNotFound
	}
	now := s.now()
	entries := slices.Clone(s.logs[inc.ID])
	slices.SortStableFunc(entries, func(a, b LogEntry) int { return a.At.Compare(b.At) })
	var all []map[string]any
	for _, e := range entries {
		if e.At.After(now) || (overview && e.Type == LogNotify) {
			continue
		}
		all = append(all, s.logEntryJSONLocked(inc, e))
	}
	s.mu.Unlock()
	page, more := window(all, offset, limit)
	writeJSON(w, http.StatusOK, map[string]any{"log_entries": page, "offset": offset, "limit": limit, "more": more, "total": nil})
	return http.StatusOK
}

func (s *Server) logEntryJSONLocked(inc *Incident, e LogEntry) map[string]any {
	out := map[string]any{
		"id": e.ID, "type": e.Type, "summary": e.Summary,
		"self":       s.srv.URL + "/log_entries/" + e.ID,
		"html_url":   nil,
		"created_at": e.At.UTC().Format(time.RFC3339),
		"agent":      s.agentRefLocked(e.Agent),
		"service":    s.serviceRefLocked(inc.ServiceID),
		"incident": apiRef{ID: inc.ID, Type: "incident_reference", Summary: "[#" + strconv.Itoa(inc.Number) + "] " + inc.Title,
			Self: s.srv.URL + "/incidents/" + inc.ID, HTMLURL: "https://fake.pagerduty.example/incidents/" + inc.ID},
		"teams": []any{}, "contexts": []any{}, "event_details": map[string]any{},
	}
	switch e.Type {
	case LogTrigger:
		out["channel"] = map[string]any{"type": "api", "summary": inc.Title}
		out["event_details"] = map[string]any{"description": inc.Title}
	case LogNotify:
		u := s.users[e.User]
		out["user"] = s.userRefLocked(e.User)
		out["channel"] = map[string]any{"type": "auto", "notification": map[string]any{"type": e.Notification, "address": u.Email, "status": "success"}}
	case LogAssign, LogEscalate:
		refs := make([]apiRef, len(e.Assignees))
		for i, a := range e.Assignees {
			refs[i] = s.userRefLocked(a)
		}
		out["assignees"] = refs
		out["channel"] = map[string]any{"type": "auto"}
		if e.Type == LogEscalate {
			out["channel"] = map[string]any{"type": "timeout"}
		}
	default:
		if strings.HasPrefix(e.Agent, "PSVC") {
			out["channel"] = map[string]any{"type": "api"}
		} else {
			out["channel"] = map[string]any{"type": "website"}
		}
	}
	return out
}
