package selftest

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// With several replicas one, the leader, runs the checks (Run); the others
// follow (Config.Follower). The leader records its view of the channels, the
// heartbeat and the open alarms in the state store (key "view") whenever it
// changes, which is at least every self-test round (each channel's last
// check moves); a follower answers from that record, read again at most
// every FollowerCache, so every replica shows the same verdicts with who
// made them and how long ago. A quiet leader writes nothing. A follower that finds
// no record (no leader ever ran the checks) shows its own "not checked yet".

// keyView is the leader's recorded view in the "selftest" bucket.
const keyView = "view"

// FollowerCache is how long a follower reuses the leader's record it read.
const FollowerCache = time.Second

// viewRecord is the leader's view as stored.
type viewRecord struct {
	RecordedBy string            `json:"recorded_by,omitempty"`
	RecordedAt time.Time         `json:"recorded_at,omitzero"`
	Channels   []ChannelStatus   `json:"channels"`
	Heartbeat  HeartbeatStatus   `json:"heartbeat"`
	Alarms     map[string]string `json:"alarms,omitempty"`
}

// followState is a follower's copy of the leader's record, and the leader's
// memory of what it last recorded.
type followState struct {
	mu       sync.Mutex
	readAt   time.Time
	view     *viewRecord // nil: none recorded
	watchdog watchdogRecord
	err      error

	written []byte // the last recorded view without its time
}

// following reports whether another replica runs the checks.
func (m *Monitor) following() bool { return m.cfg.Follower != nil && m.cfg.Follower() }

// StatusContext is what GET /api/v1/channels shows on any replica: the
// Monitor's own verdicts where it runs the checks, else those the leader
// last recorded. It fails only when a follower cannot read the store.
func (m *Monitor) StatusContext(ctx context.Context) (Report, error) {
	now := m.cfg.Clock.Now()
	if !m.following() {
		r := m.Status()
		hb := m.Heartbeat()
		r.Heartbeat = &hb
		r.Alarms = m.openAlarms()
		if m.cfg.Follower != nil { // replicated: say who checked
			r.RecordedBy, r.RecordedAt, r.Age = m.cfg.Replica, now, new(float64)
		}
		return r, nil
	}
	v, wd, err := m.leaderView(ctx, now)
	if err != nil {
		return Report{}, err
	}
	if v == nil {
		return m.Status(), nil // no leader has checked yet
	}
	r := Report{Channels: v.Channels, Watchdog: m.watchdogOf(wd), Heartbeat: &v.Heartbeat, Alarms: v.Alarms,
		RecordedBy: v.RecordedBy, RecordedAt: v.RecordedAt}
	if r.Channels == nil {
		r.Channels = []ChannelStatus{}
	}
	age := max(now.Sub(v.RecordedAt), 0).Seconds()
	r.Age = &age
	for _, c := range r.Channels {
		if c.Status != notifiers.Down {
			r.Usable++
		}
	}
	return r, nil
}

// leaderView reads the leader's record and the Watchdog's (which any replica
// writes), or returns the copy read within FollowerCache.
func (m *Monitor) leaderView(ctx context.Context, now time.Time) (*viewRecord, watchdogRecord, error) {
	f := &m.follow
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.readAt.IsZero() && now.Sub(f.readAt) < FollowerCache && now.Sub(f.readAt) >= 0 {
		return f.view, f.watchdog, f.err
	}
	var v viewRecord
	found, err := getJSON(ctx, m.cfg.State, keyView, &v)
	var wd watchdogRecord
	if err == nil {
		_, err = getJSON(ctx, m.cfg.State, keyWatchdog, &wd)
	}
	if err != nil && !isCorrupt(err) {
		// Not cached: the next read tries the store again.
		return nil, watchdogRecord{}, err
	}
	f.readAt, f.err, f.view, f.watchdog = now, nil, nil, wd
	if found && err == nil {
		f.view = &v
	}
	return f.view, f.watchdog, nil
}

