// Package opsgenie reads an Opsgenie account through its official Go SDK
// (github.com/opsgenie/opsgenie-go-sdk-v2) into the importer's Model: users
// with their voice and SMS contacts, schedules with their rotations, time
// restrictions and overrides, escalations, teams' routing rules as routes,
// and heartbeats (reported against Klaxon's Watchdog). It answers "who is on
// call" with the schedule's on-calls at a date.
package opsgenie

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/opsgenie/opsgenie-go-sdk-v2/client"
	"github.com/opsgenie/opsgenie-go-sdk-v2/contact"
	"github.com/opsgenie/opsgenie-go-sdk-v2/escalation"
	"github.com/opsgenie/opsgenie-go-sdk-v2/heartbeat"
	"github.com/opsgenie/opsgenie-go-sdk-v2/og"
	"github.com/opsgenie/opsgenie-go-sdk-v2/schedule"
	"github.com/opsgenie/opsgenie-go-sdk-v2/team"
	"github.com/opsgenie/opsgenie-go-sdk-v2/user"
	"github.com/sirupsen/logrus"

	"github.com/klaxon-oncall/klaxon/internal/importer"
)

// KeyEnv holds the API key (or KeyEnv_FILE, a file holding it).
const KeyEnv = "OPSGENIE_API_KEY"

// DefaultURL is Opsgenie's API host (api.eu.opsgenie.com for EU accounts).
const DefaultURL = "api.opsgenie.com"

// Source reads one Opsgenie account.
type Source struct {
	cfg *client.Config
	// Location is the rota's zone; nil picks the zone most schedules use.
	Location *time.Location
	email    map[string]string // username → user id
}

// New returns a Source for the API at apiURL (a host such as
// api.opsgenie.com; a URL's scheme and path are dropped) with key, sending
// requests through rt. The SDK speaks https to every host whose name
// contains "api" and plain http to others, so other hosts are refused
// unless they are loopback addresses (tests).
func New(apiURL, key string, rt http.RoundTripper) (*Source, error) {
	if apiURL == "" {
		apiURL = DefaultURL
	}
	host := apiURL
	if u, err := url.Parse(apiURL); err == nil && u.Host != "" {
		host = u.Host
	}
	if !strings.Contains(host, "api") {
		h, _, err := net.SplitHostPort(host)
		if err != nil {
			h = host
		}
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("Opsgenie --url %q: the SDK would speak plain http to a host whose name has no \"api\" in it; use api.opsgenie.com or api.eu.opsgenie.com", apiURL)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard) // the SDK logs every request at info level
	cfg := &client.Config{
		ApiKey:         key,
		OpsGenieAPIURL: client.ApiUrl(host),
		HttpClient:     &http.Client{Transport: rt, Timeout: 60 * time.Second},
		// Retries (429 with Retry-After) are rt's; the SDK's own retry
		// ignores Retry-After and sleeps for real.
		RetryPolicy: func(ctx context.Context, _ *http.Response, _ error) (bool, error) { return false, ctx.Err() },
		RetryCount:  1,
		Logger:      log,
	}
	return &Source{cfg: cfg, email: map[string]string{}}, nil
}

// Name implements importer.Source.
func (s *Source) Name() string { return "Opsgenie" }

// wrap says what failed, with Opsgenie's status and message but not the key.
func wrap(what string, err error) error {
	var ae *client.ApiError
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("Opsgenie %s: 401 Unauthorized: the key in %s is not valid", what, KeyEnv)
		case http.StatusForbidden:
			return fmt.Errorf("Opsgenie %s: 403 Forbidden: the key in %s lacks the Read access right (or Configuration access)", what, KeyEnv)
		case http.StatusNotFound:
			return fmt.Errorf("Opsgenie %s: not found: %s", what, ae.Message)
		case http.StatusTooManyRequests:
			return fmt.Errorf("Opsgenie %s: still rate limited (429) after retries: try again later", what)
		}
		return fmt.Errorf("Opsgenie %s: HTTP %d: %s", what, ae.StatusCode, ae.Message)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("Opsgenie %s: %v", what, ue.Err)
	}
	msg := err.Error()
	if strings.Contains(msg, "invalid character") || strings.Contains(msg, "unexpected end of JSON") || strings.Contains(msg, "cannot unmarshal") || strings.Contains(msg, "parsing") {
		return fmt.Errorf("Opsgenie %s: the answer is not the JSON Opsgenie sends: %v", what, err)
	}
	return fmt.Errorf("Opsgenie %s: %v", what, err)
}

