// Package oncall reads a Grafana OnCall instance through its HTTP API v1
// (header "Authorization: <token>", lists paginated with next) into the
// importer's Model: users, schedules (web and calendar types from their
// on-call shifts; iCal ones from their final shifts), escalation chains
// with their escalation policies, and integrations with their default
// routes. It answers "who is on call" from /schedules/{id}/final_shifts.
package oncall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// TokenEnv holds the OnCall API token (or TokenEnv_FILE, a file holding it).
const TokenEnv = "GRAFANA_ONCALL_TOKEN"

// Source reads one Grafana OnCall.
type Source struct {
	base, token string
	http        *http.Client
	// Location is the rota's zone; nil picks the zone most schedules use.
	Location *time.Location
}

// New returns a Source for the OnCall API at baseURL (the "OnCall API URL"
// from its settings, e.g. https://oncall-prod-eu-west-0.grafana.net/oncall)
// with token, sending requests through rt.
func New(baseURL, token string, rt http.RoundTripper) *Source {
	return &Source{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Transport: rt, Timeout: 60 * time.Second}}
}

// Name implements importer.Source.
func (s *Source) Name() string { return "Grafana OnCall" }

const maxBody = 32 << 20

// get reads one page.
func (s *Source) get(ctx context.Context, what, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("Grafana OnCall %s: %v", what, err)
	}
	req.Header.Set("Authorization", s.token)
	req.Header.Set("Accept", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("Grafana OnCall %s: %v", what, ue.Err)
		}
		return fmt.Errorf("Grafana OnCall %s: %v", what, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("Grafana OnCall %s: %v", what, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("Grafana OnCall %s: %d: the token in %s is not valid or may not read this", what, resp.StatusCode, TokenEnv)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("Grafana OnCall %s: not found", what)
	case resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("Grafana OnCall %s: still rate limited (429) after retries: try again later", what)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("Grafana OnCall %s: HTTP %d", what, resp.StatusCode)
	case len(data) > maxBody:
		return fmt.Errorf("Grafana OnCall %s: answer larger than %d bytes", what, maxBody)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("Grafana OnCall %s: the answer is not the JSON OnCall sends: %v", what, err)
	}
	return nil
}

// list reads every page of a list endpoint, following next.
func list[T any](ctx context.Context, s *Source, what, path string, q url.Values) ([]T, error) {
	u := s.base + "/api/v1/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var all []T
	for range 10000 {
		var page struct {
			Next    *string `json:"next"`
			Results []T     `json:"results"`
		}
		if err := s.get(ctx, what, u, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Results...)
		if page.Next == nil || *page.Next == "" {
			return all, nil
		}
		next, err := url.Parse(*page.Next)
		if err != nil {
			return nil, fmt.Errorf("Grafana OnCall %s: invalid next page %q", what, *page.Next)
		}
		// Follow next on the configured host only: the token goes nowhere else.
		b, _ := url.Parse(s.base)
		next.Scheme, next.Host = b.Scheme, b.Host
		u = next.String()
	}
	return nil, fmt.Errorf("Grafana OnCall %s: too many pages", what)
}

type user struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Username string `json:"username"`
	Name     string `json:"name"`
	Timezone string `json:"timezone"`
}

type schedule struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	TimeZone string   `json:"time_zone"`
	Shifts   []string `json:"shifts"`
	ICal     *string  `json:"ical_url_primary"`
	ICalOver *string  `json:"ical_url_overrides"`
}

type shift struct {
	ID                 string     `json:"id"`
	Name               string     `json:"name"`
	Type               string     `json:"type"`
	TimeZone           *string    `json:"time_zone"`
	Level              int        `json:"level"`
	Start              string     `json:"start"`
	Duration           int        `json:"duration"`
	Frequency          *string    `json:"frequency"`
	Interval           *int       `json:"interval"`
	ByDay              []string   `json:"by_day"`
	Users              []string   `json:"users"`
	RollingUsers       [][]string `json:"rolling_users"`
	StartRotationIndex *int       `json:"start_rotation_from_user_index"`
	Until              *string    `json:"until"`
}

