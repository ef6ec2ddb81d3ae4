package recorder

import (
	"bytes"
	"context"
	"sync"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// Reports is a notifiers.Reporter that records delivery reports.
type Reports struct {
	mu      sync.Mutex
	got     []notifiers.Report
	changed chan struct{} // closed and replaced on every report; nil until waited on
}

// Report implements notifiers.Reporter.
func (r *Reports) Report(_ context.Context, rep notifiers.Report) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rep)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	return nil
}

// WaitFor waits until cond holds for the reports recorded so far (in
// order), or ctx ends, and returns them.
func (r *Reports) WaitFor(ctx context.Context, cond func([]notifiers.Report) bool) ([]notifiers.Report, error) {
	for {
		r.mu.Lock()
		got := append([]notifiers.Report(nil), r.got...)
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		if cond(got) {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// All returns the reports recorded so far, in order.
func (r *Reports) All() []notifiers.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notifiers.Report(nil), r.got...)
}

// LogBuffer is a log sink safe for concurrent writers: tests hand it to
// slog and search it for secrets that must not be there.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
