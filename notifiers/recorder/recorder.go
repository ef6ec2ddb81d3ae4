// Package recorder provides an in-process Notifier that records what it is
// asked to send and fails on demand. `klaxon simulate` and the engine's tests
// use it in place of real channels.
package recorder

import (
	"context"
	"fmt"
	"sync"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Recorder is a notifiers.Notifier for one channel that records pages.
type Recorder struct {
	ch notifiers.Channel

	mu      sync.Mutex
	pages   []notifiers.Page
	fail    func(notifiers.Page) error
	block   chan struct{}
	changed chan struct{} // closed and replaced on every page
}

// New returns a Recorder for channel ch.
func New(ch notifiers.Channel) *Recorder { return &Recorder{ch: ch, changed: make(chan struct{})} }

// add records p and wakes waiters.
func (r *Recorder) add(p notifiers.Page) {
	r.mu.Lock()
	r.pages = append(r.pages, p)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// WaitFor waits until at least n pages of kind k were asked for, or ctx ends.
func (r *Recorder) WaitFor(ctx context.Context, k notifiers.Kind, n int) error {
	for {
		r.mu.Lock()
		c := 0
		for _, p := range r.pages {
			if p.Kind == k {
				c++
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if c >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%s: %d %s pages, waited for %d: %w", r.ch, c, k, n, ctx.Err())
		}
	}
}

// Channel implements notifiers.Notifier.
func (r *Recorder) Channel() notifiers.Channel { return r.ch }

// Notify implements notifiers.Notifier: it records p, or returns the error
// the failure function gives for it. A blocked recorder waits for Unblock or
// ctx, like a hanging provider.
func (r *Recorder) Notify(ctx context.Context, p notifiers.Page) (notifiers.Receipt, error) {
	r.mu.Lock()
	fail, block := r.fail, r.block
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return notifiers.Receipt{}, notifiers.Temporary("timeout", 0, ctx.Err())
		}
	}
	if fail != nil {
		if err := fail(p); err != nil {
			r.add(p)
			return notifiers.Receipt{}, err
		}
	}
	r.add(p)
	return notifiers.Receipt{ProviderID: "rec-" + p.ID, Detail: "recorded"}, nil
}

// FailWith makes every later Notify return the error fn gives (nil: success).
func (r *Recorder) FailWith(fn func(notifiers.Page) error) {
	r.mu.Lock()
	r.fail = fn
	r.mu.Unlock()
}

// Block makes Notify hang until Unblock or its context ends.
func (r *Recorder) Block() {
	r.mu.Lock()
	r.block = make(chan struct{})
	r.mu.Unlock()
}

// Unblock releases Notify calls held by Block.
func (r *Recorder) Unblock() {
	r.mu.Lock()
	if r.block != nil {
		close(r.block)
		r.block = nil
	}
	r.mu.Unlock()
}

// Pages returns every page asked for so far (failed ones included), in order.
func (r *Recorder) Pages() []notifiers.Page {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notifiers.Page(nil), r.pages...)
}

// Count returns how many pages of kind k were asked for.
func (r *Recorder) Count(k notifiers.Kind) int {
	n := 0
	for _, p := range r.Pages() {
		if p.Kind == k {
			n++
		}
	}
	return n
}
