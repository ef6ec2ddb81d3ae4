package oncall

// A fake Grafana OnCall HTTP API v1 for the endpoints the importer reads,
// following OnCall's public API documentation: list endpoints answer
// {"count", "next", "previous", "results", "page_size", "current_page_number",
// "total_pages"} with next an absolute URL or null; "Authorization: <token>"
// or 401 {"detail": "Invalid token."}; on-call shifts of types rolling_users,
// recurrent_event, single_event and override with start as local time in
// the shift's time zone, duration in seconds, frequency, interval, by_day,
// rolling_users groups and level; final_shifts by start_date and end_date.
// Final shifts are rendered by generating every occurrence of every shift
// (as OnCall's iCal export does) and painting them by level, independently
// of the importer's point-in-time reading.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

type fakeShift struct {
	ID, Name, Type, TZ string
	Level              int
	Start              string
	Duration           int
	Frequency          string
	Interval           int
	ByDay              []string
	Users              []string
	Rolling            [][]string
	StartIndex         int
	Until              string
}

type fakeSchedule struct {
	ID, Name, Type, TZ string
	Shifts             []string
	// Feed is what an iCal schedule's calendar says, as final spans.
	Feed []fakeSpan
}

type fakeSpan struct {
	User       string
	Start, End time.Time
}

type fakeOnCall struct {
	srv      *httptest.Server
	token    string
	pageSize int

	mu           sync.Mutex
	fail         []int
	users        []map[string]any
	schedules    []fakeSchedule
	shifts       []fakeShift
	chains       []map[string]any
	policies     []map[string]any
	integrations []map[string]any
	routes       []map[string]any
	calls        map[string]int
}

func newFake(t *testing.T) *fakeOnCall {
	f := &fakeOnCall{token: "oncall-token-abcdef0123", pageSize: 50, calls: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/users/", f.list(func() []any { return anys(f.users) }))
	mux.HandleFunc("/api/v1/schedules/", f.list(func() []any {
		var out []any
		for _, s := range f.schedules {
			m := map[string]any{"id": s.ID, "name": s.Name, "type": s.Type, "time_zone": s.TZ, "team_id": nil, "on_call_now": []string{}}
			if s.Type != "ical" {
				m["shifts"] = s.Shifts
			}
			if s.Type != "web" {
				m["ical_url_primary"] = "https://calendar.example.org/" + s.ID + ".ics"
				m["ical_url_overrides"] = nil
			}
			out = append(out, m)
		}
		return out
	}))
	mux.HandleFunc("/api/v1/on_call_shifts/", f.list(func() []any {
		var out []any
		for _, s := range f.shifts {
			m := map[string]any{"id": s.ID, "name": s.Name, "type": s.Type, "level": s.Level, "start": s.Start, "duration": s.Duration, "team_id": nil}
			if s.TZ != "" {
				m["time_zone"] = s.TZ
			} else {
				m["time_zone"] = nil
			}
			if s.Type == "rolling_users" || s.Type == "recurrent_event" {
				m["frequency"], m["interval"], m["by_day"], m["week_start"] = s.Frequency, s.Interval, s.ByDay, "MO"
				m["until"] = nil
				if s.Until != "" {
					m["until"] = s.Until
				}
			}
			if s.Type == "rolling_users" {
				m["rolling_users"], m["start_rotation_from_user_index"] = s.Rolling, s.StartIndex
			} else {
				m["users"] = s.Users
			}
			out = append(out, m)
		}
		return out
	}))
	mux.HandleFunc("/api/v1/escalation_chains/", f.list(func() []any { return anys(f.chains) }))
	mux.HandleFunc("/api/v1/escalation_policies/", f.list(func() []any { return anys(f.policies) }))
	mux.HandleFunc("/api/v1/integrations/", f.list(func() []any { return anys(f.integrations) }))
	mux.HandleFunc("/api/v1/routes/", f.list(func() []any { return anys(f.routes) }))
	mux.HandleFunc("/api/v1/schedules/{id}/final_shifts", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		from, err1 := time.Parse("2006-01-02", q.Get("start_date"))
		to, err2 := time.Parse("2006-01-02", q.Get("end_date"))
		if err1 != nil || err2 != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"detail": "start_date and end_date are required (YYYY-MM-DD)"})
			return
		}
		var sc *fakeSchedule
		for i := range f.schedules {
			if f.schedules[i].ID == r.PathValue("id") {
				sc = &f.schedules[i]
			}
		}
		if sc == nil {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]any{"detail": "Not found."})
			return
		}
		f.list(func() []any {
			var out []any
			for _, sp := range f.final(sc, from, to.AddDate(0, 0, 1)) {
				out = append(out, map[string]any{"user_pk": sp.User, "user_email": sp.User + "@example.org", "user_username": sp.User,
					"shift_start": sp.Start.UTC().Format(time.RFC3339), "shift_end": sp.End.UTC().Format(time.RFC3339)})
			}
			return out
		})(w, r)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func anys(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// list serves a paginated list; page is 1-based, as OnCall's.
func (f *fakeOnCall) list(all func() []any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != f.token {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]any{"detail": "Invalid token."})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.fail) > 0 {
			st := f.fail[0]
			f.fail = f.fail[1:]
			w.Header().Set("Retry-After", "4")
			w.WriteHeader(st)
			_ = json.NewEncoder(w).Encode(map[string]any{"detail": "Request was throttled. Expected available in 4 seconds."})
			return
		}
		f.calls[r.URL.Path]++
		items := all()
		pageNo := 1
		if p := r.URL.Query().Get("page"); p != "" {
			pageNo, _ = strconv.Atoi(p)
		}
		lo := min((pageNo-1)*f.pageSize, len(items))
		hi := min(lo+f.pageSize, len(items))
		var next any
		if hi < len(items) {
			q := r.URL.Query()
			q.Set("page", strconv.Itoa(pageNo+1))
			next = "http://oncall.example.invalid" + r.URL.Path + "?" + q.Encode() // OnCall's public URL, not the test's
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"count": len(items), "next": next, "previous": nil, "results": items[lo:hi],
			"page_size": f.pageSize, "current_page_number": pageNo, "total_pages": (len(items) + f.pageSize - 1) / f.pageSize})
	}
}

