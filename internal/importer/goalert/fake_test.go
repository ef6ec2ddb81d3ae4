package goalert

// A fake GoAlert GraphQL API (POST /api/graphql) for the operations the
// importer sends, following GoAlert's schema (graphql2/schema.graphql):
// connections with nodes and pageInfo {endCursor, hasNextPage} read by
// input {first, after}; rotations with type hourly|daily|weekly|monthly,
// shiftLength, start, timeZone, activeUserIndex and userIDs; schedules with
// targets {target, rules {start, end: "HH:MM", weekdayFilter: 7 booleans
// from Sunday}}, temporarySchedules and shifts(start, end); userOverrides
// that add, remove or replace a user on a schedule. Requests need
// "Authorization: Bearer <token>" (401 otherwise); a GraphQL error is HTTP 200
// with {"errors":[{"message"}]}, as GoAlert answers. It computes shifts by
// stepping every minute through its own reading of the rules, not the
// importer's.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeRotation struct {
	ID, Name, TimeZone, Type string
	ShiftLength, Active      int
	Start                    time.Time
	Users                    []string
}

type fakeRule struct {
	Start, End string
	Days       [7]bool
}

type fakeTarget struct {
	Type, ID, Name string
	Rules          []fakeRule
}

type fakeTemp struct {
	Start, End time.Time
	Shifts     []fakeShift
}

type fakeShift struct {
	User       string
	Start, End time.Time
}

type fakeSchedule struct {
	ID, Name, TimeZone string
	Targets            []fakeTarget
	Temps              []fakeTemp
}

type fakeOverride struct {
	ID, Add, Remove, Schedule string
	Start, End                time.Time
}

type fakeStep struct {
	Delay   int
	Targets [][3]string // type, id, name
}

type fakePolicy struct {
	ID, Name string
	Repeat   int
	Steps    []fakeStep
}

type fakeService struct {
	ID, Name, Policy string
	Heartbeat        string
}

type fakeUser struct {
	ID, Name, Email string
	Methods         [][2]string // type, value
}

type fake struct {
	srv      *httptest.Server
	token    string
	now      time.Time
	pageSize int

	mu        sync.Mutex
	fail      []int // statuses to answer next, with Retry-After: 2
	users     []fakeUser
	rotations []fakeRotation
	schedules []fakeSchedule
	overrides []fakeOverride
	policies  []fakePolicy
	services  []fakeService
	ops       []string
}