// watchdogOf is Watchdog for a stored record.
func (m *Monitor) watchdogOf(w watchdogRecord) WatchdogStatus {
	if m.cfg.WatchdogTimeout < 0 {
		return WatchdogStatus{}
	}
	s := WatchdogStatus{Enabled: true, LastSeen: w.LastSeen, Silent: w.Alarmed}
	if !w.base().IsZero() {
		s.Deadline = w.base().Add(m.cfg.WatchdogTimeout)
	}
	return s
}

// openAlarms is the rota and coverage alarms open now: key → title.
func (m *Monitor) openAlarms() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.alarms.Raised) == 0 {
		return nil
	}
	return maps.Clone(m.alarms.Raised)
}

// record runs on the leader (Run, when replicated) every second: it records
// the view when it changed, and takes in Watchdog
// arrivals other replicas recorded, so the dead man's switch runs from the
// latest arrival wherever it landed.
func (m *Monitor) record(ctx context.Context) {
	m.every(ctx, time.Second, true, func() {
		m.takeWatchdog(ctx)
		m.recordView(ctx)
	})
}

// recordView writes the leader's view if it changed.
func (m *Monitor) recordView(ctx context.Context) {
	v := viewRecord{RecordedBy: m.cfg.Replica, Channels: m.Channels(), Heartbeat: m.Heartbeat(), Alarms: m.openAlarms()}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	now := m.cfg.Clock.Now()
	f := &m.follow
	f.mu.Lock()
	same := bytes.Equal(b, f.written)
	f.mu.Unlock()
	if same {
		return
	}
	v.RecordedAt = now
	if err := putJSON(ctx, m.cfg.State, keyView, v); err != nil {
		if ctx.Err() == nil {
			m.log.Warn("could not record the checks' view for the other replicas; trying again in a second", "error", err)
		}
		return
	}
	f.mu.Lock()
	f.written = b
	f.mu.Unlock()
}

// takeWatchdog reads the Watchdog's record and, if another replica saw it
// later than this one, moves the deadline on.
func (m *Monitor) takeWatchdog(ctx context.Context) {
	if m.cfg.WatchdogTimeout <= 0 {
		return
	}
	var wd watchdogRecord
	if _, err := getJSON(ctx, m.cfg.State, keyWatchdog, &wd); err != nil {
		return
	}
	m.mu.Lock()
	later := wd.LastSeen.After(m.watchdog.LastSeen)
	if later {
		m.watchdog.LastSeen = wd.LastSeen
	}
	m.mu.Unlock()
	if later {
		kick(m.kickWatchdog)
	}
}

// reload reads the records the leader before this one kept, as New does at
// start: a replica that becomes the leader long after it started begins from
// its predecessor's verdicts, Watchdog deadline and open alarms, not from
// what it read when it started.
func (m *Monitor) reload(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	saved := map[notifiers.Channel]*channelRecord{}
	var wd watchdogRecord
	var al alarmRecord
	_, err := getJSON(ctx, m.cfg.State, keyChannels, &saved)
	if err == nil {
		_, err = getJSON(ctx, m.cfg.State, keyWatchdog, &wd)
	}
	if err == nil {
		_, err = getJSON(ctx, m.cfg.State, keyAlarms, &al)
	}
	if err != nil {
		m.log.Warn("could not read the previous leader's self-test records; starting from this replica's", "error", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch, r := range saved {
		if r == nil || !validStatus(r.Status) {
			continue
		}
		if _, ok := m.channels[ch]; ok || r.Alarm != "" {
			m.channels[ch] = r
		}
	}
	if wd.LastSeen.Before(m.watchdog.LastSeen) {
		wd.LastSeen = m.watchdog.LastSeen
	}
	m.watchdog = wd
	if al.Raised != nil {
		m.alarms = al
		for k, t := range al.Raised {
			m.want[k] = t
		}
	}
}
