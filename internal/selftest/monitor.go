package selftest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/notifiers"
)

// ChannelStatus is one channel's self-test verdict as the API and
// `klaxon status` show it.
type ChannelStatus struct {
	Channel notifiers.Channel `json:"channel"`
	Status  notifiers.Status  `json:"status"`
	Reason  string            `json:"reason,omitempty"`
	// WillFail marks a degraded channel whose cause will become an outage.
	WillFail bool `json:"will_fail,omitempty"`
	// Since is when the channel entered Status (for down: the first failure).
	Since       time.Time `json:"since,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastCheck   time.Time `json:"last_check,omitzero"`
	// Failures counts failed checks and permanent send failures in a row.
	Failures int `json:"failures,omitempty"`
	// LastError is the latest failure's reason, kept while the channel is not yet down.
	LastError string `json:"last_error,omitempty"`
	// HasSelfTest is false for a channel that cannot test itself.
	HasSelfTest bool `json:"has_self_test"`
	// Alarm is the kind of alarm open for the channel ("down", "degraded",
	// "not-delivering"), if any.
	Alarm string `json:"alarm,omitempty"`
	// LastDelivered is the channel's last proven delivery: a page or canary
	// it confirmed arrived (zero: none yet).
	LastDelivered time.Time `json:"last_delivered,omitzero"`
	// Unconfirmed counts unconfirmed pages in a row (see Monitor.Delivery).
	Unconfirmed int `json:"unconfirmed,omitempty"`
	// NotDelivering is set while the channel accepts pages but does not
	// deliver them (Status is then degraded).
	NotDelivering bool `json:"not_delivering,omitempty"`
}

// Monitor runs self-tests, the Watchdog dead man's switch, the heartbeat and
// coverage checks, and raises alarms. Its methods are safe for concurrent use.
type Monitor struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	channels map[notifiers.Channel]*channelRecord
	watchdog watchdogRecord
	alarms   alarmRecord
	// want holds the alarms the rota and coverage checks ask for: key → title.
	want       map[string]string
	inflight   map[notifiers.Channel]time.Time // self-tests still running, by start
	lastUsable int                             // usable channels at the last look (-1: unknown)
	// dirty marks channel records changed in memory only (a page's success)
	// and not yet saved.
	dirty bool

	persistMu sync.Mutex // one snapshot-and-write at a time, so the newest wins
	alarmMu   sync.Mutex // one alarm decision at a time
	checkMu   sync.Mutex // one self-test round at a time

	kickAlarms   chan struct{}
	kickWatchdog chan struct{}
	kickCoverage chan struct{}

	// people holds one person's own delivery problems (invalid number, STOP)
	// per channel: they feed the coverage check, never the channel's health.
	people map[personChannel]string

	heartbeats *prometheus.CounterVec
	beat       HeartbeatStatus // guarded by mu

	follow followState // with several replicas (follower.go)
}

type personChannel struct {
	person string
	ch     notifiers.Channel
}

// Recipient learns the result of a page to one person on one channel. A
// failure about that person only (notifiers.IsRecipient) is recorded against
// them and feeds the coverage check; a later success clears it.
func (m *Monitor) Recipient(person string, ch notifiers.Channel, err error) {
	if person == "" {
		return
	}
	k := personChannel{person, ch}
	m.mu.Lock()
	old, had := m.people[k]
	switch {
	case err == nil:
		delete(m.people, k)
	case notifiers.IsRecipient(err):
		m.people[k] = oneLine(err.Error())
	default:
		m.mu.Unlock()
		return
	}
	now, has := m.people[k]
	m.mu.Unlock()
	if had != has || old != now {
		if has {
			m.log.Warn("a person cannot be reached on a channel", "person", person, "channel", ch, "reason", now)
		}
		kick(m.kickCoverage)
	}
}

// PersonProblem says why person could not be reached on ch at their last
// page, or "".
func (m *Monitor) PersonProblem(person string, ch notifiers.Channel) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.people[personChannel{person, ch}]
}

// New builds a Monitor and loads its durable state: a channel found down
// before a restart is still down (Health says so) until a check passes.
func New(cfg Config) (*Monitor, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m := &Monitor{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "selftest"),
		channels:     map[notifiers.Channel]*channelRecord{},
		want:         map[string]string{},
		inflight:     map[notifiers.Channel]time.Time{},
		lastUsable:   -1,
		kickAlarms:   make(chan struct{}, 1),
		kickWatchdog: make(chan struct{}, 1),
		kickCoverage: make(chan struct{}, 1),
		people:       map[personChannel]string{},
		heartbeats:   newHeartbeatCounter(),
	}
	if cfg.HeartbeatURL != "" {
		// Export every result from the start, so that increase() in an alerting
		// rule (KlaxonHeartbeatFailing) sees the very first failure.
		for _, result := range []string{"ok", "failed", "withheld"} {
			m.heartbeats.WithLabelValues(result)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	saved := map[notifiers.Channel]*channelRecord{}
	if _, err := getJSON(ctx, cfg.State, keyChannels, &saved); err != nil {
		if !isCorrupt(err) {
			return nil, err
		}
		m.log.Error("discarding corrupt channel state; channels start as up", "error", err)
		saved = map[notifiers.Channel]*channelRecord{}
	}
	now := cfg.Clock.Now()
	for _, ch := range cfg.Configured {
		if r, ok := saved[ch]; ok && r != nil && validStatus(r.Status) {
			m.channels[ch] = r
			continue
		}
		r := &channelRecord{Status: notifiers.Up, Since: now, Reason: "not checked yet"}
		if _, ok := cfg.Testers[ch]; !ok {
			r.Reason = "no self-test for this channel"
		}
		m.channels[ch] = r
	}
	for ch, r := range saved { // channels no longer configured: their alarms must not stay open
		if _, ok := m.channels[ch]; !ok && r != nil && r.Alarm != "" {
			m.channels[ch] = r
		}
	}
	if _, err := getJSON(ctx, cfg.State, keyWatchdog, &m.watchdog); err != nil {
		if !isCorrupt(err) {
			return nil, err
		}
		m.log.Error("discarding corrupt Watchdog state", "error", err)
		m.watchdog = watchdogRecord{}
	}
	if _, err := getJSON(ctx, cfg.State, keyAlarms, &m.alarms); err != nil {
		if !isCorrupt(err) {
			return nil, err
		}
		m.log.Error("discarding corrupt alarm state", "error", err)
		m.alarms = alarmRecord{}
	}
	if m.alarms.Raised == nil {
		m.alarms.Raised = map[string]string{}
	}
	// Keep raised rota/coverage alarms wanted until a check says otherwise,
	// so a restart neither re-raises nor silently drops them.
	for k, t := range m.alarms.Raised {
		m.want[k] = t
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(&collector{m: m}); err != nil {
			return nil, fmt.Errorf("selftest: registering metrics: %w", err)
		}
	}
	return m, nil
}

func validStatus(s notifiers.Status) bool {
	return s == notifiers.Up || s == notifiers.Degraded || s == notifiers.Down
}

func isCorrupt(err error) bool { return errors.Is(err, errCorrupt) }

func (m *Monitor) configured(ch notifiers.Channel) bool {
	for _, c := range m.cfg.Configured {
		if c == ch {
			return true
		}
	}
	return false
}

// Health reports a channel's health for escalation.Config.Health: a channel
// down is skipped by the engine ("skipped: pagerduty down since 03:10"); a
// degraded one still pages. The engine sets Configured itself.
func (m *Monitor) Health(ch notifiers.Channel) escalation.ChannelHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.channels[ch]
	if !ok || !m.configured(ch) {
		return escalation.ChannelHealth{}
	}
	h := escalation.ChannelHealth{Configured: true}
	if r.Status == notifiers.Down {
		h.Down, h.Since, h.Reason = true, r.Since.In(m.cfg.Location), r.Reason
	}
	return h
}

// Evidence learns the result of a real page, for escalation.Config.Evidence.
// A permanent failure counts as a failed check (FailuresToDown of them in a
// row mark the channel down); a success resets the count and brings a down
// channel back up. Temporary failures (a network blip) count for nothing.
func (m *Monitor) Evidence(ch notifiers.Channel, err error) {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	r, ok := m.channels[ch]
	if !ok || !m.configured(ch) || (err != nil && !notifiers.IsPermanent(err)) {
		m.mu.Unlock()
		return
	}
	before, failures := r.Status, r.Failures
	if err == nil {
		m.succeed(ch, r, notifiers.Health{}, now, true)
	} else {
		m.fail(ch, r, "a page failed: "+oneLine(err.Error()), now)
	}
	changed := r.Status != before
	// A page that went through like the one before it changes only the
	// channel's last success: that stays in memory (the API shows it at once)
	// and is saved with the next write or by the minute loop, instead of a
	// synced write per page in a storm.
	durable := changed || r.Failures != failures
	if !durable {
		m.dirty = true
	}
	m.mu.Unlock()
	if changed {
		m.afterChange()
	}
	if durable {
		kick(m.kickAlarms)
	}
}

// succeed records a passing check. Called with m.mu held. A self-test's
// verdict (up or degraded) replaces the channel's; a delivered page
// (fromEvidence) only brings a down channel back up, leaving a degraded
// verdict (a low balance) alone.
func (m *Monitor) succeed(ch notifiers.Channel, r *channelRecord, h notifiers.Health, now time.Time, fromEvidence bool) {
	r.Failures, r.FirstFailure, r.LastError = 0, time.Time{}, ""
	r.LastSuccess = now
	if fromEvidence {
		if r.Status != notifiers.Down {
			return
		}
		h = notifiers.Health{Status: notifiers.Up, Reason: "a page was delivered"}
	}
	if r.Status != h.Status {
		m.logTransition(ch, r.Status, h)
		r.Since = now
	}
	r.Status, r.Reason, r.WillFail = h.Status, oneLine(h.Reason), h.WillFail && h.Status == notifiers.Degraded
}

// fail records a failed check. Called with m.mu held.
func (m *Monitor) fail(ch notifiers.Channel, r *channelRecord, reason string, now time.Time) {
	r.Failures++
	if r.Failures == 1 {
		r.FirstFailure = now
	}
	r.LastError = reason
	if r.Failures < m.cfg.FailuresToDown {
		m.log.Warn("channel check failed; not down yet", "channel", ch, "failures", r.Failures,
			"down_after", m.cfg.FailuresToDown, "reason", reason)
		return
	}
	if r.Status != notifiers.Down {
		m.logTransition(ch, r.Status, notifiers.Health{Status: notifiers.Down, Reason: reason})
		r.Since = r.FirstFailure
	}
	r.Status, r.Reason, r.WillFail = notifiers.Down, reason, false
}

func (m *Monitor) logTransition(ch notifiers.Channel, from notifiers.Status, h notifiers.Health) {
	switch h.Status {
	case notifiers.Down:
		m.log.Error("channel down: pages skip it until it recovers", "channel", ch, "was", from, "reason", h.Reason)
	case notifiers.Degraded:
		m.log.Warn("channel degraded", "channel", ch, "was", from, "reason", h.Reason, "will_fail", h.WillFail)
	default:
		m.log.Info("channel up", "channel", ch, "was", from, "reason", h.Reason)
	}
}

// afterChange reacts to a change in some channel's status: coverage depends on
// which channels are usable, and "no channel up" is logged at once.
func (m *Monitor) afterChange() {
	m.mu.Lock()
	n := m.usableLocked()
	prev := m.lastUsable
	m.lastUsable = n
	m.mu.Unlock()
	if n == 0 && prev != 0 {
		m.logNoneUp()
	}
	if n != prev {
		kick(m.kickCoverage)
	}
	if n > prev && prev >= 0 && m.cfg.OnChannelUp != nil {
		m.cfg.OnChannelUp()
	}
}

func (m *Monitor) usableLocked() int {
	n := 0
	for _, ch := range m.cfg.Configured {
		if r := m.channels[ch]; r != nil && r.usable() {
			n++
		}
	}
	return n
}

// Usable reports whether ch is configured and not down.
func (m *Monitor) Usable(ch notifiers.Channel) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.channels[ch]
	return ok && m.configured(ch) && r.usable()
}

// Ready fails when no configured channel can page anyone, for
// server.Config.Ready (/readyz answers 503).
func (m *Monitor) Ready(ctx context.Context) error {
	if err := m.noneUp(); err != nil {
		return err
	}
	return nil
}

// noneUp returns an error describing why no channel can page, or nil.
func (m *Monitor) noneUp() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.cfg.Configured) == 0 {
		return errors.New("no channel is configured: Klaxon cannot page anyone")
	}
	if m.usableLocked() > 0 {
		return nil
	}
	var parts []string
	for _, ch := range m.cfg.Configured {
		r := m.channels[ch]
		parts = append(parts, fmt.Sprintf("%s down since %s (%s)", ch, clock(r.Since, m.cfg.Location), r.Reason))
	}
	return fmt.Errorf("no channel can page anyone: %s", strings.Join(parts, "; "))
}

func (m *Monitor) logNoneUp() {
	if err := m.noneUp(); err != nil {
		m.log.Error("KLAXON CANNOT PAGE ANYONE: every channel is down; fix a channel now", "error", err)
	}
}

// Channels returns every configured channel's status in policy order.
func (m *Monitor) Channels() []ChannelStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ChannelStatus, 0, len(m.cfg.Configured))
	for _, ch := range m.cfg.Configured {
		r := m.channels[ch]
		_, tester := m.cfg.Testers[ch]
		status, reason := r.view()
		since := r.Since
		if status != r.Status {
			since = r.NotDeliveringSince
		}
		out = append(out, ChannelStatus{
			Channel: ch, Status: status, Reason: reason, WillFail: r.WillFail, Since: since,
			LastSuccess: r.LastSuccess, LastCheck: r.LastCheck, Failures: r.Failures, LastError: r.LastError,
			HasSelfTest: tester, Alarm: r.Alarm,
			LastDelivered: r.LastDelivered, Unconfirmed: r.Unconfirmed, NotDelivering: r.NotDelivering != "",
		})
	}
	return out
}

// kick wakes a loop without blocking; one pending wake is enough.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// oneLine makes a reason fit for an alarm title and a log line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const max = 300
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