type chain struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type escalationPolicy struct {
	ID                 string   `json:"id"`
	Chain              string   `json:"escalation_chain_id"`
	Position           int      `json:"position"`
	Type               string   `json:"type"`
	Duration           *int     `json:"duration"`
	Persons            []string `json:"persons_to_notify"`
	PersonsNextEach    []string `json:"persons_to_notify_next_each_time"`
	Schedule           *string  `json:"notify_on_call_from_schedule"`
	NotifyIfTimeFrom   *string  `json:"notify_if_time_from"`
	NotifyIfTimeTo     *string  `json:"notify_if_time_to"`
	GroupToNotify      *string  `json:"group_to_notify"`
	ActionToTrigger    *string  `json:"action_to_trigger"`
	NumAlertsInWindow  *int     `json:"num_alerts_in_window"`
	NumMinutesInWindow *int     `json:"num_minutes_in_window"`
}

type integration struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	DefaultRoute struct {
		ID    string  `json:"id"`
		Chain *string `json:"escalation_chain_id"`
	} `json:"default_route"`
}

type route struct {
	ID          string  `json:"id"`
	Integration string  `json:"integration_id"`
	Chain       *string `json:"escalation_chain_id"`
	Regex       string  `json:"routing_regex"`
	IsLast      bool    `json:"is_the_last_route"`
}

type finalShift struct {
	UserPK string `json:"user_pk"`
	Email  string `json:"user_email"`
	Start  string `json:"shift_start"`
	End    string `json:"shift_end"`
}

func zone(what, name string) (*time.Location, error) {
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" || name == "Local" || strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("Grafana OnCall %s: unknown time zone %q", what, name)
	}
	return loc, nil
}

func (s *Source) finding(m *importer.Model, where, src, nearest, diff string) {
	m.Findings = append(m.Findings, importer.Finding{Where: where, Source: src, Nearest: nearest, Difference: diff})
}

// Read implements importer.Source.
func (s *Source) Read(ctx context.Context, now time.Time, weeks int) (*importer.Model, error) {
	m := &importer.Model{Source: s.Name()}
	users, err := list[user](ctx, s, "users", "users/", nil)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		name := u.Name
		if name == "" {
			name = u.Username
		}
		m.People = append(m.People, &importer.Person{Key: u.ID, Name: name, Email: u.Email, TimeZone: u.Timezone})
	}
	s.finding(m, "users", "verify phone numbers inside OnCall; API v1 does not show them",
		"people have name, email and time zone only", "add phone (and matrix) to each person before the rota can call them")
	scheds, err := list[schedule](ctx, s, "schedules", "schedules/", nil)
	if err != nil {
		return nil, err
	}
	shifts, err := list[shift](ctx, s, "on-call shifts", "on_call_shifts/", nil)
	if err != nil {
		return nil, err
	}
	byID := map[string]shift{}
	for _, sh := range shifts {
		byID[sh.ID] = sh
	}
	until := now.AddDate(0, 0, 7*weeks)
	for _, sc := range scheds {
		what := fmt.Sprintf("schedule %q", sc.Name)
		loc, err := zone(what, sc.TimeZone)
		if err != nil {
			return nil, err
		}
		out := &importer.Schedule{Key: sc.ID, Name: sc.Name, Location: loc}
		switch sc.Type {
		case "ical":
			// The feed is not parsed: its final shifts for the written weeks
			// stand for it.
			spans, err := s.final(ctx, sc.ID, sc.Name, now, until)
			if err != nil {
				return nil, err
			}
			out.Layers = append(out.Layers, &importer.Layer{Name: "iCal feed", Kind: "feed", Fixed: spans})
			s.finding(m, what, "is an iCal schedule: who is on call comes from a calendar feed",
				fmt.Sprintf("its final shifts until %s are written as overrides of a made-up weekly rotation", until.Format("2006-01-02")),
				"after that the rotation is made up: move the feed's rotation into rota.yaml by hand")
		case "web", "calendar":
			var layers []*importer.Layer
			for _, id := range sc.Shifts {
				sh, ok := byID[id]
				if !ok {
					return nil, fmt.Errorf("Grafana OnCall %s: on-call shift %s not found", what, id)
				}
				l, err := s.layer(m, sc, sh, loc)
				if err != nil {
					return nil, err
				}
				if l != nil {
					layers = append(layers, l)
				}
			}
			// Overrides win; otherwise the higher level wins.
			slices.SortStableFunc(layers, func(a, b *importer.Layer) int { return rank(a) - rank(b) })
			out.Layers = layers
			if sc.Type == "calendar" && sc.ICalOver != nil && *sc.ICalOver != "" {
				s.finding(m, what, "takes overrides from an iCal feed", "the feed is not read", "those overrides do not happen in Klaxon")
			}
		default:
			s.finding(m, what, "is of type "+sc.Type, "not imported", "nobody from it is on call in Klaxon")
			continue
		}
		m.Schedules = append(m.Schedules, out)
	}
	if err := s.chains(ctx, m); err != nil {
		return nil, err
	}
	if err := s.integrations(ctx, m); err != nil {
		return nil, err
	}
	m.Location = s.Location
	if m.Location == nil {
		m.Location = importer.CommonZone(m.Schedules)
	}
	return m, nil
}

