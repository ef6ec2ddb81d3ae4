// Package notices tells people about their own shifts: when a rota edit
// changes who holds a shift in the coming weeks, each person affected gets one
// message in their own words; before each shift the incoming person gets a
// reminder, and at the handoff the outgoing person a one-line summary.
//
// Messages go through Matrix (a direct message or a mention in the alert
// room) or otherwise SMS, never a phone call or PagerDuty, and never count
// against the page rate limits: they have their own durable outbox, kept in
// the store through notifiers.StateStore as one record, so every change to it
// is atomic. A notice is written before it is sent, sent once, and survives a
// restart; ids are derived from what they announce, so computing them twice
// (a crash between writing and recording the rota) never duplicates one.
package notices

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/rota"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Defaults.
const (
	// DefaultDays is how far ahead a rota edit's changes are announced.
	DefaultDays = 28
	// SendTimeout bounds one send.
	SendTimeout = 20 * time.Second
	// noticeLife is how long a change notice is retried before it is given up.
	noticeLife = 24 * time.Hour
	// maxDone bounds the remembered ids of messages sent or given up.
	maxDone = 4000
	// maxLookback bounds how far back handoff summaries are made after a
	// restart.
	maxLookback = 12 * time.Hour
)

// State bucket and key of the outbox record.
const (
	Bucket     = "notices"
	stateKey   = "outbox"
	corruptKey = "outbox.unreadable"
)

// Kinds of message.
const (
	KindChange   = "change"   // a rota edit changed the person's shifts
	KindReminder = "reminder" // a shift starts soon
	KindHandoff  = "handoff"  // the person's shift just ended
)

// Config is what a Service is built with.
type Config struct {
	// State holds the outbox (required).
	State notifiers.StateStore
	// Notifiers are the configured channels; only Matrix and SMS are used.
	Notifiers []notifiers.Notifier
	// Usable reports whether a channel can be used now (nil: all can).
	Usable func(notifiers.Channel) bool
	// Clock is the source of time (escalation.RealClock when nil).
	Clock escalation.Clock
	// Days is how far ahead a rota edit's changes are announced (DefaultDays).
	Days int
	// OpenIncidents counts the open incidents, for reminders (optional).
	OpenIncidents func(context.Context) (int, error)
	// OnUndeliverable is called when a reminder reaches nobody: it feeds the
	// coverage alarm, whose check reads Problems (optional).
	OnUndeliverable func(context.Context)
	Logger          *slog.Logger
}

// Message is one entry of the outbox.
type Message struct {
	ID        string              `json:"id"`
	Kind      string              `json:"kind"`
	Recipient notifiers.Recipient `json:"recipient"`
	Text      string              `json:"text"`
	NotBefore time.Time           `json:"not_before"`
	Expires   time.Time           `json:"expires"`
	NextTry   time.Time           `json:"next_try,omitzero"`
	Attempts  int                 `json:"attempts,omitempty"`
	// Failed lists the channels that failed for good for this message.
	Failed []notifiers.Channel `json:"failed,omitempty"`
	// Rotation and ShiftStart/ShiftEnd name the shift a reminder is about.
	Rotation   string    `json:"rotation,omitempty"`
	ShiftStart time.Time `json:"shift_start,omitzero"`
	ShiftEnd   time.Time `json:"shift_end,omitzero"`
}

// problem is a reminder nobody could receive, kept until its shift ends.
type problem struct {
	Text  string    `json:"text"`
	Until time.Time `json:"until"`
}

// record is the whole durable state, written as one value.
type record struct {
	// Baseline is the rota source the last notices were computed against.
	Baseline []byte    `json:"baseline"`
	Pending  []Message `json:"pending"`
	Done     []string  `json:"done"`
	// HandoffsTo: handoff summaries are made for handoffs up to this instant.
	HandoffsTo time.Time `json:"handoffs_to,omitzero"`
	Problems   []problem `json:"problems,omitempty"`
}

// Service keeps the outbox and sends it. Its methods are safe for concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	chans map[notifiers.Channel]notifiers.Notifier
	kick  chan struct{}

	mu   sync.Mutex
	rec  record
	rota *rota.Rota
}

