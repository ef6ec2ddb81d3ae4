package escalation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Config configures an Engine.
type Config struct {
	Store Store
	// Rota returns the rota in force (it may be reloaded at any time).
	Rota func() Rota
	// Notifiers are the configured channels.
	Notifiers []notifiers.Notifier
	// Health reports channel health at decision time (nil: all configured are up).
	Health HealthFunc
	// Evidence, if set, learns the result of every page (self-tests count
	// failed sends as evidence against a channel).
	Evidence func(ch notifiers.Channel, err error)
	Clock    Clock
	Logger   *slog.Logger
	// SendTimeout bounds each attempt to hand a page to a provider (default 20s).
	SendTimeout time.Duration
	// MaxInFlight bounds concurrent sends per channel (default 32).
	MaxInFlight int
	// Inline runs sends and due work in the calling goroutine instead of in
	// the background: deterministic, for `klaxon simulate` and tests.
	Inline bool
	// OnPage, if set, observes each page handed to a channel (metrics).
	OnPage func(ch notifiers.Channel, result string, took time.Duration)
	// OnExhausted, if set, is called when an incident's policy runs out.
	OnExhausted func(inc Incident)
	// BaseURL, if set, links pages back to the incident's API page.
	BaseURL string
	// Link, if set, makes the link a page carries instead (the web
	// interface's signed link for the page's recipient); "" for none.
	Link func(inc Incident, p PageRecord) string
}

// Engine walks incidents through their escalation policies. It records every
// decision and the pages it implies in the store before sending anything,
// sends outside any transaction with a timeout per attempt, records the
// results, and wakes at the earliest stored deadline.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	channels map[notifiers.Channel]notifiers.Notifier
	sem      map[notifiers.Channel]chan struct{}
	limiter  *limiter

	mu      sync.Mutex
	queue   wakeQueue
	wakes   map[uint64]time.Time // incident → its scheduled wake
	retries map[string]time.Time // page id → its scheduled retry
	kick    chan struct{}
	workers chan struct{} // bounds concurrent wake-ups and retries
	wg      sync.WaitGroup
}

// New builds an Engine. Call Recover before Run after a restart.
func New(cfg Config) *Engine {
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 20 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 32
	}
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		channels: map[notifiers.Channel]notifiers.Notifier{},
		sem:      map[notifiers.Channel]chan struct{}{},
		wakes:    map[uint64]time.Time{},
		retries:  map[string]time.Time{},
		kick:     make(chan struct{}, 1),
		workers:  make(chan struct{}, 64),
	}
	e.limiter = newLimiter(func(ch notifiers.Channel) (int, time.Duration) {
		if r := e.rota(); r != nil {
			return r.Limit(ch)
		}
		return 0, 0
	})
	for _, n := range cfg.Notifiers {
		e.channels[n.Channel()] = n
		e.sem[n.Channel()] = make(chan struct{}, cfg.MaxInFlight)
	}
	return e
}

func (e *Engine) rota() Rota {
	if e.cfg.Rota == nil {
		return nil
	}
	return e.cfg.Rota()
}

// health combines configuration with the health source.
func (e *Engine) health(ch notifiers.Channel) ChannelHealth {
	if _, ok := e.channels[ch]; !ok {
		return ChannelHealth{}
	}
	if e.cfg.Health == nil {
		return ChannelHealth{Configured: true}
	}
	h := e.cfg.Health(ch)
	h.Configured = true
	return h
}

// situation captures what a decision about inc depends on, now.
func (e *Engine) situation(inc *Incident, now time.Time) Situation {
	s := Situation{Rota: e.rota(), Health: e.health, Now: now}
	if s.Rota == nil {
		return s
	}
	name := inc.Escalation.Policy
	if name == "" {
		name = inc.CommonLabels[AlarmPolicyLabel]
	}
	if name != "" {
		if p, ok := s.Rota.PolicyNamed(name); ok {
			s.Policy = p
			return s
		}
	}
	if p, err := s.Rota.PolicyFor(inc.Labels()); err == nil {
		s.Policy = p
	}
	return s
}

