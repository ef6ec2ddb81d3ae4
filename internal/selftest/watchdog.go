package selftest

import (
	"context"
	"fmt"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// WatchdogStatus is the dead man's switch as the API shows it.
type WatchdogStatus struct {
	Enabled bool `json:"enabled"`
	// LastSeen is when the Watchdog alert last arrived (zero: never).
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Deadline is when silence raises the alarm.
	Deadline time.Time `json:"deadline,omitzero"`
	// Silent is set while the "watchdog" alarm is open.
	Silent bool `json:"silent"`
}

// Watchdog returns the dead man's switch's state.
func (m *Monitor) Watchdog() WatchdogStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.WatchdogTimeout < 0 {
		return WatchdogStatus{}
	}
	w := m.watchdog
	s := WatchdogStatus{Enabled: true, LastSeen: w.LastSeen, Silent: w.Alarmed}
	if !w.base().IsZero() {
		s.Deadline = w.base().Add(m.cfg.WatchdogTimeout)
	}
	return s
}

// Intercept takes the Watchdog alerts out of an Alertmanager notification
// before it reaches the engine, so they never open an incident. A firing
// Watchdog resets the dead man's switch and the new deadline is on disk
// before Intercept returns; if it cannot be saved, Intercept returns the
// error and the webhook must answer 5xx so that Alertmanager retries.
//
// It returns the notification without its Watchdog alerts (common labels and
// annotations recomputed over what is left) and whether any alert remains for
// the engine. A notification without a Watchdog alert is returned unchanged.
func (m *Monitor) Intercept(ctx context.Context, n escalation.Notification) (escalation.Notification, bool, error) {
	var rest []escalation.Alert
	stripped, firing := 0, false
	for _, a := range n.Alerts {
		if m.cfg.WatchdogMatcher(a.Labels) {
			stripped++
			firing = firing || a.Firing()
			continue
		}
		rest = append(rest, a)
	}
	if stripped == 0 {
		return n, len(n.Alerts) > 0, nil
	}
	if firing && m.cfg.WatchdogTimeout > 0 {
		if err := m.watchdogSeen(ctx); err != nil {
			return n, false, err
		}
	} else if !firing {
		m.log.Warn("the Watchdog alert arrived resolved: Prometheus may have stopped evaluating it; the dead man's switch keeps running",
			"groupKey", n.GroupKey)
	}
	if len(rest) == 0 {
		return escalation.Notification{}, false, nil
	}
	out := n
	out.Alerts = rest
	out.Status = "resolved"
	for _, a := range rest {
		if a.Firing() {
			out.Status = "firing"
			break
		}
	}
	out.CommonLabels = common(rest, func(a escalation.Alert) map[string]string { return a.Labels })
	out.CommonAnnotations = common(rest, func(a escalation.Alert) map[string]string { return a.Annotations })
	return out, true, nil
}

// common returns the key/value pairs every alert shares.
func common(alerts []escalation.Alert, get func(escalation.Alert) map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range get(alerts[0]) {
		out[k] = v
	}
	for _, a := range alerts[1:] {
		m := get(a)
		for k, v := range out {
			if w, ok := m[k]; !ok || w != v {
				delete(out, k)
			}
		}
	}
	return out
}

// watchdogSeen records a firing Watchdog durably, then wakes the watchdog loop
// (which clears an open alarm).
func (m *Monitor) watchdogSeen(ctx context.Context) error {
	now := m.cfg.Clock.Now()
	m.persistMu.Lock()
	m.mu.Lock()
	rec := m.watchdog
	m.mu.Unlock()
	if now.After(rec.LastSeen) {
		rec.LastSeen = now
	}
	if err := putJSON(ctx, m.cfg.State, keyWatchdog, rec); err != nil {
		m.persistMu.Unlock()
		m.log.Error("could not save the Watchdog's arrival; Alertmanager will retry", "error", err)
		return err
	}
	m.mu.Lock()
	m.watchdog.LastSeen = rec.LastSeen
	m.mu.Unlock()
	m.persistMu.Unlock()
	kick(m.kickWatchdog)
	return nil
}