// New returns a Service; call Start before Run.
func New(cfg Config) (*Service, error) {
	if cfg.State == nil {
		return nil, errors.New("notices: no state store")
	}
	if cfg.Clock == nil {
		cfg.Clock = escalation.RealClock{}
	}
	if cfg.Days <= 0 {
		cfg.Days = DefaultDays
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "notices"), chans: map[notifiers.Channel]notifiers.Notifier{}, kick: make(chan struct{}, 1)}
	for _, n := range cfg.Notifiers {
		if c := n.Channel(); c == notifiers.Matrix || c == notifiers.SMS {
			s.chans[c] = n
		}
	}
	return s, nil
}

// Start loads the outbox and takes r (parsed from data) as the rota in force:
// if it differs from the rota the last notices were computed against (an
// edit while Klaxon was down, or a crash before the notices were written),
// its changes are announced now.
func (s *Service) Start(ctx context.Context, r *rota.Rota, data []byte) error {
	s.mu.Lock()
	b, err := s.cfg.State.GetState(ctx, Bucket, stateKey)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("notices: reading the outbox: %w", err)
	}
	if b != nil {
		if err := json.Unmarshal(b, &s.rec); err != nil {
			// Paging must not wait for notices: keep the unreadable record
			// aside for a person to look at, and start afresh.
			s.rec = record{}
			if perr := s.cfg.State.PutState(ctx, Bucket, corruptKey, b); perr != nil {
				s.mu.Unlock()
				return fmt.Errorf("notices: the stored outbox is unreadable (%v) and could not be kept aside: %w", err, perr)
			}
			s.log.Error("the stored notices outbox is unreadable: kept aside, starting afresh (pending notices are lost)", "error", err, "bucket", Bucket, "key", corruptKey)
		}
	}
	if s.rec.HandoffsTo.IsZero() {
		s.rec.HandoffsTo = s.cfg.Clock.Now()
	}
	s.mu.Unlock()
	return s.RotaChanged(ctx, r, data)
}

// RotaChanged announces the changes between the rota the last notices were
// computed against and r (parsed from data), which now serves. The notices
// and the new baseline are written in one store write before anything is
// sent. Call it only with a rota that loaded: a broken edit sends nothing.
func (s *Service) RotaChanged(ctx context.Context, r *rota.Rota, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rota = r
	defer s.wake()
	if bytes.Equal(s.rec.Baseline, data) {
		return nil
	}
	next := s.rec
	next.Baseline = data
	if s.rec.Baseline != nil {
		old, _, err := rota.Parse("previous rota", s.rec.Baseline)
		if err != nil {
			s.log.Warn("the rota notices were last computed against no longer parses; no change notices for this edit", "error", err)
		} else {
			now := s.cfg.Clock.Now()
			sum := sha256.Sum256(data)
			version := hex.EncodeToString(sum[:8])
			msgs := ChangeNotices(old, r, now, now.AddDate(0, 0, s.cfg.Days))
			next.Pending = slices.Clone(s.rec.Pending)
			for _, m := range msgs {
				m.ID = "change-" + version + "-" + m.Recipient.PersonID
				m.NotBefore, m.Expires = now, now.Add(noticeLife)
				if s.known(m.ID) {
					continue
				}
				next.Pending = append(next.Pending, m)
			}
			s.log.Info("rota change notices queued", "people", len(msgs))
		}
	}
	return s.save(ctx, next)
}

// known reports whether a message with id is pending or done.
func (s *Service) known(id string) bool {
	return slices.Contains(s.rec.Done, id) || slices.ContainsFunc(s.rec.Pending, func(m Message) bool { return m.ID == id })
}

// save writes next as the outbox and adopts it; on failure the old state stays.
func (s *Service) save(ctx context.Context, next record) error {
	if len(next.Done) > maxDone {
		next.Done = slices.Clone(next.Done[len(next.Done)-maxDone:])
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if err := s.cfg.State.PutState(ctx, Bucket, stateKey, b); err != nil {
		return fmt.Errorf("notices: writing the outbox: %w", err)
	}
	s.rec = next
	return nil
}

func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Pending returns the messages not yet sent (for tests and status).
func (s *Service) Pending() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rec.Pending)
}

// Problems lists reminders nobody could receive, for shifts not yet over at
// now: the coverage check reports them.
func (s *Service) Problems(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.rec.Problems {
		if p.Until.After(now) {
			out = append(out, p.Text)
		}
	}
	return out
}