func newFake(t *testing.T, now time.Time) *fake {
	f := &fake{token: "goalert-key-1234567890", now: now, pageSize: 100}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/graphql" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fail) > 0 {
		st := f.fail[0]
		f.fail = f.fail[1:]
		w.Header().Set("Retry-After", "2")
		http.Error(w, http.StatusText(st), st)
		return
	}
	var req struct {
		OperationName string         `json:"operationName"`
		Query         string         `json:"query"`
		Variables     map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": "json body could not be decoded: " + err.Error()}}})
		return
	}
	if req.Query != Document {
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": "query does not match the API key's query"}}})
		return
	}
	f.ops = append(f.ops, req.OperationName)
	after, _ := req.Variables["after"].(string)
	var data map[string]any
	switch req.OperationName {
	case "users":
		data = map[string]any{"users": page(f, after, f.users, func(u fakeUser) any {
			var cms []any
			for _, m := range u.Methods {
				cms = append(cms, map[string]any{"type": m[0], "value": m[1], "disabled": false})
			}
			return map[string]any{"id": u.ID, "name": u.Name, "email": u.Email, "contactMethods": cms}
		})}
	case "rotations":
		data = map[string]any{"rotations": page(f, after, f.rotations, func(r fakeRotation) any {
			return map[string]any{"id": r.ID, "name": r.Name, "timeZone": r.TimeZone, "type": r.Type, "shiftLength": r.ShiftLength,
				"start": r.Start.Format(time.RFC3339), "activeUserIndex": r.Active, "userIDs": r.Users}
		})}
	case "schedules":
		data = map[string]any{"schedules": page(f, after, f.schedules, func(s fakeSchedule) any {
			var ts []any
			for _, t := range s.Targets {
				var rules []any
				for _, r := range t.Rules {
					rules = append(rules, map[string]any{"start": r.Start, "end": r.End, "weekdayFilter": r.Days[:]})
				}
				ts = append(ts, map[string]any{"target": map[string]any{"id": t.ID, "type": t.Type, "name": t.Name}, "rules": rules})
			}
			temps := []any{}
			for _, tmp := range s.Temps {
				var sh []any
				for _, x := range tmp.Shifts {
					sh = append(sh, map[string]any{"userID": x.User, "start": x.Start.Format(time.RFC3339), "end": x.End.Format(time.RFC3339)})
				}
				temps = append(temps, map[string]any{"start": tmp.Start.Format(time.RFC3339), "end": tmp.End.Format(time.RFC3339), "shifts": sh})
			}
			return map[string]any{"id": s.ID, "name": s.Name, "timeZone": s.TimeZone, "targets": ts, "temporarySchedules": temps}
		})}
	case "overrides":
		start, _ := time.Parse(time.RFC3339, fmt.Sprint(req.Variables["start"]))
		end, _ := time.Parse(time.RFC3339, fmt.Sprint(req.Variables["end"]))
		var in []fakeOverride
		for _, o := range f.overrides {
			if o.End.After(start) && o.Start.Before(end) {
				in = append(in, o)
			}
		}
		data = map[string]any{"userOverrides": page(f, after, in, func(o fakeOverride) any {
			return map[string]any{"id": o.ID, "start": o.Start.Format(time.RFC3339), "end": o.End.Format(time.RFC3339),
				"addUserID": o.Add, "removeUserID": o.Remove, "target": map[string]any{"id": o.Schedule, "type": "schedule"}}
		})}
	case "policies":
		data = map[string]any{"escalationPolicies": page(f, after, f.policies, func(p fakePolicy) any {
			var steps []any
			for i, s := range p.Steps {
				var ts []any
				for _, t := range s.Targets {
					ts = append(ts, map[string]any{"type": t[0], "id": t[1], "name": t[2]})
				}
				steps = append(steps, map[string]any{"stepNumber": i, "delayMinutes": s.Delay, "targets": ts})
			}
			return map[string]any{"id": p.ID, "name": p.Name, "repeat": p.Repeat, "steps": steps}
		})}
	case "services":
		data = map[string]any{"services": page(f, after, f.services, func(s fakeService) any {
			hb := []any{}
			if s.Heartbeat != "" {
				hb = append(hb, map[string]any{"name": s.Heartbeat, "timeoutMinutes": 60})
			}
			return map[string]any{"id": s.ID, "name": s.Name, "escalationPolicyID": s.Policy, "heartbeatMonitors": hb}
		})}
	case "shifts":
		id := fmt.Sprint(req.Variables["id"])
		start, err1 := time.Parse(time.RFC3339, fmt.Sprint(req.Variables["start"]))
		end, err2 := time.Parse(time.RFC3339, fmt.Sprint(req.Variables["end"]))
		if err1 != nil || err2 != nil {
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": "invalid ISOTimestamp"}}})
			return
		}
		var sc *fakeSchedule
		for i := range f.schedules {
			if f.schedules[i].ID == id {
				sc = &f.schedules[i]
			}
		}
		if sc == nil {
			data = map[string]any{"schedule": nil}
			break
		}
		data = map[string]any{"schedule": map[string]any{"id": id, "shifts": f.shifts(sc, start, end)}}
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": "unknown operation " + req.OperationName}}})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func page[T any](f *fake, after string, all []T, render func(T) any) map[string]any {
	i := 0
	if after != "" {
		i, _ = strconv.Atoi(after)
	}
	end := min(i+f.pageSize, len(all))
	nodes := []any{}
	for _, x := range all[min(i, len(all)):end] {
		nodes = append(nodes, render(x))
	}
	return map[string]any{"nodes": nodes, "pageInfo": map[string]any{"endCursor": strconv.Itoa(end), "hasNextPage": end < len(all)}}
}

