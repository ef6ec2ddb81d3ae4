// Package goalert reads a GoAlert instance through its GraphQL API
// (POST /api/graphql, "Authorization: Bearer <token>") into the importer's
// Model: users with their voice and SMS contact methods, rotations,
// schedules with their rules, temporary schedules and user overrides,
// escalation policies and services. It answers "who is on call" from each
// schedule's shifts(start, end).
//
// GoAlert has no Go SDK; the small client here sends named operations and
// reads every list page by page (first/after, pageInfo.hasNextPage).
package goalert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// TokenEnv holds an API key or session token (or TokenEnv_FILE, a file
// holding it).
const TokenEnv = "GOALERT_TOKEN"

// Source reads one GoAlert instance.
type Source struct {
	url, token string
	http       *http.Client
	// Location is the rota's zone; nil picks the zone most schedules use.
	Location *time.Location
	known    map[string]bool // schedule keys GoAlert can answer shifts for
}

// New returns a Source for the GoAlert at baseURL (e.g.
// https://goalert.example.org) with token, sending requests through rt.
func New(baseURL, token string, rt http.RoundTripper) *Source {
	return &Source{url: strings.TrimRight(baseURL, "/") + "/api/graphql", token: token,
		http: &http.Client{Transport: rt, Timeout: 60 * time.Second}, known: map[string]bool{}}
}

// Name implements importer.Source.
func (s *Source) Name() string { return "GoAlert" }

// maxBody bounds one GraphQL answer.
const maxBody = 32 << 20

// query sends one named GraphQL operation and decodes its data into out.
func (s *Source) query(ctx context.Context, what, op, q string, vars map[string]any, out any) error {
	_ = q // every request sends the whole Document; operationName picks the operation
	body, err := json.Marshal(map[string]any{"operationName": op, "query": Document, "variables": vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("GoAlert %s: %v", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.http.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			return fmt.Errorf("GoAlert %s: %v", what, ue.Unwrap())
		}
		return fmt.Errorf("GoAlert %s: %v", what, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("GoAlert %s: %v", what, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("GoAlert %s: 401 Unauthorized: the token in %s is not valid", what, TokenEnv)
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("GoAlert %s: 403 Forbidden: the token in %s may not read this", what, TokenEnv)
	case resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("GoAlert %s: still rate limited (429) after retries: try again later", what)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GoAlert %s: HTTP %d", what, resp.StatusCode)
	case len(data) > maxBody:
		return fmt.Errorf("GoAlert %s: answer larger than %d bytes", what, maxBody)
	}
	var env struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("GoAlert %s: the answer is not GraphQL JSON: %v", what, err)
	}
	if len(env.Errors) > 0 {
		var msgs []string
		for _, e := range env.Errors {
			msgs = append(msgs, e.Message)
		}
		return fmt.Errorf("GoAlert %s: %s", what, strings.Join(msgs, "; "))
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return fmt.Errorf("GoAlert %s: the answer has no data", what)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("GoAlert %s: unexpected answer: %v", what, err)
	}
	return nil
}

type pageInfo struct {
	EndCursor   string `json:"endCursor"`
	HasNextPage bool   `json:"hasNextPage"`
}

// pages reads a connection page by page; field is its name in data.
func pages[T any](ctx context.Context, s *Source, what, op, q, field string, vars map[string]any) ([]T, error) {
	var all []T
	after := ""
	for range 10000 {
		v := map[string]any{"after": after}
		for k, x := range vars {
			v[k] = x
		}
		var data map[string]struct {
			Nodes    []T      `json:"nodes"`
			PageInfo pageInfo `json:"pageInfo"`
		}
		if err := s.query(ctx, what, op, q, v, &data); err != nil {
			return nil, err
		}
		conn, ok := data[field]
		if !ok {
			return nil, fmt.Errorf("GoAlert %s: the answer has no %s", what, field)
		}
		all = append(all, conn.Nodes...)
		if !conn.PageInfo.HasNextPage || len(conn.Nodes) == 0 {
			return all, nil
		}
		after = conn.PageInfo.EndCursor
	}
	return nil, fmt.Errorf("GoAlert %s: too many pages", what)
}

const (
	qUsers = `query users($after: String!) { users(input: {first: 100, after: $after}) {
  nodes { id name email contactMethods { type value disabled } } pageInfo { endCursor hasNextPage } } }`
	qRotations = `query rotations($after: String!) { rotations(input: {first: 100, after: $after}) {
  nodes { id name timeZone type shiftLength start activeUserIndex userIDs } pageInfo { endCursor hasNextPage } } }`
	qSchedules = `query schedules($after: String!) { schedules(input: {first: 100, after: $after}) {
  nodes { id name timeZone
    targets { target { id type name } rules { start end weekdayFilter } }
    temporarySchedules { start end shifts { userID start end } } }
  pageInfo { endCursor hasNextPage } } }`
	qOverrides = `query overrides($after: String!, $start: ISOTimestamp!, $end: ISOTimestamp!) {
  userOverrides(input: {first: 100, after: $after, start: $start, end: $end}) {
  nodes { id start end addUserID removeUserID target { id type } } pageInfo { endCursor hasNextPage } } }`
	qPolicies = `query policies($after: String!) { escalationPolicies(input: {first: 100, after: $after}) {
  nodes { id name repeat steps { stepNumber delayMinutes targets { id type name } } } pageInfo { endCursor hasNextPage } } }`
	qServices = `query services($after: String!) { services(input: {first: 100, after: $after}) {
  nodes { id name escalationPolicyID heartbeatMonitors { name timeoutMinutes } } pageInfo { endCursor hasNextPage } } }`
	qShifts = `query shifts($id: ID!, $start: ISOTimestamp!, $end: ISOTimestamp!) {
  schedule(id: $id) { id shifts(start: $start, end: $end) { userID start end truncated } } }`
)

// Document is the one GraphQL document every request sends, naming the
// operation it runs: a GoAlert API key is created for one query document,
// and this is the one to give it.
var Document = strings.Join([]string{qUsers, qRotations, qSchedules, qOverrides, qPolicies, qServices, qShifts}, "\n\n") + "\n"

type user struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Email          string `json:"email"`
	ContactMethods []struct {
		Type     string `json:"type"`
		Value    string `json:"value"`
		Disabled bool   `json:"disabled"`
	} `json:"contactMethods"`
}

type rotation struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	TimeZone        string   `json:"timeZone"`
	Type            string   `json:"type"`
	ShiftLength     int      `json:"shiftLength"`
	Start           string   `json:"start"`
	ActiveUserIndex int      `json:"activeUserIndex"`
	UserIDs         []string `json:"userIDs"`
}

