package selftest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Kinds of channel alarm.
const (
	alarmDown     = "down"
	alarmDegraded = "degraded"
	// alarmUndelivered: the channel accepts pages but does not deliver them.
	alarmUndelivered = "not-delivering"
)

// channelName is how alarms name a channel.
func channelName(ch notifiers.Channel) string {
	switch ch {
	case notifiers.Matrix:
		return "Matrix"
	case notifiers.PagerDuty:
		return "PagerDuty"
	case notifiers.Phone:
		return "Phone (Twilio)"
	case notifiers.SMS:
		return "SMS (Twilio)"
	}
	return string(ch)
}

// clock formats t for a title: "03:10 UTC", with the date when not today.
func clock(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.In(loc).Format("Mon 2 Jan 15:04 MST")
}

func downTitle(ch notifiers.Channel, r channelRecord, loc *time.Location) string {
	n := channelName(ch)
	return fmt.Sprintf("%s down since %s: %s — pages skip %s until it recovers; fix the account or credentials, then run `klaxon selftest`",
		n, clock(r.Since, loc), r.Reason, n)
}

func degradedTitle(ch notifiers.Channel, r channelRecord, loc *time.Location) string {
	return fmt.Sprintf("%s will stop working: %s (since %s) — fix it before pages stop getting through",
		channelName(ch), r.Reason, clock(r.Since, loc))
}

func recoveredText(ch notifiers.Channel, r channelRecord, now time.Time, loc *time.Location) string {
	was := "down"
	switch r.Alarm {
	case alarmDegraded:
		was = "about to fail"
	case alarmUndelivered:
		was = "not delivering"
		if !r.LastDelivered.IsZero() {
			return fmt.Sprintf("%s delivers again: a page was confirmed at %s (not delivering since %s)", channelName(ch),
				clock(r.LastDelivered, loc), clock(r.AlarmSince, loc))
		}
	}
	return fmt.Sprintf("%s recovered at %s (%s since %s): %s", channelName(ch), clock(now, loc), was,
		clock(r.AlarmSince, loc), r.Reason)
}

// wantedAlarm is the kind of alarm a channel's record calls for ("" none).
func wantedAlarm(r channelRecord) string {
	switch {
	case r.Status == notifiers.Down:
		return alarmDown
	case r.NotDelivering != "":
		return alarmUndelivered
	case r.Status == notifiers.Degraded && r.WillFail:
		return alarmDegraded
	}
	return ""
}

// reconcileChannels raises and clears channel alarms until they match the
// channels' records. A failed Raise or Clear is retried on the next call.
func (m *Monitor) reconcileChannels(ctx context.Context) {
	m.alarmMu.Lock()
	defer m.alarmMu.Unlock()
	type todo struct {
		ch         notifiers.Channel
		rec        channelRecord
		want       string
		configured bool
	}
	var work []todo
	m.mu.Lock()
	for ch, r := range m.channels {
		conf := m.configured(ch)
		want := wantedAlarm(*r)
		if !conf {
			want = ""
		}
		// Raise on a new alarm, or again when "will fail" became "down".
		if (want != "" && (r.Alarm == "" || (want == alarmDown && r.Alarm != alarmDown))) || (want == "" && r.Alarm != "") {
			work = append(work, todo{ch: ch, rec: *r, want: want, configured: conf})
		}
	}
	m.mu.Unlock()
	sort.Slice(work, func(i, j int) bool { return channelOrder(work[i].ch) < channelOrder(work[j].ch) })
	changed := false
	for _, w := range work {
		now := m.cfg.Clock.Now()
		key := ChannelKey(w.ch)
		if w.want == "" {
			text := recoveredText(w.ch, w.rec, now, m.cfg.Location)
			if !w.configured {
				text = fmt.Sprintf("%s is no longer configured: its alarm is closed", channelName(w.ch))
			}
			if _, err := m.cfg.Alarms.Clear(ctx, key, text); err != nil {
				m.log.Error("could not clear alarm; will retry", "alarm", key, "error", err)
				continue
			}
			m.log.Info("alarm cleared", "alarm", key, "text", text)
			m.mu.Lock()
			if r := m.channels[w.ch]; r != nil {
				r.Alarm, r.AlarmSince = "", time.Time{}
				if !w.configured {
					delete(m.channels, w.ch)
				}
			}
			m.mu.Unlock()
			changed = true
			continue
		}
		title := downTitle(w.ch, w.rec, m.cfg.Location)
		switch w.want {
		case alarmDegraded:
			title = degradedTitle(w.ch, w.rec, m.cfg.Location)
		case alarmUndelivered:
			title = notDeliveringTitle(w.ch, w.rec, m.cfg.Location)
		}
		if _, err := m.cfg.Alarms.Raise(ctx, key, title, m.cfg.Policy, map[string]string{"channel": string(w.ch)}); err != nil {
			m.log.Error("could not raise alarm; will retry", "alarm", key, "title", title, "error", err)
			continue
		}
		m.log.Error("alarm raised", "alarm", key, "title", title)
		m.mu.Lock()
		if r := m.channels[w.ch]; r != nil {
			if r.Alarm == "" {
				r.AlarmSince = w.rec.Since
				if w.want == alarmUndelivered {
					r.AlarmSince = w.rec.NotDeliveringSince
				}
			}
			r.Alarm = w.want
		}
		m.mu.Unlock()
		changed = true
	}
	if changed {
		m.persistChannels(ctx)
	}
}

