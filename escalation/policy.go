package escalation

import (
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Target names who a step pages: a rotation's current on-call, one person, or
// every member of a rotation.
type Target struct {
	Rotation string
	Person   string
	Everyone bool
}

// Step is one stage of a policy: page these people on these channels, then
// wait this long for an acknowledgement.
type Step struct {
	Targets  []Target
	Channels []notifiers.Channel
	Wait     time.Duration
	// RoutingKey optionally overrides the PagerDuty routing key for this step.
	RoutingKey string
}

// Policy is an escalation policy as the engine walks it.
type Policy struct {
	ID    string
	Steps []Step
	// Repeat is how many more times the steps run after the first pass.
	Repeat int
	// Fallback is paged on every channel they have once the steps are used up.
	Fallback []Target
	// AckTimeout re-pages an acknowledged incident still firing after it (default 4h).
	AckTimeout time.Duration
	// RepageEvery re-pages an exhausted incident (the fallback list, or the
	// last step without one) at this interval until someone answers
	// (default DefaultRepageEvery).
	RepageEvery time.Duration
	// PagerDutyAcksAnyone lets an acknowledgement or resolution made in
	// PagerDuty by someone who is not on the rota stop escalation (rota.yaml
	// `pagerduty_acks: anyone`). By default it is recorded and ignored.
	PagerDutyAcksAnyone bool
}

// Rota is what the engine needs of the on-call rota. The rota can be reloaded
// at any time: the engine asks for the current one at each decision.
type Rota interface {
	// PolicyFor picks the policy for an incident's labels (first matching route).
	PolicyFor(labels map[string]string) (*Policy, error)
	// PolicyNamed returns a policy by id.
	PolicyNamed(id string) (*Policy, bool)
	// Who names the people a target means at time at, overrides applied.
	Who(t Target, at time.Time) []notifiers.Recipient
	// PersonByContact maps an address on a channel (phone number, Matrix id,
	// PagerDuty user) to a rota person.
	PersonByContact(ch notifiers.Channel, address string) (notifiers.Recipient, bool)
	// Limit is the per-person rate limit of a channel (0 count: none).
	Limit(ch notifiers.Channel) (count int, per time.Duration)
}

// ChannelHealth is what the engine knows of a channel at decision time.
type ChannelHealth struct {
	Configured bool
	Down       bool
	Since      time.Time // when it went down
	Reason     string
}

// HealthFunc reports a channel's health; nil means every configured channel is up.
type HealthFunc func(ch notifiers.Channel) ChannelHealth
