// Package pagerduty reads a PagerDuty account through its REST API v2
// (github.com/PagerDuty/go-pagerduty) into the importer's Model: users with
// their phone and SMS contact methods, schedules with their layers,
// restrictions and overrides, escalation policies, and services as routes.
// It answers "who is on call" from GET /oncalls, and from a schedule's
// rendered final schedule for schedules no escalation policy uses.
package pagerduty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// DefaultURL is PagerDuty's REST API.
const DefaultURL = "https://api.pagerduty.com"

// TokenEnv is the environment variable holding the REST API token (or
// TokenEnv_FILE, a file holding it).
const TokenEnv = "PAGERDUTY_TOKEN"

// Source reads one PagerDuty account.
type Source struct {
	client *pd.Client
	base   string // the REST API's URL, without a trailing /
	// Location is the rota's zone; nil picks the zone most schedules use.
	Location *time.Location
	// usedBy maps a schedule id to whether an escalation policy names it.
	usedBy map[string]bool
}

// New returns a Source for the REST API at baseURL (DefaultURL when empty)
// with token, sending requests through rt (which should retry 429s).
func New(baseURL, token string, rt http.RoundTripper) *Source {
	if baseURL == "" {
		baseURL = DefaultURL
	}
	baseURL = strings.TrimRight(baseURL, "/")
	c := pd.NewClient(token, pd.WithAPIEndpoint(baseURL))
	c.HTTPClient = &http.Client{Transport: rt, Timeout: 60 * time.Second}
	return &Source{client: c, base: baseURL, usedBy: map[string]bool{}}
}

// Name implements importer.Source.
func (s *Source) Name() string { return "PagerDuty" }

const pageSize = 100

// wrap turns a client error into one that says what was being read, with
// PagerDuty's status and message but never a credential.
func wrap(what string, err error) error {
	var ae pd.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("PagerDuty %s: 401 Unauthorized: the token in %s is not valid (it needs read access)", what, TokenEnv)
		case ae.StatusCode == http.StatusForbidden:
			return fmt.Errorf("PagerDuty %s: 403 Forbidden: the token in %s may not read this (use a read-only API key or a user token with read access)", what, TokenEnv)
		case ae.NotFound():
			return fmt.Errorf("PagerDuty %s: not found", what)
		case ae.RateLimited():
			return fmt.Errorf("PagerDuty %s: still rate limited (429) after retries: try again later", what)
		}
		return fmt.Errorf("PagerDuty %s: %v", what, ae)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("PagerDuty %s: %v", what, ue.Err)
	}
	if strings.Contains(err.Error(), "JSON") || strings.Contains(err.Error(), "json") || strings.Contains(err.Error(), "invalid character") {
		return fmt.Errorf("PagerDuty %s: the answer is not the JSON PagerDuty sends: %v", what, err)
	}
	return fmt.Errorf("PagerDuty %s: %v", what, err)
}

// Read implements importer.Source.
func (s *Source) Read(ctx context.Context, now time.Time, weeks int) (*importer.Model, error) {
	m := &importer.Model{Source: s.Name()}
	if err := s.users(ctx, m); err != nil {
		return nil, err
	}
	until := now.AddDate(0, 0, 7*weeks)
	if err := s.schedules(ctx, m, now, until); err != nil {
		return nil, err
	}
	if err := s.policies(ctx, m); err != nil {
		return nil, err
	}
	if err := s.services(ctx, m); err != nil {
		return nil, err
	}
	m.Location = s.Location
	if m.Location == nil {
		m.Location = importer.CommonZone(m.Schedules)
	}
	m.Findings = append(m.Findings, importer.Finding{
		Where:      "users' notification rules",
		Source:     "each user chooses how and after what delay they are notified, by urgency",
		Nearest:    "each policy step pages everyone it names on the same channels (--via) at once",
		Difference: "per-user delays, push and email notifications are not kept",
	})
	return m, nil
}

