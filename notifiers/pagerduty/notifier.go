package pagerduty

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// accountCheckTTL is how old the last word on the account may be before a
// page triggers a fresh check (when an API token is configured).
const accountCheckTTL = 5 * time.Minute

// serviceStateTTL bounds how long a self-test's verdict on a service (disabled,
// in maintenance) keeps failing pages if self-tests stop running.
const serviceStateTTL = time.Hour

// Notifier is the PagerDuty channel: it triggers, acknowledges and resolves
// PagerDuty incidents through the Events API v2, takes acknowledgements back
// from v3 webhooks (or by polling), and self-tests the account, the token and
// the services behind the routing keys. It is safe for concurrent use.
type Notifier struct {
	cfg     Config
	client  *pd.Client
	secrets []string
	log     *slog.Logger

	tracked  *tracker
	confirms *confirmations
	replays  *replayCache
	state    durable

	// newTicker is the polling clock; tests replace it.
	newTicker func(d time.Duration) (<-chan time.Time, func())
	// polled, if set, is called after each poll Run makes (tests).
	polled func()
	// wait is how Canary waits between looks; tests replace it.
	wait func(ctx context.Context, d time.Duration) error

	mu       sync.Mutex
	account  verdict            // last word on the account
	services map[string]verdict // routing key → last word on its service
}

// verdict is a remembered reason the channel cannot page, and when it was
// established; a zero problem means fine.
type verdict struct {
	problem string
	code    string
	at      time.Time
}

var _ notifiers.Notifier = (*Notifier)(nil)
var _ notifiers.SelfTester = (*Notifier)(nil)

// New validates cfg and returns a Notifier. Errors never contain secrets.
func New(cfg Config) (*Notifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("pagerduty: %w", err)
	}
	n := &Notifier{
		cfg:      cfg,
		log:      cfg.Logger.With("channel", string(notifiers.PagerDuty)),
		tracked:  newTracker(10000),
		confirms: newConfirmations(),
		replays:  newReplayCache(10000, cfg.WebhookMaxAge+10*time.Minute),
		services: map[string]verdict{},
		wait:     sleepCtx,
		newTicker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		},
	}
	for _, s := range append([]string{cfg.RoutingKey, cfg.APIToken, cfg.WebhookSecret, cfg.CanaryRoutingKey}, cfg.ExtraRoutingKeys...) {
		if len(s) >= 8 {
			n.secrets = append(n.secrets, s)
		}
	}
	n.client = pd.NewClient(cfg.APIToken, pd.WithAPIEndpoint(cfg.APIURL), pd.WithV2EventsAPIEndpoint(cfg.EventsURL))
	n.client.HTTPClient = doer{hc: cfg.HTTPClient}
	if cfg.State != nil {
		n.state.store = cfg.State
		n.state.sweeper, _ = cfg.State.(notifiers.StateSweeper)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n.loadState(ctx)
		cancel()
	}
	if cfg.ConfirmWithin > 0 && cfg.APIToken == "" {
		n.log.Warn("PagerDuty has no API token: pages cannot be confirmed (nobody on call, a user without contact methods go unnoticed)")
	}
	if cfg.WebhookSecret == "" && cfg.APIToken == "" {
		n.log.Warn("PagerDuty has neither a webhook secret nor an API token: acknowledgements made in PagerDuty will not reach Klaxon")
	}
	return n, nil
}

// Channel returns notifiers.PagerDuty.
func (n *Notifier) Channel() notifiers.Channel { return notifiers.PagerDuty }

