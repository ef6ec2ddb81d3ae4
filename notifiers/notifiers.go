// Package notifiers defines what the escalation engine asks of a delivery channel
// (Matrix, PagerDuty, phone, SMS) and what a channel hands back: pages, receipts,
// classified errors, self-test health and responses from the people paged.
//
// The escalation engine knows only these types; concrete channels live in the
// subpackages and are wired together in cmd/klaxon.
package notifiers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Channel names a delivery channel as rota.yaml spells it.
type Channel string

// The channels a policy step may name.
const (
	Matrix    Channel = "matrix"
	PagerDuty Channel = "pagerduty"
	Phone     Channel = "phone"
	SMS       Channel = "sms"
)

// Web names actions taken in Klaxon's own web interface (a signed link or a
// signed-in person) as the timeline records them. It is not a delivery
// channel: no policy can name it and Valid reports false.
const Web Channel = "web"

// Channels lists every known channel in the order a default policy tries them.
var Channels = []Channel{Matrix, PagerDuty, Phone, SMS}

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool {
	for _, k := range Channels {
		if k == c {
			return true
		}
	}
	return false
}

// Kind says what a Page asks the channel to do.
type Kind string

// Page kinds. A channel that has nothing to do for a kind returns a zero
// Receipt and nil (a phone call is not placed to say "resolved").
const (
	// KindPage asks a person to act: the channel must reach them.
	KindPage Kind = "page"
	// KindAcknowledged tells a channel already used that someone acknowledged,
	// so it stops paging (PagerDuty acknowledge event, Matrix thread reply).
	KindAcknowledged Kind = "acknowledged"
	// KindUnacknowledged tells a channel the acknowledgement was withdrawn.
	KindUnacknowledged Kind = "unacknowledged"
	// KindEscalated tells a channel already used that the incident moved on.
	KindEscalated Kind = "escalated"
	// KindResolved tells a channel already used that the incident is over.
	KindResolved Kind = "resolved"
	// KindNotice is information without a request to act (new alerts joining an
	// acknowledged incident, an alarm recovering). Chat channels post it;
	// phone channels ignore it.
	KindNotice Kind = "notice"
	// KindMessage is a message for one person outside any incident (a rota
	// change notice, a handoff reminder): Incident is 0 and Text is the whole
	// message. Matrix sends it as a direct message or a mention in the alert
	// room, SMS texts it; phone and PagerDuty never carry it.
	KindMessage Kind = "message"
)

// Recipient is the person a page is for, with the contact details the rota gives.
// Empty fields mean the rota has no such detail for that person.
type Recipient struct {
	PersonID      string // rota id, e.g. "alice"
	Name          string // display name
	Phone         string // E.164, e.g. +15550100
	MatrixID      string // e.g. @alice:example.org
	PagerDutyUser string // PagerDuty user id or email
}

// Alert is one Alertmanager alert as a channel shows it.
type Alert struct {
	Fingerprint  string
	Status       string // firing | resolved
	Labels       map[string]string
	Annotations  map[string]string
	StartsAt     time.Time
	EndsAt       time.Time
	GeneratorURL string
}

// Name is the alert's alertname label.
func (a Alert) Name() string { return a.Labels["alertname"] }

// Page is one message for one recipient on one channel.
type Page struct {
	// ID is the outbox entry's id: unique per send and stable across retries and
	// restarts, so it serves as the Matrix transaction id and similar idempotency keys.
	ID string
	// Kind says what the page asks for.
	Kind Kind
	// Incident is the Klaxon incident number people say on the phone.
	Incident uint64
	// IncidentKey is stable for the incident's whole life (PagerDuty dedup key).
	IncidentKey string
	Channel     Channel
	Recipient   Recipient
	// Title is a one-line summary readable on a lock screen.
	Title string
	// Severity is the alerts' severity label (critical, warning, ...), may be empty.
	Severity    string
	Alerts      []Alert
	ExternalURL string // Alertmanager's externalURL
	Link        string // link back to the incident in Klaxon's API, if known
	// Text is free text for notices and updates ("acknowledged by Alice via
	// phone"). On a page it summarises the other incidents held back for this
	// person by a rate limit ("3 incidents need you: 43, 42, 41"): every
	// channel must show or say it.
	Text string
	// RoutingKey optionally overrides the channel's default target (PagerDuty
	// routing key of a policy step).
	RoutingKey string
	// Synthetic marks alarms Klaxon raises about itself.
	Synthetic bool
	// Via is, for an update, the channel the answer that caused it came
	// through ("" when by API, CLI or Alertmanager). That channel has already
	// confirmed to the person, so it may skip repeating the news.
	Via Channel
}