func (s *Source) users(ctx context.Context, m *importer.Model) error {
	for offset := uint(0); ; {
		resp, err := s.client.ListUsersWithContext(ctx, pd.ListUsersOptions{Limit: pageSize, Offset: offset, Includes: []string{"contact_methods"}})
		if err != nil {
			return wrap("users", err)
		}
		for _, u := range resp.Users {
			p := &importer.Person{Key: u.ID, Name: u.Name, Email: u.Email, PagerDutyUser: u.ID, TimeZone: u.Timezone}
			var sms string
			for _, c := range u.ContactMethods {
				num := e164(c)
				switch c.Type {
				case "phone_contact_method":
					if p.Phone == "" {
						p.Phone = num
					}
				case "sms_contact_method":
					if sms == "" {
						sms = num
					}
				}
			}
			if p.Phone == "" {
				p.Phone = sms
			} else if sms != "" && sms != p.Phone {
				m.Findings = append(m.Findings, importer.Finding{
					Where: fmt.Sprintf("user %q", u.Name), Source: "is called on one number and texted on another",
					Nearest: "phone: " + p.Phone + " (the call number) for calls and SMS", Difference: "texts go to the call number",
				})
			}
			m.People = append(m.People, p)
		}
		if !resp.More || len(resp.Users) == 0 {
			return nil
		}
		offset += uint(len(resp.Users))
	}
}

// e164 joins a contact method's country code and national number.
func e164(c pd.ContactMethod) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, c.Address)
	if digits == "" {
		return ""
	}
	if c.CountryCode == 0 {
		return "+" + digits
	}
	return "+" + strconv.Itoa(c.CountryCode) + digits
}

func parseTime(what, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("PagerDuty %s: invalid time %q", what, s)
	}
	return t, nil
}

func (s *Source) schedules(ctx context.Context, m *importer.Model, now, until time.Time) error {
	var list []pd.Schedule
	for offset := uint(0); ; {
		resp, err := s.client.ListSchedulesWithContext(ctx, pd.ListSchedulesOptions{Limit: pageSize, Offset: offset})
		if err != nil {
			return wrap("schedules", err)
		}
		list = append(list, resp.Schedules...)
		if !resp.More || len(resp.Schedules) == 0 {
			break
		}
		offset += uint(len(resp.Schedules))
	}
	for _, item := range list {
		what := fmt.Sprintf("schedule %s", item.ID)
		sc, err := s.client.GetScheduleWithContext(ctx, item.ID, pd.GetScheduleOptions{
			Since: now.UTC().Format(time.RFC3339), Until: until.UTC().Format(time.RFC3339),
		})
		if err != nil {
			return wrap(what, err)
		}
		loc, err := time.LoadLocation(sc.TimeZone)
		if err != nil || sc.TimeZone == "" || sc.TimeZone == "Local" {
			return fmt.Errorf("PagerDuty schedule %q: unknown time zone %q", sc.Name, sc.TimeZone)
		}
		out := &importer.Schedule{Key: sc.ID, Name: sc.Name, Location: loc}
		if len(sc.EscalationPolicies) > 0 {
			s.usedBy[sc.ID] = true
		}
		// A GET lists layers highest priority first; the model wants them
		// lowest first.
		for i := len(sc.ScheduleLayers) - 1; i >= 0; i-- {
			l := sc.ScheduleLayers[i]
			lw := fmt.Sprintf("%s layer %q", what, l.Name)
			layer := &importer.Layer{Name: l.Name, Group: l.ID, Turn: time.Duration(l.RotationTurnLengthSeconds) * time.Second}
			var errs []error
			var e error
			layer.Origin, e = parseTime(lw, l.RotationVirtualStart)
			errs = append(errs, e)
			layer.From, e = parseTime(lw, l.Start)
			errs = append(errs, e)
			layer.Until, e = parseTime(lw, l.End)
			errs = append(errs, e)
			if err := errors.Join(errs...); err != nil {
				return err
			}
			if !layer.Until.IsZero() && !layer.Until.After(now) {
				continue // ended: nothing to import
			}
			for _, u := range l.Users {
				layer.Members = append(layer.Members, u.User.ID)
			}
			for _, r := range l.Restrictions {
				w, err := restriction(r)
				if err != nil {
					return fmt.Errorf("PagerDuty %s: %v", lw, err)
				}
				layer.Restrictions = append(layer.Restrictions, w)
			}
			out.Layers = append(out.Layers, layer)
		}
		ovs, err := s.client.ListOverridesWithContext(ctx, sc.ID, pd.ListOverridesOptions{
			Since: now.UTC().Format(time.RFC3339), Until: until.UTC().Format(time.RFC3339),
		})
		if err != nil {
			return wrap(what+" overrides", err)
		}
		fixed := []importer.Span{}
		for _, o := range ovs.Overrides {
			st, err1 := parseTime(what+" override", o.Start)
			en, err2 := parseTime(what+" override", o.End)
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
			fixed = append(fixed, importer.Span{Person: o.User.ID, Start: st, End: en})
		}
		slices.SortFunc(fixed, func(a, b importer.Span) int { return a.Start.Compare(b.Start) })
		out.Layers = append(out.Layers, &importer.Layer{Kind: "override", Fixed: fixed})
		m.Schedules = append(m.Schedules, out)
	}
	return nil
}