// Notify sends the event a page calls for:
//
//   - KindPage: trigger, with dedup key p.IncidentKey verbatim, so retries and
//     restarts add to the same PagerDuty incident instead of opening another.
//   - KindAcknowledged, KindResolved: acknowledge, resolve (someone answered
//     elsewhere; PagerDuty must stop notifying).
//   - KindUnacknowledged: trigger again. PagerDuty keeps an acknowledged
//     incident acknowledged on a new trigger (the event is deduplicated into
//     it); the Events API has no way to unacknowledge.
//   - KindEscalated, KindNotice: nothing.
//
// p.RoutingKey overrides the default routing key; for acknowledge and resolve
// the key the incident was triggered with is reused when p has none.
// p.Recipient cannot be targeted (the Events API routes by service): it is
// recorded in the incident's custom details.
//
// A page PagerDuty accepted is still a permanent failure when the last check
// found that nobody will be notified (account expired, service disabled or
// in maintenance): PagerDuty answers 202 and drops such events.
func (n *Notifier) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	var action string
	switch p.Kind {
	case notifiers.KindPage, notifiers.KindUnacknowledged:
		action = "trigger"
	case notifiers.KindAcknowledged:
		action = "acknowledge"
	case notifiers.KindResolved:
		action = "resolve"
	case notifiers.KindEscalated, notifiers.KindNotice:
		return notifiers.Receipt{}, nil
	default:
		return notifiers.Receipt{}, notifiers.Permanent("", fmt.Errorf("pagerduty: unknown page kind %q", p.Kind))
	}
	switch {
	case p.IncidentKey == "":
		return notifiers.Receipt{}, notifiers.Permanent("", errors.New("pagerduty: page has no incident key to use as dedup key"))
	case len(p.IncidentKey) > maxDedupKeyLen:
		return notifiers.Receipt{}, notifiers.Permanent("", fmt.Errorf("pagerduty: incident key is %d bytes, PagerDuty allows %d", len(p.IncidentKey), maxDedupKeyLen))
	}
	if p.RoutingKey != "" {
		if err := checkRoutingKey(p.RoutingKey); err != nil {
			return notifiers.Receipt{}, notifiers.Permanent("400", fmt.Errorf("pagerduty: policy step routing key %w", err))
		}
	}
	routingKey := n.routingKeyFor(p)

	ctx, c := withCapture(ctx)
	resp, err := n.client.ManageEventWithContext(ctx, n.buildEvent(p, action, routingKey))
	if err != nil && c.status != 202 {
		cerr := n.classify(action+" event", err, c, p.RoutingKey)
		n.log.LogAttrs(ctx, slog.LevelWarn, "PagerDuty event failed", slog.String("action", action),
			slog.Uint64("incident", p.Incident), slog.String("incident_key", p.IncidentKey),
			slog.Bool("permanent", notifiers.IsPermanent(cerr)), slog.String("error", cerr.Error()))
		return notifiers.Receipt{}, cerr
	}
	dedup := p.IncidentKey
	if resp != nil && resp.DedupKey != "" {
		dedup = resp.DedupKey
	}
	n.log.LogAttrs(ctx, slog.LevelInfo, "PagerDuty event accepted", slog.String("action", action),
		slog.Uint64("incident", p.Incident), slog.String("incident_key", dedup))

	switch p.Kind {
	case notifiers.KindPage, notifiers.KindUnacknowledged:
		n.track(ctx, p.IncidentKey, tracked{routingKey: routingKey, incident: p.Incident, pageID: p.ID, since: n.cfg.Now()})
	case notifiers.KindResolved:
		// Kept until resolved: the resolve event must reach the integration
		// the incident was triggered on.
		n.forget(ctx, p.IncidentKey)
	}

	switch p.Kind {
	case notifiers.KindPage:
		n.refreshAccountIfStale(ctx)
		if problem, code := n.cannotPage(routingKey); problem != "" {
			return notifiers.Receipt{ProviderID: dedup, Detail: "accepted by PagerDuty, but nobody will be notified"},
				notifiers.Permanent(code, fmt.Errorf("pagerduty: event accepted but %s: PagerDuty drops it and notifies nobody", problem))
		}
		n.expectConfirmation(p, n.cfg.Now())
		return notifiers.Receipt{ProviderID: dedup, Detail: "PagerDuty incident triggered"}, nil
	case notifiers.KindUnacknowledged:
		return notifiers.Receipt{ProviderID: dedup, Detail: "trigger sent; PagerDuty keeps an acknowledged incident acknowledged"}, nil
	case notifiers.KindAcknowledged:
		return notifiers.Receipt{ProviderID: dedup, Detail: "PagerDuty incident acknowledged"}, nil
	default:
		return notifiers.Receipt{ProviderID: dedup, Detail: "PagerDuty incident resolved"}, nil
	}
}

// routingKeyFor picks the page's routing key, else the one its incident was
// triggered with, else the default.
func (n *Notifier) routingKeyFor(p notifiers.Page) string {
	if p.RoutingKey != "" {
		return p.RoutingKey
	}
	if t, ok := n.tracked.get(p.IncidentKey); ok && t.routingKey != "" {
		return t.routingKey
	}
	return n.cfg.RoutingKey
}

// cannotPage returns why a page on routingKey reaches nobody, as last checked.
func (n *Notifier) cannotPage(routingKey string) (problem, code string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.account.problem != "" {
		return n.account.problem, n.account.code
	}
	if v, ok := n.services[routingKey]; ok && v.problem != "" && n.cfg.Now().Sub(v.at) < serviceStateTTL {
		return v.problem, v.code
	}
	return "", ""
}

func (n *Notifier) setAccount(v verdict) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.account = v
}

// refreshAccountIfStale asks the REST API whether the account still works
// when the last answer is old. Only a definite "account lapsed" answer is
// remembered; any other failure leaves the last verdict in place, so a REST
// outage never fails a page the Events API took.
func (n *Notifier) refreshAccountIfStale(ctx context.Context) {
	if n.cfg.APIToken == "" {
		return
	}
	n.mu.Lock()
	fresh := !n.account.at.IsZero() && n.cfg.Now().Sub(n.account.at) < accountCheckTTL
	n.mu.Unlock()
	if fresh {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ctx, c := withCapture(ctx)
	_, err := n.client.ListAbilitiesWithContext(ctx)
	switch {
	case err == nil:
		n.setAccount(verdict{at: n.cfg.Now()})
	case c.status != 0:
		pe := parseProviderError(c.body)
		if p := accountProblem(c.status, pe); p != "" {
			n.setAccount(verdict{problem: p, code: codeOf(c.status, pe), at: n.cfg.Now()})
		}
	}
}

func codeOf(status int, pe providerError) string {
	if pe.Code != 0 {
		return fmt.Sprint(pe.Code)
	}
	return fmt.Sprint(status)
}
