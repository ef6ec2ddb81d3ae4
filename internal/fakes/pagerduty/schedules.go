package fakepagerduty

// Schedules, escalation policies, users and on-calls, as the REST API v2
// shows them (developer.pagerduty.com, "Schedules", "Escalation Policies",
// "Users", "On-Calls"):
//
//   - GET /schedules lists schedules (offset/limit/more); GET /schedules/{id}
//     shows one with schedule_layers, override_subschedule and final_schedule,
//     whose rendered_schedule_entries cover since..until (in the schedule's
//     time zone). A GET lists schedule_layers highest priority first, the
//     reverse of the order they are created in (PagerDuty's own support
//     scripts reverse them before a PUT).
//   - A layer's turns start at rotation_virtual_start and follow every
//     rotation_turn_length_seconds; turns of whole days keep their wall-clock
//     time across daylight-saving changes. Restrictions (daily_restriction,
//     or weekly_restriction with start_day_of_week 1 = Monday … 7 = Sunday)
//     are local times of the schedule's zone; outside them the layer has
//     nobody, and the layers below show through. Overrides win over layers.
//   - GET /schedules/{id}/overrides needs since and until.
//   - GET /oncalls answers, per escalation policy level, who is on call
//     between since and until (at most 90 days apart; both default to now),
//     filtered by schedule_ids[]; users named directly by a rule have
//     start and end null.

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// maxPage caps limit on list endpoints (PagerDuty: 100).
var maxPage atomic.Int64

func init() { maxPage.Store(100) }

// SetMaxPageSize lowers the largest page the list endpoints serve (100, as
// PagerDuty, by default) so that tests see pagination with few objects. It
// applies to every fake in the process; t.Cleanup restores it.
func SetMaxPageSize(tb testing.TB, n int) {
	old := maxPage.Swap(int64(n))
	tb.Cleanup(func() { maxPage.Store(old) })
}

// Schedule is a PagerDuty schedule held by the fake.
type Schedule struct {
	ID, Name string
	// TimeZone is an IANA zone name, as the REST API v2 uses.
	TimeZone string
	// Layers from the lowest priority (Layer 1) to the highest, as created.
	Layers    []Layer
	Overrides []ScheduleOverride
}

// Layer is a schedule layer.
type Layer struct {
	ID, Name string
	// Start and End bound the layer; a zero End means it does not end.
	Start, End           time.Time
	RotationVirtualStart time.Time
	TurnLength           time.Duration
	// Users are user ids in turn order.
	Users        []string
	Restrictions []Restriction
}

// Restriction limits a layer to part of each day or week.
type Restriction struct {
	// Type is daily_restriction or weekly_restriction.
	Type string
	// StartTimeOfDay is "HH:MM:SS" in the schedule's zone.
	StartTimeOfDay string
	// StartDayOfWeek is 1 (Monday) to 7 (Sunday), for weekly restrictions.
	StartDayOfWeek int
	Duration       time.Duration
}

// ScheduleOverride puts User on call for the whole schedule from Start to End.
type ScheduleOverride struct {
	ID         string
	User       string
	Start, End time.Time
}

// EscalationPolicy is an escalation policy held by the fake.
type EscalationPolicy struct {
	ID, Name string
	NumLoops int
	Rules    []EscalationRule
	// OnCallHandoffNotifications is if_has_services (the default) or always.
	OnCallHandoffNotifications string
}

// EscalationRule is one level of an escalation policy.
type EscalationRule struct {
	DelayMinutes int
	Targets      []Target
	// RoundRobin assigns incidents to the targets in turn instead of
	// notifying everyone (escalation_rule_assignment_strategy).
	RoundRobin bool
}

// Target is what a rule notifies: Type schedule_reference or user_reference.
type Target struct {
	Type, ID string
}

// AddSchedule adds (or replaces, by id) a schedule.
func (s *Server) AddSchedule(sc Schedule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.schedules {
		if x.ID == sc.ID {
			s.schedules[i] = &sc
			return
		}
	}
	s.schedules = append(s.schedules, &sc)
}

// AddEscalationPolicy adds (or replaces, by id) an escalation policy.
func (s *Server) AddEscalationPolicy(ep EscalationPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.policies {
		if x.ID == ep.ID {
			s.policies[i] = &ep
			return
		}
	}
	s.policies = append(s.policies, &ep)
}

