package pagerduty

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Delivery confirmation: the Events API answers 202 whether or not anybody
// is notified (nobody on call, a user without contact methods, an event
// rule that suppresses it). So after a trigger the notifier looks the
// incident up by its dedup key through the REST API and reads its log
// entries until one shows a person was notified (notify_log_entry), or a
// person acknowledged or resolved it in PagerDuty: that is a Delivered
// report. When ConfirmWithin passes without such evidence, it reports
// Unconfirmed, with what PagerDuty showed in words.
//
// All checks run in Run's loop (the one poller of this channel, shared with
// acknowledgement polling): each page is checked on a backoff (2s, 4s, 8s,
// ... at most confirmMaxBackoff), pages of one incident share a check, a
// pass makes at most confirmCallsPerPass REST calls, and a 429 pauses every
// REST call for PagerDuty's Retry-After. Waiting pages are bounded
// (confirmMaxPending, oldest dropped: the engine's own deadline then marks
// them unconfirmed). With a state store, a page's deadline is kept with its
// tracked incident, so after a restart the pages still waiting are looked at
// again, by the same deadline.

// DefaultConfirmWithin is how long a trigger may go without PagerDuty
// showing a notified person before the page is reported unconfirmed.
const DefaultConfirmWithin = 2 * time.Minute

const (
	confirmFirstCheck   = 2 * time.Second
	confirmMaxBackoff   = 30 * time.Second
	confirmCallsPerPass = 10
	confirmPassGap      = time.Second
	confirmMaxPending   = 10000
	logEntryPages       = 5 // of 100 entries each
)

// pendingConfirm is a page waiting for PagerDuty's evidence.
type pendingConfirm struct {
	pageID   string
	incident uint64
	key      string // dedup key
	sent     time.Time
	deadline time.Time
	next     time.Time
	backoff  time.Duration
}

// confirmations is the set of pages waiting for evidence, by page id.
type confirmations struct {
	mu         sync.Mutex
	m          map[string]*pendingConfirm
	order      []string // page ids, oldest first (may hold ids already done)
	pauseUntil time.Time
	wake       chan struct{}
}

func newConfirmations() *confirmations {
	return &confirmations{m: map[string]*pendingConfirm{}, wake: make(chan struct{}, 1)}
}

func (c *confirmations) add(p *pendingConfirm) (dropped string) {
	c.mu.Lock()
	if _, ok := c.m[p.pageID]; !ok {
		c.order = append(c.order, p.pageID)
	}
	c.m[p.pageID] = p
	for len(c.m) > confirmMaxPending && len(c.order) > 0 {
		id := c.order[0]
		c.order = c.order[1:]
		if _, ok := c.m[id]; ok {
			delete(c.m, id)
			dropped = id
		}
	}
	if len(c.order) > 2*confirmMaxPending {
		live := c.order[:0]
		for _, id := range c.order {
			if _, ok := c.m[id]; ok {
				live = append(live, id)
			}
		}
		c.order = live
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return dropped
}

// due returns the pages whose check is due at now, earliest first.
func (c *confirmations) due(now time.Time) []*pendingConfirm {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*pendingConfirm
	for _, p := range c.m {
		if !p.next.After(now) {
			cp := *p
			out = append(out, &cp)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].next.Equal(out[j].next) {
			return out[i].next.Before(out[j].next)
		}
		return out[i].key < out[j].key
	})
	return out
}

// nextAt is when the earliest check is due (zero when none waits).
func (c *confirmations) nextAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	for _, p := range c.m {
		if at.IsZero() || p.next.Before(at) {
			at = p.next
		}
	}
	if !at.IsZero() && at.Before(c.pauseUntil) {
		at = c.pauseUntil
	}
	return at
}

func (c *confirmations) done(pageID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, pageID)
}

// later schedules the next check of pageID with backoff, never past its deadline.
func (c *confirmations) later(pageID string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[pageID]
	if !ok {
		return
	}
	p.backoff = min(max(2*p.backoff, confirmFirstCheck), confirmMaxBackoff)
	p.next = now.Add(p.backoff)
	if p.next.After(p.deadline) {
		p.next = p.deadline
	}
}

func (c *confirmations) pause(until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.pauseUntil) {
		c.pauseUntil = until
	}
}

func (c *confirmations) paused(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return now.Before(c.pauseUntil)
}

// Pending is how many pages wait for PagerDuty's evidence.
func (n *Notifier) Pending() int {
	n.confirms.mu.Lock()
	defer n.confirms.mu.Unlock()
	return len(n.confirms.m)
}

var _ notifiers.Confirmer = (*Notifier)(nil)

