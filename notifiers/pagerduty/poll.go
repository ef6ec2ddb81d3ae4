package pagerduty

import (
	"context"
	"errors"
	"log/slog"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Polling reports PagerDuty-side changes as responses when there is no
// webhook secret: each tracked incident (paged for and not yet resolved) is
// looked up by incident key every PollInterval.

// Run is the channel's one poller of the REST API, until ctx ends. It polls
// PagerDuty for acknowledgements when there is no webhook secret and there
// is an API token, and it confirms deliveries (CheckDeliveries) when
// ConfirmWithin is not 0. With neither it returns nil at once. A failed poll
// is logged and retried at the next tick; Run returns nil when ctx ends.
//
// Run first loads the tracked incidents again from Config.State (when it
// can be walked): Run is the leader's loop, and a replica that has just
// become the leader tracks what its predecessor paged for.
func (n *Notifier) Run(ctx context.Context) error {
	ackPoll := n.cfg.WebhookSecret == "" && n.cfg.APIToken != ""
	confirm := n.ConfirmWithin() > 0
	if !ackPoll && !confirm {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	n.reloadState(lctx) // tracked incidents and waiting confirmations (add is by page id)
	cancel()
	var tick <-chan time.Time
	if ackPoll {
		t, stop := n.newTicker(n.cfg.PollInterval)
		defer stop()
		tick = t
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due <-chan time.Time
	if confirm {
		due = n.confirmTimer(timer, n.confirms.nextAt())
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.confirms.wake:
			due = n.confirmTimer(timer, n.confirms.nextAt())
		case <-due:
			due = n.confirmTimer(timer, n.CheckDeliveries(ctx))
		case <-tick:
			if err := n.Poll(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("PagerDuty poll failed", slog.String("error", err.Error()))
			}
			if n.polled != nil {
				n.polled()
			}
		}
	}
}

// Poll looks up every tracked incident once and reports changes made in
// PagerDuty: acknowledged → Ack, resolved → Resolve (by a person), triggered
// again after an acknowledgement → Unack. It returns the first error met
// after trying every incident.
func (n *Notifier) Poll(ctx context.Context) error {
	if n.confirms.paused(n.cfg.Now()) {
		return nil // rate limited: PagerDuty's Retry-After has not passed
	}
	var first error
	for _, key := range n.tracked.keys() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := n.pollOne(ctx, key); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (n *Notifier) pollOne(ctx context.Context, key string) error {
	t, ok := n.tracked.get(key)
	if !ok {
		return nil
	}
	ctx, c := withCapture(ctx)
	resp, err := n.client.ListIncidentsWithContext(ctx, pd.ListIncidentsOptions{IncidentKey: key, DateRange: "all", Limit: 100})
	if err != nil {
		return n.restFailed("poll incident", err, c)
	}
	inc, found := current(resp.Incidents, t.since)
	if !found {
		return nil // not created yet (events are processed asynchronously), or dropped
	}
	if inc.Status == t.lastStatus {
		return nil
	}
	log := n.log.With(slog.String("incident_key", key), slog.String("status", inc.Status))
	var r notifiers.Response
	switch {
	case inc.Status == "acknowledged":
		who, at := acknowledger(inc)
		if who.Type != "user_reference" && who.Type != "user" {
			n.setStatus(ctx, key, inc.Status) // Klaxon's own acknowledge event
			return nil
		}
		r = notifiers.Response{Action: notifiers.Ack, From: who.ID, Name: who.Summary, At: n.parseTime(at)}
	case inc.Status == "resolved":
		who := inc.LastStatusChangeBy
		if who.Type != "user_reference" && who.Type != "user" {
			n.forget(ctx, key)
			return nil
		}
		r = notifiers.Response{Action: notifiers.Resolve, From: who.ID, Name: who.Summary, At: n.parseTime(inc.LastStatusChangeAt)}
	case inc.Status == "triggered" && t.lastStatus == "acknowledged":
		who := inc.LastStatusChangeBy
		r = notifiers.Response{Action: notifiers.Unack, From: who.ID, Name: who.Summary, At: n.parseTime(inc.LastStatusChangeAt)}
	default:
		n.setStatus(ctx, key, inc.Status)
		return nil
	}
	r.IncidentKey, r.Channel = key, notifiers.PagerDuty
	r.Alias = n.alias(ctx, log, r.From)
	out, err := n.cfg.Responder.Respond(ctx, r)
	switch {
	case errors.Is(err, notifiers.ErrUnknownIncident):
		n.forget(ctx, key)
		return nil
	case errors.Is(err, notifiers.ErrNotOnRota):
		log.Warn("PagerDuty user is not on the rota; response not taken", slog.String("from", r.From), slog.String("name", r.Name))
	case err != nil:
		return err // status not recorded: the next poll tries again
	default:
		log.Info("PagerDuty response taken (polled)", slog.String("action", string(r.Action)), slog.Bool("applied", out.Applied))
	}
	if r.Action == notifiers.Resolve {
		n.forget(ctx, key)
	} else {
		n.setStatus(ctx, key, inc.Status)
	}
	return nil
}

// current picks the incident with the key that Klaxon's page opened or joined:
// an open one if any, else the most recently created one that is not older
// than the page (an earlier incident with the same key is history).
func current(incs []pd.Incident, since time.Time) (pd.Incident, bool) {
	var best pd.Incident
	found := false
	for _, inc := range incs {
		if inc.Status != "resolved" {
			return inc, true
		}
		created, err := time.Parse(time.RFC3339, inc.CreatedAt)
		if err == nil && created.Before(since.Add(-time.Minute)) {
			continue
		}
		best, found = inc, true
	}
	return best, found
}

func acknowledger(inc pd.Incident) (pd.APIObject, string) {
	if len(inc.Acknowledgements) > 0 {
		a := inc.Acknowledgements[len(inc.Acknowledgements)-1]
		return a.Acknowledger, a.At
	}
	return inc.LastStatusChangeBy, inc.LastStatusChangeAt
}

func (n *Notifier) parseTime(s string) time.Time {
	now := n.cfg.Now()
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.After(now) {
		return now
	}
	return t
}