// SetServiceEscalationPolicy names the escalation policy of a service.
func (s *Server) SetServiceEscalationPolicy(serviceID, policyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if svc := s.serviceLocked(serviceID); svc != nil {
		svc.escalationPolicy = policyID
		return
	}
	panic("fakepagerduty: unknown service " + serviceID)
}

// RemoveUser removes a user (New registers DefaultUserID).
func (s *Server) RemoveUser(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, id)
	s.userOrder = slices.DeleteFunc(s.userOrder, func(x string) bool { return x == id })
}

// RemoveService removes a service (New creates DefaultServiceID).
func (s *Server) RemoveService(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services = slices.DeleteFunc(s.services, func(x *service) bool { return x.id == id })
}

// entry is one span of a rendered schedule.
type entry struct {
	user       string
	start, end time.Time
}

// paint lays e over list (sorted, disjoint), cutting what it covers.
func paint(list []entry, e entry) []entry {
	var out []entry
	for _, x := range list {
		if !x.end.After(e.start) || !x.start.Before(e.end) {
			out = append(out, x)
			continue
		}
		if x.start.Before(e.start) {
			out = append(out, entry{x.user, x.start, e.start})
		}
		if x.end.After(e.end) {
			out = append(out, entry{x.user, e.end, x.end})
		}
	}
	out = append(out, e)
	slices.SortFunc(out, func(a, b entry) int { return a.start.Compare(b.start) })
	return out
}

func clip(e entry, from, to time.Time) (entry, bool) {
	if e.start.Before(from) {
		e.start = from
	}
	if e.end.After(to) {
		e.end = to
	}
	return e, e.start.Before(e.end)
}

// turnStart is when turn k of l starts: whole days by the calendar of loc,
// anything else by the clock.
func (l *Layer) turnStart(k int, loc *time.Location) time.Time {
	secs := int64(l.TurnLength / time.Second)
	if secs%86400 == 0 {
		v := l.RotationVirtualStart.In(loc)
		return v.AddDate(0, 0, k*int(secs/86400))
	}
	return l.RotationVirtualStart.Add(time.Duration(k) * l.TurnLength)
}

// windows returns the restriction spans of l that overlap [from, to).
func (l *Layer) windows(from, to time.Time, loc *time.Location) []entry {
	var out []entry
	d0 := from.In(loc).AddDate(0, 0, -8)
	for d := time.Date(d0.Year(), d0.Month(), d0.Day(), 0, 0, 0, 0, loc); d.Before(to); d = d.AddDate(0, 0, 1) {
		for _, r := range l.Restrictions {
			iso := int(d.Weekday())
			if iso == 0 {
				iso = 7
			}
			if r.Type == "weekly_restriction" && iso != r.StartDayOfWeek {
				continue
			}
			var hh, mm, ss int
			parts := strings.Split(r.StartTimeOfDay, ":")
			if len(parts) >= 2 {
				hh, _ = strconv.Atoi(parts[0])
				mm, _ = strconv.Atoi(parts[1])
			}
			if len(parts) == 3 {
				ss, _ = strconv.Atoi(parts[2])
			}
			start := time.Date(d.Year(), d.Month(), d.Day(), hh, mm, ss, 0, loc)
			end := time.Date(d.Year(), d.Month(), d.Day(), hh, mm, ss+int(r.Duration/time.Second), 0, loc)
			if end.After(from) && start.Before(to) {
				out = append(out, entry{start: start, end: end})
			}
		}
	}
	return out
}

