// Package gctune sets the Go runtime's garbage collector for a long-running
// Klaxon: a soft memory limit bounds the heap in an alert storm, and, under
// that bound, the collector runs less often than Go's default, which would
// otherwise spend a tenth of a busy Klaxon's CPU collecting a small heap.
package gctune

import (
	"math"
	"os"
	"runtime/debug"
)

// PercentUnderLimit is the GC percent (GOGC) used when a memory limit is in
// force and GOGC is not set: the heap may grow to five times the live data
// between collections, and the limit makes the collector work harder as the
// heap nears it. Measured on DurableIngest (64 senders, 2 cores): about 15%
// more webhooks/s than GOGC=100; 800 was no better.
const PercentUnderLimit = 400

// Settings is what Apply set.
type Settings struct {
	// Limit is the soft memory limit in force (bytes), 0 when none.
	Limit int64
	// Percent is the GC percent in force, -1 when collection is off.
	Percent int
}

// Apply sets limit as the runtime's soft memory limit (0 leaves it: Go's
// default, or GOMEMLIMIT's) and, when a limit is then in force and the
// environment does not set GOGC, the GC percent to PercentUnderLimit. It
// returns the settings in force and a function restoring the previous ones
// (for tests and benchmarks).
func Apply(limit int64) (Settings, func()) {
	prevLimit := debug.SetMemoryLimit(-1)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	cur := debug.SetMemoryLimit(-1)
	prevPercent := debug.SetGCPercent(-1)
	debug.SetGCPercent(prevPercent)
	percent := prevPercent
	if cur != math.MaxInt64 && os.Getenv("GOGC") == "" {
		percent = PercentUnderLimit
		debug.SetGCPercent(percent)
	}
	s := Settings{Percent: percent}
	if cur != math.MaxInt64 {
		s.Limit = cur
	}
	return s, func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	}
}
