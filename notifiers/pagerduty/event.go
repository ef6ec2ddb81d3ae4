package pagerduty

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Bounds on what one event carries. PagerDuty limits an event to 512 KB and
// the summary to 1024 characters.
const (
	maxSummaryRunes   = 1024
	maxDedupKeyLen    = 255
	maxAlertsInDetail = 20
	maxValueRunes     = 2048
	maxDetailsBytes   = 256 << 10
	maxLinks          = 5
)

// recipientNote explains in the incident why the named person may not be the
// one PagerDuty notifies.
const recipientNote = "The Events API cannot address a user: PagerDuty notifies whoever the service's escalation policy names."

// severity maps an Alertmanager severity label to PagerDuty's four levels.
// An unknown or missing severity maps to critical: Klaxon only sends a page
// when a policy decided someone must act, and on services with
// severity-based urgency a lower level could silence the page.
func severity(label string) string {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "critical", "page", "fatal", "emergency", "alert", "p1", "sev1":
		return "critical"
	case "error", "major", "high", "p2", "sev2":
		return "error"
	case "warning", "warn", "minor", "medium", "p3", "sev3":
		return "warning"
	case "info", "informational", "low", "notice", "none", "p4", "p5", "sev4":
		return "info"
	default:
		return "critical"
	}
}

// summary is the one line PagerDuty shows on a lock screen.
func summary(p notifiers.Page) string {
	title := strings.Join(strings.Fields(p.Title), " ")
	if title == "" && len(p.Alerts) > 0 {
		a := p.Alerts[0]
		title = a.Name()
		if inst := a.Labels["instance"]; inst != "" {
			title += " on " + inst
		}
		if len(p.Alerts) > 1 {
			title += fmt.Sprintf(" (+%d more)", len(p.Alerts)-1)
		}
	}
	if title == "" {
		title = "alert"
	}
	prefix := fmt.Sprintf("[Klaxon #%d] ", p.Incident)
	if p.Synthetic {
		prefix = "[Klaxon alarm] "
	}
	return truncate(prefix+title, maxSummaryRunes)
}

// source names the system with the problem, as PagerDuty asks.
func source(p notifiers.Page) string {
	for _, a := range p.Alerts {
		for _, l := range []string{"instance", "host", "hostname", "node", "pod", "job"} {
			if v := a.Labels[l]; v != "" {
				return truncate(v, 255)
			}
		}
	}
	if u, err := url.Parse(p.ExternalURL); err == nil && u.Host != "" {
		return u.Host
	}
	return "klaxon"
}

func firstLabel(alerts []notifiers.Alert, names ...string) string {
	for _, a := range alerts {
		for _, l := range names {
			if v := a.Labels[l]; v != "" {
				return truncate(v, 255)
			}
		}
	}
	return ""
}

// link is the way back to the incident in Klaxon.
func (n *Notifier) link(p notifiers.Page) string {
	if p.Link != "" {
		return p.Link
	}
	if n.cfg.KlaxonURL != "" && p.Incident != 0 {
		return n.cfg.KlaxonURL + "/incidents/" + strconv.FormatUint(p.Incident, 10)
	}
	return ""
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil
}

// buildEvent turns a page into an Events API v2 event.
func (n *Notifier) buildEvent(p notifiers.Page, action, routingKey string) *pd.V2Event {
	ev := &pd.V2Event{RoutingKey: routingKey, Action: action, DedupKey: p.IncidentKey, Client: "Klaxon"}
	link := n.link(p)
	switch {
	case n.cfg.KlaxonURL != "":
		ev.ClientURL = n.cfg.KlaxonURL
	case httpURL(link):
		ev.ClientURL = link
	}
	if action != "trigger" {
		return ev // PagerDuty ignores the payload of acknowledge and resolve
	}
	ev.Links = n.links(p, link)
	payload := &pd.V2Payload{
		Summary:   summary(p),
		Source:    source(p),
		Severity:  severity(p.Severity),
		Component: firstLabel(p.Alerts, "service", "job"),
		Group:     firstLabel(p.Alerts, "cluster", "namespace", "env", "environment"),
		Class:     firstLabel(p.Alerts, "alertname"),
		Details:   n.details(p, link),
	}
	var first time.Time
	for _, a := range p.Alerts {
		if !a.StartsAt.IsZero() && (first.IsZero() || a.StartsAt.Before(first)) {
			first = a.StartsAt
		}
	}
	if !first.IsZero() {
		payload.Timestamp = first.UTC().Format(time.RFC3339)
	}
	ev.Payload = payload
	return ev
}

func (n *Notifier) links(p notifiers.Page, link string) []any {
	var out []any
	seen := map[string]bool{}
	add := func(href, text string) {
		if len(out) >= maxLinks || !httpURL(href) || seen[href] {
			return
		}
		seen[href] = true
		out = append(out, map[string]string{"href": href, "text": truncate(text, 100)})
	}
	add(link, fmt.Sprintf("Klaxon incident #%d", p.Incident))
	add(p.ExternalURL, "Alertmanager")
	for _, a := range p.Alerts {
		add(a.GeneratorURL, "Source: "+a.Name())
	}
	return out
}

// details is the incident's custom_details: everything a responder needs
// without leaving PagerDuty, bounded in size.
func (n *Notifier) details(p notifiers.Page, link string) map[string]any {
	d := map[string]any{
		"klaxon_incident": p.Incident,
		"incident_key":    p.IncidentKey,
	}
	if p.ID != "" {
		d["page_id"] = p.ID
	}
	if link != "" {
		d["klaxon_link"] = link
	}
	if p.ExternalURL != "" {
		d["alertmanager"] = p.ExternalURL
	}
	if p.Text != "" {
		d["text"] = truncate(p.Text, maxValueRunes)
	}
	if p.Synthetic {
		d["synthetic"] = true
	}
	if r := p.Recipient; r != (notifiers.Recipient{}) {
		rec := map[string]string{"note": recipientNote}
		for k, v := range map[string]string{"person": r.PersonID, "name": r.Name, "pagerduty_user": r.PagerDutyUser} {
			if v != "" {
				rec[k] = v
			}
		}
		d["paged_for"] = rec
	}
	alerts := make([]map[string]any, 0, min(len(p.Alerts), maxAlertsInDetail))
	for i, a := range p.Alerts {
		if i == maxAlertsInDetail {
			d["alerts_omitted"] = len(p.Alerts) - maxAlertsInDetail
			break
		}
		m := map[string]any{"status": a.Status, "labels": bounded(a.Labels), "annotations": bounded(a.Annotations)}
		if !a.StartsAt.IsZero() {
			m["starts_at"] = a.StartsAt.UTC().Format(time.RFC3339)
		}
		if a.GeneratorURL != "" {
			m["generator_url"] = truncate(a.GeneratorURL, maxValueRunes)
		}
		alerts = append(alerts, m)
	}
	if len(alerts) > 0 {
		d["alerts"] = alerts
	}
	if b, err := json.Marshal(d); err != nil || len(b) > maxDetailsBytes {
		delete(d, "alerts")
		d["alerts_omitted"] = len(p.Alerts)
	}
	return d
}

func bounded(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	keys := slices.Sorted(maps.Keys(m))
	for i, k := range keys {
		if i == 100 {
			out["…"] = fmt.Sprintf("%d more", len(keys)-100)
			break
		}
		out[truncate(k, 200)] = truncate(m[k], maxValueRunes)
	}
	return out
}
