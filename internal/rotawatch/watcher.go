// Package rotawatch keeps the rota in force for a running server: it reloads
// rota.yaml when the file changes or on request, keeps the last valid version
// serving when an edit is broken, and exports the reload state as metrics.
package rotawatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/klaxon-oncall/klaxon/escalation/rota"
)

// Watcher keeps the current rota of one file, reloading it when the file
// changes (Run) or on request (Reload, for SIGHUP). A reload that fails keeps
// the previous rota serving and records every error; nothing is swapped until
// a version parses and validates.
//
// Watcher is a prometheus.Collector exporting klaxon_rota_valid and the times
// of the last reload attempt and the last successful load.
type Watcher struct {
	path     string
	logger   *slog.Logger
	now      func() time.Time
	debounce time.Duration

	mu           sync.Mutex
	cur          *rota.Rota
	curData      []byte
	errs         []string
	warnings     []rota.Warning
	loadedAt     time.Time
	attemptedAt  time.Time
	hooks        []func(old, new *rota.Rota)
	attemptHooks []func(errs []string)

	reloadMu sync.Mutex // serialises reloads

	watching func() // test hook: called once Run watches the directory

	validDesc, loadedDesc, attemptDesc *prometheus.Desc
}

// WatcherOption adjusts a Watcher.
type WatcherOption func(*Watcher)

// WithClock sets the clock used for load timestamps (time.Now by default).
func WithClock(now func() time.Time) WatcherOption { return func(w *Watcher) { w.now = now } }

// WithDebounce sets how long Run waits for a burst of file events to settle
// before reloading (100ms by default).
func WithDebounce(d time.Duration) WatcherOption { return func(w *Watcher) { w.debounce = d } }

// NewWatcher loads the rota at path. It fails, with every error, if that
// first load is invalid: Klaxon must not start without a rota.
func NewWatcher(path string, logger *slog.Logger, opts ...WatcherOption) (*Watcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		path:        path,
		logger:      logger,
		now:         time.Now,
		debounce:    100 * time.Millisecond,
		validDesc:   prometheus.NewDesc("klaxon_rota_valid", "1 if the rota file last read was valid, 0 if the last reload failed (the previous rota keeps serving).", nil, nil),
		loadedDesc:  prometheus.NewDesc("klaxon_rota_last_load_timestamp_seconds", "When the rota now serving was loaded.", nil, nil),
		attemptDesc: prometheus.NewDesc("klaxon_rota_last_reload_timestamp_seconds", "When the rota file was last read, successfully or not.", nil, nil),
	}
	for _, o := range opts {
		o(w)
	}
	if err := w.Reload(); err != nil {
		return nil, err
	}
	return w, nil
}

// Path returns the watched file's path.
func (w *Watcher) Path() string { return w.path }

// Current returns the rota now serving. It is never nil.
func (w *Watcher) Current() *rota.Rota {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Errors returns the problems of the last failed reload, one per line with
// file:line:col, or nil when the file last read was valid.
func (w *Watcher) Errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

// Valid reports whether the file last read was valid.
func (w *Watcher) Valid() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errs == nil
}

// Warnings returns the warnings of the rota now serving.
func (w *Watcher) Warnings() []rota.Warning {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]rota.Warning(nil), w.warnings...)
}

// LoadedAt returns when the rota now serving was loaded.
func (w *Watcher) LoadedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.loadedAt
}

// AttemptedAt returns when the file was last read, successfully or not.
func (w *Watcher) AttemptedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.attemptedAt
}

// Data returns the bytes of the file the rota now serving was parsed from.
func (w *Watcher) Data() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.curData
}

// OnChange registers fn to be called with the previous and the newly loaded
// rota on each successful reload that changes the file (not for the first
// load). Calls happen on the reloading goroutine, one at a time, after the new
// rota serves.
func (w *Watcher) OnChange(fn func(old, new *rota.Rota)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hooks = append(w.hooks, fn)
}

// OnReload registers fn to be called after every reload attempt with its
// errors (none: the file is valid), so an invalid edit is alarmed at once.
func (w *Watcher) OnReload(fn func(errs []string)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attemptHooks = append(w.attemptHooks, fn)
}

