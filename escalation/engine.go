package escalation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	// MaxInFlight bounds concurrent requests to each channel's provider
	// (default 32). Recording a result does not hold a slot: a page whose
	// send returned waits for its durable record while the next one is sent,
	// so a slow disk does not slow the pages down.
	MaxInFlight int
	// Inline runs sends and due work in the calling goroutine instead of in
	// the background: deterministic, for `klaxon simulate` and tests.
	Inline bool
	// OnPage, if set, observes each page handed to a channel (metrics).
	OnPage func(ch notifiers.Channel, result string, took time.Duration)
	// OnDelivery, if set, learns of every page a channel confirmed and of
	// every page it did not within its deadline or reported as reaching
	// nobody (see Delivery): evidence about the channel for the self-tests,
	// and the delivery metrics. Causes about one person alone go to
	// OnRecipient instead.
	OnDelivery func(Delivery)
	// OnExhausted, if set, is called when an incident's policy runs out.
	OnExhausted func(inc Incident)
	// OnChange, if set, is called after every change this engine commits
	// to an incident (the web's live pages listen). It must not block.
	OnChange func(id uint64)
	// BaseURL, if set, links pages back to the incident's API page.
	BaseURL string
	// Installation makes idempotency keys unique to this installation (page
	// ids as Matrix transaction ids, incident keys as PagerDuty dedup keys),
	// so a fresh data directory never collides with an old one's keys at the
	// provider. Use InstallationID to create and keep it in the store.
	Installation string
	// RecheckEvery is how often an incident that nobody can be paged for is
	// planned again (default 1m); a channel coming up or a rota reload
	// (Replan) plans it at once.
	RecheckEvery time.Duration
	// OnRecipient, if set, learns the result of every page to a person (nil
	// on success). Failures about that person alone (invalid number, STOP)
	// go only here, never to Evidence: they feed the coverage check.
	OnRecipient func(person string, ch notifiers.Channel, err error)
	// Link, if set, makes the link a page carries instead (the web
	// interface's signed link for the page's recipient); "" for none. It
	// gets the local page record: a link names the local page id (the one
	// the store keeps and ActAs takes), never the channel's external one.
	Link func(inc Incident, p PageRecord) string
	// RecordOnly makes the engine record decisions and pages without
	// scheduling or sending anything: a replica that is not the leader takes
	// webhooks, API calls and callbacks this way, and the leader's engine,
	// told of the work through Track, does the rest.
	RecordOnly bool
}

// Engine walks incidents through their escalation policies. It records every
// decision and the pages it implies in the store before sending anything,
// sends outside any transaction with a timeout per attempt, records the
// results, and wakes at the earliest stored deadline.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	channels map[notifiers.Channel]notifiers.Notifier
	limiter  *limiter

	mu      sync.Mutex
	queue   wakeQueue
	wakes   map[uint64]time.Time // incident → its scheduled wake
	retries map[string]time.Time // page id → its scheduled retry
	// holds is when to look again at the pages a rate limit holds back for
	// a person on a channel: one wake per person and channel, however many
	// pages are held (they stay in the store, read back in chunks).
	holds   map[limitKey]time.Time
	waiting map[uint64]bool   // incidents nobody can be paged for yet
	results map[string]result // page id → a send result whose write failed
	kick    chan struct{}
	workers chan struct{} // bounds concurrent wake-ups and retries
	senders map[notifiers.Channel]*sendQueue
	wg      sync.WaitGroup
}