// Ingest stores an Alertmanager notification and, in the same transaction,
// plans the first step of a new incident; it returns once that is on disk,
// then hands the pages to their channels.
func (e *Engine) Ingest(ctx context.Context, n Notification) (IngestResult, error) {
	now := e.cfg.Clock.Now()
	var inc Incident
	var ch Change
	res, err := e.cfg.Store.Ingest(ctx, n, now, func(in *Incident, pages []PageRecord, events []Event) (Change, error) {
		c, err := e.onIngest(in, pages, events, now)
		inc, ch = *in, c
		return c, err
	})
	if err != nil || !res.Changed {
		return res, err
	}
	if res.Opened {
		e.log.Info("incident opened", "incident", res.Incident, "title", inc.Title, "policy", inc.Escalation.Policy)
	}
	e.after(ctx, inc, ch)
	return res, nil
}

// onIngest decides what a notification changes about the incident's escalation.
func (e *Engine) onIngest(inc *Incident, pages []PageRecord, events []Event, now time.Time) (Change, error) {
	switch {
	case inc.State == Resolved:
		var ch Change
		Cancel(pages, "resolved", &ch)
		Tell(inc, pages, notifiers.KindResolved, fmt.Sprintf("Incident %d resolved in Alertmanager.", inc.ID), now, &ch)
		return ch, nil
	case !inc.Escalation.Started:
		return Decide(inc, pages, e.situation(inc, now)), nil
	case inc.State == Acknowledged:
		var ch Change
		announceNewAlerts(inc, pages, events, now, &ch)
		return ch, nil
	}
	return Change{}, ErrNoChange
}

// Act applies an action given through the API or CLI.
func (e *Engine) Act(ctx context.Context, id uint64, action notifiers.Action, actor string) (notifiers.Outcome, error) {
	return e.apply(ctx, id, action, actor, "api", "")
}

// Respond implements notifiers.Responder: a person's answer through a channel.
func (e *Engine) Respond(ctx context.Context, r notifiers.Response) (notifiers.Outcome, error) {
	id := r.Incident
	if id == 0 && r.IncidentKey != "" {
		id, _ = ParseKey(r.IncidentKey)
	}
	if id == 0 && r.PageID != "" {
		id, _, _ = ParsePageID(r.PageID)
	}
	if id == 0 {
		return notifiers.Outcome{}, notifiers.ErrUnknownIncident
	}
	actor := r.From
	if ro := e.rota(); ro != nil {
		if p, ok := ro.PersonByContact(r.Channel, r.From); ok {
			actor = name(p)
		} else if r.Channel != notifiers.PagerDuty {
			// PagerDuty decided itself who may acknowledge there.
			return notifiers.Outcome{Incident: id}, notifiers.ErrNotOnRota
		} else if r.Name != "" {
			actor = r.Name
		}
	}
	if actor == "" {
		actor = string(r.Channel) + " user"
	}
	out, err := e.apply(ctx, id, r.Action, actor, string(r.Channel), r.PageID)
	if errors.Is(err, ErrNotFound) {
		err = notifiers.ErrUnknownIncident
	}
	return out, err
}