// Reload reads and validates the file now. If it is valid it replaces the
// current rota; if not, the current rota stays, every error is logged and
// kept for Errors, and the returned error lists them. An unchanged file is
// not swapped and triggers no OnChange.
func (w *Watcher) Reload() error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	now := w.now()
	data, err := rota.ReadFile(w.path)
	var r *rota.Rota
	var warns []rota.Warning
	if err != nil {
		err = rota.FileError(w.path, err)
	} else {
		r, warns, err = rota.Parse(w.path, data)
	}
	if err != nil {
		// Logged before the state changes, so whoever sees Valid() turn false
		// finds the reasons in the log.
		errs := rota.ErrorStrings(err)
		for _, e := range errs {
			w.logger.Error("rota invalid", "error", e)
		}
		w.mu.Lock()
		w.attemptedAt = now
		w.errs = errs
		if w.cur != nil {
			w.logger.Error("rota reload failed: keeping the previous rota", "file", w.path, "errors", len(errs))
		}
		attempt := slices.Clone(w.attemptHooks)
		w.mu.Unlock()
		for _, fn := range attempt {
			fn(errs)
		}
		return err
	}
	w.mu.Lock()
	w.attemptedAt = now
	unchanged := w.cur != nil && bytes.Equal(data, w.curData)
	hadErrs := len(w.errs) > 0
	w.errs = nil
	attempt := slices.Clone(w.attemptHooks)
	if unchanged {
		w.mu.Unlock()
		if hadErrs {
			for _, fn := range attempt {
				fn(nil)
			}
		}
		return nil
	}
	prev := w.cur
	w.cur, w.curData, w.warnings, w.loadedAt = r, data, warns, now
	hooks := slices.Clone(w.hooks)
	w.mu.Unlock()
	for _, x := range warns {
		w.logger.Warn("rota warning", "warning", x.String())
	}
	w.logger.Info("rota loaded", "file", w.path, "people", len(r.People), "rotations", len(r.Rotations), "policies", len(r.Policies))
	if prev != nil {
		for _, fn := range hooks {
			fn(prev, r)
		}
	}
	for _, fn := range attempt {
		fn(nil)
	}
	return nil
}

// Run watches the file's directory (editors and deploy tools replace files
// by renaming over them, which a watch on the file itself would lose) and
// reloads after each burst of changes to the file, until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("rota watch %s: %w", w.path, err)
	}
	defer fw.Close()
	dir := filepath.Dir(w.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("rota watch %s: %w", dir, err)
	}
	if w.watching != nil {
		w.watching()
	}
	name := filepath.Clean(w.path)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("rota file watcher closed")
			}
			if w.relevant(name, ev) {
				timer.Reset(w.debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("rota file watcher closed")
			}
			// Events may have been lost (queue overflow): reload to be sure.
			w.logger.Warn("rota file watcher error; reloading", "error", err)
			timer.Reset(w.debounce)
		case <-timer.C:
			_ = w.Reload() // failures are logged and kept for Errors
		}
	}
}

// relevant reports whether ev may change the rota file: an event on the file
// itself, or any event in its directory when the file is a symbolic link
// (Kubernetes ConfigMaps swap a ..data link).
func (w *Watcher) relevant(name string, ev fsnotify.Event) bool {
	if filepath.Clean(ev.Name) == name {
		return true
	}
	if fi, err := os.Lstat(name); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return true
	}
	return false
}

// Describe implements prometheus.Collector.
func (w *Watcher) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.validDesc
	ch <- w.loadedDesc
	ch <- w.attemptDesc
}

// Collect implements prometheus.Collector.
func (w *Watcher) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	valid := 0.0
	if w.errs == nil {
		valid = 1
	}
	loaded, attempted := w.loadedAt, w.attemptedAt
	w.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(w.validDesc, prometheus.GaugeValue, valid)
	ch <- prometheus.MustNewConstMetric(w.loadedDesc, prometheus.GaugeValue, unixSeconds(loaded))
	ch <- prometheus.MustNewConstMetric(w.attemptDesc, prometheus.GaugeValue, unixSeconds(attempted))
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
