package selftest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// testResult is one self-test's verdict and how long it took.
type testResult struct {
	ch   notifiers.Channel
	h    notifiers.Health
	took time.Duration
}

// busyFunc, if set, is asked before a test starts: a non-empty answer means
// the channel's previous test is still running, and becomes a Down reason.
// done is called when a started test returns (however late).
type busyFunc func(ch notifiers.Channel) (reason string, done func())

// runTests runs every tester concurrently, each under its own timeout, and
// returns one result per tester in channel order. A tester that hangs past its
// timeout (even one ignoring its context) or panics is reported down; it
// cannot stall the round.
func runTests(ctx context.Context, testers map[notifiers.Channel]notifiers.SelfTester, timeout time.Duration, busy busyFunc) []testResult {
	chs := make([]notifiers.Channel, 0, len(testers))
	for ch := range testers {
		chs = append(chs, ch)
	}
	sortChannels(chs)
	out := make([]testResult, len(chs))
	var wg sync.WaitGroup
	for i, ch := range chs {
		t := testers[ch]
		var done func()
		if busy != nil {
			var reason string
			if reason, done = busy(ch); reason != "" {
				out[i] = testResult{ch: ch, h: notifiers.Health{Status: notifiers.Down, Reason: reason}}
				continue
			}
		}
		wg.Go(func() { out[i] = runOne(ctx, ch, t, timeout, done) })
	}
	wg.Wait()
	return out
}

// runOne runs one self-test and waits for it at most timeout.
func runOne(ctx context.Context, ch notifiers.Channel, t notifiers.SelfTester, timeout time.Duration, done func()) testResult {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	res := make(chan notifiers.Health, 1)
	go func() {
		h := func() (h notifiers.Health) {
			defer func() {
				if p := recover(); p != nil {
					h = notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("self-test panicked: %v", p)}
				}
			}()
			return t.SelfTest(tctx)
		}()
		if done != nil {
			done() // before the verdict is seen, so the next round finds the channel free
		}
		res <- h
	}()
	var h notifiers.Health
	select {
	case h = <-res:
	case <-tctx.Done():
		// Prefer a verdict that raced with the deadline.
		select {
		case h = <-res:
		default:
			h = notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("self-test gave no answer within %s", timeout)}
		}
	}
	return testResult{ch: ch, h: normalize(h), took: time.Since(start)}
}

// normalize makes a tester's verdict well formed.
func normalize(h notifiers.Health) notifiers.Health {
	h.Reason = oneLine(h.Reason)
	switch h.Status {
	case notifiers.Up:
		h.WillFail = false
	case notifiers.Degraded:
	case notifiers.Down:
		if h.Reason == "" {
			h.Reason = "self-test failed without saying why"
		}
		h.WillFail = false
	default:
		h = notifiers.Health{Status: notifiers.Down, Reason: fmt.Sprintf("self-test returned an unknown status %q: %s", oneLine(string(h.Status)), h.Reason)}
	}
	return h
}

// CheckNow runs one round of self-tests and acts on the verdicts: a channel
// failing FailuresToDown rounds in a row goes down and raises its alarm; a
// passing one resets its count and clears its alarm. A round cut short by
// ctx records nothing. Rounds do not overlap.
func (m *Monitor) CheckNow(ctx context.Context) {
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	results := runTests(ctx, m.cfg.Testers, m.cfg.TestTimeout, m.busy)
	if ctx.Err() != nil {
		return
	}
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	for _, res := range results {
		r := m.channels[res.ch]
		if r == nil {
			continue
		}
		r.LastCheck = now
		if res.h.Status == notifiers.Down {
			m.fail(res.ch, r, res.h.Reason, now)
		} else {
			m.succeed(res.ch, r, res.h, now, false)
		}
	}
	// A channel without a self-test that failed real pages cannot prove itself
	// while pages skip it: after a round's interval, let pages try it again.
	for _, ch := range m.cfg.Configured {
		r := m.channels[ch]
		if _, tested := m.cfg.Testers[ch]; tested || r.Status != notifiers.Down || now.Sub(r.Since) < m.cfg.Interval {
			continue
		}
		m.log.Info("channel without a self-test: letting pages try it again", "channel", ch, "down_since", r.Since)
		r.Status, r.Since, r.Failures, r.FirstFailure = notifiers.Up, now, 0, time.Time{}
		r.Reason = fmt.Sprintf("no self-test; trying again after failed pages (%s)", r.Reason)
	}
	m.mu.Unlock()
	m.persistChannels(ctx)
	m.reconcileChannels(ctx)
	m.afterChange() // after the channel alarms, so a coverage alarm follows its cause
}

// busy tracks self-tests still running from an earlier round.
func (m *Monitor) busy(ch notifiers.Channel) (string, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if since, ok := m.inflight[ch]; ok {
		return fmt.Sprintf("the previous self-test has hung since %s", clock(since, m.cfg.Location)), nil
	}
	m.inflight[ch] = m.cfg.Clock.Now()
	return "", func() {
		m.mu.Lock()
		delete(m.inflight, ch)
		m.mu.Unlock()
	}
}

// persistChannels writes every channel's record.
func (m *Monitor) persistChannels(ctx context.Context) {
	m.persistMu.Lock()
	defer m.persistMu.Unlock()
	m.mu.Lock()
	snap := make(map[notifiers.Channel]channelRecord, len(m.channels))
	for ch, r := range m.channels {
		snap[ch] = *r
	}
	m.dirty = false
	m.mu.Unlock()
	if err := putJSON(context.WithoutCancel(ctx), m.cfg.State, keyChannels, snap); err != nil {
		m.mu.Lock()
		m.dirty = true
		m.mu.Unlock()
		m.log.Error("could not save channel status; it will be retried", "error", err)
	}
}

// persistIfDirty saves the channel records if something changed in memory
// only since the last save.
func (m *Monitor) persistIfDirty(ctx context.Context) {
	m.mu.Lock()
	dirty := m.dirty
	m.mu.Unlock()
	if dirty {
		m.persistChannels(ctx)
	}
}
