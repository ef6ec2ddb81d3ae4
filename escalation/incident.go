// Package escalation holds Klaxon's domain: incidents opened from Alertmanager
// notifications, their timelines, the pages sent for them, the Store that keeps
// them durable, and the Engine that walks a rota's policy until someone
// acknowledges. It knows no concrete notifier: channels are reached through the
// interfaces in package notifiers.
package escalation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// State is an incident's lifecycle state.
type State string

// Incident states.
const (
	Open         State = "open"
	Acknowledged State = "acknowledged"
	Resolved     State = "resolved"
)

// ParseState parses an incident state name; "" is allowed and means any.
func ParseState(s string) (State, error) {
	switch State(s) {
	case "", Open, Acknowledged, Resolved:
		return State(s), nil
	}
	return "", fmt.Errorf("unknown state %q (want open, acknowledged or resolved)", s)
}

// Alert is one Alertmanager alert inside an incident, keyed by fingerprint.
type Alert struct {
	Fingerprint  string            `json:"fingerprint"`
	Status       string            `json:"status"` // firing | resolved
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Firing reports whether the alert is firing.
func (a Alert) Firing() bool { return a.Status == "firing" }

// Notification is one Alertmanager webhook delivery (payload version 4), parsed
// and validated, in domain terms.
type Notification struct {
	GroupKey          string
	Status            string // firing | resolved
	Receiver          string
	GroupLabels       map[string]string
	CommonLabels      map[string]string
	CommonAnnotations map[string]string
	ExternalURL       string
	TruncatedAlerts   int
	Alerts            []Alert
}

// Escalation is where an incident stands in its policy. It is engine state,
// stored with the incident so that a restart resumes where it was.
type Escalation struct {
	Policy string `json:"policy,omitempty"`
	// Started is false until the first step has been planned.
	Started bool `json:"started,omitempty"`
	Round   int  `json:"round"` // 0-based repeat round
	Step    int  `json:"step"`  // index into the policy's steps
	// Generation increases every time the incident moves to another step, is
	// acknowledged, unacknowledged or resolved (always through the incident
	// state machine, (*Incident).move). A page remembers the generation it
	// was sent in, so an answer applies as of that page.
	Generation uint64    `json:"generation"`
	StepAt     time.Time `json:"stepAt,omitzero"`
	// NextAt is when the engine must decide about the incident again (the
	// step's wait, the re-page interval, the acknowledgement timeout; zero:
	// never). The engine may wake earlier for a confirmation (see WakeAt).
	NextAt time.Time `json:"nextAt,omitzero"`
	// Exhausted is set once the policy and its fallback have been used up.
	Exhausted bool `json:"exhausted,omitempty"`
	// Fallback is set once the fallback list has been paged.
	Fallback bool `json:"fallback,omitempty"`
	// Since is the generation this escalation began in: 0 for the first,
	// and the new generation when an acknowledgement timed out or was
	// withdrawn and paging starts again from the first step. An incident is
	// never exhausted while none of its pages since then was really handed
	// to a channel (whatever the result): with nothing attempted, it waits
	// instead. The pages say so (see Attempted), so recording a page's
	// result does not rewrite its incident.
	Since uint64 `json:"since,omitempty"`
	// Waiting is set while nobody can be paged (no channel configured for the
	// policy's people, or no policy applies): the incident is re-planned when a
	// channel comes up, the rota reloads, and every RecheckEvery.
	Waiting bool `json:"waiting,omitempty"`
	// Repages counts how often an exhausted incident was paged again.
	Repages int `json:"repages,omitempty"`
	// ConfirmBy is the earliest confirmation deadline of a page of the
	// incident that its channel accepted and has not confirmed yet (zero:
	// none). The engine wakes for it (see WakeAt) to mark such a page
	// unconfirmed and, if it was its step's last hope, move on at once.
	ConfirmBy time.Time `json:"confirmBy,omitzero"`
}

// WakeAt is when the engine must look at the incident again: its next
// decision (NextAt) or, if earlier, a page's confirmation deadline
// (ConfirmBy); zero for never. Stores keep it in their schedule index, so a
// deadline fires after a restart too.
func (e Escalation) WakeAt() time.Time {
	switch {
	case e.ConfirmBy.IsZero():
		return e.NextAt
	case e.NextAt.IsZero() || e.ConfirmBy.Before(e.NextAt):
		return e.ConfirmBy
	}
	return e.NextAt
}

// Incident is one Alertmanager group while any of its alerts fire.
type Incident struct {
	ID                uint64            `json:"id"`
	GroupKey          string            `json:"groupKey"`
	State             State             `json:"state"`
	Title             string            `json:"title"`
	Severity          string            `json:"severity,omitempty"`
	Receiver          string            `json:"receiver,omitempty"`
	ExternalURL       string            `json:"externalURL,omitempty"`
	GroupLabels       map[string]string `json:"groupLabels,omitempty"`
	CommonLabels      map[string]string `json:"commonLabels,omitempty"`
	CommonAnnotations map[string]string `json:"commonAnnotations,omitempty"`
	Alerts            []Alert           `json:"alerts"`
	OpenedAt          time.Time         `json:"openedAt"`
	UpdatedAt         time.Time         `json:"updatedAt"`
	AckedAt           time.Time         `json:"acknowledgedAt,omitzero"`
	AckedBy           string            `json:"acknowledgedBy,omitempty"`
	AckedVia          string            `json:"acknowledgedVia,omitempty"`
	ResolvedAt        time.Time         `json:"resolvedAt,omitzero"`
	// Synthetic marks alarms Klaxon raises about itself.
	Synthetic  bool       `json:"synthetic,omitempty"`
	Escalation Escalation `json:"escalation"`
}

// Firing counts the incident's firing alerts.
func (inc *Incident) Firing() int {
	n := 0
	for _, a := range inc.Alerts {
		if a.Firing() {
			n++
		}
	}
	return n
}

// Labels is the label set routes match against: the common labels, or the
// first alert's labels when the group has none in common.
func (inc *Incident) Labels() map[string]string {
	if len(inc.CommonLabels) > 0 {
		return inc.CommonLabels
	}
	if len(inc.Alerts) > 0 {
		return inc.Alerts[0].Labels
	}
	return map[string]string{}
}

// EventKind names a timeline entry.
type EventKind string

// Timeline entry kinds.
const (
	EvOpened       EventKind = "opened"
	EvAlertFiring  EventKind = "alert-firing"
	EvAlertResolve EventKind = "alert-resolved"
	EvTruncated    EventKind = "truncated"
	EvPolicy       EventKind = "policy"
	EvStep         EventKind = "step"
	EvPaged        EventKind = "paged"
	EvPageResult   EventKind = "page-result"
	EvSkipped      EventKind = "skipped"
	EvAcknowledged EventKind = "acknowledged"
	EvUnack        EventKind = "unacknowledged"
	EvEscalated    EventKind = "escalated"
	EvRepaged      EventKind = "repaged"
	EvExhausted    EventKind = "exhausted"
	EvResolved     EventKind = "resolved"
	EvIgnored      EventKind = "ignored"
	EvNote         EventKind = "note"
)

// Event is one append-only timeline entry.
type Event struct {
	At      time.Time `json:"at"`
	Kind    EventKind `json:"kind"`
	Text    string    `json:"text"`
	Actor   string    `json:"actor,omitempty"`
	Channel string    `json:"channel,omitempty"`
	PageID  string    `json:"pageId,omitempty"`
}

// PageStatus is an outbox entry's state.
type PageStatus string

// Outbox entry states, after GoAlert's message states.
const (
	PagePending  PageStatus = "pending"          // recorded, not yet handed over
	PageSent     PageStatus = "sent"             // the provider accepted it
	PageDeliv    PageStatus = "delivered"        // the provider reported delivery
	PageTempFail PageStatus = "failed-temporary" // will be retried
	PagePermFail PageStatus = "failed-permanent" // will not be retried
	PageCanceled PageStatus = "canceled"         // no longer needed (acknowledged, resolved, step passed)
	PageNoAnswer PageStatus = "no-answer"        // rang out, voicemail, busy
	PageDeferred PageStatus = "deferred"         // held by a rate limit, folded into a later page
)

// Done reports whether the page needs no more sending. Its opposite, a page
// still owed to its person (pending, failed-temporary, deferred), is the set
// whose states the page state machine lets move among each other.
func (s PageStatus) Done() bool {
	switch s {
	case PagePending, PageTempFail, PageDeferred:
		return false
	}
	return true
}

// Sent reports whether the provider accepted the page: sent, or any later
// word on it (delivered, no answer, unconfirmed: the provider took it even if
// it could not be shown to arrive). The channels of sent pages are the ones
// told when the incident is answered or resolves.
func (s PageStatus) Sent() bool {
	return s == PageSent || s == PageDeliv || s == PageNoAnswer || s == PageUnconfirmed
}

// PageRecord is one outbox entry: a page decided and recorded before it is sent.
type PageRecord struct {
	ID         string              `json:"id"` // "<incident>-<seq>": the idempotency key
	Incident   uint64              `json:"incident"`
	Seq        int                 `json:"seq"`
	Kind       notifiers.Kind      `json:"kind"`
	Channel    notifiers.Channel   `json:"channel"`
	Recipient  notifiers.Recipient `json:"recipient"`
	Generation uint64              `json:"generation"`
	Step       int                 `json:"step"`
	Round      int                 `json:"round"`
	RoutingKey string              `json:"routingKey,omitempty"`
	Text       string              `json:"text,omitempty"`
	Via        notifiers.Channel   `json:"via,omitempty"` // for updates: the channel the answer came through
	Status     PageStatus          `json:"status"`
	Attempts   int                 `json:"attempts"`
	CreatedAt  time.Time           `json:"createdAt"`
	NextTry    time.Time           `json:"nextTry,omitzero"`
	LastError  string              `json:"lastError,omitempty"`
	ProviderID string              `json:"providerId,omitempty"`
	// HeldAt is when a rate limit first held the page back.
	HeldAt time.Time `json:"heldAt,omitzero"`
	// FoldedInto names the page that carried this held page's news to the
	// person (status folded): one the provider accepted.
	FoldedInto string `json:"foldedInto,omitempty"`
	// SentAt is when the provider accepted the page.
	SentAt time.Time `json:"sentAt,omitzero"`
	// ConfirmBy is, for a page of a channel that confirms delivery
	// (notifiers.Confirmer), when the confirmation is due: a page still
	// sent then becomes unconfirmed.
	ConfirmBy time.Time `json:"confirmBy,omitzero"`
}

// PageID formats an outbox entry id.
func PageID(incident uint64, seq int) string { return fmt.Sprintf("%d-%d", incident, seq) }

// ParsePageID splits an outbox entry id.
func ParsePageID(id string) (incident uint64, seq int, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	inc, err1 := strconv.ParseUint(a, 10, 64)
	s, err2 := strconv.Atoi(b)
	return inc, s, err1 == nil && err2 == nil && inc > 0 && s > 0
}

// Change is what one decision adds to an incident: timeline entries, new
// outbox entries, and updates of existing ones. It is written in the same
// transaction as the incident itself.
type Change struct {
	Events []Event
	Pages  []PageRecord // new entries (Seq and ID assigned by the store when 0) or updated ones
	// State is channels' state written with the change (a sent page's
	// receipt: see notifiers.Receipt.State).
	State []notifiers.StateWrite
}

// Empty reports whether the change writes nothing.
func (c *Change) Empty() bool { return len(c.Events) == 0 && len(c.Pages) == 0 && len(c.State) == 0 }

// Note appends a timeline entry.
func (c *Change) Note(at time.Time, kind EventKind, format string, args ...any) {
	c.Events = append(c.Events, Event{At: at, Kind: kind, Text: fmt.Sprintf(format, args...)})
}

// UpdateFunc decides a change to an incident given its current state and its
// outbox entries (see Update). It may be called more than once for one
// update (Store.Write may run its transaction again), so it must have no
// effect outside its arguments and result. Returning ErrNoChange writes
// nothing.
type UpdateFunc func(inc *Incident, pages []PageRecord) (Change, error)

// IngestFunc decides what a notification changes about an incident's
// escalation, given the timeline entries the notification itself produced.
// Like UpdateFunc it may run more than once and must have no outside effect.
type IngestFunc func(inc *Incident, pages []PageRecord, events []Event) (Change, error)

// ErrNoChange, returned by an UpdateFunc, ends the update without writing
// (see Update and Ingest).
var ErrNoChange = errors.New("no change")

// ErrNotFound is returned for an unknown incident.
var ErrNotFound = errors.New("incident not found")

// IngestResult says what a notification did.
type IngestResult struct {
	Incident uint64 // 0 when the notification touched no incident
	Opened   bool   // a new incident was opened
	Changed  bool   // anything was written
	Resolved bool   // the incident became resolved
}

// Due is an unresolved incident's place in the schedule.
type Due struct {
	Incident uint64
	State    State
	NextAt   time.Time // the incident's WakeAt; zero: nothing scheduled
	Pages    []DuePage
}

// Held summarises the pages a rate limit holds back for one person on one
// channel, for the summary a carrier page gives ("41,237 incidents need you").
type Held struct {
	Count int
	// Newest lists the incidents of the newest held pages, newest first (a few).
	Newest []uint64
}

// DuePage is an unfinished outbox entry in the schedule.
type DuePage struct {
	ID       string
	NextTry  time.Time // zero: as soon as possible
	Deferred bool      // held back by a rate limit
	Person   string
	Channel  notifiers.Channel
}

// Prune says what retention deletes.
type Prune struct {
	// ResolvedBefore deletes incidents resolved before it (with their
	// timelines and pages), and Alertmanager groups with nothing open and
	// nothing remembered since. Zero keeps every incident.
	ResolvedBefore time.Time
	// State deletes channel state keys last written before a cutoff.
	State []StatePrune
}

// StatePrune names state keys that expire: those of Bucket starting with
// Prefix, last written before Before (handled-event and replay keys, never
// the sync position or the installation id).
type StatePrune struct {
	Bucket, Prefix string
	Before         time.Time
}

// Pruned counts what Prune deleted.
type Pruned struct {
	Incidents, Groups, StateKeys int
}

// Filter selects incidents in a listing.
type Filter struct {
	State State // "" for any
	Limit int   // 0 for the store's default
	// Before lists only incidents with an id below it (paging), 0 for none.
	Before uint64
}

// Store keeps incidents, their timelines and outboxes durable. Every write is
// committed and synced before the call returns. Implementations: boltstore,
// etcdstore.
type Store interface {
	// Write runs fn in one transaction (see Tx) and returns once what fn
	// wrote is committed and durable. If fn returns an error, nothing it
	// wrote is kept and Write returns that error. fn may run more than once
	// (a store retries it on a conflict, or shares one commit among
	// concurrent writes), so it must be free of outside effects and set
	// whatever it reports afresh each time. The rules that use it are
	// Ingest and Update.
	Write(ctx context.Context, fn func(Tx) error) error
	// Incident returns one incident.
	Incident(ctx context.Context, id uint64) (Incident, error)
	// Timeline returns an incident's timeline, oldest first.
	Timeline(ctx context.Context, id uint64) ([]Event, error)
	// Pages returns an incident's outbox entries, oldest first.
	Pages(ctx context.Context, id uint64) ([]PageRecord, error)
	// Incidents lists incidents, newest first.
	Incidents(ctx context.Context, f Filter) ([]Incident, error)
	// Schedule calls fn for every open or acknowledged incident with its stored
	// deadline and unfinished outbox entries: what a restart needs to resume
	// escalation, read from a compact index without loading the incidents.
	Schedule(ctx context.Context, fn func(Due) error) error
	// Held counts the pages held back by a rate limit for person on channel,
	// with the incidents of the newest few (at most newest).
	Held(ctx context.Context, person string, ch notifiers.Channel, newest int) (Held, error)
	// HeldPages lists the ids of pages held back by a rate limit for person
	// on channel, in outbox order (oldest incident first), starting after
	// page id after ("" from the start), at most limit of them: the engine
	// reads a person's held pages from the store in chunks instead of
	// keeping one retry each in memory.
	HeldPages(ctx context.Context, person string, ch notifiers.Channel, after string, limit int) ([]string, error)
	// Prune deletes what retention no longer keeps (see Prune).
	Prune(ctx context.Context, p Prune) (Pruned, error)
	// Counts returns the number of incidents by state.
	Counts(ctx context.Context) (map[State]int, error)
	// Ping checks that the store is open and writable.
	Ping(ctx context.Context) error
	notifiers.StateStore
	Close() error
}

// sortAlerts orders alerts by fingerprint for stable output.
func sortAlerts(as []Alert) {
	sort.Slice(as, func(i, j int) bool { return as[i].Fingerprint < as[j].Fingerprint })
}

// Exporter receives a store's whole content, for copying it into another
// store (`klaxon migrate`).
type Exporter interface {
	// Sequence is the highest incident id ever allocated.
	Sequence(n uint64) error
	// Incident is one incident with its timeline and outbox, oldest first.
	Incident(inc Incident, timeline []Event, pages []PageRecord) error
	// Group is what the store remembers of one Alertmanager group.
	Group(key string, g Group) error
	// State is one key of a channel's state.
	State(bucket, key string, value []byte) error
}