// onCall returns who the rotation has at t: its active user now, moved on
// by the handoffs between now and t.
func (f *fake) rotationAt(r *fakeRotation, t time.Time) string {
	loc := zoneOf(r.TimeZone)
	handoff := func(k int) time.Time {
		s := r.Start.In(loc)
		n := k * r.ShiftLength
		switch r.Type {
		case "hourly":
			return s.Add(time.Duration(n) * time.Hour)
		case "daily":
			return s.AddDate(0, 0, n)
		case "weekly":
			return s.AddDate(0, 0, 7*n)
		}
		return s.AddDate(0, n, 0)
	}
	unit := map[string]time.Duration{"hourly": time.Hour, "daily": 24 * time.Hour, "weekly": 7 * 24 * time.Hour}[r.Type]
	if unit == 0 {
		unit = 28 * 24 * time.Hour
	}
	index := func(t time.Time) int {
		k := max(0, int(t.Sub(r.Start)/(unit*time.Duration(r.ShiftLength)))-2)
		for !handoff(k + 1).After(t) {
			k++
		}
		return k
	}
	n := len(r.Users)
	i := r.Active + index(t) - index(f.now)
	return r.Users[((i%n)+n)%n]
}

var zones sync.Map

func zoneOf(name string) *time.Location {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		l = time.UTC
	}
	zones.Store(name, l)
	return l
}

func ruleActive(r fakeRule, lt time.Time) bool {
	parse := func(s string) int {
		h, _ := strconv.Atoi(s[:2])
		m, _ := strconv.Atoi(s[3:])
		return h*60 + m
	}
	st, en := parse(r.Start), parse(r.End)
	tod := lt.Hour()*60 + lt.Minute()
	today, yesterday := r.Days[lt.Weekday()], r.Days[(lt.Weekday()+6)%7]
	switch {
	case st == en:
		return (today && tod >= st) || (yesterday && tod < st)
	case st < en:
		return today && tod >= st && tod < en
	default:
		return (today && tod >= st) || (yesterday && tod < en)
	}
}