func (s *Source) finding(m *importer.Model, where, src, nearest, diff string) {
	m.Findings = append(m.Findings, importer.Finding{Where: where, Source: src, Nearest: nearest, Difference: diff})
}

const pageSize = 100

// Read implements importer.Source.
func (s *Source) Read(ctx context.Context, now time.Time, weeks int) (*importer.Model, error) {
	m := &importer.Model{Source: s.Name()}
	uc, err := user.NewClient(s.cfg)
	if err != nil {
		return nil, fmt.Errorf("Opsgenie: %v", err)
	}
	cc, _ := contact.NewClient(s.cfg)
	for offset := 0; ; {
		res, err := uc.List(ctx, &user.ListRequest{Limit: pageSize, Offset: offset})
		if err != nil {
			return nil, wrap("users", err)
		}
		for _, u := range res.Users {
			p := &importer.Person{Key: u.Id, Name: u.FullName, Email: u.Username, TimeZone: u.TimeZone}
			s.email[u.Username] = u.Id
			cs, err := cc.List(ctx, &contact.ListRequest{UserIdentifier: u.Id})
			if err != nil {
				return nil, wrap(fmt.Sprintf("contacts of user %q", u.FullName), err)
			}
			var sms string
			for _, c := range cs.Contact {
				if !c.Status.Enabled {
					continue
				}
				switch c.MethodOfContact {
				case "voice":
					if p.Phone == "" {
						p.Phone = phone(c.To)
					}
				case "sms":
					if sms == "" {
						sms = phone(c.To)
					}
				}
			}
			if p.Phone == "" {
				p.Phone = sms
			} else if sms != "" && sms != p.Phone {
				s.finding(m, fmt.Sprintf("user %q", u.FullName), "is called on one number and texted on another",
					"phone: "+p.Phone+" for calls and SMS", "texts go to the call number")
			}
			m.People = append(m.People, p)
		}
		offset += len(res.Users)
		if len(res.Users) == 0 || offset >= res.TotalCount {
			break
		}
	}
	if err := s.schedules(ctx, m, now); err != nil {
		return nil, err
	}
	if err := s.escalations(ctx, m); err != nil {
		return nil, err
	}
	if err := s.teams(ctx, m); err != nil {
		return nil, err
	}
	if err := s.heartbeats(ctx, m); err != nil {
		return nil, err
	}
	s.finding(m, "users' notification rules", "each user chooses how and after what delay they are notified",
		"each policy step pages everyone it names on --via at once", "per-user delays are not kept")
	m.Location = s.Location
	if m.Location == nil {
		m.Location = importer.CommonZone(m.Schedules)
	}
	return m, nil
}

// phone turns Opsgenie's "countrycode-number" into E.164.
func phone(to string) string {
	d := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, to)
	if d == "" {
		return ""
	}
	return "+" + d
}