// apply records an acknowledgement, un-acknowledgement, escalation or
// resolution, and tells the channels already used.
func (e *Engine) apply(ctx context.Context, id uint64, action notifiers.Action, actor, via, pageID string) (notifiers.Outcome, error) {
	now := e.cfg.Clock.Now()
	out := notifiers.Outcome{Incident: id, By: actor}
	viaCh := notifiers.Channel(via)
	if !viaCh.Valid() {
		viaCh = ""
	}
	inc, ch, err := e.cfg.Store.Update(ctx, id, func(inc *Incident, pages []PageRecord) (Change, error) {
		var ch Change
		out.Applied = false
		ev := Event{At: now, Actor: actor, Channel: via, PageID: pageID}
		switch action {
		case notifiers.Ack:
			switch inc.State {
			case Resolved:
				out.Message = fmt.Sprintf("Incident %d is already resolved.", inc.ID)
				return ch, ErrNoChange
			case Acknowledged:
				out.Message = fmt.Sprintf("Incident %d was already acknowledged by %s.", inc.ID, inc.AckedBy)
				return ch, ErrNoChange
			}
			inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = Acknowledged, now, actor, via
			inc.Escalation.Generation++
			s := e.situation(inc, now)
			inc.Escalation.NextAt = now.Add(s.ackTimeout())
			ev.Kind, ev.Text = EvAcknowledged, fmt.Sprintf("acknowledged by %s via %s", actor, via)
			ch.Events = append(ch.Events, ev)
			Cancel(pages, "acknowledged", &ch)
			out.Message = fmt.Sprintf("Incident %d acknowledged by %s.", inc.ID, actor)
			TellVia(inc, pages, notifiers.KindAcknowledged, fmt.Sprintf("Incident %d acknowledged by %s (via %s).", inc.ID, actor, via), viaCh, now, &ch)
		case notifiers.Unack:
			if inc.State != Acknowledged {
				out.Message = fmt.Sprintf("Incident %d is not acknowledged.", inc.ID)
				return ch, ErrNoChange
			}
			inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = Open, time.Time{}, "", ""
			ev.Kind, ev.Text = EvUnack, fmt.Sprintf("acknowledgement withdrawn by %s via %s: paging again from the first step", actor, via)
			ch.Events = append(ch.Events, ev)
			inc.Escalation = Escalation{Policy: inc.Escalation.Policy, Generation: inc.Escalation.Generation + 1}
			TellVia(inc, pages, notifiers.KindUnacknowledged, fmt.Sprintf("Incident %d un-acknowledged by %s.", inc.ID, actor), viaCh, now, &ch)
			d := Decide(inc, pages, e.situation(inc, now))
			ch.Events, ch.Pages = append(ch.Events, d.Events...), append(ch.Pages, d.Pages...)
			out.Message = fmt.Sprintf("Incident %d un-acknowledged: paging again.", inc.ID)
		case notifiers.Escalate:
			if inc.State == Resolved {
				out.Message = fmt.Sprintf("Incident %d is already resolved.", inc.ID)
				return ch, ErrNoChange
			}
			if pageID != "" {
				if p, ok := findPage(pages, pageID); ok && p.Generation != inc.Escalation.Generation {
					// The answer applies as of its page: the incident moved on since.
					out.Message = fmt.Sprintf("Incident %d has already moved on since that page.", inc.ID)
					return ch, ErrNoChange
				}
			}
			if inc.State == Acknowledged {
				inc.State, inc.AckedAt, inc.AckedBy, inc.AckedVia = Open, time.Time{}, "", ""
			}
			ev.Kind, ev.Text = EvEscalated, fmt.Sprintf("escalated by %s via %s", actor, via)
			ch.Events = append(ch.Events, ev)
			TellVia(inc, pages, notifiers.KindEscalated, fmt.Sprintf("Incident %d escalated by %s.", inc.ID, actor), viaCh, now, &ch)
			if inc.Escalation.Started && !inc.Escalation.Exhausted {
				inc.Escalation.NextAt = now // the current step's wait is over
			}
			d := Decide(inc, pages, e.situation(inc, now))
			ch.Events, ch.Pages = append(ch.Events, d.Events...), append(ch.Pages, d.Pages...)
			out.Message = fmt.Sprintf("Incident %d escalated to the next step.", inc.ID)
		case notifiers.Resolve:
			if inc.State == Resolved {
				out.Message = fmt.Sprintf("Incident %d is already resolved.", inc.ID)
				return ch, ErrNoChange
			}
			inc.State, inc.ResolvedAt = Resolved, now
			inc.Escalation.Generation++
			inc.Escalation.NextAt = time.Time{}
			ev.Kind, ev.Text = EvResolved, fmt.Sprintf("resolved by %s via %s", actor, via)
			ch.Events = append(ch.Events, ev)
			Cancel(pages, "resolved", &ch)
			TellVia(inc, pages, notifiers.KindResolved, fmt.Sprintf("Incident %d resolved by %s.", inc.ID, actor), viaCh, now, &ch)
			out.Message = fmt.Sprintf("Incident %d resolved by %s.", inc.ID, actor)
		default:
			return ch, fmt.Errorf("unknown action %q", action)
		}
		out.Applied = true
		return ch, nil
	})
	if err != nil {
		return out, err
	}
	if out.Applied {
		e.log.Info("incident "+string(action), "incident", id, "by", actor, "via", via)
		e.after(ctx, inc, ch)
	}
	return out, nil
}