type target struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Name string `json:"name"`
}

type shift struct {
	UserID    string  `json:"userID"`
	Start     string  `json:"start"`
	End       *string `json:"end"`
	Truncated bool    `json:"truncated"`
}

type schedule struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	TimeZone string `json:"timeZone"`
	Targets  []struct {
		Target target `json:"target"`
		Rules  []struct {
			Start         string `json:"start"`
			End           string `json:"end"`
			WeekdayFilter []bool `json:"weekdayFilter"`
		} `json:"rules"`
	} `json:"targets"`
	TemporarySchedules []struct {
		Start  string  `json:"start"`
		End    string  `json:"end"`
		Shifts []shift `json:"shifts"`
	} `json:"temporarySchedules"`
}

type userOverride struct {
	ID           string `json:"id"`
	Start        string `json:"start"`
	End          string `json:"end"`
	AddUserID    string `json:"addUserID"`
	RemoveUserID string `json:"removeUserID"`
	Target       target `json:"target"`
}

type policy struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Repeat int    `json:"repeat"`
	Steps  []struct {
		StepNumber   int      `json:"stepNumber"`
		DelayMinutes int      `json:"delayMinutes"`
		Targets      []target `json:"targets"`
	} `json:"steps"`
}

type service struct {
	ID                 string `json:"id"`
	Name               string `json:"name"`
	EscalationPolicyID string `json:"escalationPolicyID"`
	HeartbeatMonitors  []struct {
		Name           string `json:"name"`
		TimeoutMinutes int    `json:"timeoutMinutes"`
	} `json:"heartbeatMonitors"`
}

func parseTime(what, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("GoAlert %s: invalid time %q", what, s)
	}
	return t, nil
}

func zone(what, name string) (*time.Location, error) {
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" || name == "Local" || strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("GoAlert %s: unknown time zone %q", what, name)
	}
	return loc, nil
}

