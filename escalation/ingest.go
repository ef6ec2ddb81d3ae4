package escalation

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"
)

// Group is what the store remembers of an Alertmanager group between incidents.
type Group struct {
	// Open is the group's open (or acknowledged) incident, 0 when none.
	Open uint64 `json:"open,omitempty"`
	// LastEnd is, per alert fingerprint, when the alert last resolved. A firing
	// alert that started no later than that is a stale duplicate (an HA peer or a
	// retry delivering an old notification) and must not reopen anything.
	LastEnd map[string]time.Time `json:"lastEnd,omitempty"`
	// ByHand is, per fingerprint, when an incident was resolved by hand while
	// the alert still fired in Alertmanager. Alertmanager's repeat deliveries
	// of that alert carry the same startsAt; past HandResolveGrace they open a
	// new incident instead of being dropped as stale forever.
	ByHand map[string]time.Time `json:"byHand,omitempty"`
}

// HandResolveGrace is how long after a by-hand resolve Alertmanager may still
// deliver the alert as firing (a notification already on its way) before
// that counts as "still firing" and pages again.
const HandResolveGrace = 5 * time.Minute

// lastEndKeep bounds how long a group remembers resolved fingerprints: stale
// duplicates from retries and HA peers arrive within minutes, not days.
const lastEndKeep = 7 * 24 * time.Hour

// stale reports whether firing alert a is older than its last resolution
// (as of now): a duplicate to drop, unless the resolution was by hand long
// enough ago that Alertmanager still delivering it means it still fires.
func (g *Group) stale(a Alert, now time.Time) bool {
	end, ok := g.LastEnd[a.Fingerprint]
	if !ok || a.StartsAt.After(end) {
		return false
	}
	if at, byHand := g.ByHand[a.Fingerprint]; byHand && now.Sub(at) >= HandResolveGrace {
		return false
	}
	return true
}

// OpenIncident builds a new incident with id from notification n, or returns
// nil when n has no fresh firing alert (an all-resolved or stale delivery).
func OpenIncident(id uint64, g *Group, n Notification, now time.Time) (*Incident, []Event) {
	var alerts []Alert
	firing := 0
	var again []string
	for _, a := range n.Alerts {
		if a.Firing() {
			if g.stale(a, now) {
				continue
			}
			if _, ok := g.ByHand[a.Fingerprint]; ok {
				again = append(again, a.Labels["alertname"])
			}
			firing++
		}
		alerts = append(alerts, a)
	}
	if firing == 0 {
		return nil, nil
	}
	sortAlerts(alerts)
	inc := &Incident{
		ID:                id,
		GroupKey:          n.GroupKey,
		State:             Open,
		Receiver:          n.Receiver,
		ExternalURL:       n.ExternalURL,
		GroupLabels:       n.GroupLabels,
		CommonLabels:      n.CommonLabels,
		CommonAnnotations: n.CommonAnnotations,
		Alerts:            alerts,
		OpenedAt:          now,
		UpdatedAt:         now,
		Escalation:        Escalation{NextAt: now},
	}
	inc.Synthetic = strings.HasPrefix(n.GroupKey, AlarmGroupPrefix)
	inc.refreshSummary()
	ev := []Event{{At: now, Kind: EvOpened, Text: fmt.Sprintf("opened: %s (%d firing)", inc.Title, firing)}}
	if len(again) > 0 {
		ev = append(ev, Event{At: now, Kind: EvNote, Text: fmt.Sprintf("still firing in Alertmanager more than %s after it was resolved by hand: paging again", HandResolveGrace)})
	}
	for _, a := range alerts {
		delete(g.ByHand, a.Fingerprint)
	}
	for _, a := range alerts {
		if a.Firing() {
			ev = append(ev, Event{At: now, Kind: EvAlertFiring, Text: "firing: " + describe(a)})
		}
	}
	if n.TruncatedAlerts > 0 {
		ev = append(ev, Event{At: now, Kind: EvTruncated, Text: fmt.Sprintf("Alertmanager left out %d alerts (max_alerts)", n.TruncatedAlerts)})
	}
	g.Open = id
	return inc, ev
}

