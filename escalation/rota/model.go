package rota

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Defaults applied when rota.yaml leaves a field out.
const (
	// DefaultAckTimeout is how long an acknowledgement holds before the
	// incident pages again, when a policy gives no ack_timeout.
	DefaultAckTimeout = 4 * time.Hour
	// DefaultShift is a rotation's shift length when it gives none.
	DefaultShift = 7 * 24 * time.Hour
	// DefaultReminder is how long before a shift starts the incoming person
	// is reminded, when a rotation gives no reminder.
	DefaultReminder = time.Hour
)

// Rota is a parsed and validated rota.yaml. It is immutable once returned by
// Parse: share it freely between goroutines and replace it as a whole on reload.
type Rota struct {
	// Location is the rota's time zone: handoffs and override times are in it.
	Location *time.Location
	// People by id.
	People map[string]*Person
	// Rotations by id.
	Rotations map[string]*Rotation
	// Policies by id.
	Policies map[string]*Policy
	// Routes in file order; the default route (no matchers) is last.
	Routes []Route
	// Owners are the person ids told about rota and self-test problems.
	Owners []string
	// Limits caps how often one person is paged per channel.
	Limits map[notifiers.Channel]Limit
	// Source is the file name as given to Parse.
	Source string
	// Warnings found while parsing (also returned by Parse).
	Warnings []Warning
}

// Person is someone who can be paged.
type Person struct {
	ID            string
	Name          string // display name; the id when the file gives none
	Phone         string // E.164, "" if none
	MatrixID      string // @user:server, "" if none
	PagerDutyUser string // PagerDuty user id or email, "" if none
	// Email identifies the person to the web interface's authenticating
	// proxy (sign-in by a trusted header), "" if none.
	Email string
	// Location is the person's own time zone for display; the rota's when unset.
	Location *time.Location
}

// Recipient returns the person's contact details as the notifiers see them.
func (p *Person) Recipient() notifiers.Recipient {
	return notifiers.Recipient{
		PersonID:      p.ID,
		Name:          p.Name,
		Phone:         p.Phone,
		MatrixID:      p.MatrixID,
		PagerDutyUser: p.PagerDutyUser,
	}
}

// Contact returns the person's address on channel ch, or "" when the rota has none.
func (p *Person) Contact(ch notifiers.Channel) string {
	switch ch {
	case notifiers.Matrix:
		return p.MatrixID
	case notifiers.PagerDuty:
		return p.PagerDutyUser
	case notifiers.Phone, notifiers.SMS:
		return p.Phone
	}
	return ""
}

// Limit caps pages per person on one channel: at most Count in any window of Per.
type Limit struct {
	Count int
	Per   time.Duration
}

// Rotation is an ordered list of people taking shifts in turn.
type Rotation struct {
	ID string
	// Members are person ids in shift order.
	Members []string
	// Shift is the length of one shift in local (wall-clock) hours: a 7-day shift
	// handed over on Monday 09:00 is 167 or 169 real hours in a week with a
	// daylight-saving change.
	Shift time.Duration
	// Start is when the first member's first shift starts.
	Start time.Time
	// Location is the time zone handoffs follow (the rota's).
	Location *time.Location
	// Overrides in time order; they never overlap.
	Overrides []Override
	// Reminder is how long before each shift the incoming person is
	// reminded; 0 means no reminders ("reminder: off").
	Reminder time.Duration

	start     civil // Start as local wall-clock time
	line, col int   // where the rotation is defined
}

// Override has Person cover a rotation between Start and End, for InsteadOf
// only (that member's shifts) or, when InsteadOf is empty, for whoever is on call.
type Override struct {
	Person    string
	InsteadOf string
	Start     time.Time
	End       time.Time
	Reason    string
}

// applies reports whether o replaces scheduled person id at instant t.
func (o *Override) applies(id string, t time.Time) bool {
	return !t.Before(o.Start) && t.Before(o.End) && (o.InsteadOf == "" || o.InsteadOf == id)
}

// Shift is a span of time one person is on call for a rotation.
type Shift struct {
	Rotation string
	Person   string
	Start    time.Time
	End      time.Time
	// Override is set when an override put Person there; Scheduled is who the
	// rotation itself had, Reason the override's reason.
	Override  bool
	Scheduled string
	Reason    string
}

// Policy is an escalation policy: steps in order, repeated, then a fallback.
type Policy struct {
	ID    string
	Steps []Step
	// Repeat is how many more times the steps run after the first pass.
	Repeat int
	// Fallback is paged on every channel they can be reached by once the
	// steps and repeats are exhausted without an acknowledgement.
	Fallback []Target
	// AckTimeout is how long an acknowledgement holds before paging resumes.
	AckTimeout time.Duration
	// RepageEvery is how often an exhausted incident is paged again until
	// someone answers (0: the engine's default, 15m).
	RepageEvery time.Duration
	// PagerDutyAcksAnyone (pagerduty_acks: anyone) lets a PagerDuty user who
	// is not on the rota acknowledge or resolve; by default (rota) such an
	// answer is recorded in the timeline and escalation goes on.
	PagerDutyAcksAnyone bool
}