// setWanted asks for the keyed alarm (rota, coverage) with title, or for none
// when title is "".
func (m *Monitor) setWanted(key, title string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if title == "" {
		delete(m.want, key)
		return
	}
	m.want[key] = title
}

// clearTexts are the notices sent when a keyed alarm resolves.
var clearTexts = map[string]string{
	KeyRota:     "The rota file is valid again: the reloaded rota is in force.",
	KeyCoverage: "Coverage restored: everyone on call in the coming week can be paged on a working channel.",
}

// reconcileKeyed raises and clears the rota and coverage alarms until they
// match what the checks ask for.
func (m *Monitor) reconcileKeyed(ctx context.Context) {
	m.alarmMu.Lock()
	defer m.alarmMu.Unlock()
	m.mu.Lock()
	want := make(map[string]string, len(m.want))
	for k, v := range m.want {
		want[k] = v
	}
	raised := make(map[string]string, len(m.alarms.Raised))
	for k, v := range m.alarms.Raised {
		raised[k] = v
	}
	m.mu.Unlock()
	keys := make([]string, 0, len(want)+len(raised))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range raised {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	changed := false
	for _, k := range keys {
		title, wanted := want[k]
		_, isRaised := raised[k]
		switch {
		case wanted && !isRaised:
			if _, err := m.cfg.Alarms.Raise(ctx, k, title, m.cfg.OwnersPolicy, m.ownerLabels()); err != nil {
				m.log.Error("could not raise alarm; will retry", "alarm", k, "title", title, "error", err)
				continue
			}
			m.log.Error("alarm raised", "alarm", k, "title", title)
			raised[k] = title
			changed = true
		case !wanted && isRaised:
			text := clearTexts[k]
			if text == "" {
				text = "Resolved."
			}
			if _, err := m.cfg.Alarms.Clear(ctx, k, text); err != nil {
				m.log.Error("could not clear alarm; will retry", "alarm", k, "error", err)
				continue
			}
			m.log.Info("alarm cleared", "alarm", k, "text", text)
			delete(raised, k)
			changed = true
		}
	}
	if !changed {
		return
	}
	m.persistMu.Lock()
	defer m.persistMu.Unlock()
	m.mu.Lock()
	m.alarms.Raised = raised
	m.mu.Unlock()
	if err := putJSON(context.WithoutCancel(ctx), m.cfg.State, keyAlarms, alarmRecord{Raised: raised}); err != nil {
		m.log.Error("could not save alarm state", "error", err)
	}
}

func (m *Monitor) ownerLabels() map[string]string {
	if m.cfg.Owners == nil {
		return nil
	}
	o := m.cfg.Owners()
	if len(o) == 0 {
		return nil
	}
	return map[string]string{"owners": strings.Join(o, ",")}
}

// summarize joins problems for a title, naming at most three.
func summarize(problems []string) string {
	const show = 3
	if len(problems) <= show {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(problems[:show], "; "), len(problems)-show)
}