func findPage(pages []PageRecord, id string) (PageRecord, bool) {
	for _, p := range pages {
		if p.ID == id {
			return p, true
		}
	}
	return PageRecord{}, false
}

// AlarmPolicyLabel names the label that picks an alarm's policy by id,
// bypassing the rota's routes.
const AlarmPolicyLabel = "klaxon_policy"

// Raise opens an alarm: a synthetic incident Klaxon raises about itself (a
// channel down, Alertmanager silent), escalated through the real engine on the
// named policy. Raising an alarm that is already open changes nothing, so
// callers may raise on every check.
func (e *Engine) Raise(ctx context.Context, key, title, policy string, labels map[string]string) (IngestResult, error) {
	now := e.cfg.Clock.Now()
	l := map[string]string{"alertname": "KlaxonAlarm", "alarm": key, "severity": "critical"}
	for k, v := range labels {
		l[k] = v
	}
	if policy != "" {
		l[AlarmPolicyLabel] = policy
	}
	a := Alert{Fingerprint: "alarm:" + key, Status: "firing", Labels: l, StartsAt: now,
		Annotations: map[string]string{"summary": title}}
	return e.Ingest(ctx, Notification{GroupKey: AlarmGroupPrefix + key, Status: "firing", CommonLabels: l,
		CommonAnnotations: map[string]string{"summary": title}, Alerts: []Alert{a}})
}

// Clear resolves the open alarm with key, if any, telling the channels it used.
func (e *Engine) Clear(ctx context.Context, key, text string) (IngestResult, error) {
	now := e.cfg.Clock.Now()
	a := Alert{Fingerprint: "alarm:" + key, Status: "resolved", Labels: map[string]string{"alarm": key}, EndsAt: now,
		StartsAt: now, Annotations: map[string]string{"summary": text}}
	return e.Ingest(ctx, Notification{GroupKey: AlarmGroupPrefix + key, Status: "resolved", Alerts: []Alert{a}})
}

// AlarmGroupPrefix starts the group key of every alarm Klaxon raises itself.
const AlarmGroupPrefix = "klaxon-alarm:"

// after schedules the incident's next wake and hands new pages to channels.
func (e *Engine) after(ctx context.Context, inc Incident, ch Change) {
	if inc.Escalation.Exhausted && hasEvent(ch.Events, EvExhausted) {
		e.log.Error("escalation exhausted without an acknowledgement", "incident", inc.ID, "title", inc.Title)
		if e.cfg.OnExhausted != nil {
			e.cfg.OnExhausted(inc)
		}
	}
	e.schedule(inc.ID, inc.Escalation.NextAt)
	for _, p := range ch.Pages {
		if p.Status == PagePending {
			e.dispatch(ctx, inc, p)
		}
	}
}

func hasEvent(evs []Event, k EventKind) bool {
	for _, ev := range evs {
		if ev.Kind == k {
			return true
		}
	}
	return false
}

