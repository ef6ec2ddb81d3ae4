package pagerduty

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Canary triggers a test incident on CanaryRoutingKey, waits (as long as a
// page's confirmation may take) for its log to show a person was notified,
// then resolves it. confirmed is PagerDuty's evidence; reason says what it
// showed either way. err is set when nothing could be judged: no canary key
// or API token, a temporary failure to trigger, or ctx ended.
//
// It costs a PagerDuty incident per run, and it notifies whoever the canary
// service's escalation policy names: point the key at a service whose policy
// targets a dummy user with a contact method nobody has to answer.
func (n *Notifier) Canary(ctx context.Context) (confirmed bool, reason string, err error) {
	switch {
	case n.cfg.CanaryRoutingKey == "":
		return false, "", errors.New("pagerduty: no canary routing key configured")
	case n.cfg.APIToken == "":
		return false, "", errors.New("pagerduty: the canary needs an API token to read the incident back")
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := notifiers.Page{ID: "canary", Kind: notifiers.KindPage, IncidentKey: "klaxon-canary-" + hex.EncodeToString(b),
		Channel: notifiers.PagerDuty, Severity: "critical",
		Title: "Klaxon canary: a test of PagerDuty delivery, resolved automatically"}
	key := n.cfg.CanaryRoutingKey

	cctx, c := withCapture(ctx)
	if _, err := n.client.ManageEventWithContext(cctx, n.buildEvent(p, "trigger", key)); err != nil && c.status != 202 {
		cerr := n.classify("canary trigger", err, c, key)
		if notifiers.IsPermanent(cerr) {
			return false, "PagerDuty refused the canary: " + cerr.Error(), nil
		}
		return false, "", cerr
	}
	defer n.resolveCanary(p, key)

	within := n.cfg.ConfirmWithin
	if within <= 0 {
		within = DefaultConfirmWithin
	}
	sent := n.cfg.Now()
	deadline := sent.Add(within)
	backoff := confirmFirstCheck
	var ev evidence
	var lookErr error
	for {
		if err := n.wait(ctx, backoff); err != nil {
			return false, "", err
		}
		if now := n.cfg.Now(); !n.confirms.paused(now) {
			ev, _, lookErr = n.lookEvidence(ctx, p.IncidentKey, sent)
			if lookErr == nil && ev.confirmed() {
				return true, ev.words(), nil
			}
		}
		now := n.cfg.Now()
		if !now.Before(deadline) {
			return false, n.unconfirmedWords(ev, lookErr, now.Sub(sent)), nil
		}
		backoff = min(2*backoff, confirmMaxBackoff, deadline.Sub(now))
		if n.confirms.paused(now) {
			n.confirms.mu.Lock()
			backoff = max(backoff, n.confirms.pauseUntil.Sub(now))
			n.confirms.mu.Unlock()
		}
	}
}

// resolveCanary resolves the canary's incident, best effort.
func (n *Notifier) resolveCanary(p notifiers.Page, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cctx, c := withCapture(ctx)
	if _, err := n.client.ManageEventWithContext(cctx, n.buildEvent(p, "resolve", key)); err != nil && c.status != 202 {
		n.log.Warn("PagerDuty canary incident not resolved; resolve it by hand", slog.String("incident_key", p.IncidentKey),
			slog.String("error", n.classify("canary resolve", err, c, key).Error()))
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pagerduty canary: %w", ctx.Err())
	}
}
