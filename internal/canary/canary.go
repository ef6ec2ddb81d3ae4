// Package canary runs delivery canaries between incidents: on each channel
// that opts in, every interval, a test message that must be seen arriving
// by the channel's own evidence (PagerDuty: a notify log entry; SMS: the text
// comes back through the inbound webhook; Matrix: the notice comes back
// through the observer account's /sync, or the bot's own without one). Each result goes to Deliveries, which Klaxon wires to the
// self-test monitor, so a failed canary makes the channel degraded exactly
// as an unconfirmed page does, and a confirmed one clears it.
//
// A canary costs what its channel costs (an SMS per run is billed; a
// PagerDuty canary notifies whoever its service's policy names), so every
// canary is off unless configured, and runs at most once per interval.
package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Prober is a channel that can send itself a canary and say whether it
// arrived: confirmed, or not with the reason in words. err means the canary
// could not be judged (not configured, a temporary failure to send, ctx
// ended): it is logged and feeds no health.
type Prober interface {
	Canary(ctx context.Context) (confirmed bool, reason string, err error)
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context) (bool, string, error)

// Canary implements Prober.
func (f ProberFunc) Canary(ctx context.Context) (bool, string, error) { return f(ctx) }

// Check is one channel's canary.
type Check struct {
	Channel notifiers.Channel
	Prober  Prober
	// Interval is how often the canary runs; the first run is one Interval
	// after Run starts (a restart loop must not become a stream of texts).
	Interval time.Duration
	// Timeout bounds one run (default: Interval, at most 10 minutes).
	Timeout time.Duration
}

// Runner runs canaries, one goroutine per check.
type Runner struct {
	Checks []Check
	// Deliveries takes every judged canary (cmd/klaxon wires it to the
	// self-test monitor's Delivery). nil: results are only logged.
	Deliveries func(ch notifiers.Channel, confirmed bool, reason string)
	// Logger receives one line per run; nil discards.
	Logger *slog.Logger

	mu   sync.Mutex
	last map[notifiers.Channel]Result
}

// Result is a canary's last outcome.
type Result struct {
	At        time.Time
	Confirmed bool
	Reason    string
	Err       error
}

// MinInterval is the shortest interval a canary may run at.
const MinInterval = time.Minute

// Validate checks the runner's checks.
func (r *Runner) Validate() error {
	var errs []error
	seen := map[notifiers.Channel]bool{}
	for _, c := range r.Checks {
		switch {
		case c.Prober == nil:
			errs = append(errs, fmt.Errorf("%s canary: the channel cannot run canaries", c.Channel))
		case c.Interval < MinInterval:
			errs = append(errs, fmt.Errorf("%s canary: interval %v is below %v", c.Channel, c.Interval, MinInterval))
		case seen[c.Channel]:
			errs = append(errs, fmt.Errorf("%s canary configured twice", c.Channel))
		}
		seen[c.Channel] = true
	}
	return errors.Join(errs...)
}

// Run runs every check at its interval until ctx ends, and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Validate(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, c := range r.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(c.Interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					r.RunOnce(ctx, c)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// RunOnce runs c's canary now, reports a judged result to Deliveries and
// returns it.
func (r *Runner) RunOnce(ctx context.Context, c Check) Result {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = min(c.Interval, 10*time.Minute)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	ok, reason, err := c.Prober.Canary(cctx)
	cancel()
	res := Result{At: time.Now(), Confirmed: ok, Reason: reason, Err: err}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return res // shutting down: no verdict
	case err != nil:
		log.Warn("canary could not run", "channel", string(c.Channel), "error", err.Error())
	case ok:
		log.Info("canary confirmed", "channel", string(c.Channel), "detail", reason)
	default:
		log.Warn("canary not confirmed: the channel may not be delivering", "channel", string(c.Channel), "reason", reason)
	}
	if err == nil && r.Deliveries != nil {
		why := reason
		if !ok {
			why = "canary: " + reason
		}
		r.Deliveries(c.Channel, ok, why)
	}
	r.mu.Lock()
	if r.last == nil {
		r.last = map[notifiers.Channel]Result{}
	}
	r.last[c.Channel] = res
	r.mu.Unlock()
	return res
}

// Last returns the last result of ch's canary, if it ran.
func (r *Runner) Last(ch notifiers.Channel) (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok := r.last[ch]
	return res, ok
}