// restriction reads a layer restriction.
func restriction(r pd.Restriction) (importer.Window, error) {
	var hh, mm, ss int
	if _, err := fmt.Sscanf(r.StartTimeOfDay, "%d:%d:%d", &hh, &mm, &ss); err != nil {
		if _, err := fmt.Sscanf(r.StartTimeOfDay, "%d:%d", &hh, &mm); err != nil {
			return importer.Window{}, fmt.Errorf("restriction start_time_of_day %q: want HH:MM:SS", r.StartTimeOfDay)
		}
	}
	w := importer.Window{
		Start:  time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute + time.Duration(ss)*time.Second,
		Length: time.Duration(r.DurationSeconds) * time.Second,
	}
	switch r.Type {
	case "daily_restriction":
		w.Daily = true
	case "weekly_restriction":
		if r.StartDayOfWeek < 1 || r.StartDayOfWeek > 7 {
			return w, fmt.Errorf("restriction start_day_of_week %d: want 1 (Monday) to 7 (Sunday)", r.StartDayOfWeek)
		}
		w.Weekday = time.Weekday(r.StartDayOfWeek % 7)
	default:
		return w, fmt.Errorf("unknown restriction type %q", r.Type)
	}
	return w, nil
}

// policy is an escalation policy as the REST API sends it, with the rule
// fields go-pagerduty leaves out.
type policy struct {
	ID                         string `json:"id"`
	Name                       string `json:"name"`
	NumLoops                   int    `json:"num_loops"`
	OnCallHandoffNotifications string `json:"on_call_handoff_notifications"`
	Rules                      []struct {
		Delay    int            `json:"escalation_delay_in_minutes"`
		Targets  []pd.APIObject `json:"targets"`
		Strategy *struct {
			Type string `json:"type"`
		} `json:"escalation_rule_assignment_strategy"`
	} `json:"escalation_rules"`
}

// getJSON reads a REST list page through the client (its auth and
// transport), for fields go-pagerduty does not decode.
func (s *Source) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.pagerduty+json;version=2")
	resp, err := s.client.Do(req, true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		ae := pd.APIError{StatusCode: resp.StatusCode}
		_ = json.Unmarshal(body, &ae)
		return ae
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	return nil
}

func (s *Source) policies(ctx context.Context, m *importer.Model) error {
	for offset := 0; ; {
		var page struct {
			Policies []policy `json:"escalation_policies"`
			More     bool     `json:"more"`
		}
		q := url.Values{"limit": {strconv.Itoa(pageSize)}, "offset": {strconv.Itoa(offset)}}
		if err := s.getJSON(ctx, "/escalation_policies", q, &page); err != nil {
			return wrap("escalation policies", err)
		}
		for _, ep := range page.Policies {
			p := &importer.Policy{Key: ep.ID, Name: ep.Name, Repeat: ep.NumLoops}
			for i, r := range ep.Rules {
				st := importer.Step{Wait: time.Duration(r.Delay) * time.Minute}
				for _, t := range r.Targets {
					switch t.Type {
					case "schedule_reference", "schedule":
						st.Schedules = append(st.Schedules, t.ID)
					case "user_reference", "user":
						st.People = append(st.People, t.ID)
					default:
						m.Findings = append(m.Findings, importer.Finding{
							Where: fmt.Sprintf("escalation policy %q, rule %d", ep.Name, i+1), Source: "notifies a " + t.Type,
							Nearest: "the step leaves it out", Difference: "that target is not paged",
						})
					}
				}
				if r.Strategy != nil && r.Strategy.Type == "round_robin" {
					m.Findings = append(m.Findings, importer.Finding{
						Where:   fmt.Sprintf("escalation policy %q, rule %d", ep.Name, i+1),
						Source:  "assigns incidents round robin, one target at a time",
						Nearest: "the step pages every target at once", Difference: "everyone in the rule is paged for every incident",
					})
				}
				p.Steps = append(p.Steps, st)
			}
			if ep.OnCallHandoffNotifications == "always" {
				m.Findings = append(m.Findings, importer.Finding{
					Where: fmt.Sprintf("escalation policy %q", ep.Name), Source: "sends handoff notifications always",
					Nearest: "each rotation reminds the incoming person 1h before a shift (reminder)", Difference: "the reminder comes before the shift, not at it",
				})
			}
			m.Policies = append(m.Policies, p)
		}
		if !page.More || len(page.Policies) == 0 {
			return nil
		}
		offset += len(page.Policies)
	}
}