// dispatch sends one page, in the background unless the engine is inline.
func (e *Engine) dispatch(ctx context.Context, inc Incident, p PageRecord) {
	if e.cfg.Inline {
		e.send(ctx, inc, p)
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		sem := e.sem[p.Channel]
		if sem != nil {
			sem <- struct{}{}
			defer func() { <-sem }()
		}
		e.send(context.WithoutCancel(ctx), inc, p)
	}()
}

// Wait blocks until background sends have finished (for shutdown and tests).
func (e *Engine) Wait() { e.wg.Wait() }

// send hands one page to its channel and records the result.
func (e *Engine) send(ctx context.Context, inc Incident, p PageRecord) {
	n, ok := e.channels[p.Channel]
	if !ok {
		e.record(ctx, p, PagePermFail, notifiers.Receipt{}, fmt.Errorf("channel %s is not configured", p.Channel), 0)
		return
	}
	now := e.cfg.Clock.Now()
	var folded []string
	if p.Kind == notifiers.KindPage {
		if wait, over := e.limiter.take(p, now); over {
			e.defer_(ctx, p, now.Add(wait))
			return
		}
		folded = e.limiter.drainFolded(p)
	}
	page := e.page(inc, p)
	if len(folded) > 0 {
		page.Text = fmt.Sprintf("%d incidents need you: %s", len(folded)+1, strings.Join(append(folded, fmt.Sprint(inc.ID)), ", "))
	}
	sctx, cancel := context.WithTimeout(ctx, e.cfg.SendTimeout)
	start := time.Now()
	rc, err := n.Notify(sctx, page)
	took := time.Since(start)
	if err != nil && !notifiers.IsPermanent(err) && sctx.Err() != nil && ctx.Err() == nil {
		err = notifiers.Temporary("timeout", 0, fmt.Errorf("no answer from %s within %s: %w", p.Channel, e.cfg.SendTimeout, err))
	}
	cancel()
	if err != nil && p.Kind == notifiers.KindPage {
		e.limiter.untake(p) // the person was not reached: it does not count
	}
	if e.cfg.Evidence != nil && p.Kind == notifiers.KindPage {
		e.cfg.Evidence(p.Channel, err)
	}
	result := "sent"
	status := PageSent
	var retry time.Duration
	switch {
	case err == nil:
	case notifiers.IsPermanent(err):
		status, result = PagePermFail, "failed-permanent"
	default:
		status, result = PageTempFail, "failed-temporary"
		retry = backoff(p.Attempts+1, notifiers.RetryAfter(err))
	}
	if e.cfg.OnPage != nil {
		e.cfg.OnPage(p.Channel, result, took)
	}
	if err != nil {
		e.log.Warn("page failed", "incident", p.Incident, "page", p.ID, "channel", p.Channel, "to", p.Recipient.PersonID, "result", result, "error", err)
	}
	e.record(ctx, p, status, rc, err, retry)
}

// backoff is the wait before retry attempt n of a temporary failure.
func backoff(n int, hint time.Duration) time.Duration {
	if hint > 0 {
		return min(hint, 5*time.Minute)
	}
	d := time.Second << min(n-1, 6)
	return min(d, time.Minute)
}

// maxUpdateAttempts bounds retries of updates (acknowledged, resolved, ...),
// which have no step timer to end them.
const maxUpdateAttempts = 8

// maxFallbackAttempts bounds retries of pages to the fallback list, which
// no later step cancels.
const maxFallbackAttempts = 30

