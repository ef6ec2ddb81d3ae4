package pagerduty

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// finding is one self-test observation.
type finding struct {
	status   notifiers.Status
	reason   string
	willFail bool
}

// SelfTest checks, without paging anyone, that PagerDuty can page:
//
//   - the REST API token works (401: revoked; 403: lacks access);
//   - the account is usable: an expired trial or unpaid account answers 402
//     with code 2012, a locked one code 2008 (the channel is Down, and pages
//     fail permanently until a check succeeds again);
//   - the service behind each routing key exists, is not disabled (Down) and
//     not in maintenance (Degraded with WillFail: PagerDuty accepts events for
//     it and notifies nobody);
//   - acknowledgements made in PagerDuty can come back (a webhook secret, or an
//     API token to poll with).
//
// Without an API token only the last check is possible and the channel is
// Degraded. A PagerDuty outage (429, 5xx, network) makes the result Degraded,
// not Down: it says nothing about the account.
func (n *Notifier) SelfTest(ctx context.Context) notifiers.Health {
	var fs []finding
	if n.cfg.WebhookSecret == "" && n.cfg.APIToken == "" {
		fs = append(fs, finding{notifiers.Degraded, "acknowledgements made in PagerDuty cannot reach Klaxon (no webhook secret, no API token to poll with)", false})
	}
	if n.cfg.APIToken == "" {
		fs = append(fs, finding{notifiers.Degraded, "no PagerDuty API token: account, token and services cannot be checked", false})
		return combine(fs)
	}

	cctx, c := withCapture(ctx)
	if _, err := n.client.ListAbilitiesWithContext(cctx); err != nil {
		return combine(append(fs, n.restFinding("account check", err, c)))
	}
	n.setAccount(verdict{at: n.cfg.Now()})

	cctx, c = withCapture(ctx)
	services, err := n.client.ListServicesPaginated(cctx, pd.ListServiceOptions{Limit: 100, Includes: []string{"integrations"}})
	if err != nil {
		return combine(append(fs, n.restFinding("service check", err, c)))
	}
	byKey := map[string]pd.Service{}
	for _, s := range services {
		for _, in := range s.Integrations {
			if in.IntegrationKey != "" {
				byKey[in.IntegrationKey] = s
			}
		}
	}
	keys := append([]string{n.cfg.RoutingKey}, n.cfg.ExtraRoutingKeys...)
	for i, key := range keys {
		name := "default routing key"
		if i > 0 {
			name = fmt.Sprintf("extra routing key %d", i)
		}
		f, v := n.checkService(name, key, byKey)
		n.mu.Lock()
		n.services[key] = v
		n.mu.Unlock()
		if f.reason != "" {
			fs = append(fs, f)
		}
	}
	return combine(fs)
}

// checkService judges the service behind one routing key.
func (n *Notifier) checkService(name, key string, byKey map[string]pd.Service) (finding, verdict) {
	now := n.cfg.Now()
	s, ok := byKey[key]
	switch {
	case !ok && strings.HasPrefix(key, "R"):
		// Ruleset and event orchestration keys route by rules, not to one service.
		return finding{}, verdict{at: now}
	case !ok:
		return finding{notifiers.Down, name + " matches no service the API token can see: the integration was deleted, or the token belongs to another account", false},
			verdict{problem: name + " matches no PagerDuty service", code: "404", at: now}
	}
	svc := fmt.Sprintf("service %q", s.Name)
	switch s.Status {
	case "disabled":
		return finding{notifiers.Down, fmt.Sprintf("%s (%s) is disabled", svc, name), false},
			verdict{problem: svc + " is disabled", code: "disabled", at: now}
	case "maintenance":
		return finding{notifiers.Degraded, fmt.Sprintf("%s (%s) is in maintenance: PagerDuty creates no incidents", svc, name), true},
			verdict{problem: svc + " is in maintenance", code: "maintenance", at: now}
	}
	return finding{}, verdict{at: now}
}

// restFinding turns a failed REST call into a finding, remembering a lapsed
// account so pages fail at once.
func (n *Notifier) restFinding(op string, err error, c *capture) finding {
	cerr := n.classify(op, err, c)
	pe := parseProviderError(c.body)
	if p := accountProblem(c.status, pe); p != "" {
		n.setAccount(verdict{problem: p, code: codeOf(c.status, pe), at: n.cfg.Now()})
		return finding{notifiers.Down, cerr.Error(), false}
	}
	switch {
	case c.status == http.StatusUnauthorized:
		return finding{notifiers.Down, "PagerDuty API token rejected (revoked or wrong): " + cerr.Error(), false}
	case c.status == http.StatusForbidden:
		return finding{notifiers.Down, "PagerDuty API token lacks access: " + cerr.Error(), false}
	case notifiers.IsPermanent(cerr):
		return finding{notifiers.Down, cerr.Error(), false}
	default:
		return finding{notifiers.Degraded, "PagerDuty API unavailable, nothing checked: " + cerr.Error(), false}
	}
}

// combine folds findings into one Health: the worst status, every reason.
func combine(fs []finding) notifiers.Health {
	h := notifiers.Health{Status: notifiers.Up, Reason: "PagerDuty account, token and services OK"}
	var reasons []string
	for _, f := range fs {
		if rank(f.status) > rank(h.Status) {
			h.Status = f.status
		}
		h.WillFail = h.WillFail || f.willFail
		reasons = append(reasons, f.reason)
	}
	if len(reasons) > 0 {
		h.Reason = strings.Join(reasons, "; ")
	}
	return h
}

func rank(s notifiers.Status) int {
	switch s {
	case notifiers.Down:
		return 2
	case notifiers.Degraded:
		return 1
	}
	return 0
}