// rank orders layers: by level, overrides above everything.
func rank(l *importer.Layer) int {
	var lvl int
	fmt.Sscanf(l.Group, "level %d", &lvl)
	if l.Kind == "override" {
		return 1 << 20
	}
	return lvl
}

var weekdays = map[string]time.Weekday{"SU": time.Sunday, "MO": time.Monday, "TU": time.Tuesday, "WE": time.Wednesday, "TH": time.Thursday, "FR": time.Friday, "SA": time.Saturday}

// layer reads one on-call shift.
func (s *Source) layer(m *importer.Model, sc schedule, sh shift, schedLoc *time.Location) (*importer.Layer, error) {
	what := fmt.Sprintf("schedule %q, shift %q", sc.Name, sh.Name)
	loc := schedLoc
	if sh.TimeZone != nil && *sh.TimeZone != "" {
		l, err := zone(what, *sh.TimeZone)
		if err != nil {
			return nil, err
		}
		loc = l
	}
	start, err := time.ParseInLocation("2006-01-02T15:04:05", sh.Start, loc)
	if err != nil {
		return nil, fmt.Errorf("Grafana OnCall %s: invalid start %q", what, sh.Start)
	}
	length := time.Duration(sh.Duration) * time.Second
	if length <= 0 {
		return nil, fmt.Errorf("Grafana OnCall %s: duration %d", what, sh.Duration)
	}
	l := &importer.Layer{Name: sh.Name, Group: fmt.Sprintf("level %d", sh.Level), Kind: "rotation", From: start, Location: loc}
	if sh.Until != nil && *sh.Until != "" {
		u, err := time.ParseInLocation("2006-01-02T15:04:05", *sh.Until, loc)
		if err != nil {
			return nil, fmt.Errorf("Grafana OnCall %s: invalid until %q", what, *sh.Until)
		}
		l.Until = u
	}
	first := func(groups [][]string) []string {
		var out []string
		for _, g := range groups {
			if len(g) == 0 {
				continue
			}
			out = append(out, g[0])
			if len(g) > 1 {
				s.finding(m, what, fmt.Sprintf("puts %d users on call together in one turn", len(g)),
					"the rotation has the group's first user", "the others in the group are not paged")
			}
		}
		return out
	}
	switch sh.Type {
	case "single_event", "override":
		users := first([][]string{sh.Users})
		if len(users) == 0 {
			return nil, nil
		}
		l.Kind = "shift"
		if sh.Type == "override" {
			l.Kind = "override"
		}
		l.Fixed = []importer.Span{{Person: users[0], Start: start, End: start.Add(length)}}
		return l, nil
	case "recurrent_event":
		l.Members = first([][]string{sh.Users})
	case "rolling_users":
		l.Members = first(sh.RollingUsers)
		if sh.StartRotationIndex != nil && len(l.Members) > 0 {
			i := ((*sh.StartRotationIndex % len(l.Members)) + len(l.Members)) % len(l.Members)
			l.Members = append(l.Members[i:], l.Members[:i]...)
		}
	default:
		s.finding(m, what, "is of type "+sh.Type, "not imported", "nobody from it is on call in Klaxon")
		return nil, nil
	}
	if len(l.Members) == 0 {
		return nil, nil
	}
	freq, interval := "daily", 1
	if sh.Frequency != nil {
		freq = *sh.Frequency
	}
	if sh.Interval != nil && *sh.Interval > 0 {
		interval = *sh.Interval
	}
	l.Origin = start
	switch freq {
	case "hourly":
		l.Turn = time.Duration(interval) * time.Hour
	case "daily":
		l.Turn = time.Duration(interval) * 24 * time.Hour
	case "weekly":
		l.Turn = time.Duration(interval) * 7 * 24 * time.Hour
	case "monthly":
		l.Turn = time.Duration(interval) * 30 * 24 * time.Hour
		s.finding(m, what, "recurs monthly", "30-day turns", "turns drift from the calendar months; overrides follow OnCall within the written weeks")
	default:
		return nil, fmt.Errorf("Grafana OnCall %s: unknown frequency %q", what, freq)
	}
	// Each turn is on call for duration from the start's time of day, on
	// the by_day days (or the start's weekday for weekly turns).
	tod := time.Duration(start.Hour())*time.Hour + time.Duration(start.Minute())*time.Minute + time.Duration(start.Second())*time.Second
	days := sh.ByDay
	if len(days) == 0 && freq == "weekly" && length < l.Turn {
		days = []string{strings.ToUpper(start.Weekday().String()[:2])}
	}
	if length < l.Turn || len(days) > 0 {
		if len(days) == 0 {
			if freq == "hourly" {
				s.finding(m, what, "recurs hourly for part of each hour", "on call for the whole turn", "the rest of each hour differs")
				return l, nil
			}
			l.Restrictions = []importer.Window{{Daily: true, Start: tod, Length: length}}
		}
		for _, d := range days {
			wd, ok := weekdays[d]
			if !ok {
				return nil, fmt.Errorf("Grafana OnCall %s: unknown by_day %q", what, d)
			}
			l.Restrictions = append(l.Restrictions, importer.Window{Weekday: wd, Start: tod, Length: length})
		}
	}
	return l, nil
}

