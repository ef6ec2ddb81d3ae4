package fakepagerduty

import (
	"encoding/json"
	"time"
)

// Event is one request the fake's Events API v2 received, accepted or not.
type Event struct {
	At         time.Time
	RoutingKey string
	Action     string // trigger | acknowledge | resolve (as sent; may be invalid)
	DedupKey   string // as sent, or as assigned by the fake for a trigger without one
	Summary    string
	Source     string
	Severity   string
	Component  string
	Group      string
	Class      string
	// CustomDetails is the payload's custom_details, decoded.
	CustomDetails map[string]any
	Links         []Link
	Client        string
	ClientURL     string
	// Status is the HTTP status the fake answered.
	Status int
	// Dropped is set when the fake answered 202 but, like PagerDuty for a
	// lapsed account or a disabled / in-maintenance service, created nothing.
	Dropped bool
	// Raw is the request body as received.
	Raw []byte
}

// Link is one entry of an event's links.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// Incident is the fake's view of a PagerDuty incident.
type Incident struct {
	ID        string
	Number    int
	DedupKey  string
	ServiceID string
	// Status is triggered | acknowledged | resolved.
	Status   string
	Title    string
	Severity string
	// Alerts counts the trigger events deduplicated into this incident.
	Alerts             int
	AcknowledgedBy     string // user or service id
	ResolvedBy         string
	AssignedTo         string
	CreatedAt          time.Time
	LastStatusChangeAt time.Time
	LastStatusChangeBy string
}

// Open reports whether the incident is not resolved.
func (i Incident) Open() bool { return i.Status != StatusResolved }

// Incident statuses, as PagerDuty spells them.
const (
	StatusTriggered    = "triggered"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
)

// Service statuses, as PagerDuty spells them.
const (
	ServiceActive      = "active"
	ServiceWarning     = "warning"
	ServiceCritical    = "critical"
	ServiceMaintenance = "maintenance"
	ServiceDisabled    = "disabled"
)

// User is a PagerDuty user known to the fake (an acknowledger).
type User struct {
	ID    string
	Name  string
	Email string
	// NoContactMethods makes the user one PagerDuty can assign incidents to
	// but cannot notify: no notify_log_entry is ever logged for them.
	NoContactMethods bool
	// TimeZone is the user's IANA zone ("" leaves it out).
	TimeZone string
	// ContactMethods are listed by GET /users?include[]=contact_methods.
	ContactMethods []ContactMethod
}

// ContactMethod is one way PagerDuty reaches a user: Type is
// phone_contact_method, sms_contact_method, email_contact_method or
// push_notification_contact_method; phone and SMS addresses are the national
// number, with CountryCode apart, as PagerDuty stores them.
type ContactMethod struct {
	Type        string
	Label       string
	Address     string
	CountryCode int
}

// Delivery is one v3 webhook the fake posted (or tried to post).
type Delivery struct {
	EventID   string
	EventType string
	Body      []byte
	// Signature is the X-PagerDuty-Signature header sent.
	Signature string
	// Status is the receiver's HTTP status, 0 when the request failed.
	Status int
	Err    error
}

// RESTCall is one REST API request the fake received.
type RESTCall struct {
	Method string
	Path   string
	Query  string
	Status int
}

type service struct {
	id               string
	name             string
	status           string
	routingKeys      []string
	escalationPolicy string
	// onCall is who the escalation policy reaches; nil means DefaultUserID.
	onCall []string
}

type apiRef struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Summary string `json:"summary,omitempty"`
	Self    string `json:"self,omitempty"`
	HTMLURL string `json:"html_url,omitempty"`
}

// wireEvent is the Events API v2 request body.
type wireEvent struct {
	RoutingKey  *string         `json:"routing_key"`
	EventAction *string         `json:"event_action"`
	DedupKey    *string         `json:"dedup_key"`
	Payload     *wirePayload    `json:"payload"`
	Links       json.RawMessage `json:"links"`
	Images      json.RawMessage `json:"images"`
	Client      string          `json:"client"`
	ClientURL   string          `json:"client_url"`
}

type wirePayload struct {
	Summary       *string        `json:"summary"`
	Source        *string        `json:"source"`
	Severity      *string        `json:"severity"`
	Timestamp     string         `json:"timestamp"`
	Component     string         `json:"component"`
	Group         string         `json:"group"`
	Class         string         `json:"class"`
	CustomDetails map[string]any `json:"custom_details"`
}
