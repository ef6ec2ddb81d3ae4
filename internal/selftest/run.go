package selftest

import (
	"context"
	"sync"
	"time"
)

// Run runs the Monitor until ctx ends, then returns nil: a self-test round at
// once and every Interval (±10%); the Watchdog deadline (a deadline that
// passed while Klaxon was down fires at once); every minute, an error log
// while no channel can page, the rota's validity (RotaErrors) and retries of
// alarms that could not be raised; the heartbeat; and the coverage check after
// the first round, daily, and whenever a channel becomes usable or unusable.
//
// With several replicas (Config.Follower) Run is the leader's: it starts from
// the records the leader before it kept, and records its view for the others.
func (m *Monitor) Run(ctx context.Context) error {
	firstRound := make(chan struct{})
	var wg sync.WaitGroup
	if m.cfg.Follower != nil {
		m.reload(ctx)
		wg.Go(func() { m.record(ctx) })
	}
	wg.Go(func() { m.checkLoop(ctx, firstRound) })
	wg.Go(func() { m.minuteLoop(ctx) })
	wg.Go(func() { m.alarmLoop(ctx) })
	if m.cfg.WatchdogTimeout > 0 {
		m.armWatchdog(ctx)
		wg.Go(func() { m.watchdogLoop(ctx) })
	}
	if m.cfg.HeartbeatURL != "" {
		wg.Go(func() { m.every(ctx, m.cfg.HeartbeatInterval, false, func() { m.noteHeartbeat(m.heartbeat(ctx)) }) })
	}
	if m.cfg.Coverage != nil {
		wg.Go(func() { m.coverageLoop(ctx, firstRound) })
	}
	wg.Wait()
	m.persistIfDirty(ctx) // the last pages' successes
	return nil
}

// jittered is Interval varied by up to ±10%.
func (m *Monitor) jittered() time.Duration {
	f := 1 + jitter*(2*m.cfg.Rand.Float64()-1)
	return time.Duration(float64(m.cfg.Interval) * f)
}

func (m *Monitor) checkLoop(ctx context.Context, firstRound chan struct{}) {
	m.CheckNow(ctx)
	close(firstRound)
	t := m.cfg.Clock.NewTimer(m.jittered())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			// Re-arm first: the next round's time does not depend on this one's length.
			t.Reset(m.jittered())
			m.CheckNow(ctx)
		}
	}
}

// every calls fn every d until ctx ends (first at once when now is set). The
// timer is re-armed before fn runs.
func (m *Monitor) every(ctx context.Context, d time.Duration, now bool, fn func()) {
	if now {
		fn()
	}
	t := m.cfg.Clock.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			t.Reset(d)
			fn()
		}
	}
}

func (m *Monitor) minuteLoop(ctx context.Context) {
	m.every(ctx, time.Minute, true, func() {
		if m.noneUp() != nil {
			m.logNoneUp()
		}
		if m.cfg.RotaErrors != nil {
			if errs := m.cfg.RotaErrors(); len(errs) > 0 {
				m.RotaInvalid(ctx, errs)
			} else {
				m.RotaValid(ctx)
			}
		}
		m.reconcileChannels(ctx)
		m.reconcileKeyed(ctx)
		m.persistIfDirty(ctx)
	})
}

// alarmLoop acts on channel changes that real pages reported (Evidence).
func (m *Monitor) alarmLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kickAlarms:
			m.persistChannels(ctx)
			m.reconcileChannels(ctx)
		}
	}
}

func (m *Monitor) watchdogLoop(ctx context.Context) {
	t := m.cfg.Clock.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		next := m.reconcileWatchdog(ctx)
		if !next.IsZero() {
			t.Reset(max(next.Sub(m.cfg.Clock.Now()), 0))
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-m.kickWatchdog:
		}
	}
}

func (m *Monitor) coverageLoop(ctx context.Context, firstRound chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-firstRound:
	}
	t := m.cfg.Clock.NewTimer(m.cfg.CoverageInterval)
	defer t.Stop()
	select { // the first round's changes are covered by this first check
	case <-m.kickCoverage:
	default:
	}
	m.CheckCoverage(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			t.Reset(m.cfg.CoverageInterval)
		case <-m.kickCoverage:
		}
		m.CheckCoverage(ctx)
	}
}