var days = map[og.Day]time.Weekday{"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}

func clock(h, m *uint32) time.Duration {
	var d time.Duration
	if h != nil {
		d += time.Duration(*h) * time.Hour
	}
	if m != nil {
		d += time.Duration(*m) * time.Minute
	}
	return d
}

// windows reads a rotation's time restriction.
func windows(tr *og.TimeRestriction) ([]importer.Window, error) {
	if tr == nil {
		return nil, nil
	}
	switch tr.Type {
	case og.TimeOfDay:
		r := tr.Restriction
		st, en := clock(r.StartHour, r.StartMin), clock(r.EndHour, r.EndMin)
		length := en - st
		if length <= 0 {
			length += 24 * time.Hour
		}
		return []importer.Window{{Daily: true, Start: st, Length: length}}, nil
	case og.WeekdayAndTimeOfDay:
		var out []importer.Window
		for _, r := range tr.RestrictionList {
			sd, ok1 := days[og.Day(strings.ToLower(string(r.StartDay)))]
			ed, ok2 := days[og.Day(strings.ToLower(string(r.EndDay)))]
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("unknown day %q or %q in a time restriction", r.StartDay, r.EndDay)
			}
			st, en := clock(r.StartHour, r.StartMin), clock(r.EndHour, r.EndMin)
			length := time.Duration((int(ed)-int(sd)+7)%7)*24*time.Hour + en - st
			if length <= 0 {
				length += 7 * 24 * time.Hour
			}
			out = append(out, importer.Window{Weekday: sd, Start: st, Length: length})
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown time restriction type %q", tr.Type)
}

func (s *Source) schedules(ctx context.Context, m *importer.Model, now time.Time) error {
	sc, err := schedule.NewClient(s.cfg)
	if err != nil {
		return fmt.Errorf("Opsgenie: %v", err)
	}
	expand := true
	res, err := sc.List(ctx, &schedule.ListRequest{Expand: &expand})
	if err != nil {
		return wrap("schedules", err)
	}
	for _, item := range res.Schedule {
		what := fmt.Sprintf("schedule %q", item.Name)
		if !item.Enabled {
			s.finding(m, what, "is disabled", "not imported", "none: it pages nobody at Opsgenie either")
			continue
		}
		loc, err := time.LoadLocation(item.Timezone)
		if err != nil || item.Timezone == "" || item.Timezone == "Local" || strings.HasPrefix(item.Timezone, "/") {
			return fmt.Errorf("Opsgenie %s: unknown time zone %q", what, item.Timezone)
		}
		out := &importer.Schedule{Key: item.Id, Name: item.Name, Location: loc, Union: true}
		for _, r := range item.Rotations {
			rw := fmt.Sprintf("%s, rotation %q", what, r.Name)
			if r.StartDate == nil {
				return fmt.Errorf("Opsgenie %s: no startDate", rw)
			}
			l := &importer.Layer{Name: r.Name, Group: r.Id, Kind: "rotation", Origin: *r.StartDate, From: *r.StartDate}
			if r.EndDate != nil {
				l.Until = *r.EndDate
			}
			n := time.Duration(max(r.Length, 1))
			switch r.Type {
			case og.Hourly:
				l.Turn = n * time.Hour
			case og.Daily:
				l.Turn = n * 24 * time.Hour
			case og.Weekly:
				l.Turn = n * 7 * 24 * time.Hour
			default:
				return fmt.Errorf("Opsgenie %s: unknown rotation type %q", rw, r.Type)
			}
			for _, p := range r.Participants {
				switch p.Type {
				case og.User:
					id := p.Id
					if id == "" {
						id = s.email[p.Username]
					}
					l.Members = append(l.Members, id)
				case og.None:
					l.Members = append(l.Members, "") // a turn with nobody
				default:
					s.finding(m, rw, fmt.Sprintf("has a %s as a participant (%s)", p.Type, cmpOr(p.Name, p.Id)),
						"the turn is left out", "the team's or escalation's people are not paged in that turn")
				}
			}
			ws, err := windows(r.TimeRestriction)
			if err != nil {
				return fmt.Errorf("Opsgenie %s: %v", rw, err)
			}
			l.Restrictions = ws
			out.Layers = append(out.Layers, l)
		}
		ovs, err := sc.ListScheduleOverride(ctx, &schedule.ListScheduleOverrideRequest{ScheduleIdentifierType: schedule.Id, ScheduleIdentifier: item.Id})
		if err != nil {
			return wrap(what+" overrides", err)
		}
		for _, o := range ovs.ScheduleOverride {
			if !o.EndDate.After(now) {
				continue
			}
			who := o.User.Id
			if who == "" {
				who = s.email[o.User.Username]
			}
			if o.User.Type != "" && o.User.Type != schedule.UserResponderType {
				s.finding(m, what+" override "+o.Alias, "puts a "+string(o.User.Type)+" on call", "not imported", "the override does not happen in Klaxon")
				continue
			}
			for _, l := range out.Layers {
				if len(o.Rotations) == 0 || slices.ContainsFunc(o.Rotations, func(ri schedule.RotationIdentifier) bool { return ri.Id == l.Group || ri.Name == l.Name }) {
					l.Cover = append(l.Cover, importer.Span{Person: who, Start: o.StartDate, End: o.EndDate})
				}
			}
		}
		m.Schedules = append(m.Schedules, out)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Source) escalations(ctx context.Context, m *importer.Model) error {
	ec, err := escalation.NewClient(s.cfg)
	if err != nil {
		return fmt.Errorf("Opsgenie: %v", err)
	}
	res, err := ec.List(ctx)
	if err != nil {
		return wrap("escalations", err)
	}
	for _, e := range res.Escalations {
		p := &importer.Policy{Key: "escalation:" + e.Id, Name: e.Name}
		rules := slices.Clone(e.Rules)
		slices.SortStableFunc(rules, func(a, b escalation.Rule) int { return int(a.Delay.TimeAmount) - int(b.Delay.TimeAmount) })
		var delays []uint32
		for i, r := range rules {
			where := fmt.Sprintf("escalation %q, rule %d", e.Name, i+1)
			if r.Condition == og.IfNotClosed {
				s.finding(m, where, "notifies unless the alert is closed, even when acknowledged", "a step, stopped by an acknowledgement", "an acknowledged alert does not reach this rule in Klaxon")
			}
			if r.Delay.TimeUnit != "" && r.Delay.TimeUnit != og.Minutes {
				s.finding(m, where, "has a delay in "+string(r.Delay.TimeUnit), "read as minutes", "the delay may differ")
			}
			var st importer.Step
			switch r.Recipient.Type {
			case og.User:
				id := r.Recipient.Id
				if id == "" {
					id = s.email[r.Recipient.Username]
				}
				st.People = []string{id}
			case og.Schedule:
				st.Schedules = []string{r.Recipient.Id}
				if r.NotifyType == og.Next || r.NotifyType == og.Previous {
					s.finding(m, where, "notifies the "+string(r.NotifyType)+" on-call of the schedule", "the step pages the current on-call", "someone else is paged than at Opsgenie")
				}
			default:
				s.finding(m, where, fmt.Sprintf("notifies a %s (%s, %s)", r.Recipient.Type, cmpOr(r.Recipient.Name, r.Recipient.Id), r.NotifyType),
					"the rule is left out", "nobody is paged for it in Klaxon")
				continue
			}
			if n := len(p.Steps); n > 0 && delays[n-1] == r.Delay.TimeAmount {
				p.Steps[n-1].People = append(p.Steps[n-1].People, st.People...)
				p.Steps[n-1].Schedules = append(p.Steps[n-1].Schedules, st.Schedules...)
				continue
			}
			p.Steps = append(p.Steps, st)
			delays = append(delays, r.Delay.TimeAmount)
		}
		// Opsgenie delays count from the alert; a rota step waits until the next.
		last := 5 * time.Minute
		if e.Repeat != nil && e.Repeat.WaitInterval > 0 {
			last = time.Duration(e.Repeat.WaitInterval) * time.Minute
		}
		for i := range p.Steps {
			if i+1 < len(p.Steps) {
				p.Steps[i].Wait = time.Duration(delays[i+1]-delays[i]) * time.Minute
			} else {
				p.Steps[i].Wait = last
			}
		}
		if len(delays) > 0 && delays[0] > 0 {
			s.finding(m, fmt.Sprintf("escalation %q", e.Name), fmt.Sprintf("starts %d minutes after the alert", delays[0]),
				"the first step pages at once", "the first page comes earlier")
		}
		if e.Repeat != nil && e.Repeat.Count > 0 {
			p.Repeat = int(e.Repeat.Count)
		}
		m.Policies = append(m.Policies, p)
	}
	return nil
}

func (s *Source) teams(ctx context.Context, m *importer.Model) error {
	tc, err := team.NewClient(s.cfg)
	if err != nil {
		return fmt.Errorf("Opsgenie: %v", err)
	}
	res, err := tc.List(ctx, &team.ListTeamRequest{})
	if err != nil {
		return wrap("teams", err)
	}
	for _, t := range res.Teams {
		where := fmt.Sprintf("team %q", t.Name)
		rr, err := tc.ListRoutingRules(ctx, &team.ListRoutingRulesRequest{TeamIdentifierType: team.Id, TeamIdentifierValue: t.Id})
		if err != nil {
			return wrap(where+" routing rules", err)
		}
		for _, r := range rr.RoutingRules {
			if !r.IsDefault {
				s.finding(m, fmt.Sprintf("%s, routing rule %q", where, r.Name), "routes alerts matching its conditions (or times) elsewhere",
					"only the team's default routing rule is written", "conditional routing Opsgenie evaluates itself is not kept: write it as label matchers")
				continue
			}
			switch r.Notify.Type {
			case "escalation":
				m.Routes = append(m.Routes, &importer.Route{Value: t.Name, Policy: "escalation:" + r.Notify.Id, Name: where})
			case "schedule":
				key := "schedule:" + r.Notify.Id
				if !slices.ContainsFunc(m.Policies, func(p *importer.Policy) bool { return p.Key == key }) {
					m.Policies = append(m.Policies, &importer.Policy{Key: key, Name: cmpOr(r.Notify.Name, t.Name),
						Steps: []importer.Step{{Schedules: []string{r.Notify.Id}, Wait: 5 * time.Minute}}})
				}
				m.Routes = append(m.Routes, &importer.Route{Value: t.Name, Policy: key, Name: where})
			default:
				s.finding(m, where, "routes alerts to "+cmpOr(string(r.Notify.Type), "nobody"), "no route", "its alerts take the default route")
			}
		}
	}
	return nil
}

func (s *Source) heartbeats(ctx context.Context, m *importer.Model) error {
	hc, err := heartbeat.NewClient(s.cfg)
	if err != nil {
		return fmt.Errorf("Opsgenie: %v", err)
	}
	res, err := hc.List(ctx)
	if err != nil {
		return wrap("heartbeats", err)
	}
	for _, h := range res.Heartbeats {
		where := fmt.Sprintf("heartbeat %q", h.Name)
		every := fmt.Sprintf("%d %s", h.Interval, h.IntervalUnit)
		unit := map[string]time.Duration{"minutes": time.Minute, "hours": time.Hour, "days": 24 * time.Hour}[h.IntervalUnit]
		if strings.EqualFold(h.Name, "watchdog") || strings.Contains(strings.ToLower(h.Description+" "+h.AlertMessage), "alertmanager") {
			s.finding(m, where, "alerts when Alertmanager's heartbeat has not arrived for "+every,
				"Klaxon's Watchdog: klaxon serve --watchdog-matcher 'alertname=\"Watchdog\"' --watchdog-timeout "+(time.Duration(h.Interval)*unit).String(),
				"it fits: point Alertmanager's Watchdog alert at Klaxon; the heartbeat itself is not written to rota.yaml")
			continue
		}
		s.finding(m, where, "alerts when a ping (a cron job, a service) has not arrived for "+every,
			"nothing: Klaxon's Watchdog watches Alertmanager only", "it does not fit: send the ping as a Prometheus metric with an absent() alert instead")
	}
	return nil
}

// OnCall implements importer.Source: the schedule's on-call recipients at
// every whole hour from from to to.
func (s *Source) OnCall(ctx context.Context, schedules []*importer.Schedule, from, to time.Time) (map[string][]importer.Span, error) {
	sc, err := schedule.NewClient(s.cfg)
	if err != nil {
		return nil, fmt.Errorf("Opsgenie: %v", err)
	}
	out := map[string][]importer.Span{}
	flat := true
	for _, sch := range schedules {
		out[sch.Key] = []importer.Span{}
		for t := from.Truncate(time.Hour); t.Before(to); t = t.Add(time.Hour) {
			at := t
			res, err := sc.GetOnCalls(ctx, &schedule.GetOnCallsRequest{Flat: &flat, Date: &at, ScheduleIdentifierType: schedule.Id, ScheduleIdentifier: sch.Key})
			if err != nil {
				return nil, wrap(fmt.Sprintf("schedule %q on-calls", sch.Name), err)
			}
			for _, r := range res.OnCallRecipients {
				id := s.email[r]
				if id == "" {
					id = r
				}
				out[sch.Key] = append(out[sch.Key], importer.Span{Person: id, Start: t, End: t.Add(time.Hour)})
			}
		}
	}
	return out, nil
}
