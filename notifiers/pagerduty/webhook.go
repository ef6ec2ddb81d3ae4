package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/PagerDuty/go-pagerduty/webhookv3"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// maxWebhookBytes bounds a webhook body. PagerDuty guarantees delivery up to
// 55 KB and drops anything over 256 KB; 1 MiB leaves room and stops abuse.
const maxWebhookBytes = 1 << 20

// respondTimeout bounds the work done for one webhook: PagerDuty waits 5s for
// a 2xx before it retries.
const respondTimeout = 4 * time.Second

// webhookPayload is the v3 webhook body (developer.pagerduty.com, "Webhooks
// Overview"). go-pagerduty has no type for it.
type webhookPayload struct {
	Event *struct {
		ID           string          `json:"id"`
		EventType    string          `json:"event_type"`
		ResourceType string          `json:"resource_type"`
		OccurredAt   time.Time       `json:"occurred_at"`
		Agent        *webhookAgent   `json:"agent"`
		Data         json.RawMessage `json:"data"`
	} `json:"event"`
}

// webhookAgent is event.agent: who made the change (a user_reference for a
// person, a service_reference or integration for events and automation).
type webhookAgent struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Summary string `json:"summary"`
}

// webhookIncident is event.data for incident.* events.
type webhookIncident struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Number      int    `json:"number"`
	Status      string `json:"status"`
	IncidentKey string `json:"incident_key"`
	Title       string `json:"title"`
	Assignees   []struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"assignees"`
}

// WebhookHandler serves POST /webhook/pagerduty: PagerDuty v3 webhooks of a
// subscription whose signing secret is Config.WebhookSecret.
//
// Answers: 405 for other methods; 413 for a body over 1 MiB; 403 for a bad
// signature (or when no secret is configured); 400 for a missing or
// malformed signature header or a malformed body; 503 when the same event is
// being processed or the engine failed (PagerDuty retries 5xx); 202 otherwise,
// including for events Klaxon ignores (4xx would make PagerDuty drop them,
// which is right only for garbage).
//
// Mapping: incident.acknowledged → Ack, incident.resolved → Resolve (both only
// when a user did it: the same change made by an integration is Klaxon's own
// acknowledge/resolve event, or another tool's, and is nobody's answer);
// incident.unacknowledged → Unack (PagerDuty's acknowledgement timeout counts
// too); incident.reassigned is not an acknowledgement: someone moved the
// incident to another PagerDuty user, nobody took it, so escalation goes on;
// it is recorded through Reporter as a Delivered report (a person handled the
// page in PagerDuty) when the incident is one this process paged for. Other
// event types are ignored. The incident is identified by data.incident_key
// (the dedup key Klaxon sent); when a payload lacks it, the incident is
// fetched by id with the API token.
//
// Replays: PagerDuty delivers at least once and retries with the same event
// id for about 20 minutes. Event ids handled are remembered for
// WebhookMaxAge+10m (up to 10,000), and events whose occurred_at is older than
// WebhookMaxAge (default 1h) are ignored. Together these reject any replay of
// a captured signed body (the v3 signature covers no timestamp) while
// accepting every genuine retry. Future timestamps are accepted (only
// PagerDuty can sign them; our clock may be behind) and clamped to now.
func (n *Notifier) WebhookHandler() http.Handler { return http.HandlerFunc(n.serveWebhook) }

func (n *Notifier) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if n.cfg.WebhookSecret == "" {
		n.log.Warn("PagerDuty webhook refused: no webhook secret configured")
		http.Error(w, "webhooks are not configured", http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			n.log.Warn("PagerDuty webhook refused: body too large", slog.Int64("limit", tooBig.Limit))
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	switch err := webhookv3.VerifySignature(r, n.cfg.WebhookSecret); {
	case err == nil:
	case errors.Is(err, webhookv3.ErrNoValidSignatures):
		n.log.Warn("PagerDuty webhook refused: bad signature", slog.String("remote", r.RemoteAddr))
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	default:
		n.log.Warn("PagerDuty webhook refused: malformed", slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
		http.Error(w, "malformed signature or body", http.StatusBadRequest)
		return
	}

	var wp webhookPayload
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&wp); err != nil || wp.Event == nil || wp.Event.ID == "" || wp.Event.EventType == "" || wp.Event.OccurredAt.IsZero() {
		n.log.Warn("PagerDuty webhook refused: signed but malformed payload")
		http.Error(w, "malformed payload", http.StatusBadRequest)
		return
	}
	ev := wp.Event
	now := n.cfg.Now()
	log := n.log.With(slog.String("webhook_event", ev.ID), slog.String("event_type", ev.EventType))

	switch n.replays.begin(ev.ID, now) {
	case replayDone:
		log.Info("PagerDuty webhook already handled (redelivery or replay)")
		w.WriteHeader(http.StatusAccepted)
		return
	case replayInFlight:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "event is being processed", http.StatusServiceUnavailable)
		return
	}
	if n.handledBefore(r.Context(), ev.ID, now) {
		n.replays.finish(ev.ID, true, now)
		log.Info("PagerDuty webhook already handled before a restart (redelivery or replay)")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	status, handled := n.handleEvent(r.Context(), log, ev.EventType, ev.ResourceType, ev.OccurredAt, agentOf(ev.Agent), ev.Data, now)
	n.replays.finish(ev.ID, handled, n.cfg.Now())
	if handled {
		n.rememberHandled(r.Context(), ev.ID, n.cfg.Now())
	}
	if status >= 500 {
		http.Error(w, "try again", status)
		return
	}
	w.WriteHeader(status)
}

type agent struct{ id, typ, name string }

func agentOf(a *webhookAgent) agent {
	if a == nil {
		return agent{}
	}
	return agent{id: a.ID, typ: a.Type, name: a.Summary}
}

func (a agent) isUser() bool { return a.id != "" && (a.typ == "user_reference" || a.typ == "user") }

// handleEvent applies one verified, new webhook event. It returns the status
// to answer and whether the event is done with (false: let a retry redo it).
func (n *Notifier) handleEvent(ctx context.Context, log *slog.Logger, eventType, resourceType string, occurred time.Time, who agent, data json.RawMessage, now time.Time) (int, bool) {
	var action notifiers.Action
	switch eventType {
	case "incident.acknowledged":
		action = notifiers.Ack
	case "incident.resolved":
		action = notifiers.Resolve
	case "incident.unacknowledged":
		action = notifiers.Unack
	case "incident.reassigned":
	default:
		log.Debug("PagerDuty webhook ignored: event type not used")
		return http.StatusAccepted, true
	}
	if resourceType != "" && resourceType != "incident" {
		log.Warn("PagerDuty webhook ignored: unexpected resource type", slog.String("resource_type", resourceType))
		return http.StatusAccepted, true
	}
	if age := now.Sub(occurred); age > n.cfg.WebhookMaxAge {
		log.Warn("PagerDuty webhook ignored: too old to be a retry (replay?)", slog.Duration("age", age))
		return http.StatusAccepted, true
	}
	at := occurred
	if at.After(now) {
		at = now
	}
	var inc webhookIncident
	if err := json.Unmarshal(data, &inc); err != nil || inc.ID == "" {
		log.Warn("PagerDuty webhook ignored: event.data is not an incident")
		return http.StatusAccepted, true
	}
	ctx, cancel := context.WithTimeout(ctx, respondTimeout)
	defer cancel()
	key := inc.IncidentKey
	if key == "" {
		var status int
		if key, status = n.lookupIncidentKey(ctx, log, inc.ID); key == "" {
			return status, status < 500
		}
	}
	log = log.With(slog.String("incident_key", key))

	if eventType == "incident.reassigned" {
		n.reportReassigned(ctx, log, key, who, inc, at)
		return http.StatusAccepted, true
	}
	if action != notifiers.Unack && !who.isUser() {
		log.Info("PagerDuty webhook ignored: change made by an integration, not a person", slog.String("agent_type", who.typ))
		return http.StatusAccepted, true
	}
	out, err := n.cfg.Responder.Respond(ctx, notifiers.Response{
		Action: action, IncidentKey: key, Channel: notifiers.PagerDuty,
		From: who.id, Alias: n.alias(ctx, log, who.id), Name: who.name, At: at,
	})
	switch {
	case errors.Is(err, notifiers.ErrUnknownIncident):
		log.Info("PagerDuty webhook for an incident Klaxon does not know")
		return http.StatusAccepted, true
	case errors.Is(err, notifiers.ErrNotOnRota):
		log.Warn("PagerDuty user is not on the rota; response recorded, not taken", slog.String("from", who.id), slog.String("name", who.name))
		return http.StatusAccepted, true
	case err != nil:
		log.Error("PagerDuty response could not be taken; PagerDuty will retry", slog.String("error", err.Error()))
		return http.StatusServiceUnavailable, false
	}
	if action == notifiers.Resolve {
		n.forget(ctx, key)
	}
	log.Info("PagerDuty response taken", slog.String("action", string(action)), slog.Bool("applied", out.Applied),
		slog.Uint64("incident", out.Incident), slog.String("by", out.By))
	return http.StatusAccepted, true
}

// lookupIncidentKey fetches an incident's key by id. It returns "" and the
// status to answer when it cannot.
func (n *Notifier) lookupIncidentKey(ctx context.Context, log *slog.Logger, id string) (string, int) {
	if n.cfg.APIToken == "" {
		log.Warn("PagerDuty webhook ignored: no incident_key and no API token to look it up")
		return "", http.StatusAccepted
	}
	ctx, c := withCapture(ctx)
	inc, err := n.client.GetIncidentWithContext(ctx, id)
	switch {
	case err == nil && inc.IncidentKey != "":
		return inc.IncidentKey, http.StatusAccepted
	case err == nil:
		log.Info("PagerDuty webhook ignored: incident has no incident key (not Klaxon's)")
		return "", http.StatusAccepted
	}
	cerr := n.classify("look up incident", err, c)
	if notifiers.IsPermanent(cerr) {
		log.Warn("PagerDuty webhook ignored: incident lookup failed", slog.String("error", cerr.Error()))
		return "", http.StatusAccepted
	}
	log.Warn("PagerDuty incident lookup failed; PagerDuty will retry", slog.String("error", cerr.Error()))
	return "", http.StatusServiceUnavailable
}

func (n *Notifier) reportReassigned(ctx context.Context, log *slog.Logger, key string, who agent, inc webhookIncident, at time.Time) {
	var to []string
	for _, a := range inc.Assignees {
		to = append(to, a.Summary)
	}
	detail := fmt.Sprintf("reassigned in PagerDuty to %s", strings.Join(to, ", "))
	if who.name != "" {
		detail += " by " + who.name
	}
	t, ok := n.tracked.get(key)
	if !ok || n.cfg.Reporter == nil {
		log.Info("PagerDuty incident reassigned (not reported: no page or no reporter)", slog.String("detail", detail))
		return
	}
	err := n.cfg.Reporter.Report(ctx, notifiers.Report{
		PageID: t.pageID, Incident: t.incident, Channel: notifiers.PagerDuty,
		Status: notifiers.Delivered, Detail: truncate(detail, 300), At: at,
	})
	if err != nil {
		log.Warn("PagerDuty reassignment not recorded", slog.String("error", err.Error()))
	}
}