func (s *Source) chains(ctx context.Context, m *importer.Model) error {
	chains, err := list[chain](ctx, s, "escalation chains", "escalation_chains/", nil)
	if err != nil {
		return err
	}
	pols, err := list[escalationPolicy](ctx, s, "escalation policies", "escalation_policies/", nil)
	if err != nil {
		return err
	}
	slices.SortStableFunc(pols, func(a, b escalationPolicy) int { return a.Position - b.Position })
	for _, c := range chains {
		p := &importer.Policy{Key: c.ID, Name: c.Name}
		noWait := false
		for _, ep := range pols {
			if ep.Chain != c.ID {
				continue
			}
			where := fmt.Sprintf("escalation chain %q, step %d", c.Name, ep.Position+1)
			switch ep.Type {
			case "wait":
				if n := len(p.Steps); n > 0 && ep.Duration != nil {
					p.Steps[n-1].Wait += time.Duration(*ep.Duration) * time.Second
				}
			case "notify_persons", "notify_person_next_each_time":
				people := ep.Persons
				if ep.Type == "notify_person_next_each_time" {
					people = ep.PersonsNextEach
					s.finding(m, where, "notifies the next person of the list each time (round robin)",
						"the step pages everyone on the list", "everyone is paged for every alert group")
				}
				p.Steps = append(p.Steps, importer.Step{People: people})
			case "notify_on_call_from_schedule":
				if ep.Schedule != nil {
					p.Steps = append(p.Steps, importer.Step{Schedules: []string{*ep.Schedule}})
				}
			case "repeat_escalation":
				p.Repeat = 5
				s.finding(m, where, "repeats the chain (OnCall repeats it up to 5 times)", "repeat: 5", "none")
			case "notify_if_time_from_to":
				s.finding(m, where, fmt.Sprintf("continues only between %v and %v", deref(ep.NotifyIfTimeFrom), deref(ep.NotifyIfTimeTo)),
					"the steps after it always run", "escalation OnCall would stop outside those hours goes on")
			default:
				s.finding(m, where, "is a "+ep.Type+" step", "left out", "it does not happen in Klaxon")
			}
		}
		for i := range p.Steps {
			if p.Steps[i].Wait == 0 {
				p.Steps[i].Wait = time.Minute
				noWait = true
			}
		}
		if noWait {
			s.finding(m, fmt.Sprintf("escalation chain %q", c.Name), "runs notify steps one after another with no wait between them",
				"those steps wait 1m (a rota step waits more than zero)", "the next step comes a minute later")
		}
		m.Policies = append(m.Policies, p)
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return "?"
	}
	return *p
}