var fakeDays = map[string]time.Weekday{"SU": 0, "MO": 1, "TU": 2, "WE": 3, "TH": 4, "FR": 5, "SA": 6}

// occurrences generates every occurrence of sh starting before to.
func (sh *fakeShift) occurrences(schedTZ string, to time.Time) []fakeSpan {
	tz := sh.TZ
	if tz == "" {
		tz = schedTZ
	}
	loc, _ := time.LoadLocation(tz)
	start, _ := time.ParseInLocation("2006-01-02T15:04:05", sh.Start, loc)
	dur := time.Duration(sh.Duration) * time.Second
	var until time.Time
	if sh.Until != "" {
		until, _ = time.ParseInLocation("2006-01-02T15:04:05", sh.Until, loc)
	}
	if sh.Type == "single_event" || sh.Type == "override" {
		return []fakeSpan{{sh.Users[0], start, start.Add(dur)}}
	}
	interval := max(sh.Interval, 1)
	period := func(k int) time.Time {
		switch sh.Frequency {
		case "hourly":
			return start.Add(time.Duration(k*interval) * time.Hour)
		case "weekly":
			return start.AddDate(0, 0, 7*k*interval)
		case "monthly":
			return start.AddDate(0, k*interval, 0)
		}
		return start.AddDate(0, 0, k*interval)
	}
	var out []fakeSpan
	for k := 0; period(k).Before(to); k++ {
		user := ""
		if sh.Type == "rolling_users" {
			n := len(sh.Rolling)
			user = sh.Rolling[(sh.StartIndex+k)%n][0]
		} else {
			user = sh.Users[0]
		}
		ps, pe := period(k), period(k+1)
		var starts []time.Time
		if len(sh.ByDay) == 0 {
			starts = []time.Time{ps}
		} else {
			for d := ps; d.Before(pe); d = d.AddDate(0, 0, 1) {
				for _, bd := range sh.ByDay {
					if d.Weekday() == fakeDays[bd] {
						starts = append(starts, time.Date(d.Year(), d.Month(), d.Day(), start.Hour(), start.Minute(), start.Second(), 0, loc))
					}
				}
			}
		}
		for _, s := range starts {
			if !until.IsZero() && !s.Before(until) {
				continue
			}
			out = append(out, fakeSpan{user, s, s.Add(dur)})
		}
	}
	return out
}

func paintSpan(list []fakeSpan, e fakeSpan) []fakeSpan {
	var out []fakeSpan
	for _, x := range list {
		if !x.End.After(e.Start) || !x.Start.Before(e.End) {
			out = append(out, x)
			continue
		}
		if x.Start.Before(e.Start) {
			out = append(out, fakeSpan{x.User, x.Start, e.Start})
		}
		if x.End.After(e.End) {
			out = append(out, fakeSpan{x.User, e.End, x.End})
		}
	}
	out = append(out, e)
	slices.SortFunc(out, func(a, b fakeSpan) int { return a.Start.Compare(b.Start) })
	return out
}