// Read implements importer.Source.
func (s *Source) Read(ctx context.Context, now time.Time, weeks int) (*importer.Model, error) {
	m := &importer.Model{Source: s.Name()}
	users, err := pages[user](ctx, s, "users", "users", qUsers, "users", nil)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		p := &importer.Person{Key: u.ID, Name: u.Name, Email: u.Email}
		var sms string
		for _, c := range u.ContactMethods {
			switch {
			case c.Disabled:
			case c.Type == "VOICE" && p.Phone == "":
				p.Phone = c.Value
			case c.Type == "SMS" && sms == "":
				sms = c.Value
			}
		}
		if p.Phone == "" {
			p.Phone = sms
		} else if sms != "" && sms != p.Phone {
			m.Findings = append(m.Findings, importer.Finding{Where: fmt.Sprintf("user %q", u.Name),
				Source: "is called on one number and texted on another", Nearest: "phone: " + p.Phone + " for calls and SMS",
				Difference: "texts go to the call number"})
		}
		m.People = append(m.People, p)
	}
	rots, err := pages[rotation](ctx, s, "rotations", "rotations", qRotations, "rotations", nil)
	if err != nil {
		return nil, err
	}
	layers := map[string]*importer.Layer{}
	rotName := map[string]string{}
	for _, r := range rots {
		l, err := rotationLayer(m, r, now)
		if err != nil {
			return nil, err
		}
		layers[r.ID], rotName[r.ID] = l, r.Name
	}
	scheds, err := pages[schedule](ctx, s, "schedules", "schedules", qSchedules, "schedules", nil)
	if err != nil {
		return nil, err
	}
	until := now.AddDate(0, 0, 7*weeks)
	ovs, err := pages[userOverride](ctx, s, "user overrides", "overrides", qOverrides, "userOverrides",
		map[string]any{"start": now.UTC().Format(time.RFC3339), "end": until.UTC().Format(time.RFC3339)})
	if err != nil {
		return nil, err
	}
	byKey := map[string]*importer.Schedule{}
	for _, sc := range scheds {
		out, err := s.schedule(m, sc, layers, now)
		if err != nil {
			return nil, err
		}
		byKey[out.Key] = out
		s.known[out.Key] = true
		m.Schedules = append(m.Schedules, out)
	}
	for _, o := range ovs {
		what := "user override " + o.ID
		st, err1 := parseTime(what, o.Start)
		en, err2 := parseTime(what, o.End)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		a := importer.Adjustment{Add: o.AddUserID, Remove: o.RemoveUserID, Start: st, End: en}
		switch o.Target.Type {
		case "schedule":
			if sc := byKey[o.Target.ID]; sc != nil {
				sc.Adjust = append(sc.Adjust, a)
			}
		default:
			m.Findings = append(m.Findings, importer.Finding{Where: what, Source: "overrides on a " + o.Target.Type,
				Nearest: "not imported", Difference: "the override does not happen in Klaxon"})
		}
	}
	if err := s.policies(ctx, m, layers, rotName); err != nil {
		return nil, err
	}
	svcs, err := pages[service](ctx, s, "services", "services", qServices, "services", nil)
	if err != nil {
		return nil, err
	}
	for _, svc := range svcs {
		where := fmt.Sprintf("service %q", svc.Name)
		if svc.EscalationPolicyID != "" {
			m.Routes = append(m.Routes, &importer.Route{Value: svc.Name, Policy: svc.EscalationPolicyID, Name: where})
		}
		for _, hb := range svc.HeartbeatMonitors {
			m.Findings = append(m.Findings, importer.Finding{Where: where + fmt.Sprintf(", heartbeat monitor %q", hb.Name),
				Source:     fmt.Sprintf("opens an alert when no heartbeat arrives for %d minutes", hb.TimeoutMinutes),
				Nearest:    "Klaxon's dead man's switch is Alertmanager's Watchdog alert (klaxon serve --watchdog-matcher, --watchdog-timeout)",
				Difference: "per-service heartbeats are not imported: send them as Prometheus alerts instead"})
		}
	}
	m.Findings = append(m.Findings, importer.Finding{Where: "users' notification rules",
		Source:  "each user chooses which contact methods are notified and after what delay",
		Nearest: "each policy step pages everyone it names on --via at once", Difference: "per-user delays are not kept"})
	m.Location = s.Location
	if m.Location == nil {
		m.Location = importer.CommonZone(m.Schedules)
	}
	return m, nil
}