// ConfirmWithin implements notifiers.Confirmer: the configured deadline
// (DefaultConfirmWithin by default), or 0 when PagerDuty cannot confirm:
// confirmation turned off, no REST API token to read incidents with, or no
// Reporter to tell.
func (n *Notifier) ConfirmWithin() time.Duration {
	if n.cfg.ConfirmWithin < 0 || n.cfg.APIToken == "" || n.cfg.Reporter == nil {
		return 0
	}
	return n.cfg.ConfirmWithin
}

// expectConfirmation queues a triggered page for confirmation.
func (n *Notifier) expectConfirmation(p notifiers.Page, sent time.Time) {
	within := n.ConfirmWithin()
	if within == 0 || p.ID == "" {
		return
	}
	first := min(confirmFirstCheck, within)
	if dropped := n.confirms.add(&pendingConfirm{pageID: p.ID, incident: p.Incident, key: p.IncidentKey,
		sent: sent, deadline: sent.Add(within), next: sent.Add(first)}); dropped != "" {
		n.log.Warn("PagerDuty: too many pages waiting for confirmation; the oldest is no longer checked", slog.String("page", dropped))
	}
	if n.state.store != nil && n.tracked.setConfirmBy(p.IncidentKey, p.ID, sent.Add(within)) {
		n.persistTracked(context.Background(), p.IncidentKey)
	}
}

// evidence is what PagerDuty shows about a page's incident.
type evidence struct {
	found    bool
	number   uint
	notified string   // "Alice Example (email)": a person was notified
	acted    string   // "acknowledged by Alice Example": a person acted
	assigned []string // who the incident is assigned to
	said     string   // PagerDuty's last words in the log, beyond trigger and assignment
}

func (e evidence) confirmed() bool { return e.notified != "" || e.acted != "" }

// CheckDeliveries makes one confirmation pass: every waiting page whose
// check is due is looked up (within the pass's budget of REST calls) and
// reported Delivered when PagerDuty shows a person was notified, or
// Unconfirmed when its deadline passed without that. Run calls it; it
// returns when the next check is due (zero when nothing waits).
func (n *Notifier) CheckDeliveries(ctx context.Context) time.Time {
	now := n.cfg.Now()
	if n.confirms.paused(now) {
		return n.confirms.nextAt()
	}
	calls := 0
	seen := map[string]evidence{}
	seenErr := map[string]error{}
	for _, p := range n.confirms.due(now) {
		if ctx.Err() != nil {
			break
		}
		ev, ok := seen[p.key]
		err := seenErr[p.key]
		if !ok && err == nil {
			if calls >= confirmCallsPerPass || n.confirms.paused(n.cfg.Now()) {
				continue // the budget is spent: pages not yet looked at wait for the next pass
			}
			var used int
			ev, used, err = n.lookEvidence(ctx, p.key, p.sent)
			calls += used
			if err != nil {
				seenErr[p.key] = err
			} else {
				seen[p.key] = ev
			}
		}
		n.judge(ctx, p, ev, err)
	}
	next := n.confirms.nextAt()
	if soonest := n.cfg.Now().Add(confirmPassGap); !next.IsZero() && next.Before(soonest) {
		next = soonest
	}
	return next
}

// judge reports p when the evidence settles it, else schedules another look.
func (n *Notifier) judge(ctx context.Context, p *pendingConfirm, ev evidence, err error) {
	now := n.cfg.Now()
	rep := notifiers.Report{PageID: p.pageID, Incident: p.incident, Channel: notifiers.PagerDuty, At: now}
	switch {
	case err == nil && ev.confirmed():
		rep.Status, rep.Detail = notifiers.Delivered, ev.words()
	case now.Before(p.deadline):
		n.confirms.later(p.pageID, now)
		return
	default:
		rep.Status = notifiers.Unconfirmed
		rep.Detail = n.unconfirmedWords(ev, err, now.Sub(p.sent))
	}
	if rerr := n.cfg.Reporter.Report(ctx, rep); rerr != nil && rep.Status == notifiers.Delivered && now.Before(p.deadline) {
		// The engine could not take it: try again at the next look.
		n.log.Warn("PagerDuty delivery confirmation not recorded; will retry", slog.String("page", p.pageID), slog.String("error", rerr.Error()))
		n.confirms.later(p.pageID, now)
		return
	} else if rerr != nil {
		n.log.Warn("PagerDuty delivery report not recorded", slog.String("page", p.pageID), slog.String("status", string(rep.Status)), slog.String("error", rerr.Error()))
	}
	n.log.LogAttrs(ctx, slog.LevelInfo, "PagerDuty delivery judged", slog.String("page", p.pageID),
		slog.String("status", string(rep.Status)), slog.String("detail", rep.Detail))
	n.confirms.done(p.pageID)
	if n.state.store != nil && n.tracked.setConfirmBy(p.key, p.pageID, time.Time{}) {
		n.persistTracked(ctx, p.key)
	}
}

func (e evidence) words() string {
	if e.notified != "" {
		return truncate(fmt.Sprintf("PagerDuty notified %s (incident #%d)", e.notified, e.number), 300)
	}
	return truncate(fmt.Sprintf("PagerDuty incident #%d %s", e.number, e.acted), 300)
}