// Run plans reminders and handoff summaries and sends the outbox until ctx
// ends.
func (s *Service) Run(ctx context.Context) error {
	timer := s.cfg.Clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-timer.C():
		}
		s.plan(ctx)
		s.sendDue(ctx)
		timer.Stop()
		timer.Reset(s.nextWake().Sub(s.cfg.Clock.Now()))
	}
}

// plan queues the reminders of shifts starting within their rotation's
// reminder lead, and the summaries of handoffs since the last planning.
func (s *Service) plan(ctx context.Context) {
	s.mu.Lock()
	r := s.rota
	s.mu.Unlock()
	if r == nil {
		return
	}
	now := s.cfg.Clock.Now()
	open := -1
	if s.cfg.OpenIncidents != nil {
		if n, err := s.cfg.OpenIncidents(ctx); err == nil {
			open = n
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.rec
	next.Pending = slices.Clone(s.rec.Pending)
	added := 0
	add := func(m Message) {
		if !s.known(m.ID) {
			next.Pending = append(next.Pending, m)
			added++
		}
	}
	for _, id := range r.RotationIDs() {
		rot := r.Rotations[id]
		if rot.Reminder > 0 {
			for _, sh := range rota.Shifts(rot, now, now.Add(rot.Reminder+time.Nanosecond)) {
				if !sh.Start.After(now) || sh.Start.After(now.Add(rot.Reminder)) || sh.Person == "" {
					continue
				}
				p := r.People[sh.Person]
				if p == nil {
					continue
				}
				add(Message{
					ID: fmt.Sprintf("reminder-%s-%d-%s", id, sh.Start.Unix(), sh.Person), Kind: KindReminder,
					Recipient: p.Recipient(), Text: ReminderText(r, p, sh, now, open),
					NotBefore: now, Expires: sh.End, Rotation: id, ShiftStart: sh.Start, ShiftEnd: sh.End,
				})
			}
		}
		from := s.rec.HandoffsTo
		if from.Before(now.Add(-maxLookback)) {
			from = now.Add(-maxLookback)
		}
		for _, sh := range rota.Shifts(rot, from, now) {
			if !sh.End.After(from) || sh.End.After(now) || sh.Person == "" {
				continue
			}
			p := r.People[sh.Person]
			if p == nil || rota.OnCall(rot, sh.End) == sh.Person {
				continue
			}
			add(Message{
				ID: fmt.Sprintf("handoff-%s-%d-%s", id, sh.End.Unix(), sh.Person), Kind: KindHandoff,
				Recipient: p.Recipient(), Text: HandoffText(r, p, rot, sh, open),
				NotBefore: now, Expires: now.Add(noticeLife), Rotation: id, ShiftStart: sh.Start, ShiftEnd: sh.End,
			})
		}
	}
	next.HandoffsTo = now
	if added == 0 && !s.rec.HandoffsTo.IsZero() && now.Sub(s.rec.HandoffsTo) < time.Minute {
		return // nothing new: spare the write
	}
	if err := s.save(ctx, next); err != nil {
		s.log.Error("planning reminders failed", "error", err)
	}
}

// nextWake is when Run must look again: the next reminder or handoff, the
// next retry, and at most an hour from now.
func (s *Service) nextWake() time.Time {
	now := s.cfg.Clock.Now()
	wake := now.Add(time.Hour)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.rec.Pending {
		t := m.NotBefore
		if m.NextTry.After(t) {
			t = m.NextTry
		}
		if t.Before(wake) {
			wake = t
		}
	}
	if s.rota != nil {
		for _, rot := range s.rota.Rotations {
			for _, sh := range rota.Shifts(rot, now, now.Add(8*24*time.Hour)) {
				for _, t := range []time.Time{sh.Start.Add(-rot.Reminder), sh.End} {
					if t.After(now) && t.Before(wake) {
						wake = t
					}
				}
			}
		}
	}
	if wake.Before(now) {
		return now
	}
	return wake
}

// sendDue sends every message that is due, one at a time.
func (s *Service) sendDue(ctx context.Context) {
	for ctx.Err() == nil {
		m, ok := s.nextDue()
		if !ok {
			return
		}
		s.sendOne(ctx, m)
	}
}

func (s *Service) nextDue() (Message, bool) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.rec.Pending {
		if !m.NotBefore.After(now) && !m.NextTry.After(now) {
			return m, true
		}
	}
	return Message{}, false
}

// channelFor picks the channel for m: Matrix when the person has a Matrix id
// and it works, otherwise SMS; never one that already failed for good.
func (s *Service) channelFor(m Message) (notifiers.Channel, string) {
	var why []string
	for _, c := range []notifiers.Channel{notifiers.Matrix, notifiers.SMS} {
		missing := m.Recipient.MissingContact(c)
		switch {
		case slices.Contains(m.Failed, c):
			why = append(why, string(c)+" failed")
		case s.chans[c] == nil:
			why = append(why, string(c)+" not configured")
		case missing != "":
			why = append(why, "no "+missing)
		case s.cfg.Usable != nil && !s.cfg.Usable(c):
			why = append(why, string(c)+" down")
		default:
			return c, ""
		}
	}
	return "", strings.Join(why, ", ")
}

func (s *Service) sendOne(ctx context.Context, m Message) {
	now := s.cfg.Clock.Now()
	if now.After(m.Expires) {
		s.finish(ctx, m, "", "expired before it could be sent")
		return
	}
	c, why := s.channelFor(m)
	if c == "" {
		s.finish(ctx, m, "", "nobody can receive it: "+why)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, SendTimeout)
	rc, err := s.chans[c].Notify(sctx, notifiers.Page{ID: "klaxon-" + m.ID, Kind: notifiers.KindMessage, Channel: c, Recipient: m.Recipient, Title: m.Text, Text: m.Text})
	cancel()
	if err == nil {
		s.finish(ctx, m, c, rc.Detail)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.rec
	next.Pending = slices.Clone(s.rec.Pending)
	i := slices.IndexFunc(next.Pending, func(x Message) bool { return x.ID == m.ID })
	if i < 0 {
		return
	}
	e := &next.Pending[i]
	if notifiers.IsPermanent(err) {
		e.Failed = append(slices.Clone(e.Failed), c)
		s.log.Warn("notice failed for good on this channel; trying the next", "id", m.ID, "person", m.Recipient.PersonID, "channel", c, "error", err)
	} else {
		e.Attempts++
		wait := escalation.Backoff(e.Attempts, notifiers.RetryAfter(err))
		e.NextTry = now.Add(wait)
		s.log.Warn("notice send failed; retrying", "id", m.ID, "person", m.Recipient.PersonID, "channel", c, "retry_in", wait, "error", err)
	}
	if err := s.save(ctx, next); err != nil {
		s.log.Error("recording a failed notice", "error", err)
	}
}

// finish takes m out of the outbox: sent on channel c, or (c empty) given up
// for reason. A reminder nobody received becomes a coverage problem.
func (s *Service) finish(ctx context.Context, m Message, c notifiers.Channel, detail string) {
	s.mu.Lock()
	next := s.rec
	next.Pending = slices.DeleteFunc(slices.Clone(s.rec.Pending), func(x Message) bool { return x.ID == m.ID })
	next.Done = append(slices.Clone(s.rec.Done), m.ID)
	undeliverable := c == "" && m.Kind == KindReminder
	if undeliverable {
		now := s.cfg.Clock.Now()
		next.Problems = slices.DeleteFunc(slices.Clone(s.rec.Problems), func(p problem) bool { return !p.Until.After(now) })
		next.Problems = append(next.Problems, problem{
			Text:  fmt.Sprintf("%s could not be reminded of their %s shift at %s: %s", m.Recipient.DisplayName(), m.Rotation, m.ShiftStart.UTC().Format("Mon 2 Jan 15:04 MST"), detail),
			Until: m.ShiftEnd,
		})
	}
	err := s.save(ctx, next)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("recording a notice's outcome failed", "id", m.ID, "error", err)
	}
	if c != "" {
		s.log.Info("notice sent", "id", m.ID, "kind", m.Kind, "person", m.Recipient.PersonID, "channel", c, "detail", detail)
		return
	}
	s.log.Error("notice not delivered", "id", m.ID, "kind", m.Kind, "person", m.Recipient.PersonID, "reason", detail)
	if undeliverable && s.cfg.OnUndeliverable != nil {
		s.cfg.OnUndeliverable(ctx)
	}
}
