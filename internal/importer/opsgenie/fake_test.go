package opsgenie

// A fake Opsgenie REST API v2 for the endpoints the SDK calls here, following
// Opsgenie's API documentation: "Authorization: GenieKey <key>" or 401
// {"message": "Could not authenticate", ...}; answers wrapped in {"data", "took",
// "requestId"}; /v2/users pages by limit and offset with totalCount; rotations
// with type hourly|daily|weekly, length, startDate, endDate, participants
// (user or none) and timeRestriction of type time-of-day or
// weekday-and-time-of-day; overrides of some or all rotations; escalations;
// teams' routing rules; heartbeats; and the schedule's on-calls at a date
// (flat: the on-call users' usernames). Rotations of a schedule are on call
// together. Who is on call is computed by stepping turns from startDate on
// the schedule's calendar, independently of the importer.

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeRestriction struct {
	StartDay, EndDay                     string
	StartHour, StartMin, EndHour, EndMin int
}

type fakeRotation struct {
	ID, Name, Type  string
	Length          int
	Start, End      time.Time
	Participants    []string // user ids; "" is a none participant
	RestrictionType string
	Restrictions    []fakeRestriction
}

type fakeOverride struct {
	Alias, User string
	Start, End  time.Time
	Rotations   []string
}

type fakeSchedule struct {
	ID, Name, TZ string
	Rotations    []fakeRotation
	Overrides    []fakeOverride
}

type fakeUser struct {
	ID, Username, Name string
	Contacts           [][2]string // method, to
}

type fakeOpsgenie struct {
	srv      *httptest.Server
	key      string
	pageSize int

	mu          sync.Mutex
	fail        []int
	users       []fakeUser
	schedules   []fakeSchedule
	escalations []any
	teams       []map[string]any
	rules       map[string][]any
	heartbeats  []any
	calls       map[string]int
}