// entries renders layer l over [from, to).
func (l *Layer) entries(from, to time.Time, loc *time.Location) []entry {
	if len(l.Users) == 0 || l.TurnLength <= 0 {
		return nil
	}
	if l.Start.After(from) {
		from = l.Start
	}
	if !l.End.IsZero() && l.End.Before(to) {
		to = l.End
	}
	if !from.Before(to) {
		return nil
	}
	k := int(from.Sub(l.RotationVirtualStart)/l.TurnLength) - 2
	for l.turnStart(k, loc).After(from) {
		k--
	}
	var turns []entry
	for ; l.turnStart(k, loc).Before(to); k++ {
		n := len(l.Users)
		e := entry{user: l.Users[((k%n)+n)%n], start: l.turnStart(k, loc), end: l.turnStart(k+1, loc)}
		if c, ok := clip(e, from, to); ok {
			turns = append(turns, c)
		}
	}
	if len(l.Restrictions) == 0 {
		return turns
	}
	var out []entry
	for _, t := range turns {
		for _, w := range l.windows(from, to, loc) {
			if c, ok := clip(t, w.start, w.end); ok {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return a.start.Compare(b.start) })
	return out
}

// final renders the schedule's final layer over [from, to).
func (sc *Schedule) final(from, to time.Time) []entry {
	loc := sc.location()
	var out []entry
	for i := range sc.Layers {
		for _, e := range sc.Layers[i].entries(from, to, loc) {
			out = paint(out, e)
		}
	}
	for _, o := range sc.Overrides {
		if c, ok := clip(entry{o.User, o.Start, o.End}, from, to); ok {
			out = paint(out, c)
		}
	}
	// Merge touching spans of one user, as PagerDuty renders them.
	var merged []entry
	for _, e := range out {
		if n := len(merged); n > 0 && merged[n-1].user == e.user && merged[n-1].end.Equal(e.start) {
			merged[n-1].end = e.end
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

func (sc *Schedule) location() *time.Location {
	loc, err := time.LoadLocation(sc.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

func (s *Server) scheduleLocked(id string) *Schedule {
	for _, sc := range s.schedules {
		if sc.ID == id {
			return sc
		}
	}
	return nil
}

func (s *Server) ref(kind, id, summary string) apiRef {
	path := map[string]string{"schedule_reference": "schedules", "user_reference": "users", "escalation_policy_reference": "escalation_policies"}[kind]
	return apiRef{ID: id, Type: kind, Summary: summary, Self: s.srv.URL + "/" + path + "/" + id, HTMLURL: "https://fake.pagerduty.example/" + path + "/" + id}
}

func (s *Server) userName(id string) string {
	if u, ok := s.users[id]; ok {
		return u.Name
	}
	return id
}

func (s *Server) handleUsers(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	offset, limit, ok := paging(q.Get("offset"), q.Get("limit"))
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	full := slices.Contains(q["include[]"], "contact_methods")
	s.mu.Lock()
	var all []map[string]any
	for _, id := range s.userOrder {
		u := s.users[id]
		var cms []map[string]any
		for i, c := range u.ContactMethods {
			cid := u.ID + "C" + strconv.Itoa(i)
			m := map[string]any{"id": cid, "type": c.Type, "summary": c.Label, "self": s.srv.URL + "/users/" + u.ID + "/contact_methods/" + cid}
			if full {
				m["label"], m["address"] = c.Label, c.Address
				if c.CountryCode != 0 {
					m["country_code"] = c.CountryCode
				}
			} else {
				m["type"] = strings.TrimSuffix(c.Type, "_contact_method") + "_contact_method_reference"
			}
			cms = append(cms, m)
		}
		um := map[string]any{
			"id": u.ID, "type": "user", "summary": u.Name, "name": u.Name, "email": u.Email, "role": "user",
			"self": s.srv.URL + "/users/" + u.ID, "html_url": "https://fake.pagerduty.example/users/" + u.ID,
			"contact_methods": cms,
		}
		if u.TimeZone != "" {
			um["time_zone"] = u.TimeZone
		}
		all = append(all, um)
	}
	s.mu.Unlock()
	page, more := window(all, offset, limit)
	writeJSON(w, http.StatusOK, map[string]any{"users": page, "offset": offset, "limit": limit, "more": more, "total": nil})
	return http.StatusOK
}

func (s *Server) scheduleJSONLocked(sc *Schedule) map[string]any {
	var eps []apiRef
	for _, ep := range s.policies {
		for _, rule := range ep.Rules {
			if slices.Contains(rule.Targets, Target{"schedule_reference", sc.ID}) && !slices.ContainsFunc(eps, func(x apiRef) bool { return x.ID == ep.ID }) {
				eps = append(eps, s.ref("escalation_policy_reference", ep.ID, ep.Name))
			}
		}
	}
	return map[string]any{
		"id": sc.ID, "type": "schedule", "summary": sc.Name, "name": sc.Name, "time_zone": sc.TimeZone, "description": "",
		"self": s.srv.URL + "/schedules/" + sc.ID, "html_url": "https://fake.pagerduty.example/schedules/" + sc.ID,
		"escalation_policies": eps, "teams": []any{},
	}
}

func (s *Server) handleSchedules(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	offset, limit, ok := paging(q.Get("offset"), q.Get("limit"))
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	s.mu.Lock()
	var all []map[string]any
	for _, sc := range s.schedules {
		all = append(all, s.scheduleJSONLocked(sc))
	}
	s.mu.Unlock()
	page, more := window(all, offset, limit)
	writeJSON(w, http.StatusOK, map[string]any{"schedules": page, "offset": offset, "limit": limit, "more": more, "total": nil})
	return http.StatusOK
}

// sinceUntil reads since and until (RFC 3339); missing ones default to def.
func sinceUntil(q map[string][]string, def time.Time) (since, until time.Time, ok bool) {
	since, until = def, def
	for name, dst := range map[string]*time.Time{"since": &since, "until": &until} {
		if v := first(q[name]); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return since, until, false
			}
			*dst = t
		}
	}
	return since, until, !until.Before(since)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (s *Server) renderedLocked(es []entry, loc *time.Location) []map[string]any {
	out := []map[string]any{}
	for _, e := range es {
		out = append(out, map[string]any{
			"start": e.start.In(loc).Format(time.RFC3339), "end": e.end.In(loc).Format(time.RFC3339),
			"user": s.ref("user_reference", e.user, s.userName(e.user)),
		})
	}
	return out
}

func (s *Server) handleSchedule(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.scheduleLocked(r.PathValue("id"))
	if sc == nil {
		writeRESTError(w, http.StatusNotFound, 2100, "Not Found")
		return http.StatusNotFound
	}
	since, until, ok := sinceUntil(q, s.now())
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	loc := sc.location()
	body := s.scheduleJSONLocked(sc)
	var layers []map[string]any
	for i := len(sc.Layers) - 1; i >= 0; i-- {
		l := &sc.Layers[i]
		var users []map[string]any
		for _, u := range l.Users {
			users = append(users, map[string]any{"user": s.ref("user_reference", u, s.userName(u))})
		}
		var rs []map[string]any
		for _, x := range l.Restrictions {
			m := map[string]any{"type": x.Type, "start_time_of_day": x.StartTimeOfDay, "duration_seconds": int(x.Duration / time.Second)}
			if x.Type == "weekly_restriction" {
				m["start_day_of_week"] = x.StartDayOfWeek
			}
			rs = append(rs, m)
		}
		lm := map[string]any{
			"id": l.ID, "name": l.Name, "start": l.Start.In(loc).Format(time.RFC3339), "end": nil,
			"rotation_virtual_start":       l.RotationVirtualStart.In(loc).Format(time.RFC3339),
			"rotation_turn_length_seconds": int(l.TurnLength / time.Second),
			"users":                        users, "restrictions": rs,
			"rendered_schedule_entries": s.renderedLocked(l.entries(since, until, loc), loc),
		}
		if !l.End.IsZero() {
			lm["end"] = l.End.In(loc).Format(time.RFC3339)
		}
		layers = append(layers, lm)
	}
	body["schedule_layers"] = layers
	var ovs []entry
	for _, o := range sc.Overrides {
		if c, ok := clip(entry{o.User, o.Start, o.End}, since, until); ok {
			ovs = append(ovs, c)
		}
	}
	body["override_subschedule"] = map[string]any{"name": "Overrides", "rendered_schedule_entries": s.renderedLocked(ovs, loc)}
	body["final_schedule"] = map[string]any{"name": "Final Schedule", "rendered_schedule_entries": s.renderedLocked(sc.final(since, until), loc)}
	writeJSON(w, http.StatusOK, map[string]any{"schedule": body})
	return http.StatusOK
}

func (s *Server) handleOverrides(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.scheduleLocked(r.PathValue("id"))
	if sc == nil {
		writeRESTError(w, http.StatusNotFound, 2100, "Not Found")
		return http.StatusNotFound
	}
	since, until, ok := sinceUntil(q, time.Time{})
	if !ok || since.IsZero() || until.IsZero() {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	loc := sc.location()
	out := []map[string]any{}
	for _, o := range sc.Overrides {
		if o.End.After(since) && o.Start.Before(until) {
			out = append(out, map[string]any{
				"id": o.ID, "type": "override", "start": o.Start.In(loc).Format(time.RFC3339), "end": o.End.In(loc).Format(time.RFC3339),
				"user": s.ref("user_reference", o.User, s.userName(o.User)),
			})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"overrides": out})
	return http.StatusOK
}

func (s *Server) handleEscalationPolicies(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	offset, limit, ok := paging(q.Get("offset"), q.Get("limit"))
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	s.mu.Lock()
	var all []map[string]any
	for _, ep := range s.policies {
		var rules []map[string]any
		for i, rule := range ep.Rules {
			var targets []apiRef
			for _, t := range rule.Targets {
				name := s.userName(t.ID)
				if sc := s.scheduleLocked(t.ID); t.Type == "schedule_reference" && sc != nil {
					name = sc.Name
				}
				targets = append(targets, s.ref(t.Type, t.ID, name))
			}
			strategy := "assign_to_everyone"
			if rule.RoundRobin {
				strategy = "round_robin"
			}
			rules = append(rules, map[string]any{
				"id": ep.ID + "R" + strconv.Itoa(i), "escalation_delay_in_minutes": rule.DelayMinutes, "targets": targets,
				"escalation_rule_assignment_strategy": map[string]any{"type": strategy},
			})
		}
		var svcs []apiRef
		for _, svc := range s.services {
			if svc.escalationPolicy == ep.ID {
				svcs = append(svcs, s.serviceRefLocked(svc.id))
			}
		}
		handoff := ep.OnCallHandoffNotifications
		if handoff == "" {
			handoff = "if_has_services"
		}
		all = append(all, map[string]any{
			"id": ep.ID, "type": "escalation_policy", "summary": ep.Name, "name": ep.Name, "num_loops": ep.NumLoops,
			"on_call_handoff_notifications": handoff, "escalation_rules": rules, "services": svcs, "teams": []any{},
			"self": s.srv.URL + "/escalation_policies/" + ep.ID, "html_url": "https://fake.pagerduty.example/escalation_policies/" + ep.ID,
		})
	}
	s.mu.Unlock()
	page, more := window(all, offset, limit)
	writeJSON(w, http.StatusOK, map[string]any{"escalation_policies": page, "offset": offset, "limit": limit, "more": more, "total": nil})
	return http.StatusOK
}

func (s *Server) handleOnCalls(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	offset, limit, ok := paging(q.Get("offset"), q.Get("limit"))
	if !ok {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	since, until, ok := sinceUntil(q, s.now())
	if !ok || until.Sub(since) > 90*24*time.Hour {
		writeRESTError(w, http.StatusBadRequest, 2001, "Invalid Input Provided")
		return http.StatusBadRequest
	}
	if until.Equal(since) {
		until = since.Add(time.Second) // "now": who is on call at this instant
	}
	scheds := q["schedule_ids[]"]
	var all []map[string]any
	for _, ep := range s.policies {
		for level, rule := range ep.Rules {
			for _, t := range rule.Targets {
				base := map[string]any{"escalation_policy": s.ref("escalation_policy_reference", ep.ID, ep.Name), "escalation_level": level + 1}
				switch t.Type {
				case "user_reference":
					if len(scheds) > 0 {
						continue
					}
					e := clone(base)
					e["user"], e["schedule"], e["start"], e["end"] = s.ref("user_reference", t.ID, s.userName(t.ID)), nil, nil, nil
					all = append(all, e)
				case "schedule_reference":
					sc := s.scheduleLocked(t.ID)
					if sc == nil || (len(scheds) > 0 && !slices.Contains(scheds, sc.ID)) {
						continue
					}
					for _, x := range sc.final(since, until) {
						e := clone(base)
						e["user"] = s.ref("user_reference", x.user, s.userName(x.user))
						e["schedule"] = s.ref("schedule_reference", sc.ID, sc.Name)
						e["start"], e["end"] = x.start.UTC().Format(time.RFC3339), x.end.UTC().Format(time.RFC3339)
						all = append(all, e)
					}
				}
			}
		}
	}
	page, more := window(all, offset, limit)
	writeJSON(w, http.StatusOK, map[string]any{"oncalls": page, "offset": offset, "limit": limit, "more": more, "total": nil})
	return http.StatusOK
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