// rotationLayer reads a rotation as a layer: its turns start at the
// current shift's start, with the active user first.
func rotationLayer(m *importer.Model, r rotation, now time.Time) (*importer.Layer, error) {
	what := fmt.Sprintf("rotation %q", r.Name)
	loc, err := zone(what, r.TimeZone)
	if err != nil {
		return nil, err
	}
	start, err := parseTime(what, r.Start)
	if err != nil {
		return nil, err
	}
	if r.ShiftLength < 1 {
		return nil, fmt.Errorf("GoAlert %s: shift length %d", what, r.ShiftLength)
	}
	n := r.ShiftLength
	step := func(t time.Time, k int) time.Time {
		t = t.In(loc)
		switch r.Type {
		case "hourly":
			return time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+k*n, t.Minute(), t.Second(), 0, loc)
		case "daily":
			return t.AddDate(0, 0, k*n)
		case "weekly":
			return t.AddDate(0, 0, 7*k*n)
		default: // monthly
			return t.AddDate(0, k*n, 0)
		}
	}
	var turn time.Duration
	switch r.Type {
	case "hourly":
		turn = time.Duration(n) * time.Hour
	case "daily":
		turn = time.Duration(n) * 24 * time.Hour
	case "weekly":
		turn = time.Duration(n) * 7 * 24 * time.Hour
	case "monthly":
		turn = time.Duration(n) * 30 * 24 * time.Hour
		m.Findings = append(m.Findings, importer.Finding{Where: what, Source: fmt.Sprintf("hands off every %d month(s), on the same day of the month", n),
			Nearest: "a rotation of 30-day shifts", Difference: "handoffs drift from the calendar months; overrides follow GoAlert within the written weeks"})
	default:
		return nil, fmt.Errorf("GoAlert %s: unknown rotation type %q", what, r.Type)
	}
	// The current shift started at the last handoff at or before now.
	cur := start
	for k := 1; !step(start, k).After(now); k++ {
		cur = step(start, k)
		if k > 1<<20 {
			break
		}
	}
	members := slices.Clone(r.UserIDs)
	if len(members) > 0 {
		i := ((r.ActiveUserIndex % len(members)) + len(members)) % len(members)
		members = append(members[i:], members[:i]...)
	}
	return &importer.Layer{Name: r.Name, Group: r.ID, Members: members, Origin: cur, Turn: turn, Location: loc, Kind: "rotation"}, nil
}

// clock reads GoAlert's ClockTime "HH:MM".
func clock(s string) (time.Duration, error) {
	var h, mm int
	if _, err := fmt.Sscanf(s, "%d:%d", &h, &mm); err != nil || h < 0 || h > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("invalid clock time %q", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(mm)*time.Minute, nil
}

func (s *Source) schedule(m *importer.Model, sc schedule, layers map[string]*importer.Layer, now time.Time) (*importer.Schedule, error) {
	what := fmt.Sprintf("schedule %q", sc.Name)
	loc, err := zone(what, sc.TimeZone)
	if err != nil {
		return nil, err
	}
	out := &importer.Schedule{Key: sc.ID, Name: sc.Name, Location: loc, Union: true}
	for _, tg := range sc.Targets {
		var base importer.Layer
		switch tg.Target.Type {
		case "rotation":
			l := layers[tg.Target.ID]
			if l == nil {
				return nil, fmt.Errorf("GoAlert %s: rotation %s not found", what, tg.Target.ID)
			}
			base = *l
		case "user":
			base = importer.Layer{Name: tg.Target.Name, Group: "user:" + tg.Target.ID, Members: []string{tg.Target.ID},
				Origin: time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc), Turn: 7 * 24 * time.Hour, Kind: "user rule"}
		default:
			m.Findings = append(m.Findings, importer.Finding{Where: what, Source: "has rules for a " + tg.Target.Type, Nearest: "not imported", Difference: "nobody from it is on call in Klaxon"})
			continue
		}
		for _, r := range tg.Rules {
			l := base
			l.Kind = "rule for " + tg.Target.Type
			start, err1 := clock(r.Start)
			end, err2 := clock(r.End)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("GoAlert %s: %v", what, err)
			}
			if len(r.WeekdayFilter) != 7 {
				return nil, fmt.Errorf("GoAlert %s: weekdayFilter has %d days, want 7", what, len(r.WeekdayFilter))
			}
			length := end - start
			if length <= 0 {
				length += 24 * time.Hour // ends the next day; start == end is the whole day
			}
			all := !slices.Contains(r.WeekdayFilter, false)
			if !(all && length == 24*time.Hour) {
				for d, on := range r.WeekdayFilter {
					if on {
						l.Restrictions = append(l.Restrictions, importer.Window{Weekday: time.Weekday(d), Start: start, Length: length})
					}
				}
				if len(l.Restrictions) == 0 {
					continue // a rule on no day is never active
				}
			}
			out.Layers = append(out.Layers, &l)
		}
	}
	for i, tmp := range sc.TemporarySchedules {
		tw := fmt.Sprintf("%s temporary schedule %d", what, i+1)
		st, err1 := parseTime(tw, tmp.Start)
		en, err2 := parseTime(tw, tmp.End)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		t := importer.Temporary{Start: st, End: en}
		for _, sh := range tmp.Shifts {
			ss, err := shiftSpan(tw, sh, en)
			if err != nil {
				return nil, err
			}
			t.Shifts = append(t.Shifts, ss)
		}
		out.Temporary = append(out.Temporary, t)
	}
	return out, nil
}