// Step pages Targets on Channels, in that order, and waits Wait for an
// acknowledgement before the next step.
type Step struct {
	Targets    []Target
	Channels   []notifiers.Channel
	Wait       time.Duration
	RoutingKey string // optional PagerDuty routing key for this step
}

// Target names who a step pages: exactly one of the three forms is set.
type Target struct {
	Rotation string // the rotation's current on-call
	Person   string // one person
	Everyone bool   // with Rotation: every member of the rotation
}

// String renders t as rota.yaml spells it.
func (t Target) String() string {
	switch {
	case t.Person != "":
		return "person " + t.Person
	case t.Everyone:
		return "everyone in " + t.Rotation
	default:
		return "on-call of " + t.Rotation
	}
}

// Route sends alerts whose labels match every matcher to Policy. A route
// without matchers is the default route.
type Route struct {
	Matchers []Matcher
	Policy   string
	// Line and Column locate the route in the file (1-based).
	Line, Column int
}

// Route returns the policy of the first route whose matchers all match labels.
func (r *Rota) Route(labels map[string]string) (*Policy, error) {
	p, _, err := r.Match(labels)
	return p, err
}

// Match returns the policy of the first route whose matchers all match
// labels, and that route's index in Routes.
func (r *Rota) Match(labels map[string]string) (*Policy, int, error) {
	if r == nil {
		return nil, -1, fmt.Errorf("rota: no rota loaded")
	}
	for i, rt := range r.Routes {
		if matchAll(rt.Matchers, labels) {
			if p := r.Policies[rt.Policy]; p != nil {
				return p, i, nil
			}
			return nil, i, fmt.Errorf("rota: route names unknown policy %q", rt.Policy)
		}
	}
	return nil, -1, fmt.Errorf("rota: no route matches and no default route")
}

// OnCall returns the person on call for rotation id at t, or nil when the
// rotation is unknown or has nobody then.
func (r *Rota) OnCall(rotation string, t time.Time) *Person {
	rot := r.Rotations[rotation]
	if rot == nil {
		return nil
	}
	return r.People[OnCall(rot, t)]
}

// Resolve returns the people target names at instant at, overrides applied:
// a rotation's on-call (none before the rotation starts), a person, or every
// member of a rotation together with whoever covers it at that moment.
func (r *Rota) Resolve(t Target, at time.Time) []*Person {
	var ids []string
	switch {
	case t.Person != "":
		ids = []string{t.Person}
	case t.Everyone:
		if rot := r.Rotations[t.Rotation]; rot != nil {
			ids = append(ids, rot.Members...)
			if id := OnCall(rot, at); id != "" {
				ids = append(ids, id)
			}
		}
	default:
		if rot := r.Rotations[t.Rotation]; rot != nil {
			if id := OnCall(rot, at); id != "" {
				ids = []string{id}
			}
		}
	}
	seen := map[string]bool{}
	var out []*Person
	for _, id := range ids {
		if p := r.People[id]; p != nil && !seen[id] {
			seen[id] = true
			out = append(out, p)
		}
	}
	return out
}

// PersonByContact finds the person whose address on channel ch is address:
// an E.164 number for phone and SMS, a Matrix user id, a PagerDuty user id or
// email (emails compare without regard to case).
func (r *Rota) PersonByContact(ch notifiers.Channel, address string) (*Person, bool) {
	address = strings.TrimSpace(address)
	if address == "" {
		return nil, false
	}
	for _, id := range r.PersonIDs() {
		p := r.People[id]
		c := p.Contact(ch)
		if c == "" {
			continue
		}
		if c == address || (ch == notifiers.PagerDuty && strings.Contains(c, "@") && strings.EqualFold(c, address)) {
			return p, true
		}
	}
	return nil, false
}

// PersonByEmail finds the one person whose email is email (compared without
// regard to case). Two people with the same email match nobody.
func (r *Rota) PersonByEmail(email string) (*Person, bool) {
	email = strings.TrimSpace(email)
	if email == "" {
		return nil, false
	}
	var found *Person
	for _, id := range r.PersonIDs() {
		if p := r.People[id]; p.Email != "" && strings.EqualFold(p.Email, email) {
			if found != nil {
				return nil, false
			}
			found = p
		}
	}
	return found, found != nil
}

// PersonIDs returns the ids of all people, sorted.
func (r *Rota) PersonIDs() []string { return sortedKeys(r.People) }

// RotationIDs returns the ids of all rotations, sorted.
func (r *Rota) RotationIDs() []string { return sortedKeys(r.Rotations) }

// PolicyIDs returns the ids of all policies, sorted.
func (r *Rota) PolicyIDs() []string { return sortedKeys(r.Policies) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