// record writes a send's result and reacts: a permanent failure of every page
// of the step moves on at once; a temporary one is retried after a backoff.
func (e *Engine) record(ctx context.Context, p PageRecord, status PageStatus, rc notifiers.Receipt, sendErr error, retry time.Duration) {
	now := e.cfg.Clock.Now()
	inc, ch, err := e.cfg.Store.Update(ctx, p.Incident, func(inc *Incident, pages []PageRecord) (Change, error) {
		var ch Change
		cur, ok := findPage(pages, p.ID)
		if !ok {
			return ch, fmt.Errorf("page %s vanished", p.ID)
		}
		if cur.Status == PageCanceled && status != PageSent {
			return ch, ErrNoChange // canceled while in flight; nothing more to do
		}
		cur.Attempts++
		cur.Status = status
		cur.ProviderID = rc.ProviderID
		cur.NextTry = time.Time{}
		ev := Event{At: now, Kind: EvPageResult, Channel: string(p.Channel), Actor: p.Recipient.PersonID, PageID: p.ID}
		switch status {
		case PageSent:
			cur.LastError = ""
			ev.Kind = EvPaged
			ev.Text = fmt.Sprintf("%s %s via %s: sent", verb(p.Kind), name(p.Recipient), p.Channel)
			if rc.Detail != "" {
				ev.Text += " (" + rc.Detail + ")"
			}
		case PagePermFail:
			cur.LastError = sendErr.Error()
			ev.Text = fmt.Sprintf("%s %s via %s: failed-permanent: %s", verb(p.Kind), name(p.Recipient), p.Channel, sendErr)
		case PageTempFail:
			cur.LastError = sendErr.Error()
			if (p.Kind != notifiers.KindPage && cur.Attempts >= maxUpdateAttempts) || (inc.Escalation.Exhausted && cur.Attempts >= maxFallbackAttempts) {
				cur.Status = PagePermFail
				ev.Text = fmt.Sprintf("%s via %s: gave up after %d attempts: %s", verb(p.Kind), p.Channel, cur.Attempts, sendErr)
				break
			}
			cur.NextTry = now.Add(retry)
			ev.Text = fmt.Sprintf("%s %s via %s: failed-temporary (attempt %d, retrying in %s): %s", verb(p.Kind), name(p.Recipient), p.Channel, cur.Attempts, retry, sendErr)
		}
		ch.Events = append(ch.Events, ev)
		ch.Pages = append(ch.Pages, cur)
		e.moveOnIfStepFailed(inc, pages, cur, now, &ch)
		return ch, nil
	})
	if err != nil {
		if !errors.Is(err, ErrNoChange) {
			e.log.Error("could not record a page result", "page", p.ID, "error", err)
		}
		return
	}
	for _, q := range ch.Pages {
		if q.ID == p.ID && q.Status == PageTempFail {
			e.scheduleRetry(q.ID, q.NextTry)
		}
	}
	e.after(ctx, inc, ch)
}

// moveOnIfStepFailed lets Decide move on at once when page cur, just failed
// for good, was the current step's last hope.
func (e *Engine) moveOnIfStepFailed(inc *Incident, pages []PageRecord, cur PageRecord, now time.Time, ch *Change) {
	if cur.Status != PagePermFail || cur.Kind != notifiers.KindPage || cur.Generation != inc.Escalation.Generation || inc.State != Open {
		return
	}
	for i := range pages {
		if pages[i].ID == cur.ID {
			pages[i] = cur
		}
	}
	d := Decide(inc, pages, e.situation(inc, now))
	ch.Events, ch.Pages = append(ch.Events, d.Events...), append(ch.Pages, d.Pages...)
}

// defer_ holds a page back for the channel's rate limit; it is folded into the
// next page the person gets.
func (e *Engine) defer_(ctx context.Context, p PageRecord, until time.Time) {
	now := e.cfg.Clock.Now()
	_, _, err := e.cfg.Store.Update(ctx, p.Incident, func(inc *Incident, pages []PageRecord) (Change, error) {
		var ch Change
		cur, ok := findPage(pages, p.ID)
		if !ok || cur.Status.Done() {
			return ch, ErrNoChange
		}
		cur.Status, cur.NextTry = PageDeferred, until
		ch.Pages = append(ch.Pages, cur)
		ch.Events = append(ch.Events, Event{At: now, Kind: EvNote, Channel: string(p.Channel), Actor: p.Recipient.PersonID, PageID: p.ID,
			Text: fmt.Sprintf("held back: %s reached the %s rate limit; will be folded into one page at %s", name(p.Recipient), p.Channel, until.Format("15:04:05"))})
		return ch, nil
	})
	if err != nil {
		if !errors.Is(err, ErrNoChange) {
			e.log.Error("could not record a deferred page", "page", p.ID, "error", err)
		}
		return
	}
	e.limiter.fold(p)
	e.scheduleRetry(p.ID, until)
}