func shiftSpan(what string, sh shift, end time.Time) (importer.Span, error) {
	st, err := parseTime(what, sh.Start)
	if err != nil {
		return importer.Span{}, err
	}
	en := end
	if sh.End != nil && *sh.End != "" {
		if en, err = parseTime(what, *sh.End); err != nil {
			return importer.Span{}, err
		}
	}
	return importer.Span{Person: sh.UserID, Start: st, End: en}, nil
}

func (s *Source) policies(ctx context.Context, m *importer.Model, layers map[string]*importer.Layer, rotName map[string]string) error {
	pols, err := pages[policy](ctx, s, "escalation policies", "policies", qPolicies, "escalationPolicies", nil)
	if err != nil {
		return err
	}
	asSchedule := map[string]bool{}
	for _, ep := range pols {
		p := &importer.Policy{Key: ep.ID, Name: ep.Name, Repeat: ep.Repeat}
		steps := slices.Clone(ep.Steps)
		slices.SortStableFunc(steps, func(a, b struct {
			StepNumber   int      `json:"stepNumber"`
			DelayMinutes int      `json:"delayMinutes"`
			Targets      []target `json:"targets"`
		}) int {
			return a.StepNumber - b.StepNumber
		})
		for i, st := range steps {
			step := importer.Step{Wait: time.Duration(st.DelayMinutes) * time.Minute}
			for _, t := range st.Targets {
				switch t.Type {
				case "schedule":
					step.Schedules = append(step.Schedules, t.ID)
				case "user":
					step.People = append(step.People, t.ID)
				case "rotation":
					// A rotation paged directly becomes a schedule of its own.
					key := "rotation:" + t.ID
					if l := layers[t.ID]; l != nil && !asSchedule[key] {
						asSchedule[key] = true
						lc := *l
						m.Schedules = append(m.Schedules, &importer.Schedule{Key: key, Name: rotName[t.ID], Location: l.Location, Layers: []*importer.Layer{&lc}})
					}
					step.Schedules = append(step.Schedules, key)
				default:
					m.Findings = append(m.Findings, importer.Finding{Where: fmt.Sprintf("escalation policy %q, step %d", ep.Name, i+1),
						Source: fmt.Sprintf("notifies %s %q", t.Type, t.Name), Nearest: "the step leaves it out",
						Difference: "that target (a chat channel or webhook) is not notified: Klaxon's Matrix channel is the nearest"})
				}
			}
			p.Steps = append(p.Steps, step)
		}
		m.Policies = append(m.Policies, p)
	}
	return nil
}

// OnCall implements importer.Source with each schedule's shifts. Rotations
// that policies page directly have no such answer and are not compared.
func (s *Source) OnCall(ctx context.Context, schedules []*importer.Schedule, from, to time.Time) (map[string][]importer.Span, error) {
	out := map[string][]importer.Span{}
	for _, sc := range schedules {
		if !s.known[sc.Key] {
			continue
		}
		what := fmt.Sprintf("schedule %q shifts", sc.Name)
		var data struct {
			Schedule *struct {
				Shifts []shift `json:"shifts"`
			} `json:"schedule"`
		}
		err := s.query(ctx, what, "shifts", qShifts, map[string]any{"id": sc.Key, "start": from.UTC().Format(time.RFC3339), "end": to.UTC().Format(time.RFC3339)}, &data)
		if err != nil {
			return nil, err
		}
		if data.Schedule == nil {
			return nil, fmt.Errorf("GoAlert schedule %s: not found", sc.Key)
		}
		out[sc.Key] = []importer.Span{}
		for _, sh := range data.Schedule.Shifts {
			sp, err := shiftSpan(what, sh, to)
			if err != nil {
				return nil, err
			}
			out[sc.Key] = append(out[sc.Key], sp)
		}
	}
	return out, nil
}