func newFake(t *testing.T) *fakeOpsgenie {
	f := &fakeOpsgenie{key: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", pageSize: 100, calls: map[string]int{}, rules: map[string][]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpsgenie) write(w http.ResponseWriter, status int, body map[string]any) {
	body["took"], body["requestId"] = 0.01, "req-1"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "req-1")
	w.Header().Set("X-Response-Time", "0.01")
	w.Header().Set("X-RateLimit-State", "OK")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (f *fakeOpsgenie) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "GenieKey "+f.key {
		f.write(w, http.StatusUnauthorized, map[string]any{"message": "Could not authenticate"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fail) > 0 {
		st := f.fail[0]
		f.fail = f.fail[1:]
		w.Header().Set("Retry-After", "3")
		w.Header().Set("X-RateLimit-State", "THROTTLED")
		f.write(w, st, map[string]any{"message": "You are making too many requests! To avoid errors, we recommend you limit requests."})
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	q := r.URL.Query()
	parts := strings.Split(strings.TrimPrefix(p, "/v2/"), "/")
	f.calls[parts[0]]++
	switch {
	case p == "/v2/users":
		limit, _ := strconv.Atoi(q.Get("limit"))
		offset, _ := strconv.Atoi(q.Get("offset"))
		limit = min(max(limit, 1), f.pageSize)
		var data []any
		for _, u := range f.users[min(offset, len(f.users)):min(offset+limit, len(f.users))] {
			data = append(data, map[string]any{"id": u.ID, "username": u.Username, "fullName": u.Name, "timeZone": "Europe/Berlin", "role": map[string]any{"id": "User", "name": "User"}})
		}
		f.write(w, 200, map[string]any{"data": data, "totalCount": len(f.users)})
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "contacts":
		for _, u := range f.users {
			if u.ID == parts[1] {
				var data []any
				for i, c := range u.Contacts {
					data = append(data, map[string]any{"id": u.ID + strconv.Itoa(i), "method": c[0], "to": c[1], "status": map[string]any{"enabled": true}})
				}
				f.write(w, 200, map[string]any{"data": data})
				return
			}
		}
		f.write(w, 404, map[string]any{"message": "No user exists with id [" + parts[1] + "]"})
	case p == "/v2/schedules":
		var data []any
		for _, s := range f.schedules {
			var rots []any
			for _, rt := range s.Rotations {
				var ps []any
				for _, u := range rt.Participants {
					if u == "" {
						ps = append(ps, map[string]any{"type": "none"})
						continue
					}
					ps = append(ps, map[string]any{"type": "user", "id": u, "username": f.username(u)})
				}
				m := map[string]any{"id": rt.ID, "name": rt.Name, "type": rt.Type, "length": rt.Length, "startDate": rt.Start.Format(time.RFC3339), "participants": ps}
				if !rt.End.IsZero() {
					m["endDate"] = rt.End.Format(time.RFC3339)
				}
				switch rt.RestrictionType {
				case "time-of-day":
					x := rt.Restrictions[0]
					m["timeRestriction"] = map[string]any{"type": "time-of-day", "restriction": map[string]any{"startHour": x.StartHour, "startMin": x.StartMin, "endHour": x.EndHour, "endMin": x.EndMin}}
				case "weekday-and-time-of-day":
					var rs []any
					for _, x := range rt.Restrictions {
						rs = append(rs, map[string]any{"startDay": x.StartDay, "endDay": x.EndDay, "startHour": x.StartHour, "startMin": x.StartMin, "endHour": x.EndHour, "endMin": x.EndMin})
					}
					m["timeRestriction"] = map[string]any{"type": "weekday-and-time-of-day", "restrictions": rs}
				}
				rots = append(rots, m)
			}
			data = append(data, map[string]any{"id": s.ID, "name": s.Name, "timezone": s.TZ, "enabled": true, "rotations": rots})
		}
		f.write(w, 200, map[string]any{"data": data, "expandable": []string{"rotation"}})
	case len(parts) == 3 && parts[0] == "schedules":
		s := f.schedule(parts[1])
		if s == nil {
			f.write(w, 404, map[string]any{"message": "No schedule exists with id [" + parts[1] + "]"})
			return
		}
		switch parts[2] {
		case "overrides":
			var data []any
			for _, o := range s.Overrides {
				var rs []any
				for _, id := range o.Rotations {
					rs = append(rs, map[string]any{"id": id})
				}
				data = append(data, map[string]any{"_parent": map[string]any{"id": s.ID, "name": s.Name, "enabled": true}, "alias": o.Alias,
					"user":      map[string]any{"type": "user", "id": o.User, "username": f.username(o.User)},
					"startDate": o.Start.Format(time.RFC3339), "endDate": o.End.Format(time.RFC3339), "rotations": rs})
			}
			f.write(w, 200, map[string]any{"data": data})
		case "on-calls":
			at, err := time.Parse("2006-01-02T15:04:05.000Z", q.Get("date"))
			if err != nil {
				f.write(w, 422, map[string]any{"message": "Invalid date"})
				return
			}
			var names []string
			for _, id := range f.onCall(s, at) {
				names = append(names, f.username(id))
			}
			f.write(w, 200, map[string]any{"data": map[string]any{"_parent": map[string]any{"id": s.ID, "name": s.Name, "enabled": true}, "onCallRecipients": names}})
		default:
			f.write(w, 404, map[string]any{"message": "not found"})
		}
	case p == "/v2/escalations":
		f.write(w, 200, map[string]any{"data": f.escalations})
	case p == "/v2/teams":
		var data []any
		for _, t := range f.teams {
			data = append(data, t)
		}
		f.write(w, 200, map[string]any{"data": data})
	case len(parts) == 3 && parts[0] == "teams" && parts[2] == "routing-rules":
		f.write(w, 200, map[string]any{"data": f.rules[parts[1]]})
	case p == "/v2/heartbeats":
		f.write(w, 200, map[string]any{"data": map[string]any{"heartbeats": f.heartbeats}})
	default:
		f.write(w, 404, map[string]any{"message": "not found"})
	}
}

func (f *fakeOpsgenie) username(id string) string {
	for _, u := range f.users {
		if u.ID == id {
			return u.Username
		}
	}
	return id
}

func (f *fakeOpsgenie) schedule(id string) *fakeSchedule {
	for i := range f.schedules {
		if f.schedules[i].ID == id {
			return &f.schedules[i]
		}
	}
	return nil
}

var weekday = map[string]int{"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}

func restricted(rt *fakeRotation, lt time.Time) bool {
	tod := lt.Hour()*60 + lt.Minute()
	switch rt.RestrictionType {
	case "time-of-day":
		x := rt.Restrictions[0]
		s, e := x.StartHour*60+x.StartMin, x.EndHour*60+x.EndMin
		if s < e {
			return tod >= s && tod < e
		}
		return tod >= s || tod < e
	case "weekday-and-time-of-day":
		week := 7 * 1440
		at := int(lt.Weekday())*1440 + tod
		for _, x := range rt.Restrictions {
			s := weekday[x.StartDay]*1440 + x.StartHour*60 + x.StartMin
			e := weekday[x.EndDay]*1440 + x.EndHour*60 + x.EndMin
			if e <= s {
				e += week
			}
			if (at >= s && at < e) || (at+week >= s && at+week < e) {
				return true
			}
		}
		return false
	}
	return true
}

// onCall is who the schedule has on call at t: every rotation's.
func (f *fakeOpsgenie) onCall(s *fakeSchedule, t time.Time) []string {
	loc, _ := time.LoadLocation(s.TZ)
	var out []string
	for i := range s.Rotations {
		rt := &s.Rotations[i]
		if t.Before(rt.Start) || (!rt.End.IsZero() && !t.Before(rt.End)) || !restricted(rt, t.In(loc)) {
			continue
		}
		turn := func(k int) time.Time {
			st := rt.Start.In(loc)
			switch rt.Type {
			case "hourly":
				return st.Add(time.Duration(k*rt.Length) * time.Hour)
			case "weekly":
				return st.AddDate(0, 0, 7*k*rt.Length)
			}
			return st.AddDate(0, 0, k*rt.Length)
		}
		k := 0
		for !turn(k + 1).After(t) {
			k++
		}
		who := rt.Participants[k%len(rt.Participants)]
		for _, o := range s.Overrides {
			if !t.Before(o.Start) && t.Before(o.End) && (len(o.Rotations) == 0 || slices.Contains(o.Rotations, rt.ID)) {
				who = o.User
			}
		}
		if who != "" {
			out = append(out, who)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (f *fakeOpsgenie) example() {
	f.users = []fakeUser{
		{"u1", "ann@example.org", "Ann Able", [][2]string{{"voice", "1-5555550401"}, {"sms", "1-5555550401"}, {"email", "ann@example.org"}}},
		{"u2", "ben@example.org", "Ben Best", [][2]string{{"sms", "44-7700900404"}}},
		{"u3", "cat@example.org", "Cat Cole", [][2]string{{"voice", "1-5555550403"}, {"sms", "1-5555550499"}}},
		{"u4", "dan@example.org", "Dan Díaz", [][2]string{{"voice", "49-15123456780"}}},
	}
	la, _ := time.LoadLocation("America/Los_Angeles")
	var office []fakeRestriction
	for _, d := range []string{"monday", "tuesday", "wednesday", "thursday", "friday"} {
		office = append(office, fakeRestriction{d, d, 9, 0, 17, 0})
	}
	f.schedules = []fakeSchedule{
		{ID: "sch-ops", Name: "Ops", TZ: "America/Los_Angeles",
			Rotations: []fakeRotation{
				{ID: "rot-weekly", Name: "Weekly", Type: "weekly", Length: 1, Start: time.Date(2026, 9, 7, 9, 0, 0, 0, la), Participants: []string{"u1", "u2", "u3"}},
				{ID: "rot-office", Name: "Business hours", Type: "daily", Length: 1, Start: time.Date(2026, 9, 7, 9, 0, 0, 0, la), Participants: []string{"u4", "u1"},
					RestrictionType: "weekday-and-time-of-day", Restrictions: office},
			},
			Overrides: []fakeOverride{{Alias: "ben-covers", User: "u2", Start: time.Date(2026, 10, 28, 18, 0, 0, 0, la), End: time.Date(2026, 10, 29, 6, 0, 0, 0, la), Rotations: []string{"rot-weekly"}}},
		},
		{ID: "sch-nights", Name: "Nights", TZ: "Europe/Berlin",
			Rotations: []fakeRotation{{ID: "rot-nights", Name: "Nights", Type: "daily", Length: 1, Start: time.Date(2026, 10, 1, 18, 0, 0, 0, time.UTC),
				Participants: []string{"u3", "u4"}, RestrictionType: "time-of-day", Restrictions: []fakeRestriction{{StartHour: 20, EndHour: 8}}}}},
	}
	f.escalations = []any{
		map[string]any{"id": "esc-ops", "name": "Ops escalation", "rules": []any{
			map[string]any{"condition": "if-not-acked", "notifyType": "default", "delay": map[string]any{"timeAmount": 0, "timeUnit": "minutes"}, "recipient": map[string]any{"type": "schedule", "id": "sch-ops", "name": "Ops"}},
			map[string]any{"condition": "if-not-acked", "notifyType": "default", "delay": map[string]any{"timeAmount": 10, "timeUnit": "minutes"}, "recipient": map[string]any{"type": "user", "id": "u1", "username": "ann@example.org"}},
			map[string]any{"condition": "if-not-acked", "notifyType": "all", "delay": map[string]any{"timeAmount": 20, "timeUnit": "minutes"}, "recipient": map[string]any{"type": "team", "id": "team-sre", "name": "SRE"}},
		}, "repeat": map[string]any{"waitInterval": 15, "count": 2}},
		map[string]any{"id": "esc-nights", "name": "Nights escalation", "rules": []any{
			map[string]any{"condition": "if-not-acked", "notifyType": "next", "delay": map[string]any{"timeAmount": 0, "timeUnit": "minutes"}, "recipient": map[string]any{"type": "schedule", "id": "sch-nights", "name": "Nights"}},
		}},
	}
	f.teams = []map[string]any{{"id": "team-sre", "name": "SRE", "description": ""}, {"id": "team-data", "name": "Data", "description": ""}}
	f.rules = map[string][]any{
		"team-sre": {
			map[string]any{"id": "rr-1", "name": "P5 to nights", "isDefault": false, "order": 0, "criteria": map[string]any{"type": "match-all-conditions"}, "notify": map[string]any{"type": "escalation", "id": "esc-nights"}},
			map[string]any{"id": "rr-2", "name": "Default", "isDefault": true, "order": 1, "criteria": map[string]any{"type": "match-all"}, "notify": map[string]any{"type": "escalation", "id": "esc-ops", "name": "Ops escalation"}},
		},
		"team-data": {map[string]any{"id": "rr-3", "name": "Default", "isDefault": true, "order": 0, "criteria": map[string]any{"type": "match-all"}, "notify": map[string]any{"type": "schedule", "id": "sch-nights", "name": "Nights"}}},
	}
	f.heartbeats = []any{
		map[string]any{"name": "Watchdog", "description": "Alertmanager Watchdog", "interval": 5, "intervalUnit": "minutes", "enabled": true},
		map[string]any{"name": "nightly-backup", "description": "backup cron", "interval": 1, "intervalUnit": "days", "enabled": true},
	}
}