// Receipt is what a channel reports after handing a page to its provider.
type Receipt struct {
	// ProviderID is the provider's id for what was sent (event id, call SID, ...).
	ProviderID string
	// Detail is a short human description for the timeline ("call queued").
	Detail string
	// State is what the channel must remember about this page (where
	// replies to a text go), written to its StateStore in the same
	// transaction that records the page as sent: durable exactly when the
	// page is, at no commit of its own before the engine's.
	State []StateWrite
}

// StateWrite is one write to a channel's state (see StateStore) carried by a
// Receipt.
type StateWrite struct {
	Bucket, Key string
	Value       []byte
	// Replaces, if set, is asked with the value stored now (nil when none)
	// whether Value replaces it; false leaves the key alone. It runs inside
	// the store's transaction, maybe more than once: it must only look.
	Replaces func(old []byte) bool
}

// Notifier sends pages on one channel. Notify must honour ctx's deadline and
// return errors classified with Permanent or Temporary.
type Notifier interface {
	Channel() Channel
	Notify(ctx context.Context, p Page) (Receipt, error)
}

// Status is a channel's self-test verdict.
type Status string

// Self-test verdicts.
const (
	Up       Status = "up"
	Degraded Status = "degraded"
	Down     Status = "down"
)

// Health is one self-test's result.
type Health struct {
	Status Status
	// Reason says why, in words fit for an alarm ("account suspended (code 20005)").
	Reason string
	// WillFail is set for a degraded channel whose cause will become an outage
	// (a low balance, a trial account) and so deserves an alarm.
	WillFail bool
}

// SelfTester is implemented by channels that can check their own account,
// credentials and configuration without paging anyone.
type SelfTester interface {
	SelfTest(ctx context.Context) Health
}

// Action is what a person's response asks for.
type Action string

// Responses a person can give.
const (
	Ack      Action = "ack"
	Unack    Action = "unack"
	Escalate Action = "escalate"
	Resolve  Action = "resolve"
)

// Response is an answer from a person (or a provider acting for one) that came
// back through a channel.
type Response struct {
	Action   Action
	Incident uint64 // 0 when only PageID or IncidentKey is known
	// IncidentKey identifies the incident when Incident is 0 (PagerDuty).
	IncidentKey string
	// PageID is the page answered, if known: an answer applies as of that page,
	// so a late "escalate" cannot escalate twice.
	PageID  string
	Channel Channel
	// From identifies who answered on that channel: a phone number, a Matrix user id,
	// a PagerDuty user id or email. The engine maps it to a rota person.
	From string
	// Alias is another address of the same responder on that channel,
	// tried when From matches nobody (a PagerDuty user's email, looked up
	// by the user id in From). A string, so Response stays comparable.
	Alias string
	// Name is the responder's display name as the provider gave it, if any.
	Name string
	At   time.Time
}

// Outcome tells the channel how a response was taken, so it can confirm to the person.
type Outcome struct {
	Incident uint64
	// Applied is false when the response changed nothing (already acknowledged,
	// a late escalate, a resolved incident).
	Applied bool
	// By is the display name of the rota person the response was attributed to.
	By string
	// Message is a short confirmation fit to say or post ("Incident 42 acknowledged").
	Message string
}

// Responder takes responses; the escalation engine implements it.
type Responder interface {
	Respond(ctx context.Context, r Response) (Outcome, error)
}

// ErrNotOnRota is returned by Responder when the responder is not a person on the
// rota; the channel answers "only people on the rota can acknowledge".
var ErrNotOnRota = errors.New("only people on the rota can acknowledge")

// ErrUnknownIncident is returned by Responder when no incident matches.
var ErrUnknownIncident = errors.New("unknown incident")

