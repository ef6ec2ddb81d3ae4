// Package importer turns another on-call tool's configuration into a Klaxon
// rota.yaml and rota_test.yaml, and checks the result against the source's
// own answer to "who is on call".
//
// Each source (subpackages pagerduty, goalert, ...) reads its API into the
// source-neutral Model defined here: people with contact details, schedules
// made of layers (rotations with restrictions, fixed spans such as overrides
// and temporary schedules), escalation policies and routes. Build writes the
// Model as rota.yaml. What rota.yaml cannot say (a layer restricted to office
// hours, a round-robin escalation, routing the source evaluates itself) is
// written into the rota as closely as it can be, and listed in a Report with
// the difference: nothing is dropped silently. Verify asks the source who is
// on call at every hour of a window and compares with the written rota.
package importer

import (
	"slices"
	"time"
)

// Model is one source's configuration, read into terms every source shares.
type Model struct {
	// Source names the tool ("PagerDuty"), for messages and reasons.
	Source string
	// Location is the time zone the rota is written in: handoffs and override
	// times are local times in it.
	Location *time.Location
	People   []*Person
	// Schedules answer "who is on call": each becomes one or more rotations.
	Schedules []*Schedule
	Policies  []*Policy
	// Routes in order; the importer adds the default route.
	Routes []*Route
	// Findings are what the source reader found that rota.yaml cannot say.
	Findings []Finding
}

// Person is someone the source can page.
type Person struct {
	// Key is the source's id for the person.
	Key   string
	Name  string
	Email string
	// Phone is an E.164 number for calls and SMS, "" if none.
	Phone string
	// Matrix is a Matrix user id, "" if none.
	Matrix string
	// PagerDutyUser is a PagerDuty user id, "" if none.
	PagerDutyUser string
	// TimeZone is the person's IANA zone, "" if unknown.
	TimeZone string
}

// Schedule is a source schedule: layers that together say who is on call.
type Schedule struct {
	// Key is the source's id; Name its display name.
	Key, Name string
	// Location is the schedule's own time zone: restrictions and handoffs are
	// wall-clock times in it.
	Location *time.Location
	// Layers from the lowest priority to the highest.
	Layers []*Layer
	// Union makes every active layer's person on call at once (GoAlert rules,
	// Opsgenie rotations); otherwise the highest active layer wins
	// (PagerDuty layers and overrides, Grafana OnCall levels).
	Union bool
	// Temporary spans replace the whole schedule while they last (GoAlert's
	// temporary schedules): inside one, only its shifts count.
	Temporary []Temporary
	// Adjust are applied last, in order: add, remove or replace one person
	// (GoAlert's user overrides).
	Adjust []Adjustment
}

// Temporary replaces a schedule between Start and End with Shifts.
type Temporary struct {
	Start, End time.Time
	Shifts     []Span
}

// Adjustment adds Add, removes Remove, or (both set) replaces Remove by Add
// between Start and End.
type Adjustment struct {
	Add, Remove string
	Start, End  time.Time
}

// Layer is one rotation of a schedule, or a list of fixed spans.
type Layer struct {
	Name string
	// Group names the source rotation the layer takes its turns from; layers
	// of one group share a Klaxon rotation. "" means the layer is its own.
	Group string
	// Members are person keys in turn order (may repeat, as in PagerDuty).
	Members []string
	// Origin is when Members[0]'s turn starts; turns follow every Turn of
	// wall-clock time in the schedule's zone (or in Location, when set).
	Origin time.Time
	Turn   time.Duration
	// Location, when not nil, is the zone the turns follow (a GoAlert
	// rotation has its own); restrictions stay in the schedule's.
	Location *time.Location
	// From and Until bound the layer (zero: unbounded).
	From, Until time.Time
	// Restrictions, when any, are the only times the layer is active.
	Restrictions []Window
	// Fixed, when not nil, replaces the rotation: the layer is active inside
	// these spans only (overrides, single events).
	Fixed []Span
	// Kind says what the layer is in the source's words, for reasons
	// ("layer", "override", "rule").
	Kind string
	// Cover replaces the layer's person while the layer is active
	// (Opsgenie's overrides of one rotation).
	Cover []Span
}

// Window is a span of wall-clock time repeated every day (Daily) or every
// week on Weekday: it starts Start after midnight and lasts Length.
type Window struct {
	Daily   bool
	Weekday time.Weekday
	Start   time.Duration
	Length  time.Duration
}

// Span is Person on call between Start and End; Person "" is nobody.
type Span struct {
	Person     string
	Start, End time.Time
}

