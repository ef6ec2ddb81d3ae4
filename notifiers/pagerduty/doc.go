// Package pagerduty is Klaxon's PagerDuty channel, built on
// github.com/PagerDuty/go-pagerduty.
//
// Pages become Events API v2 events: a trigger whose dedup key is the Klaxon
// incident key (stable across retries and restarts, so PagerDuty adds to one
// incident), with a lock-screen summary, a severity mapped from the alerts'
// severity label, source, links back to Klaxon and Alertmanager, and custom
// details (labels, annotations, incident number). When the incident is
// acknowledged or resolved elsewhere, acknowledge and resolve events make
// PagerDuty stop notifying.
//
// The Events API routes by service, not by person: the rota's PagerDuty user
// for the recipient is written into the incident's custom details
// ("paged_for"), but PagerDuty notifies whoever the service's escalation
// policy names. Point each routing key at a service whose escalation policy
// matches the rota.
//
// Acknowledgements come back through v3 webhooks (WebhookHandler, verified
// with the subscription's signing secret) or, without a secret, by polling the
// REST API with a token (Run). SelfTest checks the token, the account (an
// expired or unpaid account answers 402, code 2012) and the services behind
// the routing keys.
//
// Delivery is confirmed, not assumed (see confirm.go): the Events API answers
// 202 even when nobody will be notified, so with an API token the notifier
// reads the triggered incident's log entries and reports Delivered once one
// shows a person was notified, or Unconfirmed when ConfirmWithin (default
// 2m) passes without that, saying what PagerDuty showed (nobody on call, a
// user without contact methods, no incident at all). Canary triggers a test
// incident on a canary routing key and confirms it the same way.
//
// Failures are classified for the engine: 400 (invalid event, e.g. an unknown
// routing key), 401, 402, 403 and other 4xx are permanent; 408, 429 and 5xx
// are temporary, with PagerDuty's Retry-After when it sends one; network
// errors are temporary. Secrets never appear in errors or logs.
package pagerduty