// Merge applies notification n to the group's open incident. It returns the
// timeline entries for what changed, and whether anything changed at all: a
// firing alert's refreshed annotations (a new summary, an alarm's new
// wording) change the incident without a timeline entry. Nothing changed
// means the delivery was a duplicate.
// When every alert is resolved the incident becomes Resolved and g.Open is
// cleared, so the group's next firing opens a new incident.
func Merge(inc *Incident, g *Group, n Notification, now time.Time) ([]Event, bool) {
	var ev []Event
	quiet := false
	idx := make(map[string]int, len(inc.Alerts))
	for i, a := range inc.Alerts {
		idx[a.Fingerprint] = i
	}
	added := 0
	for _, a := range n.Alerts {
		i, ok := idx[a.Fingerprint]
		if !ok {
			if a.Firing() && g.stale(a, now) {
				continue
			}
			inc.Alerts = append(inc.Alerts, a)
			idx[a.Fingerprint] = len(inc.Alerts) - 1
			if a.Firing() {
				added++
				ev = append(ev, Event{At: now, Kind: EvAlertFiring, Text: "firing: " + describe(a)})
			}
			continue
		}
		old := &inc.Alerts[i]
		switch {
		case old.Firing() && !a.Firing():
			*old = a
			ev = append(ev, Event{At: now, Kind: EvAlertResolve, Text: "resolved: " + describe(a)})
		case !old.Firing() && a.Firing() && a.StartsAt.After(old.EndsAt):
			*old = a
			added++
			ev = append(ev, Event{At: now, Kind: EvAlertFiring, Text: "firing again: " + describe(a)})
		case old.Firing() == a.Firing() && !sameAlert(*old, a) && a.Firing():
			// Annotations or labels refreshed while firing: keep the newest, quietly.
			*old = a
			quiet = true
		}
	}
	if len(ev) == 0 && !quiet {
		return nil, false
	}
	sortAlerts(inc.Alerts)
	if n.TruncatedAlerts > 0 {
		ev = append(ev, Event{At: now, Kind: EvTruncated, Text: fmt.Sprintf("Alertmanager left out %d alerts (max_alerts)", n.TruncatedAlerts)})
	}
	if len(n.CommonLabels) > 0 {
		inc.CommonLabels = n.CommonLabels
	}
	if len(n.CommonAnnotations) > 0 {
		inc.CommonAnnotations = n.CommonAnnotations
	}
	inc.UpdatedAt = now
	inc.refreshSummary()
	if inc.Firing() == 0 {
		inc.move(incResolve, now, "", "")
		if inc.Synthetic {
			ev = append(ev, Event{At: now, Kind: EvResolved, Text: "resolved: " + alarmClearText(inc), Actor: "klaxon"})
		} else {
			ev = append(ev, Event{At: now, Kind: EvResolved, Text: "resolved: every alert resolved in Alertmanager", Actor: "alertmanager"})
		}
		CloseGroup(inc, g)
	}
	return ev, true
}

// CloseGroup records the incident's alerts as ended and detaches it from its
// group, so the group's next firing opens a new incident.
func CloseGroup(inc *Incident, g *Group) {
	if g.LastEnd == nil {
		g.LastEnd = map[string]time.Time{}
	}
	for fp, end := range g.LastEnd {
		if inc.ResolvedAt.Sub(end) > lastEndKeep {
			delete(g.LastEnd, fp)
			delete(g.ByHand, fp)
		}
	}
	for _, a := range inc.Alerts {
		end := a.EndsAt
		if end.IsZero() || a.Firing() {
			end = inc.ResolvedAt
		}
		if a.Firing() {
			// Resolved by hand while Alertmanager still says firing.
			if g.ByHand == nil {
				g.ByHand = map[string]time.Time{}
			}
			g.ByHand[a.Fingerprint] = inc.ResolvedAt
		} else {
			delete(g.ByHand, a.Fingerprint)
		}
		if end.After(g.LastEnd[a.Fingerprint]) {
			g.LastEnd[a.Fingerprint] = end
		}
	}
	if g.Open == inc.ID {
		g.Open = 0
	}
}

func sameAlert(a, b Alert) bool {
	return a.StartsAt.Equal(b.StartsAt) && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) && a.GeneratorURL == b.GeneratorURL
}

// describe is a one-line alert description for the timeline.
func describe(a Alert) string {
	s := a.Labels["alertname"]
	if s == "" {
		s = a.Fingerprint
	}
	if sum := a.Annotations["summary"]; sum != "" {
		s += ": " + sum
	} else if inst := a.Labels["instance"]; inst != "" {
		s += " on " + inst
	}
	return s
}

// refreshSummary recomputes the title and severity from the alerts.
func (inc *Incident) refreshSummary() {
	var names []string
	seen := map[string]bool{}
	for _, a := range inc.Alerts {
		if n := a.Labels["alertname"]; n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	title := strings.Join(names, ", ")
	if title == "" {
		title = "alert group " + inc.GroupKey
	}
	summary := inc.CommonAnnotations["summary"]
	if summary == "" {
		for _, a := range inc.Alerts {
			if a.Firing() && a.Annotations["summary"] != "" {
				summary = a.Annotations["summary"]
				break
			}
		}
	}
	if summary != "" {
		title += ": " + summary
	}
	if len(title) > 200 {
		title = title[:197] + "..."
	}
	inc.Title = title
	inc.Severity = inc.CommonLabels["severity"]
	if inc.Severity == "" {
		best := -1
		for _, a := range inc.Alerts {
			if r := severityRank(a.Labels["severity"]); a.Firing() && r > best {
				best, inc.Severity = r, a.Labels["severity"]
			}
		}
	}
}

func severityRank(s string) int {
	switch strings.ToLower(s) {
	case "critical", "page", "emergency":
		return 4
	case "error", "high":
		return 3
	case "warning", "warn":
		return 2
	case "info", "low":
		return 1
	case "":
		return -1
	}
	return 0
}