func (n *Notifier) unconfirmedWords(ev evidence, err error, waited time.Duration) string {
	waited = waited.Round(time.Second)
	var s string
	switch {
	case err != nil && !ev.found:
		s = fmt.Sprintf("accepted by PagerDuty, but whether anybody was notified could not be read within %s: %v", waited, err)
	case !ev.found:
		s = fmt.Sprintf("accepted by PagerDuty, but no incident appeared within %s: the event may have been dropped (service disabled or in maintenance, or suppressed by an event rule)", waited)
	case len(ev.assigned) == 0:
		s = fmt.Sprintf("PagerDuty triggered incident #%d but assigned it to nobody and notified nobody within %s: its escalation policy has nobody on call", ev.number, waited)
	default:
		s = fmt.Sprintf("PagerDuty triggered incident #%d and assigned it to %s, but notified nobody within %s: the user may have no contact methods or notification rules", ev.number, strings.Join(ev.assigned, ", "), waited)
	}
	if ev.said != "" {
		s += "; PagerDuty logged: " + ev.said
	}
	return truncate(n.redact(s), 400)
}

// lookEvidence reads the incident with dedup key and its log entries. It
// returns the REST calls it made.
func (n *Notifier) lookEvidence(ctx context.Context, key string, since time.Time) (evidence, int, error) {
	var ev evidence
	cctx, c := withCapture(ctx)
	resp, err := n.client.ListIncidentsWithContext(cctx, pd.ListIncidentsOptions{IncidentKey: key, DateRange: "all", Limit: 100})
	calls := 1
	if err != nil {
		return ev, calls, n.restFailed("look up incident", err, c)
	}
	inc, found := current(resp.Incidents, since)
	if !found {
		return ev, calls, nil
	}
	ev.found, ev.number = true, inc.IncidentNumber
	for _, a := range inc.Assignments {
		ev.assigned = append(ev.assigned, orID(a.Assignee))
	}
	if inc.Status != "triggered" {
		if who, _ := acknowledger(inc); who.Type == "user_reference" || who.Type == "user" {
			ev.acted = inc.Status + " in PagerDuty by " + orID(who)
		}
	}
	var assignedInLog []string
	for page := uint(0); page < logEntryPages; page++ {
		cctx, c := withCapture(ctx)
		le, err := n.client.ListIncidentLogEntriesWithContext(cctx, inc.ID, pd.ListIncidentLogEntriesOptions{Limit: 100, Offset: page * 100})
		calls++
		if err != nil {
			return ev, calls, n.restFailed("read incident log", err, c)
		}
		for _, e := range le.LogEntries {
			switch e.Type {
			case "notify_log_entry":
				if e.User.ID != "" && ev.notified == "" {
					ev.notified = orID(e.User) + via(e.Channel)
				}
			case "assign_log_entry", "escalate_log_entry", "delegate_log_entry":
				assignedInLog = assignedInLog[:0]
				for _, a := range e.Assignees {
					assignedInLog = append(assignedInLog, orID(a))
				}
				if e.Type != "assign_log_entry" && e.Summary != "" {
					ev.said = e.Summary
				}
			case "trigger_log_entry":
			default:
				if e.Summary != "" {
					ev.said = e.Summary
				}
			}
		}
		if ev.notified != "" || !le.More {
			break
		}
	}
	if len(ev.assigned) == 0 {
		ev.assigned = assignedInLog
	}
	ev.said = truncate(strings.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, ev.said), 200)
	return ev, calls, nil
}

// restFailed classifies a failed REST call and, on 429, pauses every REST
// call of this channel for PagerDuty's Retry-After.
func (n *Notifier) restFailed(op string, err error, c *capture) error {
	if c.status == http.StatusTooManyRequests {
		n.confirms.pause(n.cfg.Now().Add(n.retryAfter(c)))
	}
	return n.classify(op, err, c)
}

func orID(o pd.APIObject) string {
	if o.Summary != "" {
		return o.Summary
	}
	return o.ID
}

// via names a notify entry's contact method: " (sms)", or "".
func via(ch pd.Channel) string {
	if nt, ok := ch.Raw["notification"].(map[string]any); ok {
		if t, ok := nt["type"].(string); ok && t != "" {
			return " (" + t + ")"
		}
	}
	if ch.Type != "" && ch.Type != "auto" {
		return " (" + ch.Type + ")"
	}
	return ""
}

// confirmTimer arms t for next and returns its channel, or nil when no
// check waits (next is zero).
func (n *Notifier) confirmTimer(t *time.Timer, next time.Time) <-chan time.Time {
	if next.IsZero() {
		return nil
	}
	t.Reset(max(next.Sub(n.cfg.Now()), 0))
	return t.C
}