func (f *fakeOnCall) final(sc *fakeSchedule, from, to time.Time) []fakeSpan {
	var painted []fakeSpan
	if sc.Type == "ical" {
		painted = sc.Feed
	} else {
		var shifts []fakeShift
		for _, id := range sc.Shifts {
			for _, s := range f.shifts {
				if s.ID == id {
					shifts = append(shifts, s)
				}
			}
		}
		rank := func(s fakeShift) int {
			if s.Type == "override" {
				return 1 << 20
			}
			return s.Level
		}
		slices.SortStableFunc(shifts, func(a, b fakeShift) int { return rank(a) - rank(b) })
		for _, s := range shifts {
			for _, o := range s.occurrences(sc.TZ, to) {
				painted = paintSpan(painted, o)
			}
		}
	}
	var out []fakeSpan
	for _, s := range painted {
		if s.End.After(from) && s.Start.Before(to) {
			if n := len(out); n > 0 && out[n-1].User == s.User && out[n-1].End.Equal(s.Start) {
				out[n-1].End = s.End
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeOnCall) example() {
	for _, u := range []string{"ann", "ben", "cat", "dan"} {
		f.users = append(f.users, map[string]any{"id": "U" + u, "email": u + "@example.org", "username": u, "role": "user", "timezone": "Europe/Paris", "teams": []any{}})
	}
	f.shifts = []fakeShift{
		{ID: "O1", Name: "Weekly", Type: "rolling_users", Level: 0, Start: "2026-09-07T10:00:00", Duration: 7 * 86400, Frequency: "weekly", Interval: 1,
			Rolling: [][]string{{"Uann"}, {"Uben"}, {"Ucat"}}},
		{ID: "O2", Name: "Office", Type: "rolling_users", Level: 1, Start: "2026-09-07T09:00:00", Duration: 8 * 3600, Frequency: "daily", Interval: 1,
			ByDay: []string{"MO", "TU", "WE", "TH", "FR"}, Rolling: [][]string{{"Udan"}, {"Uben", "Ucat"}}},
		{ID: "O3", Name: "Cover", Type: "override", Start: "2026-10-29T18:00:00", Duration: 6 * 3600, Users: []string{"Ucat"}},
	}
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	var feed []fakeSpan
	for d := 0; d < 60; d++ {
		s := time.Date(2026, 10, 1+d, 9, 0, 0, 0, tokyo)
		feed = append(feed, fakeSpan{[]string{"Uann", "Udan"}[d%2], s, s.AddDate(0, 0, 1)})
	}
	f.schedules = []fakeSchedule{
		{ID: "SSRE", Name: "SRE", Type: "web", TZ: "Europe/Paris", Shifts: []string{"O1", "O2", "O3"}},
		{ID: "SSUP", Name: "Support", Type: "ical", TZ: "Asia/Tokyo", Feed: feed},
	}
	f.chains = []map[string]any{{"id": "CSRE", "name": "SRE", "team_id": nil}, {"id": "CSUP", "name": "Support", "team_id": nil}}
	str := func(s string) *string { return &s }
	f.policies = []map[string]any{
		{"id": "E1", "escalation_chain_id": "CSRE", "position": 0, "type": "notify_on_call_from_schedule", "notify_on_call_from_schedule": str("SSRE"), "important": false},
		{"id": "E2", "escalation_chain_id": "CSRE", "position": 1, "type": "wait", "duration": 600},
		{"id": "E3", "escalation_chain_id": "CSRE", "position": 2, "type": "notify_persons", "persons_to_notify": []string{"Uann"}},
		{"id": "E4", "escalation_chain_id": "CSRE", "position": 3, "type": "wait", "duration": 300},
		{"id": "E5", "escalation_chain_id": "CSRE", "position": 4, "type": "notify_person_next_each_time", "persons_to_notify_next_each_time": []string{"Uben", "Ucat"}},
		{"id": "E6", "escalation_chain_id": "CSRE", "position": 5, "type": "repeat_escalation"},
		{"id": "E7", "escalation_chain_id": "CSUP", "position": 0, "type": "notify_on_call_from_schedule", "notify_on_call_from_schedule": str("SSUP")},
		{"id": "E8", "escalation_chain_id": "CSUP", "position": 1, "type": "trigger_webhook", "action_to_trigger": str("W1")},
	}
	f.integrations = []map[string]any{
		{"id": "I1", "name": "Alertmanager", "type": "alertmanager", "default_route": map[string]any{"id": "R1", "escalation_chain_id": "CSRE"}},
		{"id": "I2", "name": "Zendesk", "type": "webhook", "default_route": map[string]any{"id": "R3", "escalation_chain_id": "CSUP"}},
	}
	f.routes = []map[string]any{
		{"id": "R2", "integration_id": "I1", "escalation_chain_id": "CSUP", "routing_regex": `"severity": "info"`, "position": 0, "is_the_last_route": false},
		{"id": "R1", "integration_id": "I1", "escalation_chain_id": "CSRE", "routing_regex": nil, "position": 1, "is_the_last_route": true},
		{"id": "R3", "integration_id": "I2", "escalation_chain_id": "CSUP", "routing_regex": nil, "position": 0, "is_the_last_route": true},
	}
	_ = fmt.Sprint
}