// Policy is an escalation policy.
type Policy struct {
	Key, Name string
	Steps     []Step
	// Repeat is how many more times the steps run after the first pass.
	Repeat int
}

// Step pages targets and waits Wait before the next step.
type Step struct {
	// Schedules and People are keys.
	Schedules []string
	People    []string
	Wait      time.Duration
}

// Route sends alerts whose label (the importer's --route-label) has Value to
// the policy Policy (a key).
type Route struct {
	Value  string
	Policy string
	// Name is the source object the route comes from ("service Checkout").
	Name string
}

// Finding is one thing rota.yaml cannot say as the source does.
type Finding struct {
	// Where names the source object: `schedule "Ops", layer "Nights"`.
	Where string
	// Source is what the source does; Nearest what the rota does instead;
	// Difference the practical effect.
	Source, Nearest, Difference string
}

// active reports whether w contains the wall-clock reading wall (a UTC time
// standing for a local reading).
func (w Window) active(wall time.Time) bool {
	day := time.Date(wall.Year(), wall.Month(), wall.Day(), 0, 0, 0, 0, time.UTC)
	back := int(w.Length/(24*time.Hour)) + 8
	for i := 0; i <= back; i++ {
		d := day.AddDate(0, 0, -i)
		if !w.Daily && d.Weekday() != w.Weekday {
			continue
		}
		s := d.Add(w.Start)
		if !wall.Before(s) && wall.Before(s.Add(w.Length)) {
			return true
		}
	}
	return false
}

// wallClock returns t's reading in loc as a UTC time, so that whole turns are
// plain arithmetic.
func wallClock(t time.Time, loc *time.Location) time.Time {
	w := t.In(loc)
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC)
}

// at returns who the layer has on call at t and whether the layer is active
// then.
func (l *Layer) at(t time.Time, loc *time.Location) (string, bool) {
	if (!l.From.IsZero() && t.Before(l.From)) || (!l.Until.IsZero() && !t.Before(l.Until)) {
		return "", false
	}
	if l.Fixed != nil {
		for _, s := range l.Fixed {
			if !t.Before(s.Start) && t.Before(s.End) {
				return s.Person, true
			}
		}
		return "", false
	}
	wall := wallClock(t, loc)
	if len(l.Restrictions) > 0 && !slices.ContainsFunc(l.Restrictions, func(w Window) bool { return w.active(wall) }) {
		return "", false
	}
	for _, c := range l.Cover {
		if !t.Before(c.Start) && t.Before(c.End) {
			return c.Person, true
		}
	}
	return l.turnAt(t, loc), true
}

// turnAt returns the member whose turn it is at t, restrictions aside.
func (l *Layer) turnAt(t time.Time, loc *time.Location) string {
	if l.Location != nil {
		loc = l.Location
	}
	n := int64(len(l.Members))
	if n == 0 || l.Turn <= 0 {
		return ""
	}
	d := wallClock(t, loc).Sub(wallClock(l.Origin, loc))
	k := int64(d / l.Turn)
	if d%l.Turn != 0 && d < 0 {
		k--
	}
	return l.Members[((k%n)+n)%n]
}

// OnCall returns the person keys the schedule has on call at t, as the
// importer understands the source: sorted, without repeats.
func (s *Schedule) OnCall(t time.Time) []string {
	for _, tmp := range s.Temporary {
		if !t.Before(tmp.Start) && t.Before(tmp.End) {
			var out []string
			for _, sh := range tmp.Shifts {
				if sh.Person != "" && !t.Before(sh.Start) && t.Before(sh.End) {
					out = append(out, sh.Person)
				}
			}
			return s.adjust(out, t)
		}
	}
	var out []string
	for i := len(s.Layers) - 1; i >= 0; i-- {
		p, ok := s.Layers[i].at(t, s.Location)
		if !ok {
			continue
		}
		if p != "" {
			out = append(out, p)
		}
		if !s.Union {
			break
		}
	}
	return s.adjust(out, t)
}

func (s *Schedule) adjust(people []string, t time.Time) []string {
	for _, a := range s.Adjust {
		if t.Before(a.Start) || !t.Before(a.End) {
			continue
		}
		if a.Remove != "" {
			i := slices.Index(people, a.Remove)
			if i < 0 {
				continue // a replacement applies only while the replaced person is on call
			}
			people = slices.Delete(people, i, i+1)
		}
		if a.Add != "" {
			people = append(people, a.Add)
		}
	}
	slices.Sort(people)
	return slices.Compact(people)
}