// result is a send's outcome waiting to be written.
type result struct {
	ev PageEvent
	// attempted is set when a channel was really asked to send (not for a
	// page whose channel is not configured): only that counts as an attempt.
	attempted bool
	rc        notifiers.Receipt
	err       error
	retry     time.Duration
	composed  time.Time
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
		wakes:    map[uint64]time.Time{},
		retries:  map[string]time.Time{},
		holds:    map[limitKey]time.Time{},
		waiting:  map[uint64]bool{},
		results:  map[string]result{},
		kick:     make(chan struct{}, 1),
		workers:  make(chan struct{}, 64),
		senders:  map[notifiers.Channel]*sendQueue{},
	}
	if cfg.RecheckEvery <= 0 {
		e.cfg.RecheckEvery = time.Minute
	}
	e.limiter = newLimiter(func(ch notifiers.Channel) (int, time.Duration) {
		if r := e.rota(); r != nil {
			return r.Limit(ch)
		}
		return 0, 0
	}, cfg.Store)
	for _, n := range cfg.Notifiers {
		e.channels[n.Channel()] = n
		e.senders[n.Channel()] = &sendQueue{max: cfg.MaxInFlight * recordersPerSend, notify: make(chan struct{}, cfg.MaxInFlight)}
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
	s := Situation{Rota: e.rota(), Health: e.health, Now: now, RecheckEvery: e.cfg.RecheckEvery}
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
	res, err := Ingest(ctx, e.cfg.Store, n, now, func(in *Incident, pages []PageRecord, events []Event) (Change, error) {
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
		cancelPages(pages, "resolved", &ch)
		text := fmt.Sprintf("Incident %d resolved in Alertmanager.", inc.ID)
		if inc.Synthetic {
			text = fmt.Sprintf("Incident %d resolved: %s", inc.ID, alarmClearText(inc))
		}
		tell(inc, pages, notifiers.KindResolved, text, now, &ch)
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
		id, _ = e.parseKey(r.IncidentKey)
	}
	if r.PageID != "" {
		local, ok := e.localPageID(r.PageID)
		if !ok {
			return notifiers.Outcome{}, notifiers.ErrUnknownIncident
		}
		r.PageID = local
		pageInc, _, _ := ParsePageID(local)
		if id != 0 && pageInc != id {
			return notifiers.Outcome{}, notifiers.ErrUnknownIncident // the page is another incident's (as ActAs checks)
		}
		id = pageInc
	}
	if id == 0 {
		return notifiers.Outcome{}, notifiers.ErrUnknownIncident
	}
	actor := r.From
	stranger := false
	if ro := e.rota(); ro != nil {
		p, ok := ro.PersonByContact(r.Channel, r.From)
		if !ok && r.Alias != "" {
			p, ok = ro.PersonByContact(r.Channel, r.Alias)
		}
		switch {
		case ok:
			actor = p.DisplayName()
		case r.Channel != notifiers.PagerDuty:
			return notifiers.Outcome{Incident: id}, notifiers.ErrNotOnRota
		default:
			// A PagerDuty user who is not on the rota: PagerDuty let them act
			// there, but only the policy can let that stop Klaxon.
			stranger = true
			if r.Name != "" {
				actor = r.Name
			}
		}
	}
	if actor == "" {
		actor = string(r.Channel) + " user"
	}
	if stranger && r.Action != notifiers.Unack && r.Action != notifiers.Escalate {
		if taken, err := e.strangerMayAnswer(ctx, id, r, actor); err != nil || !taken {
			return notifiers.Outcome{Incident: id}, err
		}
	}
	out, err := e.apply(ctx, id, r.Action, actor, string(r.Channel), r.PageID)
	if errors.Is(err, ErrNotFound) {
		err = notifiers.ErrUnknownIncident
	}
	return out, err
}

// strangerMayAnswer decides about an acknowledgement or resolution from a
// PagerDuty user who is not on the rota. When the incident's policy says
// `pagerduty_acks: anyone` it is taken (true). Otherwise it is recorded in
// the timeline, escalation goes on, and ErrNotOnRota is returned.
func (e *Engine) strangerMayAnswer(ctx context.Context, id uint64, r notifiers.Response, actor string) (bool, error) {
	now := e.cfg.Clock.Now()
	refused := false
	_, _, err := Update(ctx, e.cfg.Store, id, func(inc *Incident, _ []PageRecord) (Change, error) {
		refused = false // the store may run this more than once
		if s := e.situation(inc, now); s.Policy != nil && s.Policy.PagerDutyAcksAnyone {
			return Change{}, ErrNoChange
		}
		refused = true
		if inc.State == Resolved {
			return Change{}, ErrNoChange
		}
		return Change{Events: []Event{{At: now, Kind: EvIgnored, Actor: actor, Channel: string(r.Channel), PageID: r.PageID,
			Text: fmt.Sprintf("%s in PagerDuty by %s, who is not on the rota: escalation goes on (policy: pagerduty_acks: rota)", pastTense(r.Action), actor)}}}, nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return false, notifiers.ErrUnknownIncident
	case err != nil && !errors.Is(err, ErrNoChange):
		return false, err
	case refused:
		e.log.Warn("PagerDuty answer from someone not on the rota recorded, not taken", "incident", id, "by", actor, "action", r.Action)
		return false, notifiers.ErrNotOnRota
	}
	return true, nil
}

func pastTense(a notifiers.Action) string {
	switch a {
	case notifiers.Ack:
		return "acknowledged"
	case notifiers.Resolve:
		return "resolved"
	}
	return string(a)
}

// apply records an acknowledgement, un-acknowledgement, escalation or
// resolution, and tells the channels already used: Answer decides, inside
// the store's transaction.
func (e *Engine) apply(ctx context.Context, id uint64, action notifiers.Action, actor, via, pageID string) (notifiers.Outcome, error) {
	now := e.cfg.Clock.Now()
	act := Act{Action: action, By: actor, Via: via, PageID: pageID}
	out := notifiers.Outcome{Incident: id, By: actor}
	inc, ch, err := Update(ctx, e.cfg.Store, id, func(inc *Incident, pages []PageRecord) (Change, error) {
		ch, o, err := Answer(inc, pages, act, e.situation(inc, now))
		out = o
		return ch, err
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

// alarmClearText is what cleared one of Klaxon's own alarms: the summary
// Clear gave its alert, or a plain word.
func alarmClearText(inc *Incident) string {
	for _, a := range inc.Alerts {
		if !a.Firing() && a.Annotations["summary"] != "" {
			return a.Annotations["summary"]
		}
	}
	return "the cause is fixed"
}

// AlarmGroupPrefix starts the group key of every alarm Klaxon raises itself.
const AlarmGroupPrefix = "klaxon-alarm:"

// after schedules the incident's next wake and hands new pages to channels.
func (e *Engine) after(ctx context.Context, inc Incident, ch Change) {
	if e.cfg.OnChange != nil {
		e.cfg.OnChange(inc.ID)
	}
	if e.cfg.RecordOnly {
		return
	}
	if inc.Escalation.Exhausted && hasEvent(ch.Events, EvExhausted) {
		e.log.Error("escalation exhausted without an acknowledgement: paging again until someone answers", "incident", inc.ID, "title", inc.Title)
		if e.cfg.OnExhausted != nil {
			e.cfg.OnExhausted(inc)
		}
	}
	e.mu.Lock()
	if inc.Escalation.Waiting && inc.State == Open {
		e.waiting[inc.ID] = true
	} else {
		delete(e.waiting, inc.ID)
	}
	e.mu.Unlock()
	e.schedule(inc.ID, inc.Escalation.WakeAt())
	for _, p := range ch.Pages {
		if p.Status == PagePending {
			e.dispatch(ctx, &inc, p)
		}
	}
}

// Replan plans at once every incident waiting because nobody could be paged:
// call it when a channel comes up or the rota reloads.
func (e *Engine) Replan() {
	now := e.cfg.Clock.Now()
	e.mu.Lock()
	ids := make([]uint64, 0, len(e.waiting))
	for id := range e.waiting {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	for _, id := range ids {
		e.schedule(id, now)
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

// sendJob is one page waiting for a sender. inc is dropped when the queue is
// long, and read back from the store when the page's turn comes, so a backlog
// costs a few words per page instead of a copy of its incident.
type sendJob struct {
	inc *Incident
	p   *PageRecord // a pointer: a storm's backlog holds many jobs
	// id alone, with inc and p empty, is a job queued behind a long
	// backlog: the page is read back from the store when its turn comes,
	// so a storm's backlog costs a page id each, not its record.
	id string
}

// sendQueue is a channel's backlog and its fixed pool of senders: at most max
// goroutines send and record pages of a channel at once, however many pages
// are due, and of those at most cap(notify) talk to its provider.
type sendQueue struct {
	max    int
	notify chan struct{} // a slot per provider request in flight
	mu     sync.Mutex
	jobs   []sendJob
	head   int
	busy   int
}

// recordersPerSend is how many pages per provider slot a channel's senders
// may hold between their provider's answer and its durable record: with a
// commit taking a few milliseconds under load, a pool limited to MaxInFlight
// would send no faster than MaxInFlight per commit, and a storm's pages
// would fall behind its webhooks.
const recordersPerSend = 4

// keepIncidentBelow is the backlog length up to which queued pages keep their
// incident and page record in memory; behind it they keep their id.
const keepIncidentBelow = 256

func (q *sendQueue) push(j sendJob) (startWorker bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.jobs)-q.head >= keepIncidentBelow {
		j = sendJob{id: j.p.ID}
	}
	q.jobs = append(q.jobs, j)
	if q.busy < q.max {
		q.busy++
		return true
	}
	return false
}

func (q *sendQueue) pop() (sendJob, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.jobs) {
		q.jobs, q.head = q.jobs[:0], 0
		q.busy--
		return sendJob{}, false
	}
	j := q.jobs[q.head]
	q.jobs[q.head] = sendJob{}
	q.head++
	return j, true
}

// dispatch sends one page: at once when the engine is inline, otherwise
// through the channel's fixed pool of senders.
func (e *Engine) dispatch(ctx context.Context, inc *Incident, p PageRecord) {
	if e.cfg.Inline {
		e.send(ctx, inc, p)
		return
	}
	q := e.senders[p.Channel]
	if q == nil {
		e.send(ctx, inc, p) // not configured: recorded as failed without a send
		return
	}
	if !q.push(sendJob{inc: inc, p: &p}) {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx := context.WithoutCancel(ctx)
		for {
			j, ok := q.pop()
			if !ok {
				return
			}
			if j.id != "" {
				e.retry(ctx, j.id) // reads the page (and its incident) back
				continue
			}
			e.send(ctx, j.inc, *j.p)
		}
	}()
}

// Wait blocks until background sends have finished (for shutdown and tests).
func (e *Engine) Wait() { e.wg.Wait() }

// send hands one page to its channel and records the result. A page held
// back by a rate limit is folded into the person's last page if that page
// carried it, and otherwise waits for room; a page that gets room carries a
// summary of every page still held for its person.
func (e *Engine) send(ctx context.Context, inc *Incident, p PageRecord) {
	n, ok := e.channels[p.Channel]
	if !ok {
		e.settle(ctx, p, result{ev: EvSendPerm, err: fmt.Errorf("channel %s is not configured", p.Channel)})
		return
	}
	if inc == nil {
		cur, err := e.cfg.Store.Incident(ctx, p.Incident)
		if err != nil {
			e.log.Error("loading an incident to send its page; retrying", "page", p.ID, "error", err)
			e.scheduleRetry(p.ID, e.cfg.Clock.Now().Add(Backoff(1, 0)))
			return
		}
		inc = &cur
	}
	now := e.cfg.Clock.Now()
	var summary string
	composed := now
	if e.limiter.limited(p) {
		if p.Status == PageDeferred {
			if c, ok := e.limiter.carrierAfter(ctx, p, p.HeldAt); ok {
				e.settle(ctx, p, result{ev: EvFold, rc: notifiers.Receipt{ProviderID: c.Page}})
				return
			}
		}
		if wait, over := e.limiter.take(ctx, p, now); over {
			e.settle(ctx, p, result{ev: EvHold, retry: wait})
			return
		}
		h, err := e.cfg.Store.Held(ctx, p.Recipient.PersonID, p.Channel, 3)
		if err == nil {
			summary = foldSummary(inc.ID, p, h)
		} else {
			// Unable to count what it would carry, the page goes out on
			// its own and carries nothing: the held pages wait for the next.
			composed = time.Time{}
		}
	}
	page := e.page(*inc, p)
	if summary != "" {
		page.Text = summary
	}
	slots := e.senders[p.Channel].notify // every configured channel has its queue
	slots <- struct{}{}                  // wait for one of its MaxInFlight provider slots
	sctx, cancel := context.WithTimeout(ctx, e.cfg.SendTimeout)
	start := time.Now()
	rc, err := n.Notify(sctx, page)
	took := time.Since(start)
	<-slots
	if err != nil && !notifiers.IsPermanent(err) && sctx.Err() != nil && ctx.Err() == nil {
		err = notifiers.Temporary("timeout", 0, fmt.Errorf("no answer from %s within %s: %w", p.Channel, e.cfg.SendTimeout, err))
	}
	cancel()
	if p.Kind == notifiers.KindPage {
		if err != nil {
			e.limiter.untake(p) // the person was not reached: it does not count
		} else {
			e.limiter.sentOK(ctx, p, composed)
		}
		e.evidence(p, err)
	}
	r := result{ev: EvSendOK, rc: rc, err: err, attempted: true}
	outcome := "sent"
	switch {
	case err == nil:
	case notifiers.IsPermanent(err):
		r.ev, outcome = EvSendPerm, "failed-permanent"
	default:
		r.ev, outcome = EvSendTemp, "failed-temporary"
		r.retry = Backoff(p.Attempts+1, notifiers.RetryAfter(err))
	}
	if e.cfg.OnPage != nil {
		e.cfg.OnPage(p.Channel, outcome, took)
	}
	if err != nil {
		e.log.Warn("page failed", "incident", p.Incident, "page", p.ID, "channel", p.Channel, "to", p.Recipient.PersonID, "result", outcome, "error", err)
	}
	e.settle(ctx, p, r)
}

// evidence tells the self-tests what a page's send says about its channel:
// failures about one recipient are that person's problem, not the channel's.
func (e *Engine) evidence(p PageRecord, err error) {
	if e.cfg.OnRecipient != nil {
		e.cfg.OnRecipient(p.Recipient.PersonID, p.Channel, err)
	}
	if err != nil && notifiers.IsRecipient(err) {
		return
	}
	if e.cfg.Evidence != nil {
		e.cfg.Evidence(p.Channel, err)
	}
}

// maxSummaryIncidents bounds the incidents a fold summary names.
const maxSummaryIncidents = 3

// foldSummary is a carrier page's summary of the pages held back for its
// person, of fixed size however many there are:
// "41,237 incidents need you; newest: 41240, 41239, 41238".
func foldSummary(own uint64, p PageRecord, h Held) string {
	others := h.Count
	var newest []string
	for _, id := range h.Newest {
		if id == own {
			continue
		}
		if len(newest) < maxSummaryIncidents {
			newest = append(newest, strconv.FormatUint(id, 10))
		}
	}
	if p.Status == PageDeferred {
		others-- // the carrier itself was held
	}
	if others <= 0 {
		return ""
	}
	return fmt.Sprintf("%s incidents need you; newest: %s", thousands(others+1), strings.Join(append([]string{strconv.FormatUint(own, 10)}, newest...), ", "))
}

// thousands formats n with thousands separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Backoff is the wait before retry attempt n (from 1) of a temporary
// failure: a second, doubling up to a minute, or the provider's hint
// (notifiers.RetryAfter) up to five minutes. Pages and the notices outbox
// retry by it.
func Backoff(n int, hint time.Duration) time.Duration {
	if hint > 0 {
		return min(hint, 5*time.Minute)
	}
	d := time.Second << min(max(n-1, 0), 6)
	return min(d, time.Minute)
}

// maxUpdateAttempts bounds retries of updates (acknowledged, resolved, ...),
// which have no step timer to end them.
const maxUpdateAttempts = 8

// maxFallbackAttempts bounds retries of pages to the fallback list, which
// no later step cancels.
const maxFallbackAttempts = 30

// settle writes what happened to a page through the page state machine and
// reacts: a permanent failure of every page of the step moves on at once; a
// temporary one is retried after a backoff; a held page waits for room. When
// the store cannot take the write, the result is kept and written again after
// a backoff: a page's outcome is never dropped.
func (e *Engine) settle(ctx context.Context, p PageRecord, r result) {
	now := e.cfg.Clock.Now()
	var state []notifiers.StateWrite // what the channel remembers about a page it sent
	if r.ev == EvSendOK {
		state = r.rc.State
	}
	inc, ch, err := Update(ctx, e.cfg.Store, p.Incident, func(inc *Incident, pages []PageRecord) (Change, error) {
		var ch Change
		cur, ok := findPage(pages, p.ID)
		if !ok {
			return ch, fmt.Errorf("page %s vanished", p.ID)
		}
		next := transition(cur.Status, r.ev)
		again := !cur.Status.Done() && (r.ev == EvHold || r.ev == EvSendTemp) // held or failed once more
		if next == cur.Status && !again {
			if len(state) > 0 {
				// Canceled while in flight, but the text went out: where
				// its replies go is still news.
				return Change{State: state}, nil
			}
			return ch, ErrNoChange // canceled while in flight, or news already known
		}
		ch.State = state
		ev := Event{At: now, Kind: EvPageResult, Channel: string(p.Channel), Actor: p.Recipient.PersonID, PageID: p.ID}
		if r.attempted {
			cur.Attempts++
		}
		cur.Status = next
		cur.NextTry = time.Time{}
		switch r.ev {
		case EvSendOK:
			cur.LastError = ""
			cur.ProviderID = r.rc.ProviderID
			e.expectConfirmation(inc, &cur, now)
			ev.Kind = EvPaged
			ev.Text = fmt.Sprintf("%s %s via %s: sent", verb(p.Kind), p.Recipient.DisplayName(), p.Channel)
			if r.rc.Detail != "" {
				ev.Text += " (" + r.rc.Detail + ")"
			}
		case EvSendPerm:
			cur.LastError = r.err.Error()
			what := "failed-permanent"
			if notifiers.IsRecipient(r.err) {
				what = "failed-permanent for this person"
			}
			ev.Text = fmt.Sprintf("%s %s via %s: %s: %s", verb(p.Kind), p.Recipient.DisplayName(), p.Channel, what, r.err)
		case EvSendTemp:
			cur.LastError = r.err.Error()
			if (p.Kind != notifiers.KindPage && cur.Attempts >= maxUpdateAttempts) || (inc.Escalation.Exhausted && cur.Attempts >= maxFallbackAttempts) {
				cur.Status = transition(cur.Status, EvGiveUp)
				ev.Text = fmt.Sprintf("%s via %s: gave up after %d attempts: %s", verb(p.Kind), p.Channel, cur.Attempts, r.err)
				break
			}
			cur.NextTry = now.Add(r.retry)
			ev.Text = fmt.Sprintf("%s %s via %s: failed-temporary (attempt %d, retrying in %s): %s", verb(p.Kind), p.Recipient.DisplayName(), p.Channel, cur.Attempts, r.retry, r.err)
		case EvHold:
			first := cur.HeldAt.IsZero()
			if first {
				cur.HeldAt = now
			}
			cur.NextTry = now.Add(r.retry)
			if !first {
				ch.Pages = append(ch.Pages, cur)
				return ch, nil // still held: no news for the timeline
			}
			ev.Kind = EvNote
			ev.Text = fmt.Sprintf("held back: %s reached the %s rate limit; the next page they get will say so (at the latest %s)", p.Recipient.DisplayName(), p.Channel, cur.NextTry.Format("15:04:05"))
		case EvFold:
			cur.FoldedInto = r.rc.ProviderID
			ev.Text = fmt.Sprintf("%s %s via %s: folded into page %s, which reached them", verb(p.Kind), p.Recipient.DisplayName(), p.Channel, cur.FoldedInto)
		}
		ch.Events = append(ch.Events, ev)
		ch.Pages = append(ch.Pages, cur)
		e.moveOnIfStepFailed(inc, pages, cur, now, &ch)
		return ch, nil
	})
	if errors.Is(err, ErrNoChange) {
		return
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return
		}
		// Keep the result and write it again after a backoff; a crash before
		// then sends the page again (at most one duplicate per crash).
		e.log.Error("could not record a page's result; retrying", "page", p.ID, "error", err)
		e.mu.Lock()
		e.results[p.ID] = r
		e.mu.Unlock()
		e.scheduleRetry(p.ID, now.Add(storeRetry))
		return
	}
	for _, q := range ch.Pages {
		if q.ID == p.ID && !q.Status.Done() && !q.NextTry.IsZero() {
			if q.Status == PageDeferred {
				e.scheduleHold(keyOf(q), q.NextTry)
			} else {
				e.scheduleRetry(q.ID, q.NextTry)
			}
		}
	}
	e.after(ctx, inc, ch)
}

// storeRetry is how long a read or write the store refused waits before it is tried again.
const storeRetry = 5 * time.Second

// moveOnIfStepFailed lets Decide move on at once when page cur, just failed
// for good or unconfirmed, was the current step's last hope.
func (e *Engine) moveOnIfStepFailed(inc *Incident, pages []PageRecord, cur PageRecord, now time.Time, ch *Change) {
	if (cur.Status != PagePermFail && cur.Status != PageUnconfirmed) || cur.Kind != notifiers.KindPage || cur.Generation != inc.Escalation.Generation || inc.State != Open {
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
		ID: e.externalPageID(p.ID), Kind: p.Kind, Incident: inc.ID, IncidentKey: e.key(inc.ID), Channel: p.Channel, Recipient: p.Recipient,
		Title: inc.Title, Severity: inc.Severity, Alerts: alerts, ExternalURL: inc.ExternalURL, Link: link,
		Text: p.Text, RoutingKey: p.RoutingKey, Synthetic: inc.Synthetic, Via: p.Via,
	}
}

// Report implements notifiers.Reporter: a provider's later word on a page,
// taken through the page state machine, so a callback that beats the send
// result is not overwritten by it.
func (e *Engine) Report(ctx context.Context, r notifiers.Report) error {
	local, ok := e.localPageID(r.PageID)
	if !ok {
		return notifiers.ErrUnknownIncident
	}
	id, _, ok := ParsePageID(local)
	if !ok {
		return notifiers.ErrUnknownIncident
	}
	ev := map[notifiers.DeliveryStatus]PageEvent{notifiers.Delivered: EvDelivered, notifiers.NoAnswer: EvNoAnswer,
		notifiers.Failed: EvProviderFailed, notifiers.Unconfirmed: EvUnconfirmed}[r.Status]
	if ev == "" {
		return fmt.Errorf("unknown delivery status %q", r.Status)
	}
	now := e.cfg.Clock.Now()
	if r.Status == notifiers.Failed {
		err := fmt.Errorf("provider reported: %s", r.Detail)
		switch {
		case r.Recipient:
			err = notifiers.PermanentRecipient("", err)
		case r.Permanent:
			err = notifiers.Permanent("", err)
		}
		cur := PageRecord{Kind: notifiers.KindPage, Channel: r.Channel}
		if pages, perr := e.cfg.Store.Pages(ctx, id); perr == nil {
			if p, ok := findPage(pages, local); ok {
				cur = p
			}
		}
		if cur.Kind == notifiers.KindPage {
			e.evidence(cur, err)
		}
	}
	var moved PageRecord // the page, if the report moved it
	inc, ch, err := Update(ctx, e.cfg.Store, id, func(inc *Incident, pages []PageRecord) (Change, error) {
		var ch Change
		moved = PageRecord{}
		cur, ok := findPage(pages, local)
		if !ok {
			return ch, notifiers.ErrUnknownIncident
		}
		next := transition(cur.Status, ev)
		if next == cur.Status && ev == EvUnconfirmed && cur.Status == PageUnconfirmed && r.Detail != "" && cur.LastError != r.Detail {
			// The engine's own deadline marked the page unconfirmed a
			// moment before the channel's report came: the state stays,
			// but the channel's reason (PagerDuty's "nobody on call") is
			// kept and said, not lost to the race. Delivery was already
			// told once, by the deadline.
			cur.LastError = r.Detail
			ch.Pages = append(ch.Pages, cur)
			ch.Events = append(ch.Events, Event{At: now, Kind: EvPageResult, Channel: string(r.Channel), Actor: cur.Recipient.PersonID, PageID: cur.ID,
				Text: fmt.Sprintf("%s via %s: %s%s", cur.Recipient.DisplayName(), r.Channel, r.Status, detail(r.Detail))})
			return ch, nil
		}
		if next == cur.Status {
			return ch, ErrNoChange // a retried callback, or older news
		}
		cur.Status = next
		moved = cur
		if r.Detail != "" {
			cur.LastError = r.Detail
		}
		ch.Pages = append(ch.Pages, cur)
		ch.Events = append(ch.Events, Event{At: now, Kind: EvPageResult, Channel: string(r.Channel), Actor: cur.Recipient.PersonID, PageID: cur.ID,
			Text: fmt.Sprintf("%s via %s: %s%s", cur.Recipient.DisplayName(), r.Channel, r.Status, detail(r.Detail))})
		e.moveOnIfStepFailed(inc, pages, cur, now, &ch)
		return ch, nil
	})
	if errors.Is(err, ErrNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case moved.Kind != notifiers.KindPage:
	case moved.Status == PageDeliv:
		e.delivered(moved, now)
	case moved.Status == PageUnconfirmed:
		e.unconfirmed(moved, CauseReported, r.Detail, r.Recipient)
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