func (s *Source) integrations(ctx context.Context, m *importer.Model) error {
	ints, err := list[integration](ctx, s, "integrations", "integrations/", nil)
	if err != nil {
		return err
	}
	routes, err := list[route](ctx, s, "routes", "routes/", nil)
	if err != nil {
		return err
	}
	for _, in := range ints {
		where := fmt.Sprintf("integration %q", in.Name)
		if in.DefaultRoute.Chain != nil && *in.DefaultRoute.Chain != "" {
			m.Routes = append(m.Routes, &importer.Route{Value: in.Name, Policy: *in.DefaultRoute.Chain, Name: where})
		}
		for _, r := range routes {
			if r.Integration == in.ID && !r.IsLast && r.ID != in.DefaultRoute.ID {
				s.finding(m, where+", route "+r.ID, fmt.Sprintf("routes alert groups matching %q to another escalation chain", r.Regex),
					"only the integration's default route is written", "conditional routing OnCall evaluates itself is not kept: write it as label matchers")
			}
		}
	}
	return nil
}

// final reads a schedule's final shifts between from and to.
func (s *Source) final(ctx context.Context, id, name string, from, to time.Time) ([]importer.Span, error) {
	q := url.Values{"start_date": {from.UTC().Format("2006-01-02")}, "end_date": {to.UTC().AddDate(0, 0, 1).Format("2006-01-02")}}
	got, err := list[finalShift](ctx, s, fmt.Sprintf("schedule %q final shifts", name), "schedules/"+url.PathEscape(id)+"/final_shifts", q)
	if err != nil {
		return nil, err
	}
	spans := []importer.Span{}
	for _, f := range got {
		st, err1 := time.Parse(time.RFC3339, f.Start)
		en, err2 := time.Parse(time.RFC3339, f.End)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("Grafana OnCall schedule %q final shifts: invalid time %q or %q", name, f.Start, f.End)
		}
		spans = append(spans, importer.Span{Person: f.UserPK, Start: st, End: en})
	}
	return spans, nil
}

// OnCall implements importer.Source with each schedule's final shifts.
func (s *Source) OnCall(ctx context.Context, schedules []*importer.Schedule, from, to time.Time) (map[string][]importer.Span, error) {
	out := map[string][]importer.Span{}
	for _, sc := range schedules {
		spans, err := s.final(ctx, sc.Key, sc.Name, from, to)
		if err != nil {
			return nil, err
		}
		out[sc.Key] = spans
	}
	return out, nil
}