// onCallAt is who the schedule has on call at t.
func (f *fake) onCallAt(sc *fakeSchedule, t time.Time) []string {
	loc := zoneOf(sc.TimeZone)
	for _, tmp := range sc.Temps {
		if !t.Before(tmp.Start) && t.Before(tmp.End) {
			var out []string
			for _, s := range tmp.Shifts {
				if !t.Before(s.Start) && t.Before(s.End) {
					out = append(out, s.User)
				}
			}
			return out
		}
	}
	var out []string
	for _, tg := range sc.Targets {
		if !slices.ContainsFunc(tg.Rules, func(r fakeRule) bool { return ruleActive(r, t.In(loc)) }) {
			continue
		}
		switch tg.Type {
		case "user":
			out = append(out, tg.ID)
		case "rotation":
			for i := range f.rotations {
				if f.rotations[i].ID == tg.ID {
					out = append(out, f.rotationAt(&f.rotations[i], t))
				}
			}
		}
	}
	for _, o := range f.overrides {
		if o.Schedule != sc.ID || t.Before(o.Start) || !t.Before(o.End) {
			continue
		}
		if o.Remove != "" {
			i := slices.Index(out, o.Remove)
			if i < 0 {
				continue
			}
			out = slices.Delete(out, i, i+1)
		}
		if o.Add != "" {
			out = append(out, o.Add)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (f *fake) shifts(sc *fakeSchedule, start, end time.Time) []any {
	type open struct{ from time.Time }
	cur := map[string]time.Time{}
	var out []any
	emit := func(u string, s, e time.Time) {
		out = append(out, map[string]any{"userID": u, "start": s.Format(time.RFC3339), "end": e.Format(time.RFC3339), "truncated": !e.Before(end)})
	}
	for t := start.Truncate(time.Minute); t.Before(end); t = t.Add(time.Minute) {
		now := f.onCallAt(sc, t)
		for u, s := range cur {
			if !slices.Contains(now, u) {
				emit(u, s, t)
				delete(cur, u)
			}
		}
		for _, u := range now {
			if _, ok := cur[u]; !ok {
				cur[u] = t
			}
		}
	}
	users := make([]string, 0, len(cur))
	for u := range cur {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		emit(u, cur[u], end)
	}
	return out
}

func days(names string) [7]bool {
	var d [7]bool
	for i, n := range []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"} {
		d[i] = strings.Contains(names, n)
	}
	return d
}

var allDays = days("sun mon tue wed thu fri sat")

// example fills the fake like a small team's GoAlert.
func (f *fake) example() {
	chicago, _ := time.LoadLocation("America/Chicago")
	london, _ := time.LoadLocation("Europe/London")
	f.users = []fakeUser{
		{"u-ann", "Ann Able", "ann@example.org", [][2]string{{"VOICE", "+15555550201"}, {"SMS", "+15555550201"}}},
		{"u-ben", "Ben Best", "ben@example.org", [][2]string{{"SMS", "+15555550202"}, {"EMAIL", "ben@example.org"}}},
		{"u-cat", "Cat Cole", "cat@example.org", [][2]string{{"VOICE", "+447700900303"}}},
		{"u-dan", "Dan Díaz", "dan@example.org", [][2]string{{"VOICE", "+15555550204"}, {"SMS", "+15555550299"}}},
	}
	f.rotations = []fakeRotation{
		{ID: "r-primary", Name: "Primary", TimeZone: "America/Chicago", Type: "weekly", ShiftLength: 1, Active: 1,
			Start: time.Date(2026, 9, 7, 9, 0, 0, 0, chicago), Users: []string{"u-ann", "u-ben", "u-cat"}},
		{ID: "r-nights", Name: "Nights", TimeZone: "Europe/London", Type: "daily", ShiftLength: 1, Active: 0,
			Start: time.Date(2026, 10, 1, 20, 0, 0, 0, london), Users: []string{"u-cat", "u-dan"}},
	}
	f.schedules = []fakeSchedule{
		{ID: "s-platform", Name: "Platform", TimeZone: "America/Chicago",
			Targets: []fakeTarget{
				{Type: "rotation", ID: "r-primary", Name: "Primary", Rules: []fakeRule{{"00:00", "00:00", allDays}}},
				{Type: "user", ID: "u-dan", Name: "Dan Díaz", Rules: []fakeRule{{"09:00", "17:00", days("mon tue wed thu fri")}}},
			},
			Temps: []fakeTemp{{Start: time.Date(2026, 11, 10, 0, 0, 0, 0, chicago), End: time.Date(2026, 11, 11, 0, 0, 0, 0, chicago),
				Shifts: []fakeShift{{"u-cat", time.Date(2026, 11, 10, 0, 0, 0, 0, chicago), time.Date(2026, 11, 10, 12, 0, 0, 0, chicago)},
					{"u-ann", time.Date(2026, 11, 10, 12, 0, 0, 0, chicago), time.Date(2026, 11, 11, 0, 0, 0, 0, chicago)}}}},
		},
		{ID: "s-nights", Name: "Nights", TimeZone: "Europe/London",
			Targets: []fakeTarget{{Type: "rotation", ID: "r-nights", Name: "Nights", Rules: []fakeRule{{"20:00", "08:00", allDays}}}}},
	}
	f.overrides = []fakeOverride{
		{ID: "o-1", Add: "u-dan", Remove: "u-cat", Schedule: "s-platform", Start: time.Date(2026, 10, 28, 18, 0, 0, 0, chicago), End: time.Date(2026, 10, 28, 22, 0, 0, 0, chicago)},
		{ID: "o-2", Add: "u-ben", Schedule: "s-nights", Start: time.Date(2026, 11, 2, 21, 0, 0, 0, london), End: time.Date(2026, 11, 3, 1, 0, 0, 0, london)},
	}
	f.policies = []fakePolicy{
		{ID: "ep-platform", Name: "Platform", Repeat: 3, Steps: []fakeStep{
			{Delay: 10, Targets: [][3]string{{"schedule", "s-platform", "Platform"}}},
			{Delay: 15, Targets: [][3]string{{"rotation", "r-nights", "Nights"}, {"user", "u-ann", "Ann Able"}}},
			{Delay: 5, Targets: [][3]string{{"slackChannel", "C0123", "#ops"}}},
		}},
		{ID: "ep-nights", Name: "Nights", Steps: []fakeStep{{Delay: 5, Targets: [][3]string{{"schedule", "s-nights", "Nights"}}}}},
	}
	f.services = []fakeService{{"svc-api", "API", "ep-platform", "cron"}, {"svc-batch", "Batch", "ep-nights", ""}}
}