// Error is a classified delivery failure.
type Error struct {
	Permanent bool
	// Recipient is set when the failure concerns one recipient only (an
	// invalid or landline number, a STOP, an unknown handset): it moves that
	// person's page on and is recorded against the person, but says nothing
	// about the channel's account, so self-tests do not count it.
	Recipient  bool
	RetryAfter time.Duration // for temporary errors: the provider's hint, or 0
	Code       string        // provider's code, e.g. "M_FORBIDDEN", "20005", "402"
	Err        error
}

func (e *Error) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	if e.Recipient {
		kind = "permanent recipient"
	}
	if e.Code != "" {
		return fmt.Sprintf("%s failure (%s): %v", kind, e.Code, e.Err)
	}
	return fmt.Sprintf("%s failure: %v", kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent marks err as a failure that retrying cannot fix (invalid number,
// lapsed account, revoked token): the engine moves to the next channel at once.
func Permanent(code string, err error) error {
	return &Error{Permanent: true, Code: code, Err: err}
}

// PermanentRecipient marks err as a permanent failure about the recipient
// only: this person cannot be reached on this channel, others still can.
func PermanentRecipient(code string, err error) error {
	return &Error{Permanent: true, Recipient: true, Code: code, Err: err}
}

// IsRecipient reports whether err is a failure about one recipient only.
func IsRecipient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Recipient
}

// Temporary marks err as a failure worth retrying after retryAfter (0: the
// engine's own backoff).
func Temporary(code string, retryAfter time.Duration, err error) error {
	return &Error{Code: code, RetryAfter: retryAfter, Err: err}
}

// IsPermanent reports whether err is classified permanent. Unclassified errors
// are temporary: a network blip must not skip a channel.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// RetryAfter returns the provider's retry hint carried by err, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// StateStore is a small durable key-value store a channel may use for its own
// state (Matrix sync position, event id → incident). Keys are namespaced by bucket.
// Get returns nil, nil for a missing key.
type StateStore interface {
	GetState(ctx context.Context, bucket, key string) ([]byte, error)
	PutState(ctx context.Context, bucket, key string, value []byte) error
}

// StateSweeper is implemented by state stores that can walk a bucket: a
// channel loads its state at start and expires old entries with it.
// SweepState calls keep for every entry of bucket (in key order) and deletes
// those it returns false for; a missing bucket is empty.
type StateSweeper interface {
	SweepState(ctx context.Context, bucket string, keep func(key string, value []byte) bool) error
}

// DeliveryStatus is what a provider later reports about a page it accepted.
type DeliveryStatus string

// Delivery outcomes reported by provider callbacks (Twilio status callbacks,
// Matrix read receipts, ...). None of them is an acknowledgement.
const (
	Delivered DeliveryStatus = "delivered" // reached the device (SMS delivered, call answered by a person)
	NoAnswer  DeliveryStatus = "no-answer" // rang out, busy, canceled, or a voicemail answered
	Failed    DeliveryStatus = "failed"    // the provider could not deliver
	// Unconfirmed is a channel's own evidence that a page it accepted did
	// not (or cannot be shown to) reach anyone; Report.Detail carries the
	// reason in words (e.g. PagerDuty's). A Delivered report is the
	// confirmation.
	Unconfirmed DeliveryStatus = "unconfirmed"
)

// Confirmer is implemented by a notifier that confirms delivery: it promises
// a Delivered (or Unconfirmed, or Failed) Report for each page it sends
// within ConfirmWithin. A page still unconfirmed then counts as not
// delivered, and its step moves on if nothing else of it may reach anyone.
// 0 means the channel gives no confirmation (the page counts as sent).
type Confirmer interface {
	ConfirmWithin() time.Duration
}

// Report is a provider's later word on a page: delivered, not answered, failed.
type Report struct {
	PageID   string
	Incident uint64
	Channel  Channel
	Status   DeliveryStatus
	// Permanent is set on a Failed report that retrying cannot fix.
	Permanent bool
	// Recipient is set on a Failed report about this recipient only (unknown
	// handset, landline): it is not evidence against the channel's account.
	Recipient bool
	// Detail is the provider's words, for the timeline ("busy", "voicemail", "30003 unreachable").
	Detail string
	At     time.Time
}

// Reporter takes delivery reports; the escalation engine implements it and
// records them in the incident's timeline. A Failed report counts as evidence
// against the channel's health; NoAnswer is normal and the step's timer runs on.
type Reporter interface {
	Report(ctx context.Context, r Report) error
}
