package gctune

import (
	"math"
	"os"
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	for _, c := range []struct {
		name        string
		gogc        string // "" unset
		gomemlimit  int64  // a limit already in force (as GOMEMLIMIT sets), 0 none
		limit       int64
		wantLimit   int64
		wantPercent int
	}{
		{"klaxon's limit raises the percent", "", 0, 80 << 20, 80 << 20, PercentUnderLimit},
		{"GOMEMLIMIT's limit raises it too", "", 200 << 20, 0, 200 << 20, PercentUnderLimit},
		{"no limit: Go's default stays", "", 0, 0, 0, 100},
		{"GOGC set: it wins", "150", 0, 80 << 20, 80 << 20, 150},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOGC", c.gogc)
			if c.gogc == "" {
				os.Unsetenv("GOGC")
			}
			oldPercent := debug.SetGCPercent(100)
			if c.gogc != "" {
				debug.SetGCPercent(150) // as the runtime read it at start
			}
			oldLimit := debug.SetMemoryLimit(math.MaxInt64)
			if c.gomemlimit > 0 {
				debug.SetMemoryLimit(c.gomemlimit)
			}
			defer func() {
				debug.SetGCPercent(oldPercent)
				debug.SetMemoryLimit(oldLimit)
			}()
			before := debug.SetMemoryLimit(-1)
			s, restore := Apply(c.limit)
			if s.Limit != c.wantLimit || s.Percent != c.wantPercent {
				t.Errorf("Apply(%d) = %+v, want limit %d, percent %d", c.limit, s, c.wantLimit, c.wantPercent)
			}
			if got := debug.SetGCPercent(-1); got != c.wantPercent {
				t.Errorf("runtime GC percent %d, want %d", got, c.wantPercent)
			}
			debug.SetGCPercent(c.wantPercent)
			if got := debug.SetMemoryLimit(-1); (c.wantLimit == 0 && got != math.MaxInt64) || (c.wantLimit != 0 && got != c.wantLimit) {
				t.Errorf("runtime memory limit %d, want %d", got, c.wantLimit)
			}
			restore()
			if got := debug.SetMemoryLimit(-1); got != before {
				t.Errorf("restore left the limit at %d, want %d", got, before)
			}
		})
	}
}