func (s *Source) services(ctx context.Context, m *importer.Model) error {
	for offset := uint(0); ; {
		resp, err := s.client.ListServicesWithContext(ctx, pd.ListServiceOptions{Limit: pageSize, Offset: offset})
		if err != nil {
			return wrap("services", err)
		}
		for _, svc := range resp.Services {
			where := fmt.Sprintf("service %q", svc.Name)
			if svc.Status == "disabled" {
				m.Findings = append(m.Findings, importer.Finding{Where: where, Source: "is disabled", Nearest: "no route", Difference: "its alerts take the default route"})
				continue
			}
			if svc.EscalationPolicy.ID == "" {
				continue
			}
			m.Routes = append(m.Routes, &importer.Route{Value: svc.Name, Policy: svc.EscalationPolicy.ID, Name: where})
			if svc.SupportHours != nil || (svc.IncidentUrgencyRule != nil && svc.IncidentUrgencyRule.Type != "" && svc.IncidentUrgencyRule.Type != "constant") {
				m.Findings = append(m.Findings, importer.Finding{
					Where: where, Source: "sets incident urgency by support hours or by the alert",
					Nearest:    "Klaxon routes by labels: add a severity matcher to route low urgency to a quieter policy",
					Difference: "every alert of the service follows its policy at once",
				})
			}
		}
		if !resp.More || len(resp.Services) == 0 {
			break
		}
		offset += uint(len(resp.Services))
	}
	m.Findings = append(m.Findings, importer.Finding{
		Where:      "event rules and orchestrations",
		Source:     "may route, suppress or change the urgency of events before a service sees them",
		Nearest:    "routes match one label (--route-label) naming the service",
		Difference: "conditions PagerDuty evaluates itself are not read: put them into Alertmanager or rota routes by hand",
	})
	return nil
}

// OnCall implements importer.Source: /oncalls for schedules an escalation
// policy uses, the rendered final schedule for the others.
func (s *Source) OnCall(ctx context.Context, schedules []*importer.Schedule, from, to time.Time) (map[string][]importer.Span, error) {
	out := map[string][]importer.Span{}
	var viaOnCalls []string
	for _, sc := range schedules {
		out[sc.Key] = nil
		if s.usedBy[sc.Key] {
			viaOnCalls = append(viaOnCalls, sc.Key)
			continue
		}
		got, err := s.client.GetScheduleWithContext(ctx, sc.Key, pd.GetScheduleOptions{Since: from.UTC().Format(time.RFC3339), Until: to.UTC().Format(time.RFC3339)})
		if err != nil {
			return nil, wrap("schedule "+sc.Key+" final schedule", err)
		}
		for _, e := range got.FinalSchedule.RenderedScheduleEntries {
			st, err1 := parseTime("final schedule", e.Start)
			en, err2 := parseTime("final schedule", e.End)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			out[sc.Key] = append(out[sc.Key], importer.Span{Person: e.User.ID, Start: st, End: en})
		}
	}
	if len(viaOnCalls) == 0 {
		return out, nil
	}
	seen := map[string]bool{}
	for offset := uint(0); ; {
		resp, err := s.client.ListOnCallsWithContext(ctx, pd.ListOnCallOptions{
			Limit: pageSize, Offset: offset, ScheduleIDs: viaOnCalls,
			Since: from.UTC().Format(time.RFC3339), Until: to.UTC().Format(time.RFC3339),
		})
		if err != nil {
			return nil, wrap("on-calls", err)
		}
		for _, oc := range resp.OnCalls {
			if oc.Schedule.ID == "" || oc.Start == "" {
				continue
			}
			key := oc.Schedule.ID + "|" + oc.User.ID + "|" + oc.Start + "|" + oc.End
			if seen[key] {
				continue // the same shift, seen through another escalation level
			}
			seen[key] = true
			st, err1 := parseTime("on-call", oc.Start)
			en, err2 := parseTime("on-call", oc.End)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			out[oc.Schedule.ID] = append(out[oc.Schedule.ID], importer.Span{Person: oc.User.ID, Start: st, End: en})
		}
		if !resp.More || len(resp.OnCalls) == 0 {
			return out, nil
		}
		offset += uint(len(resp.OnCalls))
	}
}