func verb(k notifiers.Kind) string {
	if k == notifiers.KindPage {
		return "paged"
	}
	return "told (" + string(k) + ")"
}

// page builds what a channel sends from an incident and an outbox entry.
func (e *Engine) page(inc Incident, p PageRecord) notifiers.Page {
	alerts := make([]notifiers.Alert, 0, len(inc.Alerts))
	for _, a := range inc.Alerts {
		alerts = append(alerts, notifiers.Alert{Fingerprint: a.Fingerprint, Status: a.Status, Labels: a.Labels,
			Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL})
	}
	link := ""
	if e.cfg.BaseURL != "" {
		link = strings.TrimRight(e.cfg.BaseURL, "/") + fmt.Sprintf("/api/v1/incidents/%d", inc.ID)
	}
	if e.cfg.Link != nil {
		link = e.cfg.Link(inc, p)
	}
	return notifiers.Page{
		ID: p.ID, Kind: p.Kind, Incident: inc.ID, IncidentKey: inc.Key(), Channel: p.Channel, Recipient: p.Recipient,
		Title: inc.Title, Severity: inc.Severity, Alerts: alerts, ExternalURL: inc.ExternalURL, Link: link,
		Text: p.Text, RoutingKey: p.RoutingKey, Synthetic: inc.Synthetic, Via: p.Via,
	}
}

// Report implements notifiers.Reporter: a provider's later word on a page.
func (e *Engine) Report(ctx context.Context, r notifiers.Report) error {
	id, _, ok := ParsePageID(r.PageID)
	if !ok {
		return notifiers.ErrUnknownIncident
	}
	now := e.cfg.Clock.Now()
	if e.cfg.Evidence != nil && r.Status == notifiers.Failed {
		err := fmt.Errorf("provider reported: %s", r.Detail)
		if r.Permanent {
			err = notifiers.Permanent("", err)
		}
		e.cfg.Evidence(r.Channel, err)
	}
	inc, ch, err := e.cfg.Store.Update(ctx, id, func(inc *Incident, pages []PageRecord) (Change, error) {
		var ch Change
		cur, ok := findPage(pages, r.PageID)
		if !ok {
			return ch, notifiers.ErrUnknownIncident
		}
		st := map[notifiers.DeliveryStatus]PageStatus{notifiers.Delivered: PageDeliv, notifiers.NoAnswer: PageNoAnswer, notifiers.Failed: PagePermFail}[r.Status]
		if st == "" {
			return ch, fmt.Errorf("unknown delivery status %q", r.Status)
		}
		if cur.Status == st {
			return ch, ErrNoChange // a retried callback
		}
		if cur.Status != PageCanceled {
			cur.Status = st
		}
		if r.Detail != "" {
			cur.LastError = r.Detail
		}
		ch.Pages = append(ch.Pages, cur)
		ch.Events = append(ch.Events, Event{At: now, Kind: EvPageResult, Channel: string(r.Channel), Actor: cur.Recipient.PersonID, PageID: cur.ID,
			Text: fmt.Sprintf("%s via %s: %s%s", name(cur.Recipient), r.Channel, r.Status, detail(r.Detail))})
		e.moveOnIfStepFailed(inc, pages, cur, now, &ch)
		return ch, nil
	})
	if errors.Is(err, ErrNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	e.after(ctx, inc, ch)
	return nil
}

func detail(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