// saveWatchdog applies change to the Watchdog record and writes it.
func (m *Monitor) saveWatchdog(ctx context.Context, change func(*watchdogRecord)) error {
	m.persistMu.Lock()
	defer m.persistMu.Unlock()
	m.mu.Lock()
	rec := m.watchdog
	m.mu.Unlock()
	change(&rec)
	if err := putJSON(context.WithoutCancel(ctx), m.cfg.State, keyWatchdog, rec); err != nil {
		return err
	}
	m.mu.Lock()
	m.watchdog = rec
	m.mu.Unlock()
	return nil
}

// armWatchdog starts the deadline on the first run ever, so a Watchdog that
// never arrives is noticed too.
func (m *Monitor) armWatchdog(ctx context.Context) {
	m.mu.Lock()
	armed := !m.watchdog.base().IsZero()
	m.mu.Unlock()
	if armed {
		return
	}
	now := m.cfg.Clock.Now()
	if err := m.saveWatchdog(ctx, func(w *watchdogRecord) { w.ArmedAt = now }); err != nil {
		m.log.Error("could not save the Watchdog deadline; it runs from now", "error", err)
		m.mu.Lock()
		m.watchdog.ArmedAt = now
		m.mu.Unlock()
	}
}

// reconcileWatchdog raises the "watchdog" alarm once the deadline has passed
// and clears it once the Watchdog is back. It returns the time to look again
// (zero: only when woken).
func (m *Monitor) reconcileWatchdog(ctx context.Context) time.Time {
	m.alarmMu.Lock()
	defer m.alarmMu.Unlock()
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	rec := m.watchdog
	m.mu.Unlock()
	deadline := rec.base().Add(m.cfg.WatchdogTimeout)
	silent := !now.Before(deadline)
	switch {
	case silent && !rec.Alarmed:
		title := m.watchdogTitle(rec)
		if _, err := m.cfg.Alarms.Raise(ctx, KeyWatchdog, title, m.cfg.Policy, map[string]string{"component": "alertmanager"}); err != nil {
			m.log.Error("could not raise the Watchdog alarm; will retry in a minute", "title", title, "error", err)
			return now.Add(time.Minute)
		}
		m.log.Error("alarm raised", "alarm", KeyWatchdog, "title", title)
		since := rec.base()
		if err := m.saveWatchdog(ctx, func(w *watchdogRecord) { w.Alarmed, w.SilentSince = true, since }); err != nil {
			m.log.Error("could not save the Watchdog alarm state", "error", err)
			m.mu.Lock()
			m.watchdog.Alarmed, m.watchdog.SilentSince = true, since
			m.mu.Unlock()
		}
		return time.Time{}
	case silent:
		return time.Time{} // alarmed: wait for the Watchdog
	case rec.Alarmed:
		text := fmt.Sprintf("Alertmanager's Watchdog is back at %s (silent since %s): alerts reach Klaxon again.",
			clock(rec.LastSeen, m.cfg.Location), clock(rec.SilentSince, m.cfg.Location))
		if _, err := m.cfg.Alarms.Clear(ctx, KeyWatchdog, text); err != nil {
			m.log.Error("could not clear the Watchdog alarm; will retry in a minute", "error", err)
			return now.Add(time.Minute)
		}
		m.log.Info("alarm cleared", "alarm", KeyWatchdog, "text", text)
		if err := m.saveWatchdog(ctx, func(w *watchdogRecord) { w.Alarmed = false }); err != nil {
			m.log.Error("could not save the Watchdog alarm state", "error", err)
			m.mu.Lock()
			m.watchdog.Alarmed = false
			m.mu.Unlock()
		}
	}
	return deadline
}

func (m *Monitor) watchdogTitle(w watchdogRecord) string {
	if w.LastSeen.IsZero() {
		return fmt.Sprintf("Alertmanager silent: no Watchdog alert since Klaxon began watching at %s — make sure Prometheus has an always-firing Watchdog rule and Alertmanager routes it to Klaxon with repeat_interval well under %s",
			clock(w.ArmedAt, m.cfg.Location), m.cfg.WatchdogTimeout)
	}
	return fmt.Sprintf("Alertmanager silent since %s: no Watchdog alert for %s — alerts may not be reaching Klaxon; check Prometheus, Alertmanager and the webhook to Klaxon",
		clock(w.LastSeen, m.cfg.Location), m.cfg.WatchdogTimeout)
}
